"""`verify` on two processes, with presence, size, digest and schema checked from one open of
each blob, reports exactly what the previous implementation (tests/verify_reference.py)
reported: the same problems in the same order, warnings, counts. On every fixture, the
conformance corpus, and generated layouts damaged at random (missing, truncated, flipped,
resized, symlinked, FIFO, directory and unparseable blobs, wrong declared sizes, strays,
orphans, a shared blob directory), one process or two, one thread or two."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
import verify_reference
from conftest import FIXTURE_LAYOUTS, SHARED_DIR

from ocilayout import graph as graph_module
from ocilayout.verify import verify_layout

MODES = [("one process", 1, False), ("threads", 2, False), ("two processes", 2, True)]


def reports(root: Path, monkeypatch: pytest.MonkeyPatch, shared: Path | None = None, **kwargs):
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 10**9)
    old = verify_reference.verify_layout(root, shared, **kwargs)
    new = []
    for _, workers, fork in MODES:
        monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2 if fork else 10**9)
        new.append(verify_layout(root, shared, workers=workers, **kwargs))
    return old, new


def same(old, new) -> None:
    for report, (mode, _, _) in zip(new, MODES):
        assert [(p.kind, p.subject, p.message) for p in report.problems] == [
            (p.kind, p.subject, p.message) for p in old.problems
        ], mode
        assert report.warnings == old.warnings, mode
        fields = ("reachable", "blobs_checked", "bytes_hashed", "unreachable", "strays")
        assert [getattr(report, f) for f in fields] == [getattr(old, f) for f in fields], mode


def every_fixture() -> list[Path]:
    found = sorted(p.parent for p in FIXTURE_LAYOUTS.rglob("oci-layout"))
    corpus = SHARED_DIR / "conformance"
    if corpus.is_dir():
        found += sorted(p.parent for p in corpus.rglob("oci-layout"))[:60]
    return found


@pytest.mark.parametrize("root", every_fixture(), ids=lambda p: p.name)
def test_same_report_on_fixtures_and_corpus(root: Path, tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "lay"
    shutil.copytree(root, copy, symlinks=True)
    for allow_sparse in (False, True):
        old, new = reports(copy, monkeypatch, allow_sparse=allow_sparse)
        same(old, new)


def damage(root: Path, rng: random.Random) -> None:
    blobs = sorted(p for p in (root / "blobs" / "sha256").iterdir())
    victims = rng.sample(blobs, k=min(len(blobs), 12))
    for i, path in enumerate(victims):
        how = rng.choice(
            ["missing", "truncate", "flip", "grow", "symlink", "fifo", "directory", "json", "empty", "keep"]
        )
        data = path.read_bytes()
        if how == "missing":
            path.unlink()
        elif how == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif how == "flip" and data:
            path.write_bytes(bytes([data[0] ^ 1]) + data[1:])
        elif how == "grow":
            path.write_bytes(data + b" ")
        elif how == "symlink":
            path.unlink()
            path.symlink_to(root / "oci-layout")
        elif how == "fifo":
            path.unlink()
            os.mkfifo(path)
        elif how == "directory":
            path.unlink()
            path.mkdir()
        elif how == "json":
            path.write_bytes(b'{"layers": [], "layers": []}')
        elif how == "empty":
            path.write_bytes(b"")
    (root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"stray")
    (root / "blobs" / "md5").mkdir(exist_ok=True)
    (root / "blobs" / "md5" / "x").write_bytes(b"?")
    index = json.loads((root / "index.json").read_bytes())
    for entry in index["manifests"]:
        if rng.random() < 0.1:
            entry["size"] += 1  # a wrong declared size
    if index["manifests"] and rng.random() < 0.5:
        index["manifests"].pop(rng.randrange(len(index["manifests"])))  # orphans
    (root / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("seed", range(12))
def test_same_report_on_damaged_generated_layouts(seed: int, tmp_path: Path, generate_module, monkeypatch) -> None:
    root = tmp_path / "lay"
    generate_module.main(["bench", "--images", "30", "--seed", str(seed), "--out", str(root)])
    damage(root, random.Random(seed))
    for allow_sparse in (False, True):
        old, new = reports(root, monkeypatch, allow_sparse=allow_sparse)
        same(old, new)
    assert old.problems


def test_same_report_with_a_shared_blob_directory(fixture_layout, monkeypatch) -> None:
    base = fixture_layout("shared")
    shared = base / "shared-blobs" if (base / "shared-blobs").is_dir() else None
    layouts = [p.parent for p in base.rglob("oci-layout")]
    assert layouts
    for root in layouts:
        directory = shared or next((p for p in base.iterdir() if p.is_dir() and p not in layouts), None)
        old, new = reports(root, monkeypatch, directory)
        same(old, new)
        if directory is not None:
            victim = sorted(directory.rglob("*"))[-1]
            if victim.is_file():
                victim.write_bytes(victim.read_bytes() + b"x")
                old, new = reports(root, monkeypatch, directory)
                same(old, new)


def test_same_report_when_blobs_is_a_symlink(fixture_layout, tmp_path, monkeypatch) -> None:
    root = fixture_layout("multi")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(root / "blobs", elsewhere)
    (root / "blobs").symlink_to(elsewhere)
    old, new = reports(root, monkeypatch)
    same(old, new)
    assert old.problems


def test_same_report_for_big_blobs(tmp_path, generate_module, monkeypatch) -> None:
    w = generate_module.LayoutWriter(tmp_path / "lay")
    big = [os.urandom(300_000) + b"%d" % i for i in range(5)]
    w.add_entry(w.image(big), "big")
    w.finish()
    path = sorted((tmp_path / "lay" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)[-1]
    data = bytearray(path.read_bytes())
    data[200_000] ^= 1
    path.write_bytes(bytes(data))
    old, new = reports(tmp_path / "lay", monkeypatch)
    same(old, new)
    assert [p.kind for p in old.problems] == ["digest"]


def test_a_manifest_referenced_again_with_another_media_type(tmp_path, generate_module, monkeypatch) -> None:
    """First as Docker schema1 (no schema of ours), then as an OCI manifest: the second
    reference makes it schema-checked, though the walk keeps no parsed manifest."""
    from ocilayout.mediatypes import DOCKER_SCHEMA1, OCI_MANIFEST

    w = generate_module.LayoutWriter(tmp_path / "lay")
    layer = w.layer(b"a layer", generate_module.OCI_LAYER)
    config = w.json_blob({"architecture": "amd64", "os": "linux"}, generate_module.OCI_CONFIG)
    manifest = w.json_blob({"config": config, "layers": [layer], "mediaType": OCI_MANIFEST}, OCI_MANIFEST)
    w.add_entry({**manifest, "mediaType": DOCKER_SCHEMA1}, "first")  # no schemaVersion: invalid as OCI
    w.add_entry(w.index([manifest]), "second")
    w.finish()
    old, new = reports(tmp_path / "lay", monkeypatch)
    same(old, new)
    assert "schema" in [p.kind for p in old.problems]
