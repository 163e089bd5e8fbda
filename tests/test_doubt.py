"""Doubt keeps a blob (DESIGN 1, 2, 3.2, 3.6).

1. A blob reached through a descriptor whose media type is missing or unknown, whose content
   looks like JSON (first non-whitespace byte `{`) but fails the strict parse (duplicate key,
   invalid UTF-8, over the 16 MiB cap, ...), is unreadable: its references are unknown, so gc
   and rm delete no blob. Plain binary content under an unknown type is a leaf (control).
2. A manifest or index missing *below* the root is doubt too (it may live in a forgotten
   --shared-blobs directory): gc and rm delete no blob unless `allow_sparse`. A missing leaf
   (layer, config) never blocks; the missing manifest found in `shared_blobs` unblocks.
3. `gc_shared` over a directory that is the own blobs/ of a layout not named must refuse, and
   never deadlock on a layout named twice or on a DIR that is a named layout's root.

Outcomes are checked on disk: the set of blob files before and after, and, when something
must be deleted, `model_reach`, a walk of the image-spec edges written here, independent of
`ocilayout.graph`. Every layout is built with `LayoutWriter` in tmp_path and checked to be
what the test means (content-addressed blobs, the suspect/missing blob where intended,
orphans really unreferenced) before the operation runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocilayout import Layout, gc_shared
from ocilayout.errors import LockTimeoutError, UsageError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
UNKNOWN = "application/x-unknown"
REF_NAME = "org.opencontainers.image.ref.name"
DOCUMENT_CAP = 16 * 1024 * 1024
LOCK_FILE = ".ocilayout.lock"


# -- an independent model of a layout --------------------------------------------------------------


def canonical(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_set(blobs_dir: Path) -> set[str]:
    """`alg:hex` of every regular file under blobs_dir/<alg>/."""
    found: set[str] = set()
    if not blobs_dir.is_dir():
        return found
    for alg in blobs_dir.iterdir():
        if alg.is_dir() and not alg.is_symlink():
            for f in alg.iterdir():
                if f.is_file() and not f.is_symlink():
                    found.add(f"{alg.name}:{f.name}")
    return found


def blob_file(blobs_dir: Path, digest: str) -> Path:
    alg, _, hexd = digest.partition(":")
    return blobs_dir / alg / hexd


def entries(root: Path) -> list[tuple[str | None, str]]:
    """(ref name, digest) of every index.json entry, in order."""
    index = json.loads((root / "index.json").read_bytes())
    return [((m.get("annotations") or {}).get(REF_NAME), m["digest"]) for m in index["manifests"]]


def model_reach(root: Path, shared: Path | None = None, roots: list[str] | None = None) -> set[str]:
    """Digests reachable from `roots` (default: every index.json entry) by the spec's edges.

    Lenient on purpose (Python's json, last duplicate key wins): only used to say what a
    *correct* collection leaves, on layouts whose reachable JSON is all readable.
    """
    todo = [d for _, d in entries(root)] if roots is None else list(roots)
    seen: set[str] = set()
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        dirs = [root / "blobs"] + ([shared] if shared is not None else [])
        path = next((blob_file(d, digest) for d in dirs if blob_file(d, digest).is_file()), None)
        if path is not None:
            todo.extend(_model_edges(digest, path))
    return seen


_EDGES: dict[str, list[str]] = {}  # digest -> children; blobs are content-addressed (checked)


def _model_edges(digest: str, path: Path) -> list[str]:
    if digest in _EDGES:
        return _EDGES[digest]
    children: list[str] = []
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:  # UnicodeDecodeError is a ValueError
        doc = None
    if isinstance(doc, dict):
        for key in ("manifests", "layers", "blobs"):
            items = doc.get(key)
            if isinstance(items, list):
                children += [i["digest"] for i in items if isinstance(i, dict) and isinstance(i.get("digest"), str)]
        config = doc.get("config")
        if isinstance(config, dict) and isinstance(config.get("digest"), str):
            children.append(config["digest"])
    _EDGES[digest] = children
    return children


def assert_content_addressed(blobs_dir: Path) -> None:
    """Construction check: every blob file's name is the digest of its content."""
    for digest in blob_set(blobs_dir):
        path = blob_file(blobs_dir, digest)
        st = path.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)  # hard links of one file: hashed once
        if key not in _HASHED:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _HASHED[key] = "sha256:" + h.hexdigest()
        assert digest == _HASHED[key], f"test construction: {digest} is not its content's digest"


_HASHED: dict[tuple[int, int, int, int], str] = {}


def tree_state(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every path under root: kind, size, mtime (ns) and content hash (nothing may change)."""
    out: dict[str, tuple[str, int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            out[str(path.relative_to(root))] = ("link", 0, 0, os.readlink(path))
        elif path.is_dir():
            out[str(path.relative_to(root))] = ("dir", 0, 0, "")
        else:
            out[str(path.relative_to(root))] = ("file", st.st_size, st.st_mtime_ns, sha256(path.read_bytes()))
    return out


def paths_under(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def warned(warnings: list[str], *needles: str) -> bool:
    """Some single warning contains every needle."""
    return any(all(n in w for n in needles) for w in warnings)


# == class 1: unreadable JSON-looking blobs under a missing or unknown media type =================

# Blobs that only the suspect blob's content references: if the suspect were taken for a leaf,
# they would look like orphans and a collection would delete them.
HIDDEN_CONFIG = canonical(
    {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
     "config": {"Labels": {"hidden": "only the suspect blob refers to me"}}}
)
HIDDEN_LAYER_A = b"hidden layer A: only the suspect blob refers to me\n"
HIDDEN_LAYER_B = b"hidden layer B: only the suspect blob refers to me\n"
HIDDEN_CFG_DESC = {"mediaType": OCI_CONFIG, "digest": sha256(HIDDEN_CONFIG), "size": len(HIDDEN_CONFIG)}
HIDDEN_LA_DESC = {"mediaType": OCI_LAYER, "digest": sha256(HIDDEN_LAYER_A), "size": len(HIDDEN_LAYER_A)}
HIDDEN_LB_DESC = {"mediaType": OCI_LAYER, "digest": sha256(HIDDEN_LAYER_B), "size": len(HIDDEN_LAYER_B)}
HIDDEN = {HIDDEN_CFG_DESC["digest"], HIDDEN_LA_DESC["digest"], HIDDEN_LB_DESC["digest"]}
WHITESPACE = b" \t\r\n" * 64  # 256 bytes: longer than any short sniff of the head

_C = canonical(HIDDEN_CFG_DESC)
_A = canonical(HIDDEN_LA_DESC)
_B = canonical(HIDDEN_LB_DESC)


def suspect_content(kind: str) -> bytes:
    """The suspect blob's bytes. Every `{` kind looks like an image manifest with config/layers."""
    valid = b'{"schemaVersion":2,"config":' + _C + b',"layers":[' + _A + b"," + _B + b"]}"
    if kind == "valid":
        return valid
    if kind == "dup-key":  # a lenient parser keeps the last `layers` and walks config + layer B
        return b'{"schemaVersion":2,"config":' + _C + b',"layers":[' + _A + b'],"layers":[' + _B + b"]}"
    if kind == "dup-key-nested":  # the duplicate is inside the config descriptor
        config = _C[:-1] + b',"size":' + str(len(HIDDEN_CONFIG)).encode() + b"}"
        return b'{"schemaVersion":2,"config":' + config + b',"layers":[' + _A + b"," + _B + b"]}"
    if kind == "invalid-utf8":
        return valid[:-1] + b',"annotations":{"note":"caf\xe9 \xff\xfe"}}'
    if kind == "oversize":  # valid JSON, one byte over the document cap
        head = valid[:-1] + b","
        tail = b'"annotations":{}}'
        return head + b" " * (DOCUMENT_CAP + 1 - len(head) - len(tail)) + tail
    if kind == "truncated":  # a cut-off manifest: also fails the strict parse
        return valid[:-1]
    if kind.startswith("ws-"):
        return WHITESPACE + suspect_content(kind[3:])
    # controls: not JSON-looking (leaves), or strictly valid JSON (walked)
    if kind == "binary-gzip":
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + bytes(range(256)) * 4
    if kind == "text-hello":
        return b"hello, I am plain text and not JSON\n"
    if kind == "binary-nul":
        return b"\x00\x01binary\xff" * 100
    if kind == "json-no-edges":
        return canonical({"name": "chart", "version": "1.0.0"})
    raise AssertionError(kind)


UNREADABLE_KINDS = [
    "dup-key",
    "dup-key-nested",
    "invalid-utf8",
    "oversize",
    "ws-dup-key",
    "ws-invalid-utf8",
    "truncated",
]
CONTROL_KINDS = ["binary-gzip", "text-hello", "binary-nul", "json-no-edges", "valid", "ws-valid"]
# Where the suspect descriptor sits: an index.json entry itself, an index's manifests[] item,
# an image manifest's layers[] item or config, an artifact manifest's blobs[] item.
PLACEMENTS = ["entry", "index-child", "layer", "config", "artifact-blob"]


@pytest.fixture(scope="session")
def suspect_source(tmp_path_factory):
    """kind -> (file holding the content, digest, size); each content is written once per session.

    Layouts hard-link the file (the >16 MiB one is written once in all), or copy it.
    """
    directory = tmp_path_factory.mktemp("suspects")
    made: dict[str, tuple[Path, str, int]] = {}

    def get(kind: str) -> tuple[Path, str, int]:
        if kind not in made:
            data = suspect_content(kind)
            path = directory / kind
            path.write_bytes(data)
            made[kind] = (path, sha256(data), len(data))
        return made[kind]

    return get


@dataclass
class DoubtLayout:
    root: Path
    suspect: str
    holder: str  # digest of the index.json entry `holder` through which the suspect is reached
    sibling: str  # digest of the `sibling` image
    sibling_blobs: set[str]  # the blobs only `sibling` uses
    orphans: set[str]  # blobs nothing references at all
    content_kind: str = ""


def build_doubt_layout(generate, root: Path, source: tuple[Path, str, int], placement: str,
                       media_type: str | None) -> DoubtLayout:
    path, digest, size = source
    w = generate.LayoutWriter(root)
    target = blob_file(w.blob_root, digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    suspect = {"digest": digest, "size": size}
    if media_type is not None:
        suspect["mediaType"] = media_type
    for data, mt in ((HIDDEN_CONFIG, OCI_CONFIG), (HIDDEN_LAYER_A, OCI_LAYER), (HIDDEN_LAYER_B, OCI_LAYER)):
        w.blob(data, mt)
    if placement == "entry":
        holder = dict(suspect)
    elif placement == "index-child":
        holder = w.index([suspect])
    elif placement == "layer":
        holder = w.image([b"the holder's own layer", suspect], labels={"image": "holder"})
    elif placement == "config":
        holder = w.image([b"the holder's own layer"], config=suspect)
    elif placement == "artifact-blob":
        holder = w.json_blob(
            {"schemaVersion": 2, "mediaType": OCI_ARTIFACT, "artifactType": "application/vnd.example.bundle",
             "blobs": [suspect]},
            OCI_ARTIFACT,
        )
    else:
        raise AssertionError(placement)
    w.add_entry(holder, "holder")
    sibling = w.image([b"sibling layer one", b"sibling layer two"], labels={"image": "sibling"})
    w.add_entry(sibling, "sibling")
    orphan = w.image([b"a true orphan's layer"], labels={"image": "orphan"})
    raw_orphan = w.blob(b"a raw orphan blob", "application/octet-stream")
    w.finish()

    holder_reach = model_reach(root, roots=[holder["digest"]])
    sibling_blobs = model_reach(root, roots=[sibling["digest"]]) - holder_reach
    orphans = model_reach(root, roots=[orphan["digest"]]) | {raw_orphan["digest"]}
    return DoubtLayout(root, digest, holder["digest"], sibling["digest"], sibling_blobs, orphans)


def check_doubt_layout(lay: DoubtLayout, kind: str) -> None:
    """The layout is what the test means; a failure here is a test-construction error."""
    blobs = lay.root / "blobs"
    present = blob_set(blobs)
    assert_content_addressed(blobs)
    assert {lay.suspect, lay.holder, lay.sibling} | HIDDEN | lay.orphans | lay.sibling_blobs <= present
    assert len(lay.sibling_blobs) == 4  # manifest, config, two layers
    head = blob_file(blobs, lay.suspect).read_bytes()[:4096].lstrip()
    if kind in UNREADABLE_KINDS:
        assert head.startswith(b"{")
    if kind.endswith("oversize"):
        assert os.stat(blob_file(blobs, lay.suspect)).st_size > DOCUMENT_CAP
    # the suspect is reachable from index.json; the orphans are not
    assert lay.suspect in model_reach(lay.root)
    assert not lay.orphans & model_reach(lay.root)
    # the hidden blobs are referenced by the suspect's content and by nothing else
    for f in [lay.root / "index.json", *(blob_file(blobs, d) for d in present - {lay.suspect})]:
        text = f.read_bytes()
        assert not any(h.encode() in text for h in HIDDEN), f"{f} references a hidden blob"


@pytest.fixture
def doubt_layout(tmp_path, generate_module, suspect_source):
    def make(kind: str, placement: str, media_type: str | None) -> DoubtLayout:
        lay = build_doubt_layout(generate_module, tmp_path / "lay", suspect_source(kind), placement, media_type)
        check_doubt_layout(lay, kind)
        return lay

    return make


@pytest.mark.parametrize("media_type", [None, UNKNOWN], ids=["no-mediatype", "unknown-mediatype"])
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("kind", UNREADABLE_KINDS)
def test_gc_deletes_nothing_when_an_untyped_json_looking_blob_is_unreadable(doubt_layout, kind, placement, media_type):
    lay = doubt_layout(kind, placement, media_type)
    before = blob_set(lay.root / "blobs")

    report = Layout.open(lay.root).gc(grace=0)

    after = blob_set(lay.root / "blobs")
    assert after == before, f"deleted although {lay.suspect} is unreadable: {sorted(before - after)}"
    assert report.removed == []
    assert report.complete is False
    assert warned(report.warnings, lay.suspect), report.warnings


@pytest.mark.parametrize("media_type", [None, UNKNOWN], ids=["no-mediatype", "unknown-mediatype"])
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("kind", UNREADABLE_KINDS)
def test_rm_of_a_sibling_deletes_no_blob_when_an_untyped_blob_is_unreadable(doubt_layout, kind, placement, media_type):
    lay = doubt_layout(kind, placement, media_type)
    before = blob_set(lay.root / "blobs")

    report = Layout.open(lay.root).delete(["sibling"])

    assert entries(lay.root) == [("holder", lay.holder)], "the sibling's entry goes, the holder stays"
    after = blob_set(lay.root / "blobs")
    assert after == before, f"deleted although {lay.suspect} is unreadable: {sorted(before - after)}"
    assert report.blobs_deleted == 0
    assert warned(report.warnings, lay.suspect), report.warnings


@pytest.mark.parametrize("media_type", [None, UNKNOWN], ids=["no-mediatype", "unknown-mediatype"])
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("kind", CONTROL_KINDS)
def test_control_untyped_binary_is_a_leaf_and_valid_json_is_walked(doubt_layout, kind, placement, media_type):
    # Nothing doubtful here: gc collects exactly what the model says is unreachable.
    lay = doubt_layout(kind, placement, media_type)
    before = blob_set(lay.root / "blobs")
    expected = before & model_reach(lay.root)

    report = Layout.open(lay.root).gc(grace=0)

    assert blob_set(lay.root / "blobs") == expected
    assert {r.digest for r in report.removed} == before - expected
    assert lay.orphans <= before - expected
    if "valid" in kind:
        assert HIDDEN <= expected  # walked: what it references is kept
    else:
        assert not HIDDEN & expected  # a leaf: the hidden blobs are true orphans
    assert report.complete


@pytest.mark.parametrize("placement", ["layer", "index-child"])
@pytest.mark.parametrize("kind", ["binary-gzip", "text-hello", "valid"])
def test_control_rm_of_a_sibling_deletes_its_blobs(doubt_layout, kind, placement):
    lay = doubt_layout(kind, placement, UNKNOWN)
    before = blob_set(lay.root / "blobs")
    report = Layout.open(lay.root).delete(["sibling"])
    assert entries(lay.root) == [("holder", lay.holder)]
    assert blob_set(lay.root / "blobs") == before - lay.sibling_blobs
    assert report.blobs_deleted == len(lay.sibling_blobs)


@pytest.mark.parametrize(
    "kind, placement, media_type",
    [
        ("dup-key", "layer", UNKNOWN),
        ("invalid-utf8", "index-child", None),
        ("oversize", "artifact-blob", UNKNOWN),
        ("ws-dup-key", "entry", UNKNOWN),
    ],
)
def test_cli_gc_deletes_nothing_when_an_untyped_blob_is_unreadable(doubt_layout, run_cli, kind, placement, media_type):
    lay = doubt_layout(kind, placement, media_type)
    before = blob_set(lay.root / "blobs")
    result = run_cli("gc", lay.root, "--grace", "0")
    assert result.returncode == 0, result.stderr
    assert blob_set(lay.root / "blobs") == before
    assert lay.suspect in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_rm_of_a_sibling_deletes_no_blob_when_an_untyped_blob_is_unreadable(doubt_layout, run_cli):
    lay = doubt_layout("dup-key", "layer", UNKNOWN)
    before = blob_set(lay.root / "blobs")
    result = run_cli("rm", lay.root, "sibling")
    assert result.returncode == 0, result.stderr
    assert entries(lay.root) == [("holder", lay.holder)]
    assert blob_set(lay.root / "blobs") == before
    assert lay.suspect in result.stderr


# == class 2: a manifest or index missing below the root ==========================================

NODE_KINDS = ["oci-manifest", "docker-manifest", "oci-index", "docker-list", "artifact"]
LEAF_KINDS = ["oci-layer", "oci-config", "docker-layer", "docker-config"]


@dataclass
class SparseLayout:
    root: Path
    gone: str  # the missing blob
    under: set[str]  # present blobs that only the missing blob reaches
    sibling_blobs: set[str]
    orphans: set[str]


def build_sparse_layout(generate, root: Path, missing: str, depth: int, shared: Path | None = None) -> SparseLayout:
    """`multi` -> index (-> index when depth 2) -> [amd64 image, X]; `sibling`; an orphan image.

    X is, for NODE_KINDS, a manifest, index or artifact manifest whose blob is then removed
    while everything below it stays in blobs/ (with `shared`, it is first copied there); for
    LEAF_KINDS, the arm64 image, of which one leaf (its own layer or its config) is removed.
    """
    w = generate.LayoutWriter(root)
    base = w.layer(b"base layer, used by both platforms")
    amd = w.image([base, b"amd64's own layer"], architecture="amd64", platform=True, labels={"arch": "amd64"})
    if missing == "artifact":
        parts = [w.blob(b"artifact part one", "application/vnd.example.part"),
                 w.blob(b"artifact part two", "application/vnd.example.part")]
        child = w.json_blob({"schemaVersion": 2, "mediaType": OCI_ARTIFACT,
                             "artifactType": "application/vnd.example.bundle", "blobs": parts}, OCI_ARTIFACT)
        gone = child["digest"]
    else:
        arm = w.image(
            [base, b"arm64's own layer"],
            media_type=DOCKER_MANIFEST if missing.startswith("docker") else OCI_MANIFEST,
            architecture="arm64",
            variant="v8",
            platform=True,
            labels={"arch": "arm64"},
        )
        arm_doc = json.loads(w.blob_path(arm).read_bytes())
        child = arm
        if missing in ("oci-index", "docker-list"):
            child = w.index([arm], OCI_INDEX if missing == "oci-index" else DOCKER_LIST)
            gone = child["digest"]
        elif missing in ("oci-manifest", "docker-manifest"):
            gone = arm["digest"]
        elif missing.endswith("-config"):
            gone = arm_doc["config"]["digest"]
        elif missing.endswith("-layer"):
            gone = arm_doc["layers"][1]["digest"]  # its own layer; [0] is the shared base
        else:
            raise AssertionError(missing)
    top = w.index([amd, child])
    for _ in range(depth - 1):
        top = w.index([top])
    w.add_entry(top, "multi")
    sibling = w.image([b"sibling layer one", b"sibling layer two"], labels={"image": "sibling"})
    w.add_entry(sibling, "sibling")
    orphan = w.image([b"a true orphan's layer"], labels={"image": "orphan"})
    w.finish()

    multi_reach = model_reach(root, roots=[top["digest"]])
    under = model_reach(root, roots=[gone]) - {gone} - model_reach(root, roots=[amd["digest"], sibling["digest"]])
    sibling_blobs = model_reach(root, roots=[sibling["digest"]]) - multi_reach
    orphans = model_reach(root, roots=[orphan["digest"]])
    if shared is not None:
        w.mirror_blob({"digest": gone}, shared)
    w.remove_blob(gone)
    return SparseLayout(root, gone, under, sibling_blobs, orphans)


def check_sparse_layout(lay: SparseLayout, missing: str) -> None:
    present = blob_set(lay.root / "blobs")
    assert_content_addressed(lay.root / "blobs")
    assert lay.gone not in present
    assert lay.orphans <= present and lay.sibling_blobs <= present
    assert len(lay.sibling_blobs) == 4
    if missing in NODE_KINDS:
        # what only the missing node references is here (a forgotten shared dir holds the node)
        assert lay.under and lay.under <= present
        assert not lay.under & model_reach(lay.root), "the model reaches them only through the missing blob"
        assert lay.gone not in {d for _, d in entries(lay.root)}, "missing below the root, not an entry"
    assert not lay.orphans & model_reach(lay.root)


@pytest.fixture
def sparse_layout(tmp_path, generate_module):
    def make(missing: str, depth: int, shared: Path | None = None) -> SparseLayout:
        lay = build_sparse_layout(generate_module, tmp_path / "lay", missing, depth, shared)
        check_sparse_layout(lay, missing)
        return lay

    return make


DEPTHS = pytest.mark.parametrize("depth", [1, 2], ids=["index", "index-index"])


@DEPTHS
@pytest.mark.parametrize("missing", NODE_KINDS)
def test_gc_deletes_nothing_when_a_manifest_below_the_root_is_missing(sparse_layout, missing, depth):
    lay = sparse_layout(missing, depth)
    before = blob_set(lay.root / "blobs")

    report = Layout.open(lay.root).gc(grace=0)

    after = blob_set(lay.root / "blobs")
    assert after == before, f"deleted although {lay.gone} is missing: {sorted(before - after)}"
    assert report.removed == [] and report.complete is False
    assert warned(report.warnings, lay.gone, "--shared-blobs", "--allow-sparse"), report.warnings


@DEPTHS
@pytest.mark.parametrize("missing", NODE_KINDS)
def test_rm_of_a_sibling_deletes_no_blob_when_a_manifest_below_the_root_is_missing(sparse_layout, missing, depth):
    lay = sparse_layout(missing, depth)
    before = blob_set(lay.root / "blobs")
    multi = dict(entries(lay.root))["multi"]

    report = Layout.open(lay.root).delete(["sibling"])

    assert entries(lay.root) == [("multi", multi)]
    after = blob_set(lay.root / "blobs")
    assert after == before, f"deleted although {lay.gone} is missing: {sorted(before - after)}"
    assert report.blobs_deleted == 0
    assert warned(report.warnings, lay.gone, "--shared-blobs", "--allow-sparse"), report.warnings


@DEPTHS
@pytest.mark.parametrize("missing", NODE_KINDS)
def test_gc_allow_sparse_collects_what_only_the_missing_manifest_referenced(sparse_layout, missing, depth):
    lay = sparse_layout(missing, depth)
    before = blob_set(lay.root / "blobs")
    expected = before & model_reach(lay.root)

    report = Layout.open(lay.root).gc(grace=0, allow_sparse=True)

    assert blob_set(lay.root / "blobs") == expected
    assert {r.digest for r in report.removed} == before - expected == lay.under | lay.orphans


@DEPTHS
@pytest.mark.parametrize("missing", NODE_KINDS)
def test_rm_allow_sparse_deletes_the_siblings_blobs(sparse_layout, missing, depth):
    lay = sparse_layout(missing, depth)
    before = blob_set(lay.root / "blobs")

    report = Layout.open(lay.root).delete(["sibling"], allow_sparse=True)

    assert [n for n, _ in entries(lay.root)] == ["multi"]
    assert blob_set(lay.root / "blobs") == before - lay.sibling_blobs
    assert report.blobs_deleted == len(lay.sibling_blobs)


@DEPTHS
@pytest.mark.parametrize("missing", LEAF_KINDS)
def test_a_missing_leaf_never_blocks_gc(sparse_layout, missing, depth):
    lay = sparse_layout(missing, depth)
    before = blob_set(lay.root / "blobs")
    expected = before & model_reach(lay.root)
    assert before - expected == lay.orphans  # construction: only the orphan image is garbage

    report = Layout.open(lay.root).gc(grace=0)

    assert blob_set(lay.root / "blobs") == expected
    assert {r.digest for r in report.removed} == lay.orphans


@DEPTHS
@pytest.mark.parametrize("missing", LEAF_KINDS)
def test_a_missing_leaf_never_blocks_rm(sparse_layout, missing, depth):
    lay = sparse_layout(missing, depth)
    before = blob_set(lay.root / "blobs")

    report = Layout.open(lay.root).delete(["sibling"])

    assert [n for n, _ in entries(lay.root)] == ["multi"]
    assert blob_set(lay.root / "blobs") == before - lay.sibling_blobs
    assert report.blobs_deleted == len(lay.sibling_blobs)


@DEPTHS
@pytest.mark.parametrize("missing", NODE_KINDS)
def test_missing_manifest_found_in_shared_blobs_unblocks_and_its_blobs_are_kept(tmp_path, sparse_layout, missing, depth):
    shared = tmp_path / "shared-blobs"
    lay = sparse_layout(missing, depth, shared)
    assert blob_set(shared) == {lay.gone}
    shared_before = tree_state(shared)
    before = blob_set(lay.root / "blobs")
    expected = before & model_reach(lay.root, shared)
    assert lay.under <= expected and before - expected == lay.orphans

    report = Layout.open(lay.root, shared_blobs=shared).gc(grace=0)

    assert blob_set(lay.root / "blobs") == expected, "the orphans go, what the shared manifest uses stays"
    assert {r.digest for r in report.removed} == lay.orphans
    assert report.complete
    assert tree_state(shared) == shared_before


@DEPTHS
@pytest.mark.parametrize("missing", NODE_KINDS)
def test_rm_with_the_missing_manifest_in_shared_blobs(tmp_path, sparse_layout, missing, depth):
    shared = tmp_path / "shared-blobs"
    lay = sparse_layout(missing, depth, shared)
    shared_before = tree_state(shared)
    before = blob_set(lay.root / "blobs")

    report = Layout.open(lay.root, shared_blobs=shared).delete(["sibling"])

    assert [n for n, _ in entries(lay.root)] == ["multi"]
    after = blob_set(lay.root / "blobs")
    assert after == before - lay.sibling_blobs
    assert lay.under <= after
    assert report.blobs_deleted == len(lay.sibling_blobs)
    assert tree_state(shared) == shared_before


@pytest.mark.parametrize("missing, depth", [("oci-manifest", 1), ("oci-index", 2)])
def test_cli_gc_and_rm_with_a_missing_manifest_below_the_root(sparse_layout, run_cli, missing, depth):
    lay = sparse_layout(missing, depth)
    before = blob_set(lay.root / "blobs")

    result = run_cli("gc", lay.root, "--grace", "0")
    assert result.returncode == 0, result.stderr
    assert blob_set(lay.root / "blobs") == before
    assert lay.gone in result.stderr and "--shared-blobs" in result.stderr and "--allow-sparse" in result.stderr

    result = run_cli("rm", lay.root, "sibling")
    assert result.returncode == 0, result.stderr
    assert [n for n, _ in entries(lay.root)] == ["multi"]
    assert blob_set(lay.root / "blobs") == before
    assert lay.gone in result.stderr and "--allow-sparse" in result.stderr


@pytest.mark.parametrize("missing, depth", [("oci-manifest", 1), ("docker-list", 2)])
def test_cli_allow_sparse(sparse_layout, run_cli, missing, depth):
    lay = sparse_layout(missing, depth)
    before = blob_set(lay.root / "blobs")

    result = run_cli("rm", "--allow-sparse", lay.root, "sibling")
    assert result.returncode == 0, result.stderr
    assert blob_set(lay.root / "blobs") == before - lay.sibling_blobs

    result = run_cli("gc", "--allow-sparse", lay.root, "--grace", "0")
    assert result.returncode == 0, result.stderr
    assert blob_set(lay.root / "blobs") == before - lay.sibling_blobs - lay.under - lay.orphans


def test_cli_gc_with_the_forgotten_shared_dir_named(tmp_path, sparse_layout, run_cli):
    shared = tmp_path / "shared-blobs"
    lay = sparse_layout("oci-manifest", 2, shared)
    before = blob_set(lay.root / "blobs")
    result = run_cli("gc", "--shared-blobs", shared, lay.root, "--grace", "0")
    assert result.returncode == 0, result.stderr
    assert blob_set(lay.root / "blobs") == before - lay.orphans
    assert blob_set(shared) == {lay.gone}


# == class 3: gc of a shared directory that is some layout's own blobs/ =============================


@dataclass
class SharedPair:
    top: Path
    a: Path  # uses b/blobs as its shared dir; also has its own blobs/
    b: Path  # a clean layout (unless built with an orphan)
    c: Path  # another user of b/blobs
    b_orphans: set[str]


def build_shared_pair(generate, top: Path, *, orphan_in_b: bool = False) -> SharedPair:
    b = top / "layout-b"
    wb = generate.LayoutWriter(b)
    base = wb.layer(b"layout-b base layer")
    b1 = wb.image([base, b"b1's own layer"], labels={"image": "b1"})
    b2 = wb.image([base, b"b2's own layer"], labels={"image": "b2"})
    wb.add_entry(b1, "b1")
    wb.add_entry(b2, "b2")
    orphans: set[str] = set()
    wb.finish()
    if orphan_in_b:
        orphan = wb.image([b"an orphan in layout-b"], labels={"image": "orphan"})
        orphans = model_reach(b, roots=[orphan["digest"]])

    a = top / "layout-a"
    wa = generate.LayoutWriter(a)  # own blobs: a-own's manifest, config and own layer
    a_own = wa.image([base, b"layout-a's own layer"], labels={"image": "a-own"})
    wa.add_entry(a_own, "a-own")
    wa.add_entry(b1, "a1")  # lives in layout-b/blobs only
    wa.finish()

    c = top / "layout-c"
    wc = generate.LayoutWriter(c)
    wc.add_entry(b2, "c1")
    wc.finish()
    (c / "blobs").mkdir(exist_ok=True)
    return SharedPair(top, a, b, c, orphans)


def check_shared_pair(pair: SharedPair) -> None:
    shared = pair.b / "blobs"
    assert_content_addressed(shared)
    assert_content_addressed(pair.a / "blobs")
    assert (pair.b / "oci-layout").is_file() and (pair.b / "index.json").is_file()
    # a and c really depend on b/blobs
    assert model_reach(pair.a, shared) - blob_set(pair.a / "blobs") <= blob_set(shared)
    assert model_reach(pair.a, shared) & blob_set(shared)
    assert model_reach(pair.c, shared) <= blob_set(shared)
    # without pair.b named, b2's own layer is reached by b only
    assert model_reach(pair.b) - model_reach(pair.a, shared)
    assert blob_set(shared) == model_reach(pair.b) | pair.b_orphans
    if not pair.b_orphans:
        assert Layout.open(pair.b).verify().ok


@pytest.fixture
def shared_pair(tmp_path, generate_module):
    def make(orphan_in_b: bool = False) -> SharedPair:
        pair = build_shared_pair(generate_module, tmp_path / "top", orphan_in_b=orphan_in_b)
        check_shared_pair(pair)
        return pair

    return make


def _dir_spelling(pair: SharedPair, spelling: str) -> str:
    if spelling == "plain":
        return str(pair.b / "blobs")
    if spelling == "trailing-slash":
        return str(pair.b / "blobs") + "/"
    if spelling == "dotdot":
        return str(pair.a / ".." / "layout-b" / "blobs")
    if spelling == "relative":
        return "layout-b/blobs"
    raise AssertionError(spelling)


def _names_b(message: str, pair: SharedPair) -> bool:
    return any(s in message for s in {str(pair.b), str(pair.b.resolve()), os.path.realpath(pair.b)})


@pytest.mark.parametrize("named", [["a"], ["a", "c"]], ids=["a", "a+c"])
@pytest.mark.parametrize("spelling", ["plain", "trailing-slash", "dotdot", "relative"])
def test_gc_shared_refuses_the_own_blobs_dir_of_a_layout_not_named(shared_pair, monkeypatch, spelling, named):
    pair = shared_pair()
    monkeypatch.chdir(pair.top)
    b_before = tree_state(pair.b)
    others_before = {p: blob_set(getattr(pair, p) / "blobs") for p in ("a", "c")}
    layouts = [getattr(pair, p) for p in named]

    with pytest.raises(UsageError) as info:
        gc_shared(_dir_spelling(pair, spelling), layouts, grace=0, lock_timeout=2)

    assert _names_b(str(info.value), pair) or (spelling == "relative" and "layout-b" in str(info.value)), info.value
    assert tree_state(pair.b) == b_before, "nothing in layout-b may change"
    assert {p: blob_set(getattr(pair, p) / "blobs") for p in ("a", "c")} == others_before


@pytest.mark.parametrize("spelling, named", [("plain", ["a"]), ("trailing-slash", ["a", "c"]), ("relative", ["a"])])
def test_cli_gc_shared_refuses_the_own_blobs_dir_of_a_layout_not_named(shared_pair, run_cli, spelling, named):
    pair = shared_pair()
    b_before = tree_state(pair.b)
    args = [a for p in named for a in ("--layout", getattr(pair, p))]
    result = run_cli("gc", "--shared-blobs", _dir_spelling(pair, spelling), *args, "--grace", "0", cwd=pair.top)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert _names_b(result.stderr, pair) or (spelling == "relative" and "layout-b" in result.stderr), result.stderr
    assert tree_state(pair.b) == b_before


@pytest.mark.parametrize(
    "named, spelling",
    [(["a", "b"], "plain"), (["b", "a"], "trailing-slash"), (["b"], "plain"), (["a", "b", "c"], "dotdot")],
    ids=["a+b", "b+a-slash", "b-only", "a+b+c-dotdot"],
)
def test_gc_shared_over_a_named_layouts_own_blobs_leaves_it_clean(shared_pair, named, spelling):
    pair = shared_pair()
    shared = pair.b / "blobs"
    assert Layout.open(pair.b).verify().ok
    paths_before = paths_under(shared)
    blobs_before = blob_set(shared)

    report = gc_shared(_dir_spelling(pair, spelling), [getattr(pair, p) for p in named], grace=0, lock_timeout=2)

    assert report.removed == []
    assert blob_set(shared) == blobs_before
    assert paths_under(shared) - paths_before == set(), "no lock file or any new file inside DIR"
    assert not (shared / LOCK_FILE).exists()
    assert Layout.open(pair.b).verify().ok


@pytest.mark.parametrize("named", [["a", "b"], ["b"]], ids=["a+b", "b-only"])
def test_gc_shared_over_a_named_layouts_own_blobs_collects_its_orphans(shared_pair, named):
    pair = shared_pair(orphan_in_b=True)
    shared = pair.b / "blobs"
    paths_before = paths_under(shared)
    before = blob_set(shared)
    reached = model_reach(pair.b, shared)
    if "a" in named:
        reached |= model_reach(pair.a, shared)
    expected = before & reached
    assert before - expected == pair.b_orphans and pair.b_orphans

    report = gc_shared(shared, [getattr(pair, p) for p in named], grace=0, lock_timeout=2)

    assert blob_set(shared) == expected
    assert {r.digest for r in report.removed} == pair.b_orphans
    assert paths_under(shared) - paths_before == set()
    assert Layout.open(pair.b).verify().ok


def test_cli_gc_shared_over_a_named_layouts_own_blobs(shared_pair, run_cli):
    pair = shared_pair()
    shared = pair.b / "blobs"
    paths_before = paths_under(shared)
    result = run_cli("gc", "--shared-blobs", shared, "--layout", pair.a, "--layout", pair.b, "--grace", "0")
    assert result.returncode == 0, result.stderr
    assert paths_under(shared) == paths_before
    assert Layout.open(pair.b).verify().ok


# -- never a lock timeout: a layout named twice, or DIR a named layout's root ------------------------


@dataclass
class SharedUser:
    top: Path
    d: Path
    shared: Path
    orphans: set[str]


@pytest.fixture
def shared_user(tmp_path, generate_module):
    """Layout `layout-d` whose blobs all live in a standalone shared dir, plus an orphan there."""
    top = tmp_path / "top"
    shared = top / "shared-blobs"
    w = generate_module.LayoutWriter(top / "layout-d", blob_root=shared)
    w.add_entry(w.image([b"d's layer one", b"d's layer two"], labels={"image": "d1"}), "d1")
    w.finish()
    (top / "layout-d" / "blobs").mkdir(exist_ok=True)
    scratch = generate_module.LayoutWriter(top / "scratch", blob_root=shared)
    orphan = scratch.image([b"an orphan in the shared dir"], labels={"image": "orphan"})
    shutil.rmtree(top / "scratch")
    orphans = model_reach(top / "layout-d", shared, roots=[orphan["digest"]])
    assert_content_addressed(shared)
    assert orphans <= blob_set(shared) and not orphans & model_reach(top / "layout-d", shared)
    return SharedUser(top, top / "layout-d", shared, orphans)


def _run_without_deadlock(call):
    """(report or None, UsageError or None, seconds): a LockTimeoutError fails the test."""
    start = time.monotonic()
    try:
        report, error = call(), None
    except LockTimeoutError as exc:
        pytest.fail(f"lock timeout (a deadlock on our own lock): {exc}")
    except UsageError as exc:
        report, error = None, exc
    elapsed = time.monotonic() - start
    assert elapsed < 10, f"took {elapsed:.1f}s"
    return report, error


@pytest.mark.parametrize("second", ["same", "dotdot", "trailing-slash"])
def test_gc_shared_with_a_layout_named_twice_does_not_deadlock(shared_user, second):
    u = shared_user
    other = {"same": str(u.d), "dotdot": str(u.d / ".." / "layout-d"), "trailing-slash": str(u.d) + "/"}[second]
    reachable = model_reach(u.d, u.shared)
    before = blob_set(u.shared)

    report, error = _run_without_deadlock(lambda: gc_shared(u.shared, [u.d, other], grace=0, lock_timeout=2))

    after = blob_set(u.shared)
    assert before & reachable <= after
    if error is None:  # a clean success collects exactly the orphans
        assert after == before - u.orphans
        assert {r.digest for r in report.removed} == u.orphans
    else:
        assert after == before


@pytest.mark.parametrize(
    "dir_of, named",
    [("b", ["b"]), ("b", ["a", "b"]), ("a", ["a"]), ("b", ["b", "b-slash"])],
    ids=["root-b-of-b", "root-b-of-a+b", "root-a-of-a", "root-b-of-b-twice"],
)
def test_gc_shared_with_dir_a_named_layouts_root_does_not_deadlock(shared_pair, dir_of, named):
    pair = shared_pair()
    layouts = [str(pair.b) + "/" if p == "b-slash" else getattr(pair, p) for p in named]
    states = {p: (blob_set(getattr(pair, p) / "blobs"), (getattr(pair, p) / "index.json").read_bytes())
              for p in ("a", "b", "c")}

    _run_without_deadlock(lambda: gc_shared(getattr(pair, dir_of), layouts, grace=0, lock_timeout=2))

    for p, (blobs, index) in states.items():
        assert blob_set(getattr(pair, p) / "blobs") == blobs, p
        assert (getattr(pair, p) / "index.json").read_bytes() == index, p
        assert (getattr(pair, p) / "oci-layout").is_file()


@pytest.mark.parametrize("case", ["root-as-dir", "named-twice"])
def test_cli_gc_shared_never_times_out_on_its_own_lock(shared_pair, shared_user, run_cli, case):
    if case == "root-as-dir":
        pair = shared_pair()
        args = ["--shared-blobs", pair.b, "--layout", pair.b]
        watched = pair.b / "blobs"
    else:
        u = shared_user
        args = ["--shared-blobs", u.shared, "--layout", u.d, "--layout", str(u.d / ".." / "layout-d")]
        watched = u.shared
    before = blob_set(watched) - (shared_user.orphans if case == "named-twice" else set())
    start = time.monotonic()
    result = run_cli("gc", *args, "--grace", "0", "--lock-timeout", "2", timeout=30)
    elapsed = time.monotonic() - start
    assert result.returncode != 6, f"lock timeout: {result.stderr}"
    assert result.returncode in (0, 2), (result.returncode, result.stderr)
    assert elapsed < 10
    assert "Traceback" not in result.stderr
    assert before <= blob_set(watched)  # nothing reachable lost (the orphans may go)


@pytest.mark.parametrize("keep", ["oci-layout", "index.json"])
def test_gc_shared_refuses_the_blobs_dir_of_a_half_written_layout(shared_pair, keep):
    """Either layout file beside `blobs/` makes it a layout's own blob directory."""
    pair = shared_pair()
    (pair.b / ("index.json" if keep == "oci-layout" else "oci-layout")).unlink()
    before = blob_set(pair.b / "blobs")
    with pytest.raises(UsageError):
        gc_shared(pair.b / "blobs", [pair.a], grace=0, lock_timeout=2)
    assert blob_set(pair.b / "blobs") == before
