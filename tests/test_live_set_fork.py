"""The live set computed on two cores (a forked child walks half the roots) equals the live
set computed in one process — reached digests, sizes and doubt — and a child that fails in
any way changes nothing: the parent walks that half itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ocilayout import Layout
from ocilayout import graph as graph_module
from ocilayout.graph import Graph, live_set
from ocilayout.storage import LayoutStore

if not hasattr(os, "fork"):  # pragma: no cover - Linux CI always has it
    pytest.skip("no os.fork on this platform", allow_module_level=True)


def _roots(root: Path):
    store = LayoutStore(root)
    return store, [e.descriptor for e in store.read_index().entries]


def _both(root: Path, monkeypatch, *, allow_sparse: bool = False):
    """(sequential, forked) live sets of every entry, each from a fresh graph."""
    store, roots = _roots(root)
    monkeypatch.setenv(graph_module.NO_FORK_ENV, "1")
    sequential = live_set(Graph(store), roots, allow_sparse=allow_sparse)
    monkeypatch.delenv(graph_module.NO_FORK_ENV)
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
    forks = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting_fork)
    forked = live_set(Graph(store), roots, allow_sparse=allow_sparse)
    assert forks, "the forked path was not taken"
    return sequential, forked


def _same(a, b) -> None:
    assert a.reached == b.reached
    assert sorted((d.digest, d.reason) for d in a.doubt) == sorted((d.digest, d.reason) for d in b.doubt)
    assert sorted(a.missing) == sorted(b.missing)


@pytest.fixture(scope="module")
def bench_layout(tmp_path_factory, generate_module) -> Path:
    root = tmp_path_factory.mktemp("fork") / "lay"
    generate_module.make_bench_layout(root, 60, seed=3)
    return root


def test_forked_live_set_equals_sequential(bench_layout, monkeypatch) -> None:
    sequential, forked = _both(bench_layout, monkeypatch)
    _same(sequential, forked)
    assert forked.certain and len(forked) > 60


def _entry_blob(root: Path, position: int) -> Path:
    digest = json.loads((root / "index.json").read_bytes())["manifests"][position]["digest"]
    return root / "blobs" / "sha256" / digest.split(":")[1]


@pytest.mark.parametrize("position", [0, 59], ids=["first-half", "second-half"])
def test_doubt_found_by_either_process(bench_layout, tmp_path, monkeypatch, position) -> None:
    """An unreadable manifest in the parent's half or in the child's half is doubt either way."""
    import shutil

    root = tmp_path / "lay"
    shutil.copytree(bench_layout, root)
    blob = _entry_blob(root, position)
    blob.unlink()
    blob.write_bytes(b'{"layers": [], "layers": []}')  # duplicate key: unreadable
    sequential, forked = _both(root, monkeypatch)
    _same(sequential, forked)
    assert [d.reason for d in forked.doubt] == ["unreadable"]


def test_missing_child_manifest_is_doubt_in_the_child(bench_layout, tmp_path, monkeypatch) -> None:
    import shutil

    root = tmp_path / "lay"
    shutil.copytree(bench_layout, root)
    index = json.loads(_entry_blob(root, 50).read_bytes())  # every 10th entry is an index
    child = index["manifests"][1]["digest"]
    (root / "blobs" / "sha256" / child.split(":")[1]).unlink()
    sequential, forked = _both(root, monkeypatch)
    _same(sequential, forked)
    assert [(d.digest, d.reason) for d in forked.doubt] == [(child, "missing")]
    sequential, forked = _both(root, monkeypatch, allow_sparse=True)
    _same(sequential, forked)
    assert forked.certain and forked.missing == [child]


@pytest.mark.parametrize("failure", ["raises", "exits", "garbage"])
def test_a_failing_child_changes_nothing(bench_layout, monkeypatch, failure) -> None:
    store, roots = _roots(bench_layout)
    monkeypatch.setenv(graph_module.NO_FORK_ENV, "1")
    expected = live_set(Graph(store), roots)
    monkeypatch.delenv(graph_module.NO_FORK_ENV)
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)

    parent, real = os.getpid(), graph_module._encode

    def broken(live, warnings, *learnt):
        if os.getpid() == parent:  # only the child fails; this process may redo its half
            return real(live, warnings, *learnt)
        if failure == "raises":
            raise RuntimeError("child failed")
        if failure == "exits":
            os._exit(3)
        return b"not a live set"

    monkeypatch.setattr(graph_module, "_encode", broken)
    _same(live_set(Graph(store), roots), expected)


def test_rm_and_gc_with_the_fork_match_the_sequential_run(bench_layout, tmp_path, monkeypatch) -> None:
    """End to end: the same blobs remain after rm + gc whichever way the live set was computed."""
    import shutil

    results = []
    for fork in (False, True):
        root = tmp_path / f"lay-{fork}"
        shutil.copytree(bench_layout, root)
        if fork:
            monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
        else:
            monkeypatch.setenv(graph_module.NO_FORK_ENV, "1")
        layout = Layout.open(root)
        report = layout.delete(["img-000007", "img-000020"])
        assert report.blobs_deleted > 0
        layout.gc(grace=0)
        results.append(sorted(p.name for p in (root / "blobs" / "sha256").iterdir()))
        monkeypatch.delenv(graph_module.NO_FORK_ENV, raising=False)
    assert results[0] == results[1]


def test_a_failing_walk_here_leaks_no_descriptor_and_no_child(bench_layout, tmp_path, monkeypatch) -> None:
    """Strict mode raises in this process's half: the pipe is closed and the child reaped."""
    import shutil

    from ocilayout.errors import CorruptLayoutError

    root = tmp_path / "lay"
    shutil.copytree(bench_layout, root)
    index = json.loads(_entry_blob(root, 0).read_bytes())  # entry 0 is an index: first half
    (root / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).unlink()
    store, roots = _roots(root)
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(CorruptLayoutError):
            live_set(Graph(store, strict=True), roots)
    assert len(os.listdir("/proc/self/fd")) == before
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left behind
