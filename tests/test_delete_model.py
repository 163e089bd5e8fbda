"""Differential test: random layouts and random rm/tag/untag/trim batches against a simple model.

The model knows the layout's edges from how the test built it (not by parsing blobs) and
applies DESIGN 3.2/3.5/3.7 with plain lists and sets. After every step the entries must
equal the model's, the blob set must equal `before - (reach(removed) - reach(remaining))`,
and every blob reachable from index.json must still exist.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocilayout import Layout, NotFoundError, OcilayoutError
from ocilayout import graph as graph_module

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
NAMES = ["a", "b", "c", "d", "e"]
ARCHES = ["amd64", "arm64", "s390x"]
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class World:
    """What the test built: blobs on disk, strong edges, subjects, and index.json entries."""

    root: Path
    edges: dict[str, list[str]] = field(default_factory=dict)
    subject: dict[str, str] = field(default_factory=dict)
    media: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)  # manifests deleted to make the layout sparse

    def blob(self, data: bytes, children: list[str] = (), media_type: str | None = None) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / "sha256" / digest[7:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.edges.setdefault(digest, list(children))
        self.media[digest] = (media_type, len(data))
        return digest

    def register(self, data: bytes, children: list[str], media_type: str) -> str:
        """Know a blob the code under test is expected to write (the model writes nothing)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.edges.setdefault(digest, list(children))
        self.media[digest] = (media_type, len(data))
        return digest

    def desc(self, digest: str, media_type: str | None = "keep") -> dict:
        mt, size = self.media[digest]
        out = {"digest": digest, "size": size}
        chosen = mt if media_type == "keep" else media_type
        if chosen is not None:
            out["mediaType"] = chosen
        return out


def reach(world: World, digests: set[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(digests)
    while stack:
        d = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        stack.extend(world.edges.get(d, []))
    return seen


@st.composite
def layouts(draw: st.DrawFn) -> dict:
    n_layers = draw(st.integers(1, 5))
    images = draw(
        st.lists(
            st.tuples(
                st.lists(st.integers(0, n_layers - 1), min_size=1, max_size=3),  # repeats allowed
                st.booleans(),  # docker types
                st.sampled_from(["keep", None, "application/x-unknown"]),  # descriptor type as seen from parents
            ),
            min_size=1,
            max_size=5,
        )
    )
    n_images = len(images)
    indexes = draw(
        st.lists(st.tuples(st.lists(st.integers(0, n_images - 1), min_size=1, max_size=3, unique=True), st.booleans()), max_size=2)
    )
    nested = draw(st.booleans()) and len(indexes) >= 1
    referrers = draw(st.lists(st.integers(0, 99), max_size=2))
    roots = n_images + len(indexes) + (1 if nested else 0) + len(referrers)
    entry_names = draw(st.lists(st.integers(-1, 2), min_size=roots, max_size=roots))  # -1: no entry
    sparse = draw(st.booleans())
    return {
        "n_layers": n_layers,
        "images": images,
        "indexes": indexes,
        "nested": nested,
        "referrers": referrers,
        "entry_names": entry_names,
        "sparse": sparse,
        "allow_sparse": draw(st.booleans()),
        "fork": draw(st.booleans()),  # the live set on two cores (graph.live_set forks)
    }


def build(root: Path, spec: dict) -> tuple[World, list[tuple[str | None, str]], set[str]]:
    world = World(root)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layers = [world.blob(f"layer-{i}-".encode() * 8, media_type="application/vnd.oci.image.layer.v1.tar+gzip") for i in range(spec["n_layers"])]
    image_digests: list[str] = []
    parent_types: list[str | None] = []
    for i, (layer_ids, docker, seen_as) in enumerate(spec["images"]):
        config = world.blob(json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode(),
                            media_type="application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": world.desc(config),
            "layers": [world.desc(layers[j]) for j in layer_ids],
        }
        digest = world.blob(
            json.dumps(manifest).encode(), [config, *[layers[j] for j in layer_ids]],
            DOCKER_MANIFEST if docker else OCI_MANIFEST,
        )
        image_digests.append(digest)
        parent_types.append(seen_as)
    objects: list[str] = list(image_digests)
    index_digests = []
    for children, docker in spec["indexes"]:
        doc = {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST if docker else OCI_INDEX,
            "manifests": [
                {**world.desc(image_digests[c], parent_types[c]), "platform": {"os": "linux", "architecture": arch}}
                for c, arch in ((c, ARCHES[c % 3]) for c in children)
            ],
        }
        d = world.blob(json.dumps(doc).encode(), [image_digests[c] for c in children], DOCKER_LIST if docker else OCI_INDEX)
        index_digests.append(d)
    objects += index_digests
    if spec["nested"]:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [world.desc(index_digests[0], None)]}
        objects.append(world.blob(json.dumps(doc).encode(), [index_digests[0]], OCI_INDEX))
    for k, pick in enumerate(spec["referrers"]):
        subject = objects[pick % len(objects)]
        layer = world.blob(f"sbom-{k}".encode() * 4, media_type="application/spdx+json")
        empty = world.blob(b"{}", media_type="application/vnd.oci.empty.v1+json")
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": world.desc(empty),
            "layers": [world.desc(layer)],
            "subject": world.desc(subject),
        }
        d = world.blob(json.dumps(doc).encode(), [empty, layer], OCI_MANIFEST)
        world.subject[d] = subject
        objects.append(d)
    entries: list[tuple[str | None, str]] = []
    free_names = list(NAMES)
    for obj, count in zip(objects, spec["entry_names"]):
        if count < 0:
            continue
        if count == 0:
            entries.append((None, obj))
        for _ in range(count):
            if free_names:
                entries.append((free_names.pop(0), obj))
    if not entries:
        entries.append((None, objects[0]))
    # sparse: an image only reachable through an index loses its manifest blob
    entry_digests = {d for _, d in entries}
    if spec["sparse"]:
        for d in image_digests:
            if d not in entry_digests and any(d in world.edges[i] for i in index_digests):
                (root / "blobs" / "sha256" / d[7:]).unlink()
                world.edges[d] = []  # its references are unknowable now
                world.missing.add(d)
                break
    write_index(world, entries)
    present = {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()}
    return world, entries, present


def write_index(world: World, entries: list[tuple[str | None, str]]) -> None:
    manifests = []
    for name, digest in entries:
        desc = world.desc(digest)
        if name is not None:
            desc["annotations"] = {REF_NAME: name}
        manifests.append(desc)
    (world.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


# -- the model ----------------------------------------------------------------------------


def model_resolve(entries: list[tuple[str | None, str]], ref: str) -> tuple[bool, str] | None:
    """(by_id, digest) or None when not found."""
    named = {d for n, d in entries if n == ref}
    if named:
        return False, named.pop()
    digests = {d for _, d in entries}
    if ref in digests:
        return True, ref
    if len(ref) < 4:  # shorter hex prefixes are never taken as IDs (DESIGN 3.1, MIN_PREFIX)
        return None
    matches = {d for d in digests if d[7:].startswith(ref)}
    return (True, matches.pop()) if len(matches) == 1 else None


def model_rm(world: World, entries: list, refs: list[str], force: bool, allow_sparse: bool = False) -> list:
    requests: dict[str, tuple[set[str], list[bool]]] = {}
    for ref in refs:
        found = model_resolve(entries, ref)
        if found is None:
            continue
        by_id, digest = found
        names, flag = requests.setdefault(digest, (set(), [False]))
        if by_id:
            flag[0] = True
        else:
            names.add(ref)
    removed: list[tuple[str | None, str]] = []
    deleted: set[str] = set()
    for digest, (names, flag) in requests.items():
        all_names = {n for n, d in entries if d == digest and n}
        remaining = all_names - names
        if flag[0] and remaining and len(all_names) > 1 and not force:
            continue
        if flag[0] or not remaining:
            removed += [e for e in entries if e[1] == digest]
            deleted.add(digest)
        else:
            removed += [e for e in entries if e[1] == digest and e[0] in names]
    return model_cascade(world, entries, removed, deleted, allow_sparse)


def model_cascade(world: World, entries: list, removed: list, deleted: set[str], allow_sparse: bool) -> list:
    """DESIGN 3.7 on plain sets, straight from its words: unnamed entries that refer to any
    blob the deletion frees go, recursively; unnamed entries (not referrers) held in the
    manifests of a deleted index go unless a survivor that is no such child reaches them.
    When what the survivors would then reach is in doubt (a missing manifest) the freed set
    is unknown: only the referrers of the deleted digests go, while nothing known to stay
    reaches them."""
    certain = _cascade(world, entries, list(removed), set(deleted), doubt=False)
    if allow_sparse or not world.missing & reach(world, {d for _, d in certain}):
        return certain
    return _cascade(world, entries, list(removed), set(deleted), doubt=True)


def _cascade(world: World, entries: list, removed: list, deleted: set[str], doubt: bool) -> list:
    while True:
        remaining = [e for e in entries if e not in removed]
        roots = {d for _, d in remaining}
        gone_roots = {d for _, d in removed} - roots
        dangling = {d for d in roots if not any(n for n, dd in remaining if dd == d)}
        new: set[str] = set()
        if doubt:
            known = reach(world, roots)
            new = {d for d in dangling if world.subject.get(d) in deleted and world.subject[d] not in known}
            deleted |= new
        else:
            held = set()
            for d in reach(world, gone_roots):
                if world.media[d][0] in (OCI_INDEX, DOCKER_LIST):
                    held.update(world.edges.get(d, []))
            children = {d for d in dangling if d in held and d not in world.subject}
            shield = reach(world, roots - children)
            freed = reach(world, gone_roots) - reach(world, roots)
            new = {d for d in children if d not in shield}
            new |= {d for d in dangling if world.subject.get(d) in freed}
        if not new:
            return remaining
        removed += [e for e in remaining if e[1] in new]


INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


def model_trim(world: World, entries: list, ref: str, arch: str, allow_sparse: bool) -> tuple[list, set[str]] | None:
    """`rm REF --platform linux/ARCH` on plain JSON: (expected entries, new blobs), or None when
    it must fail and change nothing (REF unknown or no index, ARCH absent, nothing left)."""
    found = model_resolve(entries, ref)
    if found is None or world.media[found[1]][0] not in INDEX_TYPES:
        return None
    old_root = found[1]
    new_blobs: set[str] = set()
    matched = [False]

    def rewrite(digest: str) -> str | None:
        """The new digest, None when unchanged, "" when nothing is left."""
        document = json.loads((world.root / "blobs" / "sha256" / digest[7:]).read_bytes())
        kept, changed = [], False
        for child in document["manifests"]:
            if (child.get("platform") or {}).get("architecture") == arch:
                matched[0] = changed = True
                continue
            if world.media.get(child["digest"], (None,))[0] in INDEX_TYPES and child["digest"] not in world.missing:
                inner = rewrite(child["digest"])
                if inner == "":
                    changed = True
                    continue
                if inner is not None:
                    child = {**child, "digest": inner, "size": world.media[inner][1]}
                    changed = True
            kept.append(child)
        if not changed:
            return None
        if not kept:
            return ""
        data = json.dumps({**document, "manifests": kept}).encode()  # the splice keeps json.dumps' layout
        new = world.register(data, [c["digest"] for c in kept], world.media[digest][0])
        new_blobs.add(new)
        return new

    new_root = rewrite(old_root)
    if not matched[0] or not new_root:
        return None
    moved = [(n, new_root if d == old_root else d) for n, d in entries]
    gone = [e for e in entries if e[1] == old_root]
    return model_cascade(world, moved + gone, gone, {old_root}, allow_sparse), new_blobs


def model_tag(entries: list, src: str, name: str) -> list:
    found = model_resolve(entries, src)
    if found is None:
        return entries
    digest = found[1]
    holders = [e for e in entries if e[0] == name]
    if holders and all(d == digest for _, d in holders):
        return entries
    out = [e for e in entries if e[0] != name]
    for held in {d for _, d in holders}:
        if not any(d == held for _, d in out):
            out.append((None, held))
    if (None, digest) in out:
        out.remove((None, digest))
    out.append((name, digest))
    return out


def model_untag(entries: list, names: list[str]) -> list:
    out = [e for e in entries if e[0] not in names]
    for held in {d for n, d in entries if n in names}:
        if not any(d == held for _, d in out):
            out.append((None, held))
    return out


def read_entries(root: Path) -> list[tuple[str | None, str]]:
    index = json.loads((root / "index.json").read_text())
    return [((m.get("annotations") or {}).get(REF_NAME), m["digest"]) for m in index["manifests"]]


def key(entries: list) -> list:
    return sorted(entries, key=lambda e: (e[0] or "", e[1]))


ops = st.lists(
    st.one_of(
        st.tuples(st.just("rm"), st.lists(st.sampled_from(NAMES + ["#0", "#1", "#2", "%0", "%1"]), min_size=1, max_size=3), st.booleans()),
        st.tuples(st.just("tag"), st.sampled_from(NAMES + ["#0", "#1"]), st.sampled_from(NAMES)),
        st.tuples(st.just("untag"), st.lists(st.sampled_from(NAMES), min_size=1, max_size=2, unique=True), st.just(False)),
        st.tuples(st.just("trim"), st.sampled_from(NAMES + ["#0", "@", "@", "@"]), st.sampled_from(ARCHES)),
    ),
    min_size=1,
    max_size=5,
)


def concrete(ref: str, entries: list) -> str:
    """`#k`: the k-th distinct entry digest, `%k`: its 10-hex prefix; else a name."""
    if ref[0] in "#%":
        digests = sorted({d for _, d in entries})
        if not digests:
            return "sha256:" + "0" * 64
        d = digests[int(ref[1:]) % len(digests)]
        return d if ref[0] == "#" else d[7:17]
    return ref


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=layouts(), steps=ops)
def test_random_batches_match_the_model(spec: dict, steps: list) -> None:
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(
        graph_module, "PARALLEL_MIN_ROOTS", 2 if spec["fork"] else 10**9
    ):
        root = Path(tmp)
        world, entries, present = build(root, spec)
        layout = Layout.open(root)
        for op, arg, flag in steps:
            before_blobs = {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()}
            if op == "rm":
                refs = [concrete(r, entries) for r in arg]
                expected = model_rm(world, entries, refs, flag, spec["allow_sparse"])
                layout.delete(refs, force=flag, allow_sparse=spec["allow_sparse"])
                removed_roots = {d for _, d in entries} - {d for _, d in expected}
                survivors = reach(world, {d for _, d in expected})
                gone = reach(world, removed_roots) - survivors
                if world.missing & survivors and not spec["allow_sparse"]:
                    gone = set()  # doubt: a missing manifest among what stays keeps every blob
                assert {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()} == before_blobs - gone
            elif op == "trim":
                # "@": an entry that is an index (most random references are single images)
                indexes = sorted(d for _, d in entries if world.media[d][0] in INDEX_TYPES)
                ref = (indexes[0] if indexes else concrete("#0", entries)) if arg == "@" else concrete(arg, entries)
                outcome = model_trim(world, entries, ref, flag, spec["allow_sparse"])
                if outcome is None:
                    expected = entries
                    report = layout.delete([ref], platforms=[f"linux/{flag}"], allow_sparse=spec["allow_sparse"])
                    assert report.exit_code in (2, 3, 5) and not report.trims
                    assert {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()} == before_blobs
                else:
                    expected, new_blobs = outcome
                    layout.delete([ref], platforms=[f"linux/{flag}"], allow_sparse=spec["allow_sparse"])
                    removed_roots = {d for _, d in entries} - {d for _, d in expected}
                    survivors = reach(world, {d for _, d in expected})
                    gone = reach(world, removed_roots) - survivors
                    if world.missing & survivors and not spec["allow_sparse"]:
                        gone = set()
                    now = {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()}
                    assert now == (before_blobs | new_blobs) - gone
                    present |= new_blobs
            elif op == "tag":
                src = concrete(arg, entries)
                expected = model_tag(entries, src, flag)
                try:
                    layout.tag(src, flag)
                except OcilayoutError:
                    assert model_resolve(entries, src) is None
                assert {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()} == before_blobs
            else:
                expected = model_untag(entries, arg)
                try:
                    layout.untag(arg)
                except NotFoundError:
                    assert not any(n in arg for n, _ in entries)
                assert {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()} == before_blobs
            assert key(read_entries(root)) == key(expected), (op, arg, flag)
            entries = expected
            now = {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()}
            live = reach(world, {d for _, d in entries}) & present
            assert live <= now, "a blob reachable from index.json was deleted"


trim_ops = st.lists(
    st.one_of(
        st.tuples(st.just("trim"), st.just("@"), st.sampled_from(ARCHES)),
        st.tuples(st.just("rm"), st.lists(st.sampled_from([*NAMES, "#0", "%1"]), min_size=1, max_size=2), st.booleans()),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(spec=layouts().filter(lambda s: any(len(children) > 1 for children, _ in s["indexes"])), steps=trim_ops)
def test_random_trims_and_cascades_match_the_model(spec: dict, steps: list) -> None:
    """Layouts that hold a multi-platform index, mostly trimmed: the same checks."""
    test_random_batches_match_the_model.hypothesis.inner_test(spec, steps)
