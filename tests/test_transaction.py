"""The write path under real processes: crash order, the layout lock, atomic index writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocilayout import Layout
from ocilayout.graph import Graph
from ocilayout.lock import LOCK_FILE, layout_lock
from ocilayout.transaction import CRASH_ENV

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "fixtures"))
import generate  # noqa: E402


def ocilayout(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocilayout", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def blob_set(root: Path) -> set[str]:
    return {f"{p.parent.name}:{p.name}" for p in (root / "blobs").glob("*/*")}


def reachable(root: Path) -> set[str]:
    layout = Layout.open(root)
    return {str(d) for d in Graph(layout.store).reach(e.descriptor for e in layout.index.entries).reached}


def entry_names(root: Path) -> set[str | None]:
    index = json.loads((root / "index.json").read_text())
    return {(m.get("annotations") or {}).get("org.opencontainers.image.ref.name") for m in index["manifests"]}


@pytest.mark.parametrize("point", ["after-index-write", "after-first-blob-delete"])
def test_crash_between_index_write_and_blob_deletion_keeps_invariant(tmp_path: Path, point: str) -> None:
    root = generate.build_fixture("multi", tmp_path / "multi")
    before = blob_set(root)
    result = ocilayout("rm", str(root), "app2", "tool", env={CRASH_ENV: point})
    assert result.returncode == -9, result.stderr  # SIGKILLed at the named point
    assert entry_names(root) == {"base", "app1", "app1-alias", None}
    assert reachable(root) <= blob_set(root), "index.json reaches a deleted blob"
    orphans = blob_set(root) - reachable(root)
    # app2 (manifest, config, L4) and tool (manifest, config, L5) are orphans until gc
    if point == "after-index-write":
        assert blob_set(root) == before and len(orphans) == 6
    else:
        assert len(before - blob_set(root)) == 1 and len(orphans) == 5
    assert not [p for p in root.iterdir() if p.name.startswith(".ocilayout-tmp-")]


def test_crash_before_rename_leaves_old_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = generate.build_fixture("multi", tmp_path / "multi")
    original = (root / "index.json").read_bytes()

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    from ocilayout import OperationFailed

    with pytest.raises(OperationFailed, match="No space left"):
        Layout.open(root).delete(["tool"])
    assert (root / "index.json").read_bytes() == original
    assert not [p for p in root.iterdir() if p.name.startswith(".ocilayout-tmp-")]


def test_lock_timeout_is_exit_6(tmp_path: Path) -> None:
    root = generate.build_fixture("single", tmp_path / "single")
    with layout_lock(root):
        start = time.monotonic()
        result = ocilayout("rm", str(root), "latest", "--lock-timeout", "0.5")
        waited = time.monotonic() - start
    assert result.returncode == 6
    assert result.stderr.startswith("error:") and "locked" in result.stderr and len(result.stderr.splitlines()) == 1
    assert waited >= 0.5
    assert entry_names(root) == {"latest"}


def test_readers_take_no_lock(tmp_path: Path) -> None:
    root = generate.build_fixture("single", tmp_path / "single")
    with layout_lock(root):
        result = ocilayout("ls", str(root), "--format", "json")
    assert result.returncode == 0


def test_lock_is_released_when_holder_dies(tmp_path: Path) -> None:
    root = generate.build_fixture("multi", tmp_path / "multi")
    ocilayout("rm", str(root), "tool", env={CRASH_ENV: "after-index-write"})
    result = ocilayout("rm", str(root), "app2", "--lock-timeout", "1")
    assert result.returncode == 0, result.stderr
    assert (root / LOCK_FILE).exists()


def test_two_processes_deleting_different_images_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "big"
    generate.make_bench_layout(root, 300, seed=7)
    names = sorted(n for n in entry_names(root) if n)
    first, second = names[:40], names[40:80]
    procs = [
        subprocess.Popen([sys.executable, "-m", "ocilayout", "rm", str(root), *batch], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for batch in (first, second)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert entry_names(root) == set(names[80:])
    assert reachable(root) <= blob_set(root)
    # and a final gc-free check: nothing only the deleted images used is left behind
    others = reachable(root)
    leftovers = blob_set(root) - others
    assert not leftovers, f"{len(leftovers)} blobs of deleted images remain"


def test_foreign_writer_restoring_removed_entry_keeps_its_blobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock-ignoring writer puts back (from its older read) the entry we just removed."""
    root = generate.build_fixture("multi", tmp_path / "multi")
    original = (root / "index.json").read_bytes()
    from ocilayout.storage import LayoutStore

    real_write = LayoutStore.write_index

    def write_then_foreign_rewrite(self: LayoutStore, data: bytes) -> None:
        real_write(self, data)
        (root / "index.json").write_bytes(original)  # the foreign writer's lost update

    monkeypatch.setattr(LayoutStore, "write_index", write_then_foreign_rewrite)
    report = Layout.open(root).delete(["tool"])
    assert report.blobs_deleted == 0 and any("another writer" in w for w in report.warnings)
    assert reachable(root) <= blob_set(root)
