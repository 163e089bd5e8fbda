"""`ls`, `inspect`, `tree` through click's CliRunner and through real subprocesses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import FIXTURE_LAYOUTS, cli_command, run_cli_process
from ocilayout.cli import cli

HELLO = "sha256:33ac2360630538dd7ee271e0c327b679eb5dc61045e22b81cbc7edea01c6511e"
HELLO_LAYER = "sha256:f45bf6a44394b0dcc372d10e4ba749d5dfe7b76c4e9284a16ebfb9633c5db7bb"
NAMED = "sha256:6d127146daadea1e1368ae264929c1a47494ebfde61df1080a417f4b8d643800"
MULTI = "sha256:d5d6f2aeef7ebe134584c29daf08e5a3ee7da122f25c1cce9fc3fce0f5db1a43"
SPARSE_ABSENT = "sha256:496c0634db44777cfa200e6ed65aa010245cb59853b1f6d348f532d473ac1cb6"


def layout(name: str) -> str:
    path = FIXTURE_LAYOUTS / name
    if not path.is_dir():
        pytest.skip(f"fixture {name} absent")
    return str(path)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_one_error_line(stderr: str, *must_contain: str) -> None:
    lines = [line for line in stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for text in must_contain:
        assert text in lines[0], (text, stderr)


# -- CliRunner: output ----------------------------------------------------------------------


def test_ls_table() -> None:
    result = invoke("ls", layout("single"))
    assert result.exit_code == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "DIGEST", "KIND", "PLATFORMS", "SIZE", "CREATED"]
    assert row.split() == ["latest", HELLO[7:19], "image", "linux/amd64", "2.71kB", "2024-01-01T00:00:00Z"]
    assert result.stderr == ""


def test_ls_table_dangling_and_index() -> None:
    result = invoke("ls", layout("multi"))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1].startswith("<none>")
    result = invoke("ls", layout("multiarch"))
    assert "linux/amd64,linux/arm64/v8,linux/s390x" in result.stdout
    assert " index " in result.stdout


def test_ls_json() -> None:
    result = invoke("ls", layout("three-names"), "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["warnings"] == []
    assert sorted(i["name"] for i in data["images"]) == ["latest", "v1", "v2"]
    for image in data["images"]:
        assert image["digest"] == NAMED
        assert image["short_digest"] == NAMED[7:19]
        assert image["kind"] == "image"
        assert image["platforms"] == ["linux/amd64"]
        assert isinstance(image["size"], int) and image["size"] > 0
        assert image["created"] == "2024-01-02T00:00:00Z"


def test_ls_quiet_prints_unique_digests() -> None:
    result = invoke("ls", "-q", layout("three-names"))
    assert result.stdout.split() == [NAMED]


def test_ls_sparse_warns_on_stderr_only() -> None:
    result = invoke("ls", layout("sparse"))
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: ") and SPARSE_ABSENT in result.stderr
    assert "(1 missing)" in result.stdout
    quiet = invoke("ls", "-q", layout("sparse"))
    assert quiet.stderr == ""
    as_json = invoke("ls", "--format", "json", layout("sparse"))
    assert as_json.stderr == ""
    assert any(SPARSE_ABSENT in w for w in json.loads(as_json.stdout)["warnings"])


def test_ls_missing_layer_warns() -> None:
    result = invoke("ls", layout("broken/missing-blob"))
    assert result.exit_code == 0
    assert HELLO_LAYER in result.stderr and result.stderr.startswith("warning: ")
    assert "(1 missing)" in result.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_shared_blobs_option(where: str) -> None:
    shared = str(Path(layout("shared")) / "blobs")
    args = ["--shared-blobs", shared, "ls", layout("shared/a")] if where == "before" else [
        "ls", layout("shared/a"), "--shared-blobs", shared]
    result = invoke(*args)
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "linux/amd64" in result.stdout


def test_strict_makes_sparse_an_error() -> None:
    result = CliRunner().invoke(cli, ["ls", "--strict", layout("sparse")])
    assert result.exit_code == 5
    assert_one_error_line(result.stderr, SPARSE_ABSENT)


def test_inspect_json_and_table_are_the_same_document() -> None:
    for fmt in ("json", "table"):
        result = invoke("inspect", layout("single"), "latest", "--format", fmt)
        assert result.exit_code == 0
        data = json.loads(result.stdout)
        assert data["descriptor"]["digest"] == HELLO
        assert data["names"] == ["latest"]
        assert data["kind"] == "image"
        assert data["manifest"]["config"]["digest"].startswith("sha256:e257e5049aa4")
        assert data["config"]["os"] == "linux"


def test_inspect_platform() -> None:
    result = invoke("inspect", layout("multiarch"), "multi", "--platform", "linux/s390x")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["platform"] == "linux/s390x"
    assert data["config"]["architecture"] == "s390x"


def test_inspect_by_prefix_and_default() -> None:
    assert json.loads(invoke("inspect", layout("multi"), "9030").stdout)["names"] == ["tool"]
    assert json.loads(invoke("inspect", layout("single")).stdout)["descriptor"]["digest"] == HELLO


def test_tree_table() -> None:
    result = invoke("tree", layout("multiarch"))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("multi " + MULTI)
    assert sum("── manifest linux/" in line for line in lines) == 3
    assert sum("── layer " in line for line in lines) == 6
    assert sum("── config " in line for line in lines) == 3
    assert lines[-1].startswith("    └── ")


def test_tree_json() -> None:
    result = invoke("tree", layout("nested3"), "deep", "--format", "json")
    data = json.loads(result.stdout)
    [root] = data["roots"]
    depth = 0
    node = root
    while node["children"]:
        node = node["children"][0]
        depth += 1
    assert depth == 4 and node["role"] in ("config", "layer")
    assert data["warnings"] == []


def test_tree_marks_missing() -> None:
    result = invoke("tree", layout("broken/missing-blob"))
    assert result.exit_code == 0
    [line] = [line for line in result.stdout.splitlines() if HELLO_LAYER in line]
    assert "missing" in line


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and "0.1.0" in result.stdout


# -- CliRunner: --help on every command ---------------------------------------------------


@pytest.mark.parametrize("command", [None, *sorted(cli.commands)])
def test_help(command: str | None) -> None:
    for flag in ("--help", "-h"):
        args = [flag] if command is None else [command, flag]
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("Usage: ")
        if command is not None:
            assert command in result.stdout.splitlines()[0]
            assert cli.commands[command].help.split("\n")[0][:40] in " ".join(result.stdout.split())


def test_every_read_command_has_format_option() -> None:
    for name in ("ls", "inspect", "tree"):
        options = {opt for p in cli.commands[name].params for opt in getattr(p, "opts", [])}
        assert "--format" in options


# -- CliRunner: errors and exit codes ------------------------------------------------------


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["inspect", "single", "nope"], 3, "nope"),
        (["tree", "single", "nope"], 3, "nope"),
        (["inspect", "multi", "sha256:" + "0" * 64], 3, "sha256:" + "0" * 64),
        (["inspect", "multi"], 2, "5 images"),
        (["inspect", "multi", "ac67", "--platform", "linux/arm64"], 3, "linux/arm64"),
        (["inspect", "multiarch", "multi", "--platform", "linux"], 2, "os/arch"),
        (["inspect", "multiarch", "multi", "--platform", "windows/amd64"], 3, "windows/amd64"),
        (["ls", "broken/bad-json"], 5, "index.json"),
        (["ls", "broken/missing-oci-layout"], 5, "oci-layout"),
        (["ls", "broken/bad-version"], 5, "9.9.9"),
        (["tree", "broken/traversal-digest"], 5, "sha256:../../x"),
        (["inspect", "broken/traversal-digest"], 5, "sha256:../../x"),
    ],
)
def test_error_exit_codes(args: list[str], code: int, needle: str) -> None:
    args = [args[0], layout(args[1]), *args[2:]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert_one_error_line(result.stderr, needle)
    assert result.stdout == ""


def test_ambiguous_prefix_lists_candidates(tmp_path: Path, generate_module) -> None:
    # build images until two manifest digests share a 4-hex prefix
    w = generate_module.LayoutWriter(tmp_path / "amb")
    seen: dict[str, str] = {}
    i = 0
    while True:
        desc = w.image([b"layer %d" % i])
        prefix = desc["digest"][7:11]
        if prefix in seen:
            w.add_entry(desc, "one")
            break
        seen[prefix] = desc["digest"]
        w.add_entry(desc, f"img{i}")
        i += 1
    w.finish()
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "amb"), prefix])
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, seen[prefix], desc["digest"])


def test_missing_layout_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["ls", str(tmp_path / "nope")])
    assert result.exit_code == 3
    assert_one_error_line(result.stderr, str(tmp_path / "nope"))


def test_layout_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = CliRunner().invoke(cli, ["ls", str(tmp_path / "f")])
    assert result.exit_code == 5
    assert_one_error_line(result.stderr, str(tmp_path / "f"))


def test_debug_shows_traceback() -> None:
    result = CliRunner().invoke(cli, ["--debug", "ls", layout("broken/bad-json")])
    assert result.exit_code == 5
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")


# -- real subprocesses: console script and python -m ---------------------------------------


@pytest.fixture(params=["script", "module"])
def run(request):
    module = request.param == "module"
    return lambda *args, **kw: run_cli_process(*args, module=module, **kw)


def test_subprocess_ls_json(run) -> None:
    proc = run("ls", layout("multiarch"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    [image] = json.loads(proc.stdout)["images"]
    assert image["digest"] == MULTI and image["kind"] == "index"


def test_subprocess_ls_table(run) -> None:
    proc = run("ls", layout("single"))
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.splitlines()[1].startswith("latest")


def test_subprocess_inspect(run) -> None:
    proc = run("inspect", layout("docker"), "dlist", "--platform", "linux/arm64")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["descriptor"]["digest"].startswith("sha256:c79265ad51dd")


def test_subprocess_tree(run) -> None:
    proc = run("tree", layout("referrer-dangling"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["roots"]) == 3


@pytest.mark.parametrize("module", [False, True])
def test_subprocess_tree_text_in_c_locale(module: bool) -> None:
    proc = subprocess.run(
        cli_command("tree", layout("single"), module=module),
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"latest" in proc.stdout


@pytest.mark.parametrize(
    "args, code",
    [
        (["ls", "--format", "xml", "single"], 2),
        (["ls"], 2),
        (["ls", "--bogus", "single"], 2),
        (["no-such-command"], 2),
        (["inspect", "single", "a", "b"], 2),
        (["inspect", "single", "nope"], 3),
        (["ls", "broken/bad-json"], 5),
        (["tree", "broken/traversal-digest"], 5),
        (["inspect", "multiarch", "multi", "--platform", "x"], 2),
    ],
)
def test_subprocess_errors(run, args: list[str], code: int) -> None:
    args = [layout(a) if a in ("single", "broken/bad-json", "broken/traversal-digest", "multiarch") else a
            for a in args]
    proc = run(*args)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert_one_error_line(proc.stderr)
    assert proc.stdout == ""


def test_subprocess_bare_command_shows_help(run) -> None:
    proc = run()
    assert proc.returncode == 2
    assert "Usage: " in proc.stderr and "Commands:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [None, "ls", "inspect", "tree"])
def test_subprocess_help(run, command: str | None) -> None:
    proc = run(*([command] if command else []), "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: ocilayout")


def test_subprocess_version(run) -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "ocilayout, version 0.1.0"


# -- untrusted strings in text output ------------------------------------------------------


def test_control_characters_in_names_are_escaped(tmp_path: Path, generate_module) -> None:
    # index.json written by another tool may hold any string as a ref name or platform
    w = generate_module.LayoutWriter(tmp_path / "nasty")
    img = w.image([b"layer"], platform={"os": "linux\x1b[2J", "architecture": "amd64"})
    w.add_entry(img, "two\nlines")
    w.add_entry(img, "\x1b]0;title\x07bell")
    w.finish()
    for command in ("ls", "tree"):
        result = invoke(command, str(tmp_path / "nasty"))
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert "two\\nlines" in result.stdout
    table = invoke("ls", str(tmp_path / "nasty")).stdout.splitlines()
    assert len(table) == 3  # header + one line per entry
    # JSON keeps the exact strings
    names = [i["name"] for i in json.loads(invoke("ls", str(tmp_path / "nasty"), "--format", "json").stdout)["images"]]
    assert names == ["two\nlines", "\x1b]0;title\x07bell"]
