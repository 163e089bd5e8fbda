"""Concurrency, bounded for CI: 4 real `ocilayout` processes mixing rm/tag/untag/gc on one
layout, and a lock-ignoring foreign writer beside `ocilayout gc`.

Full runs: `bench/concurrency_trials.py` (results in docs/reliability.md). Here the number of
rounds per worker is OCILAYOUT_CONC_ROUNDS (default 5).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import concurrency_trials  # noqa: E402
import reliability_common as rc  # noqa: E402

from ocilayout import Layout  # noqa: E402
from ocilayout import transaction  # noqa: E402

ROUNDS = int(os.environ.get("OCILAYOUT_CONC_ROUNDS", "5"))


def test_four_processes_mixing_rm_tag_untag_gc(tmp_path: Path) -> None:
    result = concurrency_trials.mixed_trial(tmp_path / "lay", images=80, rounds=ROUNDS, seed=5)
    assert result.problems == [], result.problems
    assert sum(result.commands.values()) == 4 * ROUNDS
    assert set(result.exit_codes) <= {0, 6}


@pytest.mark.parametrize("mode", ["rename", "inplace"])
def test_foreign_writer_beside_gc_with_default_grace_loses_nothing(tmp_path: Path, mode: str) -> None:
    result = concurrency_trials.foreign_trial(
        tmp_path / "lay", images=60, count=12, mode=mode, grace="1h", backdate=False, against="gc", seed=2, gap=0.1
    )
    assert result.problems == []
    assert result.runs >= 1
    assert (result.lost_entries, result.lost_blobs, result.missing_reachable) == (0, 0, 0)
    # gc never writes index.json; an in-place writer may let gc read half a file: exit 5, nothing done
    assert set(result.exit_codes) <= ({0} if mode == "rename" else {0, 5})


def _orphan_image(writer_root: Path, tag: str) -> dict:
    """Write an image's blobs (as a foreign tool would) two hours in the past; return its descriptor."""
    w = rc.generate.LayoutWriter(writer_root)
    manifest = w.image([f"foreign layer {tag}".encode()])
    old = time.time() - 7200
    for path in (writer_root / "blobs" / "sha256").iterdir():
        os.utime(path, (old, old))
    return manifest


def test_gc_spares_blobs_a_foreign_writer_indexes_while_gc_plans(tmp_path: Path, monkeypatch) -> None:
    """Deterministic: the foreign index rewrite lands between gc's plan and its deletions.

    Even with --grace 0 and old mtimes, the re-read of index.json before deleting keeps the
    blobs the new entry reaches; the other orphans still go."""
    root = tmp_path / "lay"
    rc.generate.make_bench_layout(root, 20, seed=1)
    rc.make_orphans(root)
    foreign = _orphan_image(root, "x")
    real_commit = transaction.Transaction.commit

    def commit_after_foreign_write(self, *args, **kwargs):
        index = json.loads((root / "index.json").read_bytes())
        index["manifests"].append({**foreign, "annotations": {rc.REF_NAME: "foreign"}})
        (root / "index.json").write_text(json.dumps(index))
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(transaction.Transaction, "commit", commit_after_foreign_write)
    report = Layout.open(root).gc(grace=0)
    assert report.blobs_removed > 0
    assert len(report.kept_for_foreign_writer) == 3  # manifest, config, layer of the foreign image
    assert rc.independent_walk(root).missing == set()
    assert "foreign" in rc.names_of(root)


def test_rm_spares_blobs_when_a_foreign_writer_restores_the_removed_entry(tmp_path: Path, monkeypatch) -> None:
    """A lock-ignoring writer that rewrote index.json from an older read puts back an entry rm
    just removed: the blobs it reaches must stay."""
    root = tmp_path / "lay"
    rc.generate.make_bench_layout(root, 20, seed=1)
    stale = (root / "index.json").read_bytes()
    real_commit = transaction.Transaction.commit

    def commit_then_stale_rewrite(self, new_entries=None, blobs=(), files=(), **more):
        real_write = self.store.write_index

        def write_then_clobber(data: bytes) -> None:
            real_write(data)
            (root / "index.json").write_bytes(stale)  # the foreign writer's lost update

        monkeypatch.setattr(self.store, "write_index", write_then_clobber)
        return real_commit(self, new_entries, blobs, files, **more)

    monkeypatch.setattr(transaction.Transaction, "commit", commit_then_stale_rewrite)
    report = Layout.open(root).delete(["img-000003"])
    assert report.blobs_deleted == 0
    assert "img-000003" in rc.names_of(root)
    assert rc.independent_walk(root).missing == set()
