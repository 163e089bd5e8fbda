"""`rm`, `tag`, `untag` through click's runner and a real process: output, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from ocilayout.cli import cli


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def names(root: Path) -> list[str | None]:
    index = json.loads((root / "index.json").read_text())
    return sorted(((m.get("annotations") or {}).get("org.opencontainers.image.ref.name") or "") for m in index["manifests"])


def test_rm_prints_untagged_deleted_and_total(fixture_layout: Callable[[str], Path]) -> None:
    root = fixture_layout("multi")
    code, out, err = invoke("rm", root, "app1", "app2")
    assert code == 0, err
    assert "Untagged: app1" in out and "Untagged: app2" in out
    assert out.count("Deleted: sha256:") == 1  # app1 keeps its alias
    assert "Total reclaimed space:" in out


def test_rm_json_report(fixture_layout: Callable[[str], Path]) -> None:
    root = fixture_layout("multi")
    code, out, _ = invoke("rm", root, "tool", "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert report["images"][0]["deleted"] is True and report["images"][0]["untagged"] == ["tool"]
    assert report["blobs_deleted"] == 3 and report["bytes_freed"] > 0 and report["dry_run"] is False


def test_rm_dry_run_changes_nothing(fixture_layout: Callable[[str], Path]) -> None:
    root = fixture_layout("multi")
    before = (root / "index.json").read_bytes()
    code, out, _ = invoke("rm", root, "tool", "--dry-run")
    assert code == 0 and "Would delete: sha256:" in out and "Would reclaim" in out
    assert (root / "index.json").read_bytes() == before


def test_rm_quiet_prints_deleted_ids_only(fixture_layout: Callable[[str], Path]) -> None:
    root = fixture_layout("multi")
    code, out, _ = invoke("rm", root, "tool", "app1", "-q")
    assert code == 0 and out.split() == [l for l in out.split() if l.startswith("sha256:")] and len(out.split()) == 1


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["rm", "{root}", "nope"], 3, "no image named 'nope'"),
        (["rm", "{root}", "{app1_digest}"], 4, "--force"),
        (["rm", "{root}"], 2, "name at least one reference"),
        (["rm", "{root}", "--filter", "colour=red"], 2, "invalid filter"),
        (["tag", "{root}", "nope", "x"], 3, "no image named"),
        (["tag", "{root}", "tool", "Bad Name"], 2, "invalid name"),
        (["untag", "{root}", "nope"], 3, "no such name"),
        (["tag", "{root}", "tool", "x", "--platform", "linux"], 2, "invalid platform"),
    ],
)
def test_error_exit_codes_in_a_real_process(
    fixture_layout: Callable[[str], Path], run_cli: Callable, args: list[str], code: int, needle: str
) -> None:
    root = fixture_layout("multi")
    app1 = next(
        m["digest"]
        for m in json.loads((root / "index.json").read_text())["manifests"]
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == "app1"
    )
    before = (root / "index.json").read_bytes()
    result = run_cli(*[a.format(root=root, app1_digest=app1) for a in args])
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error:") for line in lines) and needle in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "index.json").read_bytes() == before


def test_ambiguous_prefix_is_usage_error_listing_candidates(fixture_layout: Callable[[str], Path], run_cli: Callable) -> None:
    root = fixture_layout("single")
    index = json.loads((root / "index.json").read_text())
    entry = index["manifests"][0]
    twin = dict(entry, digest="sha256:" + entry["digest"][7:11] + "0" * 60)
    index["manifests"].append(twin)
    (root / "index.json").write_text(json.dumps(index))
    result = run_cli("rm", root, entry["digest"][7:11])
    assert result.returncode == 2
    assert entry["digest"] in result.stderr and twin["digest"] in result.stderr


def test_corrupt_index_exit_5_untouched(fixture_layout: Callable[[str], Path], run_cli: Callable) -> None:
    root = fixture_layout("broken/bad-json")
    before = (root / "index.json").read_bytes()
    for args in (["rm", root, "latest"], ["tag", root, "latest", "x"], ["untag", root, "latest"]):
        result = run_cli(*args)
        assert result.returncode == 5 and "index.json" in result.stderr and len(result.stderr.splitlines()) == 1
    assert (root / "index.json").read_bytes() == before


def test_tag_and_untag_round_trip(fixture_layout: Callable[[str], Path]) -> None:
    root = fixture_layout("multi")
    code, out, _ = invoke("tag", root, "tool", "release")
    assert code == 0 and out.startswith("Tagged: release -> sha256:")
    code, out, _ = invoke("tag", root, "base", "release")
    assert code == 0 and "moved from sha256:" in out
    code, out, _ = invoke("untag", root, "release", "--format", "json")
    assert code == 0 and json.loads(out)["untagged"] == ["release"]
    assert "release" not in names(root)


def test_untag_partial_not_found_is_exit_1(fixture_layout: Callable[[str], Path]) -> None:
    root = fixture_layout("multi")
    code, out, err = invoke("untag", root, "tool", "nope")
    assert code == 1 and "Untagged: tool" in out and "no such name: nope" in err


def test_partial_batch_failure_is_exit_1(fixture_layout: Callable[[str], Path], run_cli: Callable) -> None:
    root = fixture_layout("multi")
    result = run_cli("rm", root, "tool", "nope")
    assert result.returncode == 1
    assert "Deleted:" in result.stdout and "error: nope:" in result.stderr


def test_shared_blobs_option_before_or_after_command(fixture_layout: Callable[[str], Path]) -> None:
    shared = fixture_layout("shared")
    blobs_before = sorted(p.name for p in (shared / "blobs" / "sha256").iterdir())
    code, _, err = invoke("--shared-blobs", shared / "blobs", "rm", shared / "a", "a1")
    assert code == 0, err
    code, _, err = invoke("rm", shared / "b", "b1", "--shared-blobs", shared / "blobs")
    assert code == 0, err
    assert sorted(p.name for p in (shared / "blobs" / "sha256").iterdir()) == blobs_before
