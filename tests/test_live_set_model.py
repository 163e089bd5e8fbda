"""The doubt rule against an independent model, on random graphs with mixed media types and
manifests kept in a shared blob directory that the user forgets to name.

Safety: after `rm` of an entry or `gc`, every local blob that the remaining entries truly reach
(reading the forgotten directory too) still exists. Liveness: when the model sees no doubt, `gc`
leaves exactly the local blobs that the entries reach.

The model follows DESIGN 1 in its own words: a reference whose media type is a leaf type is never
opened; any other reference to a present JSON document follows its `manifests`/`layers`; a blob
missing from the layout is doubt when an entry is it, or when some reference to it has a media
type that does not say "leaf" (known leaf types and the OCI/Docker layer prefixes); binary
content under a manifest or index media type is unreadable, and doubt too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ocilayout import Layout
from ocilayout import graph as graph_module

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER_PLAIN = "application/vnd.docker.image.rootfs.diff.tar"  # a layer by prefix only
TYPES = [OCI_MANIFEST, OCI_INDEX, None, "application/x-unknown", OCI_LAYER, OCI_CONFIG, DOCKER_LAYER_PLAIN]
NEVER_OPENED = {OCI_CONFIG, OCI_LAYER}  # the model's exact leaf types among TYPES
SAYS_LEAF = {OCI_CONFIG, OCI_LAYER, DOCKER_LAYER_PLAIN}  # types that excuse a missing blob


@st.composite
def graphs(draw):
    """Documents referring to earlier documents or leaves; where each document lives; entries."""
    docs = []
    for i in range(draw(st.integers(2, 8))):
        kids = []
        for _ in range(draw(st.integers(0, 3))):
            target = draw(st.integers(-1, i - 1))  # -1: a new leaf
            kids.append((draw(st.sampled_from(TYPES)), target))
        key = draw(st.sampled_from(["manifests", "layers"]))
        place = draw(st.sampled_from(["local", "local", "local", "shared"]))
        docs.append((key, kids, place))
    entries = draw(st.lists(st.tuples(st.integers(0, len(docs) - 1), st.sampled_from([OCI_MANIFEST, OCI_INDEX])),
                            min_size=1, max_size=4))
    op = draw(st.sampled_from(["gc", "rm"]))
    victim = draw(st.integers(0, len(entries) - 1))
    fork = draw(st.booleans())
    return docs, entries, op, victim, fork


def _write(directory: Path, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = directory / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (1, 1))  # old: gc's grace period never protects it
    return {"digest": digest, "size": len(data)}


def build(root: Path, shared: Path, spec) -> tuple[dict[str, list[tuple[str | None, str]]], list[tuple[str, str, str]]]:
    docs, entries, _, _, _ = spec
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    made: list[dict] = []
    edges: dict[str, list[tuple[str | None, str]]] = {}
    for i, (key, kids, place) in enumerate(docs):
        refs = []
        for k, (media_type, target) in enumerate(kids):
            child = _write(root / "blobs", b"\x1f\x8b leaf %d %d" % (i, k)) if target < 0 else made[target]
            refs.append({**child, **({"mediaType": media_type} if media_type else {})})
        where = root / "blobs" if place == "local" else shared
        desc = _write(where, json.dumps({"schemaVersion": 2, key: refs}).encode())
        edges[desc["digest"]] = [(r.get("mediaType"), r["digest"]) for r in refs]
        made.append(desc)
    index = []
    names = []
    for n, (doc, media_type) in enumerate(entries):
        name = f"e{n}"
        names.append((name, made[doc]["digest"], media_type))
        index.append({**made[doc], "mediaType": media_type, "annotations": {"org.opencontainers.image.ref.name": name}})
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": index}))
    return edges, names


def local(root: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()}


def reach(roots: list[tuple[str | None, str]], edges, can_open) -> set[tuple[str | None, str, int]]:
    """Every (media type, digest, depth>0) reference reached; `can_open(type, digest)` says
    whether a reference lets the walk read that document's own references."""
    refs = {(t, d, 0) for t, d in roots}
    while True:
        opened = {d for t, d, _ in refs if can_open(t, d)}
        more = {(t, c, 1) for d in opened for t, c in edges.get(d, [])} - refs
        if not more:
            return refs
        refs |= more


def model(roots, edges, present: set[str]) -> tuple[set[str], set[str], bool]:
    """(truth, visible, doubt): what `roots` truly reach (the forgotten directory read too; a
    blob reached only through references that say "leaf" is a leaf when missing, as DESIGN 1
    says), what the layout alone shows, and whether that view holds doubt."""
    truth = reach(roots, edges, lambda t, d: t not in NEVER_OPENED and (d in present or t not in SAYS_LEAF))
    visible = reach(roots, edges, lambda t, d: t not in NEVER_OPENED and d in present)
    doubt = any(d not in present and (depth == 0 or t not in SAYS_LEAF) for t, d, depth in visible)
    # Binary content where a reference promises a manifest or an index is unreadable: doubt.
    doubt |= any(d in present and d not in edges and t in (OCI_MANIFEST, OCI_INDEX) for t, d, _ in visible)
    return {d for _, d, _ in truth}, {d for _, d, _ in visible}, doubt


# Found by review: whether a missing manifest was doubt depended on the reference met first.
_FIRST_AS_LAYER_BY_PREFIX = (  # gc: M first through a layer type outside the exact leaf set
    [("layers", [(OCI_LAYER, -1)], "shared"), ("layers", [(DOCKER_LAYER_PLAIN, 0)], "local"),
     ("manifests", [(OCI_MANIFEST, 0)], "local")],
    [(1, OCI_MANIFEST), (2, OCI_INDEX)], "gc", 0, False,
)
_CACHED_BY_THE_REMOVED_WALK = (  # rm: M cached as missing, then first met as a layer
    [("layers", [(OCI_LAYER, -1)], "shared"), ("manifests", [(OCI_MANIFEST, 0)], "local"),
     ("layers", [(OCI_LAYER, 0)], "local"), ("manifests", [(OCI_MANIFEST, 0)], "local")],
    [(1, OCI_INDEX), (2, OCI_MANIFEST), (3, OCI_INDEX)], "rm", 0, False,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=graphs())
@example(spec=_FIRST_AS_LAYER_BY_PREFIX)
@example(spec=_CACHED_BY_THE_REMOVED_WALK)
def test_forgotten_shared_directory_never_loses_a_reachable_blob(spec) -> None:
    docs, entries, op, victim, fork = spec
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(
        graph_module, "PARALLEL_MIN_ROOTS", 2 if fork else 10**9
    ):
        root, shared = Path(tmp) / "lay", Path(tmp) / "forgotten"
        edges, names = build(root, shared, spec)
        before = local(root)
        layout = Layout.open(root)  # the user forgets --shared-blobs
        if op == "rm":
            layout.delete([names[victim][0]])
            remaining = [(t, d) for n, d, t in names if n != names[victim][0]]
        else:
            layout.gc(grace=0)
            remaining = [(t, d) for _, d, t in names]
        truth, visible, doubt = model(remaining, edges, before)
        after = local(root)
        lost = (truth & before) - after
        assert not lost, f"reachable blobs deleted: {sorted(lost)} (doubt expected: {doubt})"
        if doubt:
            assert after == before, "doubt: nothing is deleted"
        elif op == "gc":
            assert after == before & visible, "no doubt: gc leaves exactly what the entries reach"
