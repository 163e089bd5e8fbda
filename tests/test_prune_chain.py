"""`rm --prune` removes the whole chain of dangling ancestors, as moby does (DESIGN 3.2 step 4).

The parents of a deleted image are the images (index.json entries grouped by digest) whose
layer list is a strict, non-empty prefix of its layers. Longest prefix first, each is deleted
while it is dangling (no name) and no surviving image builds on it (has its layers as a
strict prefix; images deleted by this call do not count). The chain stops at the first
parent that is named or that a survivor builds on; no shorter parent is deleted then.

Images share layer lists: base [L1], mid [L1,L2], top [L1,L2,L3], child [L1,L2,L3,L4]. The
expected outcome of every case is written down by hand (which images go); the entries left
in index.json and the blob files on disk are compared with it, the blobs through `model_reach`,
a walk of the image-spec edges written here, independent of ocilayout. Each case runs with
the entries in several orders in index.json: the chain must not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocilayout import Layout

REF_NAME = "org.opencontainers.image.ref.name"
LOCK_FILE = ".ocilayout.lock"


# -- an independent model ----------------------------------------------------------------------


def blob_set(blobs_dir: Path) -> set[str]:
    found: set[str] = set()
    for alg in blobs_dir.iterdir() if blobs_dir.is_dir() else ():
        if alg.is_dir() and not alg.is_symlink():
            found.update(f"{alg.name}:{f.name}" for f in alg.iterdir() if f.is_file() and not f.is_symlink())
    return found


def entries(root: Path) -> list[tuple[str | None, str]]:
    index = json.loads((root / "index.json").read_bytes())
    return [((m.get("annotations") or {}).get(REF_NAME), m["digest"]) for m in index["manifests"]]


def model_reach(root: Path, roots: list[str]) -> set[str]:
    """Digests reachable from `roots` through manifests[], config, layers[], blobs[]."""
    todo, seen = list(roots), set()
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        alg, _, hexd = digest.partition(":")
        path = root / "blobs" / alg / hexd
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        for key in ("manifests", "layers", "blobs"):
            if isinstance(doc.get(key), list):
                todo += [i["digest"] for i in doc[key] if isinstance(i, dict) and isinstance(i.get("digest"), str)]
        if isinstance(doc.get("config"), dict) and isinstance(doc["config"].get("digest"), str):
            todo.append(doc["config"]["digest"])
    return seen


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


# -- building chains --------------------------------------------------------------------------------


def layer_bytes(key: str) -> bytes:
    return b"prune-chain layer " + key.encode()


@dataclass(frozen=True)
class Img:
    label: str
    layers: tuple[str, ...]
    names: tuple[str | None, ...] = (None,)  # one entry per item; None: an unnamed entry


def img(label: str, layers: str, *names: str | None) -> Img:
    return Img(label, tuple(layers.split()), names or (None,))


BASE = img("base", "L1")
MID = img("mid", "L1 L2")
TOP = img("top", "L1 L2 L3")
CHILD = img("child", "L1 L2 L3 L4", "child")
KEEP = img("keep", "K1", "keep")  # unrelated, named
LOOSE = img("loose", "Q1")  # unrelated, dangling: prune only takes ancestors


@dataclass(frozen=True)
class Case:
    images: tuple[Img, ...]
    remove: tuple[str, ...]  # references passed to rm
    deleted: frozenset[str]  # labels of the images that must be gone (requested and parents)
    parents: frozenset[str]  # labels of those deleted as parents (reason "parent of ...")


def case(images: list[Img], remove: list[str], parents: set[str], deleted_requested: set[str] | None = None) -> Case:
    requested = {"child"} if deleted_requested is None else deleted_requested
    return Case(tuple(images), tuple(remove), frozenset(parents | requested), frozenset(parents))


CASES = {
    "all-dangling": case([BASE, MID, TOP, CHILD, KEEP, LOOSE], ["child"], {"top", "mid", "base"}),
    "mid-named": case([BASE, img("mid", "L1 L2", "mid"), TOP, CHILD, KEEP], ["child"], {"top"}),
    "base-named": case([img("base", "L1", "base"), MID, TOP, CHILD, KEEP], ["child"], {"top", "mid"}),
    "top-named": case([BASE, MID, img("top", "L1 L2 L3", "top"), CHILD, KEEP], ["child"], set()),
    "survivor-builds-on-mid": case([BASE, MID, TOP, CHILD, img("other", "L1 L2 X", "other")], ["child"], {"top"}),
    "dangling-survivor-builds-on-mid": case([BASE, MID, TOP, CHILD, img("other", "L1 L2 X")], ["child"], {"top"}),
    "survivor-builds-on-base": case([BASE, MID, TOP, CHILD, img("other", "L1 Z", "other")], ["child"], {"top", "mid"}),
    "survivor-builds-on-top": case([BASE, MID, TOP, CHILD, img("other", "L1 L2 L3 Y", "other")], ["child"], set()),
    "gap-in-the-chain": case([BASE, TOP, CHILD, KEEP], ["child"], {"top", "base"}),
    "parent-with-two-unnamed-entries": case([BASE, img("mid", "L1 L2", None, None), TOP, CHILD], ["child"],
                                            {"top", "mid", "base"}),
    "parent-named-by-its-second-entry": case([BASE, img("mid", "L1 L2", None, "mid"), TOP, CHILD], ["child"],
                                             {"top"}),
    "both-children-in-one-call": case([BASE, MID, TOP, CHILD, img("other", "L1 L2 X", "other")],
                                      ["child", "other"], {"top", "mid", "base"}, {"child", "other"}),
    "child-only-untagged": case([BASE, MID, TOP, img("child", "L1 L2 L3 L4", "child", "child-alias")],
                                ["child"], set(), set()),
}

ORDERS = ["as-written", "reversed", "shuffled"]


@dataclass
class Built:
    root: Path
    digest: dict[str, str]  # label -> manifest digest
    case: Case


def build(generate, root: Path, c: Case, order: str) -> Built:
    w = generate.LayoutWriter(root)
    digest: dict[str, str] = {}
    rows = []
    for n, image in enumerate(c.images):
        desc = w.image([layer_bytes(k) for k in image.layers], labels={"image": image.label},
                       created=f"2024-01-{n + 1:02d}T00:00:00Z")
        digest[image.label] = desc["digest"]
        rows += [(desc, name) for name in image.names]
    if order == "reversed":
        rows.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(rows)
    for desc, name in rows:
        w.add_entry(desc, name)
    w.finish()
    built = Built(root, digest, c)
    check_built(built)
    return built


def check_built(b: Built) -> None:
    """Construction check: the layouts hold the layer lists and entries the case says."""
    assert len(set(b.digest.values())) == len(b.digest), "every image has its own digest"
    for image in b.case.images:
        alg, _, hexd = b.digest[image.label].partition(":")
        manifest = json.loads((b.root / "blobs" / alg / hexd).read_bytes())
        wanted = ["sha256:" + hashlib.sha256(layer_bytes(k)).hexdigest() for k in image.layers]
        assert [layer["digest"] for layer in manifest["layers"]] == wanted
    expected_entries = sorted((name or "", b.digest[i.label]) for i in b.case.images for name in i.names)
    assert sorted((n or "", d) for n, d in entries(b.root)) == expected_entries
    assert blob_set(b.root / "blobs") == model_reach(b.root, [d for _, d in entries(b.root)]), "no orphans"


def expected_entries(b: Built, deleted: frozenset[str]) -> list[tuple[str, str]]:
    """Entries left: those of images not deleted, minus names rm removed (untag)."""
    left = []
    for image in b.case.images:
        if image.label in deleted:
            continue
        left += [(name or "", b.digest[image.label]) for name in image.names if name not in b.case.remove]
    return sorted(left)


def assert_outcome(b: Built, deleted: frozenset[str], before: set[str]) -> None:
    left = expected_entries(b, deleted)
    assert sorted((n or "", d) for n, d in entries(b.root)) == left, {
        label for label, d in b.digest.items() if d not in {x for _, x in entries(b.root)}
    }
    assert blob_set(b.root / "blobs") == before & model_reach(b.root, [d for _, d in left])


@pytest.fixture
def chain(tmp_path, generate_module):
    def make(name: str, order: str = "as-written") -> Built:
        return build(generate_module, tmp_path / "lay", CASES[name], order)

    return make


def parents_in(report, b: Built) -> set[str]:
    by_digest = {d: label for label, d in b.digest.items()}
    return {by_digest.get(i.id, i.id) for i in report.images if i.deleted and i.reason.startswith("parent of")}


# -- the tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", list(CASES))
def test_prune_removes_the_chain_of_dangling_parents(chain, name, order):
    b = chain(name, order)
    before = blob_set(b.root / "blobs")

    report = Layout.open(b.root).delete(list(b.case.remove), prune=True)

    assert report.ok, (report.failures, report.warnings)
    assert parents_in(report, b) == b.case.parents
    assert {i.id for i in report.images if i.deleted} == {b.digest[label] for label in b.case.deleted}
    assert_outcome(b, b.case.deleted, before)


@pytest.mark.parametrize("name", list(CASES))
def test_without_prune_only_the_requested_image_goes(chain, name):
    b = chain(name)
    before = blob_set(b.root / "blobs")
    requested = b.case.deleted - b.case.parents

    report = Layout.open(b.root).delete(list(b.case.remove))

    assert parents_in(report, b) == set()
    assert_outcome(b, requested, before)


@pytest.mark.parametrize("name", list(CASES))
def test_dry_run_reports_the_same_images_as_the_real_run(chain, name):
    b = chain(name, "reversed")
    untouched = snapshot(b.root)

    dry = Layout.open(b.root).delete(list(b.case.remove), prune=True, dry_run=True)
    assert snapshot(b.root) == untouched
    real = Layout.open(b.root).delete(list(b.case.remove), prune=True)

    assert dry.dry_run and not real.dry_run
    assert parents_in(dry, b) == b.case.parents

    def rows(report):
        return sorted((i.id, i.deleted, i.reason, i.blobs_deleted, i.bytes_freed) for i in report.images)

    assert rows(dry) == rows(real)
    assert (dry.blobs_deleted, dry.bytes_freed) == (real.blobs_deleted, real.bytes_freed)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("order", ["as-written", "reversed"])
def test_chains_of_any_length_go_entirely(tmp_path, generate_module, depth, order):
    layers = [f"D{k}" for k in range(depth + 1)]
    parents = [img(f"p{k}", " ".join(layers[:k])) for k in range(1, depth + 1)]
    c = case([*parents, img("child", " ".join(layers), "child"), KEEP], ["child"], {p.label for p in parents})
    b = build(generate_module, tmp_path / "lay", c, order)
    before = blob_set(b.root / "blobs")

    report = Layout.open(b.root).delete(["child"], prune=True)

    assert parents_in(report, b) == c.parents
    assert_outcome(b, c.deleted, before)
    assert entries(b.root) == [("keep", b.digest["keep"])]


@pytest.mark.parametrize("name", ["all-dangling", "survivor-builds-on-base", "mid-named"])
def test_cli_rm_prune(chain, run_cli, name):
    b = chain(name, "shuffled")
    before = blob_set(b.root / "blobs")

    result = run_cli("rm", b.root, *b.case.remove, "--prune", "--format", "json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    by_digest = {d: label for label, d in b.digest.items()}
    assert {by_digest[i["id"]] for i in data["images"] if i["deleted"]} == set(b.case.deleted)
    assert_outcome(b, b.case.deleted, before)
