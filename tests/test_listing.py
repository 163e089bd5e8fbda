"""Read-only views through the library: `Layout.list`, `Layout.inspect`, `Layout.tree`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ocilayout import Layout, NotFoundError
from ocilayout.errors import CorruptLayoutError
from ocilayout.listing import TreeNode
from ocilayout.storage import LayoutStore

HELLO = "sha256:33ac2360630538dd7ee271e0c327b679eb5dc61045e22b81cbc7edea01c6511e"
HELLO_LAYER = "sha256:f45bf6a44394b0dcc372d10e4ba749d5dfe7b76c4e9284a16ebfb9633c5db7bb"
NAMED = "sha256:6d127146daadea1e1368ae264929c1a47494ebfde61df1080a417f4b8d643800"
MULTI = "sha256:d5d6f2aeef7ebe134584c29daf08e5a3ee7da122f25c1cce9fc3fce0f5db1a43"
SPARSE_ABSENT = "sha256:496c0634db44777cfa200e6ed65aa010245cb59853b1f6d348f532d473ac1cb6"
SBOM = "sha256:ca05a7a8fe45f0f05861b22684af6a741dc714d90c0400d77ad63eb2e8f9d5e1"
SIGNATURE = "sha256:1397c56646b2eff20d8093530a67d2be527bd7cd6fae947e200e821e7a96624a"


def blob_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "blobs").rglob("*") if p.is_file() and p.name != ".gitkeep")


def walk(node: TreeNode):
    yield node
    for child in node.children:
        yield from walk(child)


# -- ls --------------------------------------------------------------------------------------


def test_list_single(fixture_layout) -> None:
    root = fixture_layout("single")
    listing = Layout.open(root).list()
    assert listing.warnings == []
    [row] = listing.rows
    assert (row.name, row.digest, row.kind) == ("latest", HELLO, "image")
    assert row.short_digest == HELLO[7:19]
    assert row.platforms == ["linux/amd64"]
    assert row.size == blob_bytes(root)
    assert row.created == "2024-01-01T00:00:00Z"
    assert row.missing == 0
    assert row.media_type == "application/vnd.oci.image.manifest.v1+json"


def test_list_three_names(fixture_layout) -> None:
    rows = Layout.open(fixture_layout("three-names")).list().rows
    assert sorted(r.name for r in rows) == ["latest", "v1", "v2"]
    assert {r.digest for r in rows} == {NAMED}
    assert {r.created for r in rows} == {"2024-01-02T00:00:00Z"}


def test_list_multiarch_counts_unique_blobs(fixture_layout) -> None:
    root = fixture_layout("multiarch")
    [row] = Layout.open(root).list().rows
    assert (row.name, row.digest, row.kind) == ("multi", MULTI, "index")
    assert row.platforms == ["linux/amd64", "linux/arm64/v8", "linux/s390x"]
    # the shared base layer is counted once: the 11 blobs on disk, nothing more
    assert row.size == blob_bytes(root)


def test_list_docker(fixture_layout) -> None:
    rows = {r.name: r for r in Layout.open(fixture_layout("docker")).list().rows}
    assert rows["dlist"].kind == "index"
    assert rows["dlist"].platforms == ["linux/amd64", "linux/arm64/v8"]
    assert rows["dimage"].kind == "image"
    assert rows["dimage"].platforms == ["linux/amd64"]
    assert rows["dimage"].created == "2024-01-03T00:00:00Z"


def test_list_nested3(fixture_layout) -> None:
    root = fixture_layout("nested3")
    [row] = Layout.open(root).list().rows
    assert row.kind == "index" and row.name == "deep"
    assert row.size == blob_bytes(root)


def test_list_sha512(fixture_layout) -> None:
    root = fixture_layout("sha512")
    [row] = Layout.open(root).list().rows
    assert row.digest.startswith("sha512:") and len(row.digest) == 7 + 128
    assert row.size == blob_bytes(root)
    assert row.platforms == ["linux/amd64"]


def test_list_referrers_are_artifacts(fixture_layout) -> None:
    rows = {r.digest: r for r in Layout.open(fixture_layout("referrer-dangling")).list().rows}
    assert rows[SBOM].name is None and rows[SIGNATURE].name is None
    assert rows[SBOM].kind == "artifact"
    assert rows[SIGNATURE].kind == "artifact"
    app = next(r for r in rows.values() if r.name == "app")
    assert app.kind == "image"


def test_list_multi_dangling_and_aliases(fixture_layout) -> None:
    rows = Layout.open(fixture_layout("multi")).list().rows
    assert [r.name for r in rows] == ["base", "app1", "app1-alias", "app2", "tool", None]
    assert rows[1].digest == rows[2].digest


def test_list_sparse_warns(fixture_layout) -> None:
    listing = Layout.open(fixture_layout("sparse")).list()
    [row] = listing.rows
    assert row.missing == 1
    assert len(listing.warnings) == 1 and SPARSE_ABSENT in listing.warnings[0]
    assert "linux/arm64/v8" in row.platforms  # known from the index even though absent


def test_list_sparse_strict_fails(fixture_layout) -> None:
    with pytest.raises(CorruptLayoutError, match=SPARSE_ABSENT):
        Layout.open(fixture_layout("sparse"), strict=True).list()


def test_list_missing_layer_warns(fixture_layout) -> None:
    listing = Layout.open(fixture_layout("broken/missing-blob")).list()
    [row] = listing.rows
    assert row.missing == 1
    assert [w for w in listing.warnings if HELLO_LAYER in w], listing.warnings


def test_list_digest_mismatch_is_not_lists_business(fixture_layout) -> None:
    listing = Layout.open(fixture_layout("broken/digest-mismatch")).list()
    assert listing.warnings == [] and listing.rows[0].missing == 0


def test_list_shared_blobs(fixture_layout) -> None:
    shared = fixture_layout("shared")
    for name, digest in (("a", "sha256:1bd814612a74"), ("b", "sha256:b60c34a95190")):
        listing = Layout.open(shared / name, shared_blobs=shared / "blobs").list()
        [row] = listing.rows
        assert row.digest.startswith(digest)
        assert row.platforms == ["linux/amd64"] and row.missing == 0 and listing.warnings == []


def test_list_shared_layout_without_shared_dir_says_what_is_missing(fixture_layout) -> None:
    listing = Layout.open(fixture_layout("shared") / "a").list()
    [row] = listing.rows
    assert row.missing == 4  # config and 3 layers live in the shared directory only
    assert len(listing.warnings) == 4


def test_list_empty_and_null_manifests(tmp_path: Path, generate_module) -> None:
    w = generate_module.LayoutWriter(tmp_path / "empty")
    w.finish()
    assert Layout.open(tmp_path / "empty").list().rows == []
    (tmp_path / "empty" / "index.json").write_text('{"schemaVersion":2,"manifests":null}')
    listing = Layout.open(tmp_path / "empty").list()
    assert listing.rows == [] and len(listing.warnings) == 1 and "null" in listing.warnings[0]


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        Layout.open(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CorruptLayoutError):
        Layout.open(tmp_path / "file")
    with pytest.raises(CorruptLayoutError, match="oci-layout"):
        Layout.open(tmp_path)
    with pytest.raises(NotFoundError):
        Layout.open(tmp_path, shared_blobs=tmp_path / "no-such-dir")


# -- inspect ---------------------------------------------------------------------------------


def test_inspect_single(fixture_layout) -> None:
    report = Layout.open(fixture_layout("single")).inspect("latest")
    assert report.names == ["latest"] and report.kind == "image" and report.platform is None
    assert report.descriptor["digest"] == HELLO
    assert report.manifest["layers"][0]["digest"] == HELLO_LAYER
    assert report.config["config"]["Labels"] == {"image": "hello", "team": "core"}


def test_inspect_default_reference(fixture_layout) -> None:
    assert Layout.open(fixture_layout("single")).inspect().descriptor["digest"] == HELLO


def test_inspect_index_and_platform(fixture_layout) -> None:
    layout = Layout.open(fixture_layout("multiarch"))
    whole = layout.inspect("multi")
    assert whole.kind == "index" and whole.config is None
    assert len(whole.manifest["manifests"]) == 3
    arm = layout.inspect("multi", "linux/arm64")
    assert arm.kind == "image" and arm.platform == "linux/arm64/v8"
    assert arm.descriptor["digest"].startswith("sha256:74a6b983ae15")
    assert arm.config["architecture"] == "arm64"
    assert arm.names == ["multi"]


def test_inspect_not_found(fixture_layout) -> None:
    with pytest.raises(NotFoundError):
        Layout.open(fixture_layout("single")).inspect("nope")


def test_inspect_missing_manifest(fixture_layout) -> None:
    report = Layout.open(fixture_layout("sparse")).inspect("multi", "linux/arm64")
    assert report.manifest is None and report.config is None


# -- tree --------------------------------------------------------------------------------------


def test_tree_single(fixture_layout) -> None:
    tree = Layout.open(fixture_layout("single")).tree()
    [root] = tree.roots
    assert (root.role, root.name, root.digest, root.kind) == ("entry", "latest", HELLO, "image")
    assert [c.role for c in root.children] == ["config", "layer"]
    assert root.children[1].digest == HELLO_LAYER
    assert tree.warnings == []


def test_tree_nested3(fixture_layout) -> None:
    tree = Layout.open(fixture_layout("nested3")).tree("deep")
    [root] = tree.roots
    chain = [root]
    while chain[-1].children and chain[-1].kind == "index":
        chain.append(chain[-1].children[0])
    assert [n.kind for n in chain] == ["index", "index", "index", "image"]
    assert chain[-1].platform == "linux/amd64"
    assert sum(1 for _ in walk(root)) == 6


def test_tree_one_reference_or_all(fixture_layout) -> None:
    layout = Layout.open(fixture_layout("multi"))
    assert len(layout.tree().roots) == 6
    [only] = layout.tree("app2").roots
    assert only.name == "app2"


def test_tree_marks_missing(fixture_layout) -> None:
    [root] = Layout.open(fixture_layout("sparse")).tree().roots
    states = {n.digest: n.state for n in walk(root)}
    assert states[SPARSE_ABSENT] == "missing"
    [root] = Layout.open(fixture_layout("broken/missing-blob")).tree().roots
    assert {n.digest: n.state for n in walk(root)}[HELLO_LAYER] == "missing"


def test_tree_diamond_does_not_explode(tmp_path: Path, generate_module) -> None:
    # every level lists the one below twice: 2**20 paths through 20 blobs
    w = generate_module.LayoutWriter(tmp_path / "diamond")
    top = w.image([b"layer"])
    for _ in range(20):
        top = w.index([top, top])
    w.add_entry(top, "diamond")
    w.finish()
    tree = Layout.open(tmp_path / "diamond").tree()
    assert sum(1 for _ in walk(tree.roots[0])) < 200


def test_tree_cycle_through_corrupt_blobs(tmp_path: Path, generate_module) -> None:
    import hashlib

    w = generate_module.LayoutWriter(tmp_path / "cycle")
    a_hex = hashlib.sha256(b"A").hexdigest()
    b_hex = hashlib.sha256(b"B").hexdigest()
    idx = "application/vnd.oci.image.index.v1+json"
    (tmp_path / "cycle/blobs/sha256").mkdir(parents=True)
    (tmp_path / "cycle/blobs/sha256" / a_hex).write_text(json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": idx, "digest": "sha256:" + b_hex, "size": 1}]}))
    (tmp_path / "cycle/blobs/sha256" / b_hex).write_text(json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": idx, "digest": "sha256:" + a_hex, "size": 1}]}))
    w.add_entry({"mediaType": idx, "digest": "sha256:" + a_hex, "size": 1}, "loop")
    w.finish()
    layout = Layout.open(tmp_path / "cycle")
    [root] = layout.tree().roots
    nodes = list(walk(root))
    assert len(nodes) == 3
    assert nodes[-1].note and "cycle" in nodes[-1].note
    assert layout.list().rows[0].kind == "index"


# -- each blob read at most once per command ------------------------------------------------


@pytest.fixture
def read_counts(monkeypatch) -> Counter:
    # The prewarm hook of --warm-cache reads blobs itself (a warm command reads fewer still:
    # test_refcache.py); counted here is one cold command.
    monkeypatch.delenv("OCILAYOUT_TEST_PREWARM", raising=False)
    counts: Counter = Counter()
    original_read = LayoutStore.read_blob
    original_head = LayoutStore.read_blob_head

    def read_blob(self, digest, *args, **kwargs):
        counts[("read", str(digest))] += 1
        return original_read(self, digest, *args, **kwargs)

    def read_head(self, digest, *args, **kwargs):
        counts[("head", str(digest))] += 1
        return original_head(self, digest, *args, **kwargs)

    monkeypatch.setattr(LayoutStore, "read_blob", read_blob)
    monkeypatch.setattr(LayoutStore, "read_blob_head", read_head)
    return counts


@pytest.mark.parametrize("name", ["multi", "multiarch", "docker", "referrer-dangling", "three-names", "nested3"])
@pytest.mark.parametrize("command", ["list", "tree", "inspect"])
def test_each_blob_read_once(fixture_layout, read_counts: Counter, name: str, command: str) -> None:
    layout = Layout.open(fixture_layout(name))
    read_counts.clear()
    if command == "inspect":
        layout.inspect(layout.index.entries[0].name or str(layout.index.entries[0].digest))
    else:
        getattr(layout, command)()
    assert read_counts, "nothing was read"
    assert max(read_counts.values()) == 1, {k: v for k, v in read_counts.items() if v > 1}


def test_inspect_with_platform_reads_once(fixture_layout, read_counts: Counter) -> None:
    layout = Layout.open(fixture_layout("multiarch"))
    read_counts.clear()
    layout.inspect("multi", "linux/arm64")
    assert max(read_counts.values()) == 1, read_counts
