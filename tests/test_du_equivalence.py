"""The one-pass `du` (use counts, two processes) reports exactly what the per-image live sets
of the previous implementation reported (tests/du_reference.py), on random layouts with
shared layers, names, dangling referrer chains, indexes, orphans, schema1-like unsized
blobs, missing and unreadable manifests; with and without the forked child."""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from pathlib import Path

import pytest
from du_reference import old_usage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_du import build, layouts

from ocilayout import Layout
from ocilayout import graph as graph_module
from ocilayout.du import SORT_KEYS, usage


def both(root: Path, monkeypatch: pytest.MonkeyPatch, *, selected=None, sort="size", allow_sparse=False, fork=False):
    clock = time.time()
    layout = Layout.open(root)
    old = old_usage(
        layout.store, layout.index, layout.graph(), selected, allow_sparse=allow_sparse, sort=sort, clock=clock
    )
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2 if fork else 10**9)
    layout = Layout.open(root)
    new = usage(layout.store, layout.index, layout.graph(), selected, allow_sparse=allow_sparse, sort=sort, clock=clock)
    return old, new


def same(old, new) -> None:
    assert new.images == old.images
    assert new.totals == old.totals
    # The same warnings; the order differs where the old pass read every manifest first.
    assert sorted(new.warnings) == sorted(old.warnings)


def damage(root: Path, rng: random.Random) -> None:
    """Remove or corrupt a few manifests, and add an unsized (schema1-style) reference."""
    blobs = sorted((root / "blobs" / "sha256").iterdir())
    manifests = [p for p in blobs if p.read_bytes().lstrip().startswith(b"{") and b'"layers"' in p.read_bytes()]
    if manifests and rng.random() < 0.5:
        rng.choice(manifests).unlink()
    if manifests and rng.random() < 0.5:
        victim = rng.choice(manifests)
        if victim.exists():
            victim.write_bytes(b'{"layers": [], "layers": []}')
    for path in blobs:
        if path.exists() and rng.random() < 0.1:
            os.utime(path, (time.time() - 10 * 86400,) * 2)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    spec=layouts(),
    seed=st.integers(0, 2**16),
    fork=st.booleans(),
    sort=st.sampled_from(SORT_KEYS),
    broken=st.booleans(),
    allow_sparse=st.booleans(),
)
def test_du_equals_the_previous_accounting(generate_module, monkeypatch, spec, seed, fork, sort, broken, allow_sparse):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lay"
        digests = build(root, generate_module, spec)
        if broken:
            damage(root, random.Random(seed))
        old, new = both(root, monkeypatch, sort=sort, fork=fork, allow_sparse=allow_sparse)
        same(old, new)
        chosen = random.Random(seed).sample(digests, k=min(2, len(digests)))
        groups = Layout.open(root).index.by_digest()
        selected = [d for d in groups if d in chosen]
        if selected:
            old, new = both(root, monkeypatch, selected=selected, sort=sort, fork=fork, allow_sparse=allow_sparse)
            same(old, new)


@pytest.mark.parametrize(
    "name", ["multi", "multiarch", "nested3", "referrer-dangling", "referrer-named", "sparse", "orphans", "docker",
             "sha512", "three-names", "single", "shared/a"]
)
@pytest.mark.parametrize("fork", [False, True])
def test_du_equals_the_previous_accounting_on_fixtures(fixture_layout, monkeypatch, name, fork) -> None:
    root = fixture_layout(name)
    for allow_sparse in (False, True):
        old, new = both(root, monkeypatch, fork=fork, allow_sparse=allow_sparse)
        same(old, new)


def test_du_of_a_generated_layout_with_unsized_blobs(generate_module, tmp_path, monkeypatch) -> None:
    root = tmp_path / "bench"
    generate_module.main(["bench", "--images", "40", "--seed", "5", "--out", str(root)])
    index = json.loads((root / "index.json").read_bytes())
    for entry in index["manifests"][:3]:  # an entry whose own size is unknown is refused; a child's is kept
        entry.setdefault("annotations", {})["org.opencontainers.image.created"] = "2024-02-03T04:05:06.123456789Z"
    (root / "index.json").write_text(json.dumps(index))
    for fork in (False, True):
        for sort in SORT_KEYS:
            old, new = both(root, monkeypatch, fork=fork, sort=sort)
            same(old, new)


def test_created_false_reads_no_config(fixture_layout) -> None:
    root = fixture_layout("multi")
    layout = Layout.open(root)
    full = layout.du()
    bare = Layout.open(root).du(created=False)
    assert [i.created for i in bare.images if i.created] == []
    assert [(i.digest, i.size, i.exclusive, i.shared) for i in bare.images] == [
        (i.digest, i.size, i.exclusive, i.shared) for i in full.images
    ]
    assert Layout.open(root).du(created=False, sort="created").images == Layout.open(root).du(sort="created").images


@pytest.mark.parametrize("fork", [False, True])
def test_a_doubtful_dangling_referrer_goes_with_its_subject(generate_module, tmp_path, monkeypatch, fork) -> None:
    """The referrer's own doubt does not block: rm of the subject removes it too."""
    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    app = w.image([b"app layer", b"base layer"])
    w.add_entry(app, name="app")
    other = w.image([b"base layer"])
    w.add_entry(other, name="other")
    absent = w.image([b"never written"], write=False)  # a missing manifest: doubt
    w.add_entry(w.index([absent], subject=app))  # unnamed: a dangling referrer of app
    w.finish()
    old, new = both(root, monkeypatch, fork=fork)
    same(old, new)
    [usage_of_app] = [i for i in new.images if i.names == ["app"]]
    assert usage_of_app.exclusive > 0 and not new.totals.certain
    before = {p.name: p.stat().st_size for p in (root / "blobs" / "sha256").iterdir()}
    removal = Layout.open(root).delete([usage_of_app.digest], force=True)
    after = {p.name for p in (root / "blobs" / "sha256").iterdir()}
    assert usage_of_app.exclusive == removal.bytes_freed == sum(s for n, s in before.items() if n not in after)


@pytest.mark.parametrize("fork", [False, True])
def test_an_unsized_reference_takes_a_later_declared_size(generate_module, tmp_path, monkeypatch, fork) -> None:
    """A Docker schema1 manifest names its layers without sizes: the size declared by a later
    image counts (here on purpose unlike the file's, so that falling back to the file shows)."""
    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    layer = w.layer(b"a layer both images use", generate_module.OCI_LAYER)
    schema1 = w.json_blob(
        {"schemaVersion": 1, "name": "old", "fsLayers": [{"blobSum": layer["digest"]}]},
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    )
    w.add_entry(schema1, name="old")
    w.add_entry(w.image([b"filler one"]), name="f1")
    w.add_entry(w.image([b"filler two"]), name="f2")
    w.add_entry(w.image([{**layer, "size": layer["size"] + 100}]), name="new")
    w.finish()
    old, new = both(root, monkeypatch, fork=fork)
    same(old, new)
    [usage_of_old] = [i for i in new.images if i.names == ["old"]]
    assert usage_of_old.shared == layer["size"] + 100
