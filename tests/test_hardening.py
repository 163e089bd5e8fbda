"""Bad input gets one clear line and its exit code; machines get JSON errors; nothing outside
what the user asked changes (issue 10)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import cli_command

from ocilayout import Layout, UsageError
from ocilayout.cli import cli
from ocilayout.lock import layout_lock


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes (the lock file, which any change creates, left out)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".ocilayout.lock"
    }


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference", ["x" * 100_000, "app\nerror: forged line", "tab\there\x1b[31mred", "\udfffsurrogate"]
)
def test_a_hostile_reference_is_one_short_line(fixture_layout, reference) -> None:
    root = fixture_layout("multi")
    before = snapshot(root)
    result = invoke("rm", root, reference)
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert len(lines[0]) <= 420 and "\x1b" not in lines[0]
    assert snapshot(root) == before


# -- options and filters --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_lock_timeout_must_be_finite(fixture_layout, value) -> None:
    root = fixture_layout("multi")
    proc = subprocess.run(cli_command("rm", root, "app1", "--lock-timeout", value), capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and error_lines(proc.stderr), proc.stderr
    with pytest.raises(UsageError):
        Layout.open(root).delete(["app1"], lock_timeout=float(value))
    assert "app1" in {r.name for r in Layout.open(root).list().rows}


@pytest.mark.parametrize("spec", ["id=", "id=sha256:", "id= ", "reference=", "label=", "before=", "id=zz"])
def test_a_filter_value_that_can_only_be_a_slip_is_refused(fixture_layout, spec) -> None:
    root = fixture_layout("multi")
    before = snapshot(root)
    result = invoke("rm", root, "--filter", spec)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda layout: layout.delete("ab"),
        lambda layout: layout.delete(["app1"], filters="id=1234"),
        lambda layout: layout.untag("re"),
        lambda layout: Layout.gc_shared(layout.path / "blobs", str(layout.path)),
    ],
    ids=["delete", "filters", "untag", "gc_shared"],
)
def test_library_refuses_a_bare_string_for_several_values(fixture_layout, call) -> None:
    root = fixture_layout("multi")
    before = snapshot(root)
    with pytest.raises(TypeError, match="sequence"):
        call(Layout.open(root))
    assert snapshot(root) == before


# -- machines ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, code, kind",
    [
        (["rm", "{root}", "nope", "--format", "json"], 3, "not-found"),
        (["inspect", "{root}", "nope", "--format", "json"], 3, "not-found"),
        (["ls", "{root}/missing", "--format", "json"], 3, "not-found"),
        (["rm", "{root}", "--filter", "id=", "--format", "json"], 2, "usage"),
        (["gc", "{root}", "--grace", "soon", "--format=json"], 2, "usage"),
        (["rm", "{root}", "sha256:{digest}", "--format", "json"], 4, "conflict"),
    ],
)
def test_json_format_failures_print_an_error_document(fixture_layout, args, code, kind) -> None:
    root = fixture_layout("three-names")
    digest = Layout.open(root).list().rows[0].digest.split(":")[1]
    argv = [a.format(root=root, digest=digest) for a in args]
    proc = subprocess.run(cli_command(*argv), capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    error = json.loads(proc.stdout)["error"]  # rm: beside its report, which lists the failures
    assert error["exit_code"] == code and error["kind"] == kind and error["message"]
    assert "Traceback" not in proc.stderr and len(error_lines(proc.stderr)) == 1


def test_a_conflict_prints_no_reclaimed_line(fixture_layout) -> None:
    root = fixture_layout("three-names")
    digest = Layout.open(root).list().rows[0].digest
    result = invoke("rm", root, digest)
    assert result.exit_code == 4
    assert "reclaim" not in result.stdout.lower() and "reclaim" not in result.stderr.lower()


def test_verify_json_is_an_object_with_a_summary(fixture_layout) -> None:
    result = invoke("verify", fixture_layout("multi"), "--format", "json")
    document = json.loads(result.stdout)
    assert result.exit_code == 0 and document["ok"] is True and document["problems"] == []
    assert document["counts"]["reachable"] == document["counts"]["blobs_checked"] > 0


# -- depth ------------------------------------------------------------------------------------------


def test_inspect_of_a_very_deep_manifest_is_no_traceback(fixture_layout, generate_module) -> None:
    root = fixture_layout("single")
    index = json.loads((root / "index.json").read_bytes())
    entry = index["manifests"][0]
    path = root / "blobs" / "sha256" / entry["digest"].split(":")[1]
    manifest = json.loads(path.read_bytes())
    deep: object = "bottom"
    for _ in range(600):
        deep = {"d": deep}
    manifest["annotations"] = {"x": "y"}
    text = json.dumps(manifest)[:-1] + ', "x-deep": ' + json.dumps(deep) + "}"
    import hashlib

    data = text.encode()
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    entry.update(digest=f"sha256:{digest}", size=len(data))
    (root / "index.json").write_text(json.dumps(index))
    proc = subprocess.run(cli_command("inspect", root), capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    assert proc.returncode in (0, 5), proc.stderr
    if proc.returncode:
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ")


# -- signals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_a_signal_at_any_moment_is_one_line_and_its_exit_code(fixture_layout, signum, code, word, delay) -> None:
    """While starting up (0.05 s: imports) or waiting for the lock, nothing half-written."""
    root = fixture_layout("multi")
    before = snapshot(root)
    with layout_lock(root, 1):
        proc = subprocess.Popen(
            cli_command("rm", root, "app1", "--lock-timeout", "30"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        time.sleep(delay)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, (proc.returncode, stderr)
    assert stderr == f"error: {word}\n", stderr
    assert snapshot(root) == before


# -- podman parity (issue 11): rm --all, --ignore, a child digest ----------------------------------


def _blob_files(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs" / "sha256").iterdir()}


def test_rm_all_removes_every_image_and_every_blob_they_used(fixture_layout) -> None:
    root = fixture_layout("three-names")  # one image under several names: no --force needed
    other = fixture_layout("multi")
    for layout_root in (root, other):
        result = invoke("rm", layout_root, "--all")
        assert result.exit_code == 0, result.stderr
        assert json.loads((layout_root / "index.json").read_bytes())["manifests"] == []
        assert _blob_files(layout_root) == set(), "every blob was used by some image"


def test_rm_all_dry_run_changes_nothing(fixture_layout) -> None:
    root = fixture_layout("multi")
    before = snapshot(root)
    report = Layout.open(root).delete(remove_all=True, dry_run=True)
    assert report.images and all(i.deleted for i in report.images)
    assert snapshot(root) == before


def test_rm_ignore_makes_unknown_references_no_error(fixture_layout) -> None:
    root = fixture_layout("multi")
    result = invoke("rm", root, "nope", "app2", "--ignore")
    assert result.exit_code == 0, result.stderr
    assert "app2" not in {r.name for r in Layout.open(root).list().rows}
    assert invoke("rm", root, "nope", "--ignore").exit_code == 0
    assert invoke("rm", root, "nope").exit_code == 3
    # --ignore covers only "not found": other failures still count (a conflict here)
    named = fixture_layout("three-names")
    assert invoke("rm", named, "--ignore", Layout.open(named).list().rows[0].digest).exit_code == 4


def test_rm_of_a_manifest_inside_an_index_names_the_index_and_platform(fixture_layout) -> None:
    root = fixture_layout("multiarch")
    before = snapshot(root)
    tree = Layout.open(root).tree()
    index = tree.roots[0]
    child = index.children[0]
    for reference in (child.digest, child.digest.split(":")[1][:12]):
        result = invoke("rm", root, reference)
        assert result.exit_code == 3
        [line] = error_lines(result.stderr)
        assert index.digest in line and "--platform" in line and child.platform in line, line
    assert snapshot(root) == before


def test_untag_partial_failure_json_has_an_error_member(fixture_layout) -> None:
    root = fixture_layout("multi")
    argv = cli_command("untag", root, "app2", "nope", "--format", "json")
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 1
    document = json.loads(proc.stdout)
    assert document["error"]["exit_code"] == 1 and "nope" in document["error"]["message"]
    assert document["untagged"] == ["app2"]


def test_names_from_the_index_are_printed_escaped(fixture_layout) -> None:
    root = fixture_layout("multi")
    forged = "x\n\x1b[2Jerror: forged"

    def name_it() -> None:  # written by another tool: tag refuses such a name
        index = json.loads((root / "index.json").read_bytes())
        index["manifests"][0].setdefault("annotations", {})["org.opencontainers.image.ref.name"] = forged
        (root / "index.json").write_text(json.dumps(index))

    name_it()
    result = invoke("untag", root, forged)
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1 and "\x1b" not in result.stdout
    name_it()
    result = invoke("rm", root, forged)
    assert all("\x1b" not in line and not line.startswith("error") for line in result.stdout.splitlines())


def test_a_signal_under_json_prints_the_error_document(fixture_layout) -> None:
    root = fixture_layout("multi")
    with layout_lock(root, 1):
        proc = subprocess.Popen(
            cli_command("rm", root, "app1", "--lock-timeout", "30", "--format", "json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143 and stderr == "error: terminated\n"
    assert json.loads(stdout)["error"] == {"message": "terminated", "exit_code": 143, "kind": "terminated"}


def test_rm_all_with_references_is_a_usage_error(fixture_layout) -> None:
    root = fixture_layout("multi")
    before = snapshot(root)
    proc = subprocess.run(cli_command("rm", root, "--all", "nosuch"), capture_output=True, text=True)
    assert proc.returncode == 2 and snapshot(root) == before


def test_no_child_hint_for_a_name_with_a_hex_tag(fixture_layout) -> None:
    root = fixture_layout("multiarch")
    child = Layout.open(root).tree().roots[0].children[0].digest.split(":")[1]
    for reference in (f"myapp:{child[:4]}", f"sha512:{child[:4]}"):
        result = invoke("rm", root, reference)
        assert result.exit_code == 3 and "inside the index" not in result.stderr
    nested = fixture_layout("nested3")
    deep = Layout.open(nested).tree().roots[0]
    while deep.children and deep.kind == "index":
        deep = deep.children[0]
    result = invoke("rm", nested, deep.digest)
    assert result.exit_code == 3 and "inside the index" in result.stderr


def test_child_hint_names_the_index_listed_first_under_a_layer_type(tmp_path, generate_module) -> None:
    """The index is judged by the entry it is walked by (not its first, layer-typed one): rm of
    one of its platform manifests still says which index holds it."""
    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    child = w.image([b"arm layer"], labels={"n": "arm"})
    index = w.index([{**child, "platform": {"os": "linux", "architecture": "arm64"}}])
    w.add_entry({**index, "mediaType": generate_module.OCI_LAYER})
    w.add_entry(index, name="multi")
    w.finish()
    result = invoke("rm", root, child["digest"])
    assert result.exit_code == 3 and f"inside the index {index['digest']}" in result.stderr


def test_a_dangling_parent_listed_first_under_a_layer_type_is_still_pruned(tmp_path, generate_module) -> None:
    """moby's parent chain reads each image by the entry it is walked by: an unnamed parent whose
    first entry is layer-typed (never opened) still has its layers, so rm --prune of its only
    child takes it, both entries, as it does when the entries come the other way round."""
    outcomes = []
    for layer_typed_first in (True, False):
        root = tmp_path / f"lay-{layer_typed_first}"
        w = generate_module.LayoutWriter(root)
        base = w.layer(b"base layer" * 9)
        parent = w.image([base], labels={"n": "parent"})
        child = w.image([base, b"top layer" * 7], labels={"n": "child"})
        entries = [{**parent, "mediaType": generate_module.OCI_LAYER}, parent]
        for descriptor in entries if layer_typed_first else entries[::-1]:
            w.add_entry(descriptor)
        w.add_entry(child, name="child")
        w.finish()
        report = Layout.open(root).delete(["child"], prune=True)
        outcomes.append(sorted((i.id, i.reason) for i in report.images if i.deleted))
        assert not Layout.open(root).index.entries, "both entries of the parent went"
    assert outcomes[0] == outcomes[1] == sorted(
        [(child["digest"], "requested"), (parent["digest"], f"parent of {child['digest']}")]
    )
