"""Crash trials, bounded for CI: real `ocilayout rm|gc|tag|untag` processes SIGKILLed at
random instants, each followed by the invariant checks and a `gc --grace 0` back to minimal.

The full run (>= 200 trials on a layout of several thousand images) is
`bench/crash_trials.py`; its measured results are in docs/reliability.md. Here:
OCILAYOUT_TRIALS trials (default 7, one per command kind) on OCILAYOUT_CRASH_IMAGES images
(default 300).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import crash_trials  # noqa: E402
import reliability_common as rc  # noqa: E402

from ocilayout.transaction import CRASH_ENV  # noqa: E402

TRIALS = int(os.environ.get("OCILAYOUT_TRIALS", "7"))
IMAGES = int(os.environ.get("OCILAYOUT_CRASH_IMAGES", "300"))


@pytest.fixture
def scratch(tmp_path: Path):
    """A private directory on tmpfs when there is one (see rc.scratch_root), else tmp_path."""
    import shutil
    import tempfile

    root = rc.scratch_root()
    path = Path(tempfile.mkdtemp(prefix="ocilayout-crash-ci-", dir=root)) if root != Path(tempfile.gettempdir()) else tmp_path
    yield path
    if path != tmp_path:
        shutil.rmtree(path, ignore_errors=True)


def test_random_sigkill_trials(scratch: Path) -> None:
    lines: list[str] = []
    summary = crash_trials.run_trials(TRIALS, IMAGES, seed=11, work=scratch, per_kind=1, log=lines.append)
    assert summary.trials == TRIALS
    assert summary.failures == 0, "\n".join(lines)


@pytest.mark.parametrize("point", ["after-index-write", "after-first-blob-delete"])
def test_gc_killed_at_named_points_then_gc_again_is_minimal(tmp_path: Path, point: str) -> None:
    """The deterministic counterpart for gc: a SIGKILL at each named point of the write path."""
    root = tmp_path / "lay"
    rc.generate.make_bench_layout(root, 60, seed=3)
    rc.make_orphans(root)
    before = rc.blob_files(root)[0]
    result = subprocess.run(
        rc.ocilayout_argv("gc", root, "--grace", "0"), capture_output=True, text=True, env=rc.cli_env({CRASH_ENV: point})
    )
    if point == "after-index-write":
        # gc never rewrites index.json, so this point is never reached: gc runs to the end.
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == -9, result.stderr
        after = rc.blob_files(root)[0]
        assert len(before - after) == 1
    problems, walk, _ = rc.layout_problems(root)
    assert problems == []
    follow = rc.run_cli("gc", root, "--grace", "0")
    assert follow.returncode == 0, follow.stderr
    assert rc.minimal_problems(root) == []


@pytest.mark.parametrize("command", [["tag", "img-000001", "fresh"], ["untag", "img-000002"]])
def test_tag_untag_killed_after_index_write(tmp_path: Path, command: list[str]) -> None:
    root = tmp_path / "lay"
    rc.generate.make_bench_layout(root, 30, seed=4)
    verb, *rest = command
    result = subprocess.run(
        rc.ocilayout_argv(verb, root, *rest), capture_output=True, text=True,
        env=rc.cli_env({CRASH_ENV: "after-index-write"}),
    )
    assert result.returncode == -9
    names = rc.names_of(root)
    if verb == "tag":
        assert names["fresh"] == names["img-000001"]
    else:
        assert "img-000002" not in names
    assert rc.layout_problems(root)[0] == []
    assert rc.temp_files(root) == []


def test_state_left_by_a_kill_while_the_temp_index_is_written(tmp_path: Path) -> None:
    """The random kills rarely land in the microseconds a temporary index.json exists, so the
    state such a kill leaves is built by hand: the old index.json plus a half-written
    `.ocilayout-tmp-index.json.*`. Nothing takes the temp file for data; the next change
    works; gc --grace 0 removes it once it is older than the grace period (0 here)."""
    root = tmp_path / "lay"
    rc.generate.make_bench_layout(root, 20, seed=5)
    original = (root / "index.json").read_bytes()
    temp = root / ".ocilayout-tmp-index.json.k1ll3d"
    temp.write_bytes(original[: len(original) // 2])
    assert rc.run_cli("ls", root, "-q").returncode == 0
    verify = rc.run_cli("verify", root)  # the bench layout has unused base layers: "unreachable" only
    assert {line.split(":")[0] for line in verify.stdout.splitlines()} <= {"unreachable"}, verify.stdout
    assert rc.run_cli("rm", root, "img-000004").returncode == 0
    assert temp.exists()  # rm leaves other files alone
    follow = rc.run_cli("gc", root, "--grace", "0")
    assert follow.returncode == 0, follow.stderr
    assert not temp.exists()
    assert rc.minimal_problems(root) == []
