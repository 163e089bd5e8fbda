"""The graph walker (DESIGN 1): edges by content, doubt keeps blobs, sparse, cycles, depth, caching."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ocilayout.descriptor import Descriptor, parse_descriptor
from ocilayout.digest import Digest, parse_digest
from ocilayout.errors import CorruptLayoutError
from ocilayout.graph import Graph, NodeState, live_set
from ocilayout.indexfile import parse_index
from ocilayout.listing import list_images
from ocilayout.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_ARTIFACT_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Kind,
)
from ocilayout.storage import LayoutStore

ROOT = Path("/layout")
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class Blobs:
    """Writes blobs into a fake layout and returns their descriptors as dicts."""

    def __init__(self, fs, root: Path = ROOT) -> None:
        self.fs = fs
        self.root = root
        self.counter = 0
        fs.create_file(root / "oci-layout", contents=b'{"imageLayoutVersion":"1.0.0"}')
        fs.create_dir(root / "blobs" / "sha256")

    def raw(self, data: bytes, media_type: str | None, **extra: Any) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / "sha256" / digest[7:]
        if not path.exists():
            self.fs.create_file(path, contents=data)
        desc: dict[str, Any] = {"digest": digest, "size": len(data), **extra}
        if media_type is not None:
            desc["mediaType"] = media_type
        return desc

    def json(self, obj: Any, media_type: str | None, **extra: Any) -> dict[str, Any]:
        return self.raw(json.dumps(obj, sort_keys=True).encode(), media_type, **extra)

    def layer(self, media_type: str | None = OCI_LAYER) -> dict[str, Any]:
        self.counter += 1
        return self.raw(b"\x1f\x8b layer %d" % self.counter, media_type)

    def config(self, media_type: str | None = OCI_CONFIG, **fields: Any) -> dict[str, Any]:
        self.counter += 1
        obj = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "n": self.counter}
        return self.json({**obj, **fields}, media_type)

    def image(self, layers: int = 2, media_type: str | None = OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
        docker = media_type == DOCKER_MANIFEST
        doc = {
            "schemaVersion": 2,
            "config": self.config(DOCKER_CONFIG if docker else OCI_CONFIG),
            "layers": [self.layer(DOCKER_LAYER if docker else OCI_LAYER) for _ in range(layers)],
        }
        if media_type is not None:
            doc["mediaType"] = media_type
        return self.json(doc, media_type, **extra)

    def index(self, children: list[dict[str, Any]], media_type: str | None = OCI_INDEX, **extra: Any) -> dict[str, Any]:
        self.counter += 1
        doc = {"schemaVersion": 2, "manifests": children, "annotations": {"n": str(self.counter)}}
        return self.json(doc, media_type, **extra)

    def corrupt(self, name: str, content: bytes, media_type: str | None) -> dict[str, Any]:
        """A blob stored under the digest of `name` but holding `content` (digest mismatch)."""
        digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        self.fs.create_file(self.root / "blobs" / "sha256" / digest[7:], contents=content)
        desc = {"digest": digest, "size": len(content)}
        if media_type is not None:
            desc["mediaType"] = media_type
        return desc

    def missing(self, media_type: str | None = OCI_MANIFEST, name: str = "absent") -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        desc = {"digest": digest, "size": 100}
        if media_type is not None:
            desc["mediaType"] = media_type
        return desc


def d(raw: dict[str, Any]) -> Descriptor:
    return parse_descriptor(raw, "test")


def dg(raw: dict[str, Any]) -> Digest:
    return parse_digest(raw["digest"])


def children_of(blobs: Blobs, raw: dict[str, Any]) -> set[Digest]:
    doc = json.loads((blobs.root / "blobs" / "sha256" / raw["digest"][7:]).read_bytes())
    out = set()
    for key in ("manifests", "layers", "blobs"):
        out |= {parse_digest(c["digest"]) for c in doc.get(key, [])}
    if "config" in doc:
        out.add(parse_digest(doc["config"]["digest"]))
    return out


def all_under(blobs: Blobs, raw: dict[str, Any]) -> set[Digest]:
    seen = {dg(raw)}
    stack = [raw]
    while stack:
        cur = stack.pop()
        if cur.get("mediaType") in (OCI_CONFIG, DOCKER_CONFIG, OCI_LAYER, DOCKER_LAYER, OCI_EMPTY):
            continue
        path = blobs.root / "blobs" / "sha256" / cur["digest"][7:]
        doc = json.loads(path.read_bytes())
        kids = [*doc.get("manifests", []), *doc.get("layers", []), *doc.get("blobs", [])]
        if "config" in doc:
            kids.append(doc["config"])
        for kid in kids:
            if parse_digest(kid["digest"]) not in seen:
                seen.add(parse_digest(kid["digest"]))
                stack.append(kid)
    return seen


@pytest.fixture
def blobs(fs) -> Blobs:
    return Blobs(fs)


@pytest.fixture
def store(blobs: Blobs) -> LayoutStore:
    return LayoutStore(ROOT)


# -- edges by kind ---------------------------------------------------------------------


def test_oci_image(blobs: Blobs, store: LayoutStore) -> None:
    img = blobs.image(3)
    graph = Graph(store)
    node = graph.node(d(img))
    assert node.kind is Kind.IMAGE and node.state is NodeState.PARSED
    assert node.config is not None and node.config.media_type == OCI_CONFIG
    assert len(node.layers) == 3
    reach = graph.reach([d(img)])
    assert set(reach.reached) == children_of(blobs, img) | {dg(img)}
    assert len(reach.reached) == 5
    assert reach.certain and not reach.missing and not graph.warnings


def test_listed_size_counts_each_blob_once(blobs: Blobs, store: LayoutStore) -> None:
    shared = blobs.layer()
    a = blobs.json({"schemaVersion": 2, "config": blobs.config(), "layers": [shared, shared]}, OCI_MANIFEST)
    top = blobs.index([a, blobs.json({"schemaVersion": 2, "config": blobs.config(), "layers": [shared]}, OCI_MANIFEST)])
    expected = {dg(x): x["size"] for x in (top, a, shared)}
    for m in json.loads((ROOT / "blobs/sha256" / top["digest"][7:]).read_bytes())["manifests"]:
        expected[dg(m)] = m["size"]
        config = json.loads((ROOT / "blobs/sha256" / m["digest"][7:]).read_bytes())["config"]
        expected[dg(config)] = config["size"]
    index = parse_index(json.dumps({"schemaVersion": 2, "manifests": [top]}).encode())
    [row] = list_images(index, Graph(store))
    assert row.size == sum(expected.values()) and row.missing == 0


@pytest.mark.parametrize("depth", [1, 3, 10, 40])
def test_nested_indexes_any_depth(blobs: Blobs, store: LayoutStore, depth: int) -> None:
    inner = blobs.image()
    top = inner
    for _ in range(depth):
        top = blobs.index([top])
    graph = Graph(store)
    reach = graph.reach([d(top)])
    assert set(reach.reached) == all_under(blobs, top)
    assert len(reach.reached) == depth + 4
    assert reach.certain and not graph.warnings
    assert graph.node(d(top)).kind is Kind.INDEX


def test_multi_platform_index(blobs: Blobs, store: LayoutStore) -> None:
    base = blobs.layer()
    images = []
    for arch in ("amd64", "arm64", "s390x"):
        manifest = blobs.json(
            {"schemaVersion": 2, "config": blobs.config(architecture=arch), "layers": [base, blobs.layer()]},
            OCI_MANIFEST,
            platform={"os": "linux", "architecture": arch},
        )
        images.append(manifest)
    top = blobs.index(images)
    reach = Graph(store).reach([d(top)])
    assert set(reach.reached) == all_under(blobs, top)
    assert len(reach.reached) == 1 + 3 * 2 + 1 + 3


def test_docker_types(blobs: Blobs, store: LayoutStore) -> None:
    one = blobs.image(2, DOCKER_MANIFEST, platform={"os": "linux", "architecture": "amd64"})
    two = blobs.image(1, DOCKER_MANIFEST, platform={"os": "linux", "architecture": "arm64", "variant": "v8"})
    top = blobs.index([one, two], DOCKER_MANIFEST_LIST)
    graph = Graph(store)
    reach = graph.reach([d(top)])
    assert set(reach.reached) == all_under(blobs, top)
    assert len(reach.reached) == 1 + 2 + 2 + 3
    assert graph.node(d(top)).kind is Kind.INDEX
    assert graph.node(d(one)).kind is Kind.IMAGE
    assert graph.node(d(one)).config.media_type == DOCKER_CONFIG


def test_artifact_manifest_blobs(blobs: Blobs, store: LayoutStore) -> None:
    subject = blobs.image()
    parts = [blobs.raw(b"sbom part 1", "application/spdx+json"), blobs.raw(b"sbom part 2", "text/plain")]
    art = blobs.json(
        {"mediaType": OCI_ARTIFACT_MANIFEST, "artifactType": "application/vnd.example.sbom", "blobs": parts,
         "subject": subject},
        OCI_ARTIFACT_MANIFEST,
    )
    graph = Graph(store)
    node = graph.node(d(art))
    assert node.kind is Kind.ARTIFACT
    assert node.artifact_type == "application/vnd.example.sbom"
    reach = graph.reach([d(art)])
    assert set(reach.reached) == {dg(art), dg(parts[0]), dg(parts[1])}


def test_subject_recorded_but_not_followed(blobs: Blobs, store: LayoutStore) -> None:
    subject = blobs.image()
    sig = blobs.json(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
         "config": blobs.raw(b"{}", OCI_EMPTY), "layers": [blobs.raw(b"signature", "application/vnd.example.sig")],
         "subject": subject},
        OCI_MANIFEST,
    )
    graph = Graph(store)
    node = graph.node(d(sig))
    assert node.subject is not None and node.subject.digest == dg(subject)
    assert dg(subject) not in {c.digest for c in node.children}
    reach = graph.reach([d(sig)])
    assert dg(subject) not in reach
    assert len(reach.reached) == 3


def test_missing_subject_is_not_a_warning(blobs: Blobs, store: LayoutStore) -> None:
    sig = blobs.json(
        {"schemaVersion": 2, "config": blobs.raw(b"{}", OCI_EMPTY), "layers": [], "subject": blobs.missing()},
        OCI_MANIFEST,
    )
    graph = Graph(store, strict=True)
    reach = graph.reach([d(sig)])
    assert reach.certain and not reach.missing and not graph.warnings


def test_docker_schema1_fs_layers(blobs: Blobs, store: LayoutStore) -> None:
    l1, l2 = blobs.layer(None), blobs.layer(None)
    m = blobs.json({"schemaVersion": 1, "fsLayers": [{"blobSum": l1["digest"]}, {"blobSum": l2["digest"]},
                                                     {"blobSum": "sha256:../x"}]},
                   "application/vnd.docker.distribution.manifest.v1+prettyjws")
    graph = Graph(store)
    reach = graph.reach([d(m)])
    assert {dg(l1), dg(l2)} <= set(reach.reached)
    assert any("blobSum" in w for w in graph.warnings)


# -- doubt keeps a blob ----------------------------------------------------------------


@pytest.mark.parametrize("media_type", [None, "application/vnd.oci.descriptor.v1+json", "x-completely-unknown"])
def test_unknown_type_json_with_layers_is_walked(blobs: Blobs, store: LayoutStore, media_type: str | None) -> None:
    manifest = blobs.image(2, media_type=None)
    raw = {**manifest}
    if media_type is not None:
        raw["mediaType"] = media_type
    graph = Graph(store)
    assert graph.node(d(raw)).kind is Kind.IMAGE
    reach = graph.reach([d(raw)])
    assert set(reach.reached) == all_under(blobs, manifest) and len(reach.reached) == 4


@pytest.mark.parametrize("media_type", [None, "application/octet-stream"])
def test_unknown_type_json_with_manifests_is_walked(blobs: Blobs, store: LayoutStore, media_type: str | None) -> None:
    img = blobs.image(1)
    idx = blobs.index([img], media_type=media_type)
    graph = Graph(store)
    assert graph.node(d(idx)).kind is Kind.INDEX
    assert len(graph.reach([d(idx)]).reached) == 4


def test_unknown_type_json_with_blobs_is_artifact(blobs: Blobs, store: LayoutStore) -> None:
    part = blobs.raw(b"part", None)
    art = blobs.json({"blobs": [part]}, "application/x-unknown")
    graph = Graph(store)
    assert graph.node(d(art)).kind is Kind.ARTIFACT
    assert dg(part) in graph.reach([d(art)])


def test_unknown_type_under_an_index_is_walked(blobs: Blobs, store: LayoutStore) -> None:
    manifest = blobs.image(2, media_type=None)
    idx = blobs.index([{**manifest, "mediaType": "application/vnd.example.weird"}])
    reach = Graph(store).reach([d(idx)])
    assert set(reach.reached) == {dg(idx)} | all_under(blobs, manifest)


def test_unknown_binary_is_a_leaf_and_not_parsed(blobs: Blobs, store: LayoutStore, monkeypatch) -> None:
    binary = blobs.raw(b"\x00\x01binary" * 1000, "application/x-weird")
    calls = Counter()
    original_read = LayoutStore.read_blob

    def counting(self, digest, limit=16 * 1024 * 1024):
        calls[digest] += 1
        return original_read(self, digest, limit)

    monkeypatch.setattr(LayoutStore, "read_blob", counting)
    graph = Graph(store)
    node = graph.node(d(binary))
    assert node.kind is Kind.LEAF and node.state is NodeState.NOT_READ
    assert calls[dg(binary)] == 0  # only its head was sniffed
    assert graph.reach([d(binary)]).certain


@pytest.mark.parametrize("padding", [b"\n", b" " * 63, b" " * 64, b"\n" * 200, b" \t\r\n" * 100])
def test_unknown_type_json_after_much_whitespace_is_walked(blobs: Blobs, store: LayoutStore, padding: bytes) -> None:
    # JSON allows any amount of leading whitespace; sniffing a short head must not call it binary
    layer = blobs.layer()
    doc = padding + json.dumps({"schemaVersion": 2, "config": blobs.config(), "layers": [layer]}).encode()
    manifest = blobs.raw(doc, "application/x-unknown")
    reach = Graph(store).reach([d(manifest)])
    assert dg(layer) in reach


def test_unknown_json_without_edges_is_leaf(blobs: Blobs, store: LayoutStore) -> None:
    helm = blobs.json({"name": "chart", "version": "1.0"}, "application/vnd.cncf.helm.config.v1+json")
    node = Graph(store).node(d(helm))
    assert node.kind is Kind.LEAF and not node.children


@pytest.mark.parametrize("content", [b"{ this is not json", b'  \n{"layers": [], "layers": []}', b'{"a": "\xff"}'])
def test_unknown_type_json_looking_but_unparsable_is_unreadable(
    blobs: Blobs, store: LayoutStore, content: bytes
) -> None:
    text = blobs.raw(content, None)
    graph = Graph(store)
    assert graph.node(d(text)).state is NodeState.UNREADABLE
    assert not graph.reach([d(text)]).certain


def test_unknown_type_missing_is_doubt_unless_sparse_is_allowed(blobs: Blobs, store: LayoutStore) -> None:
    absent = blobs.missing("application/vnd.oci.descriptor.v1+json")
    top = blobs.index([blobs.image(), absent])
    graph = Graph(store)
    assert [x.digest for x in live_set(graph, [d(top)]).doubt] == [dg(absent)]
    assert live_set(graph, [d(top)], allow_sparse=True).certain


def test_missing_layer_type_never_doubt(blobs: Blobs, store: LayoutStore) -> None:
    doc = {
        "schemaVersion": 2,
        "config": blobs.missing(OCI_CONFIG, "config"),
        "layers": [blobs.layer(), blobs.missing("application/vnd.oci.image.layer.v1.tar+zstd")],
    }
    img = blobs.json(doc, OCI_MANIFEST)
    live = live_set(Graph(store), [d(img)])
    assert live.certain and len(live) == 4


def test_leaf_types_are_never_opened(blobs: Blobs, store: LayoutStore, monkeypatch) -> None:
    img = blobs.image(3)
    opened: list[str] = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    Graph(store).reach([d(img)])
    assert [p.rsplit("/", 1)[-1] for p in opened if "/blobs/" in p] == [img["digest"][7:]]


def test_unreadable_manifest_makes_reach_incomplete(blobs: Blobs, store: LayoutStore) -> None:
    bad = blobs.corrupt("bad", b"{ not json", OCI_MANIFEST)
    good = blobs.image()
    graph = Graph(store)
    reach = graph.reach([d(good), d(bad)])
    assert not reach.certain
    assert [(x.digest, x.reason) for x in reach.doubt] == [(dg(bad), "unreadable")]
    assert graph.node(d(bad)).state is NodeState.UNREADABLE
    assert any(bad["digest"] in w and "keeping" in w for w in graph.warnings)
    assert dg(bad) in reach  # the root itself stays counted


@pytest.mark.parametrize("content", [b"[1,2]", b'"str"', b'{"a":1,"a":2}', b"\xff\xfe", b""])
def test_unparsable_index_is_unreadable(blobs: Blobs, store: LayoutStore, content: bytes) -> None:
    bad = blobs.corrupt("bad-" + content.hex(), content, OCI_INDEX)
    reach = Graph(store).reach([d(bad)])
    assert not reach.certain


def test_directory_in_place_of_manifest_is_unreadable(blobs: Blobs, store: LayoutStore, fs) -> None:
    desc = blobs.missing(OCI_MANIFEST, "dir")
    fs.create_dir(ROOT / "blobs" / "sha256" / desc["digest"][7:])
    reach = Graph(store).reach([d(desc)])
    assert not reach.certain


def test_bad_child_descriptor_keeps_blob(blobs: Blobs, store: LayoutStore) -> None:
    layer = blobs.layer()
    m = blobs.json({"schemaVersion": 2, "config": blobs.config(), "layers": [{**layer, "size": "big"},
                                                                              {"digest": "sha256:../../etc"}]},
                   OCI_MANIFEST)
    graph = Graph(store)
    reach = graph.reach([d(m)])
    assert dg(layer) in reach
    assert any("kept" in w for w in graph.warnings)
    assert any("skipped" in w for w in graph.warnings)


# -- sparse ----------------------------------------------------------------------------


def test_sparse_child_is_a_warning(blobs: Blobs, store: LayoutStore) -> None:
    present = blobs.image()
    absent = blobs.missing(OCI_MANIFEST)
    top = blobs.index([present, absent])
    graph = Graph(store)
    reach = graph.reach([d(top)])
    assert reach.missing == [dg(absent)]
    assert reach.certain  # missing is not unreadable: nothing it could reference is on disk for it
    assert len(graph.warnings) == 1 and absent["digest"] in graph.warnings[0]
    assert set(reach.reached) == all_under(blobs, present) | {dg(top), dg(absent)}


def test_sparse_child_strict_is_an_error(blobs: Blobs, store: LayoutStore) -> None:
    top = blobs.index([blobs.image(), blobs.missing(OCI_MANIFEST)])
    with pytest.raises(CorruptLayoutError, match="missing"):
        Graph(store, strict=True).reach([d(top)])


def test_missing_nested_index_warned_once(blobs: Blobs, store: LayoutStore) -> None:
    absent = blobs.missing(OCI_INDEX)
    a = blobs.index([absent])
    b = blobs.index([absent, blobs.image()])
    graph = Graph(store)
    graph.reach([d(a)])
    graph.reach([d(b)])
    assert len([w for w in graph.warnings if absent["digest"] in w]) == 1


# -- cycles and depth ------------------------------------------------------------------


def test_cycle_through_corrupt_blobs_terminates(blobs: Blobs, store: LayoutStore) -> None:
    # Content-addressing makes a cycle impossible unless blobs lie about their digest.
    a_digest = "sha256:" + hashlib.sha256(b"A").hexdigest()
    b_digest = "sha256:" + hashlib.sha256(b"B").hexdigest()
    a = blobs.corrupt("A", json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": b_digest, "size": 1}]}).encode(), OCI_INDEX)
    blobs.corrupt("B", json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": a_digest, "size": 1},
        {"mediaType": OCI_INDEX, "digest": b_digest, "size": 1}]}).encode(), OCI_INDEX)
    reach = Graph(store).reach([d(a)])
    assert set(reach.reached) == {parse_digest(a_digest), parse_digest(b_digest)}


def chain(blobs: Blobs, depth: int) -> dict[str, Any]:
    top = blobs.image(1)
    for _ in range(depth):
        top = blobs.index([top])
    return top


def test_depth_cap_warns_and_keeps(blobs: Blobs, store: LayoutStore) -> None:
    top = chain(blobs, 12)
    graph = Graph(store, max_depth=5)
    reach = graph.reach([d(top)])
    assert not reach.certain  # what lies below the cap is unknown: keep everything
    assert any("deeper than 5" in w for w in graph.warnings)
    assert len(reach.reached) == 6


def test_depth_cap_strict_is_an_error(blobs: Blobs, store: LayoutStore) -> None:
    with pytest.raises(CorruptLayoutError, match="deeper than 5"):
        Graph(store, strict=True, max_depth=5).reach([d(chain(blobs, 12))])


def test_default_depth_cap(blobs: Blobs, store: LayoutStore) -> None:
    from ocilayout.graph import MAX_DEPTH

    ok = Graph(store).reach([d(chain(blobs, MAX_DEPTH - 1))])
    assert ok.certain
    too_deep = Graph(store).reach([d(chain(blobs, MAX_DEPTH + 5))])
    assert not too_deep.certain


def test_wide_diamond_is_linear(blobs: Blobs, store: LayoutStore, monkeypatch) -> None:
    # each level lists the level below twice: 2**40 paths, 40 blobs
    top = blobs.image(1)
    for _ in range(40):
        top = blobs.index([top, top])
    graph = Graph(store)
    reach = graph.reach([d(top)])
    assert len(reach.reached) == 40 + 3


# -- read each blob once -----------------------------------------------------------------


@pytest.fixture
def read_counts(monkeypatch) -> Counter:
    counts: Counter = Counter()
    original_read = LayoutStore.read_blob
    original_head = LayoutStore.read_blob_head

    def read_blob(self, digest, limit=16 * 1024 * 1024):
        counts[("read", digest)] += 1
        return original_read(self, digest, limit)

    def read_head(self, digest, length):
        counts[("head", digest)] += 1
        return original_head(self, digest, length)

    monkeypatch.setattr(LayoutStore, "read_blob", read_blob)
    monkeypatch.setattr(LayoutStore, "read_blob_head", read_head)
    return counts


def test_each_blob_read_once(blobs: Blobs, store: LayoutStore, read_counts: Counter) -> None:
    shared_image = blobs.image()
    unknown = {**blobs.image(), "mediaType": "application/x-unknown"}
    idx1 = blobs.index([shared_image, unknown])
    idx2 = blobs.index([shared_image, idx1])
    graph = Graph(store)
    roots = [d(idx1), d(idx2), d(shared_image)]
    graph.reach(roots)
    graph.reach(roots)
    for root in roots:
        graph.reach([root])
        graph.node(root)
    node = graph.node(d(shared_image))
    graph.config_info(node.config)
    graph.config_info(node.config)
    assert read_counts, "the spy saw nothing"
    assert max(read_counts.values()) == 1, read_counts


def test_config_info(blobs: Blobs, store: LayoutStore, read_counts: Counter) -> None:
    cfg = blobs.config(created="2024-05-06T07:08:09Z", architecture="arm64", variant="v8",
                       config={"Labels": {"team": "core", "bad": 5}})
    graph = Graph(store)
    info = graph.config_info(d(cfg))
    assert info is not None
    assert (info.created, info.os, info.architecture, info.variant) == ("2024-05-06T07:08:09Z", "linux", "arm64", "v8")
    assert info.labels == {"team": "core"}
    assert graph.config_info(d(cfg)) is info
    assert read_counts[("read", dg(cfg))] == 1


def test_config_info_absent_or_binary(blobs: Blobs, store: LayoutStore) -> None:
    graph = Graph(store)
    assert graph.config_info(d(blobs.missing(OCI_CONFIG))) is None
    assert graph.config_info(d(blobs.raw(b"\x00binary", "application/vnd.unknown.config.v1+json"))) is None
    assert graph.config_info(d(blobs.raw(b"[1]", OCI_CONFIG))) is None


@pytest.mark.parametrize("content", [b"\x1f\x8b binary", b"[1, 2]", b'{"not": "a manifest"}'])
def test_leaf_by_content_then_promised_a_manifest_is_a_new_verdict(
    blobs: Blobs, store: LayoutStore, content: bytes
) -> None:
    """The same blob first reached with an unknown type (a leaf by its content), then with a
    manifest media type: content that is no manifest is then unreadable, and doubt."""
    untyped = blobs.raw(content, "application/x-unknown")
    as_manifest = {**untyped, "mediaType": OCI_MANIFEST}
    top = blobs.index([untyped, as_manifest])
    live = live_set(Graph(store), [d(top)])
    if content.startswith(b"{"):  # valid JSON object without references: an empty manifest
        assert live.certain
    else:
        assert [(x.digest, x.reason) for x in live.doubt] == [(dg(untyped), "unreadable")]
    # The order of the references does not matter.
    top = blobs.index([as_manifest, untyped])
    assert live_set(Graph(store), [d(top)]).certain is content.startswith(b"{")


def test_missing_schema1_layer_is_a_leaf_not_doubt(blobs: Blobs, store: LayoutStore) -> None:
    """Docker schema1 layers carry no descriptor; they are layers, so a missing one never blocks."""
    present = blobs.layer(None)
    absent = blobs.missing(None, "schema1-layer")
    doc = {"schemaVersion": 1, "fsLayers": [{"blobSum": present["digest"]}, {"blobSum": absent["digest"]}]}
    manifest = blobs.json(doc, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    live = live_set(Graph(store), [d(manifest)])
    assert live.certain and {dg(present), dg(absent)} <= live.reached
