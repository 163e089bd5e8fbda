"""Start-up: each command imports only what it uses, and `ocilayout --help` needs no click.

Every check runs a fresh interpreter (a module imported by an earlier test would hide an
eager import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import FIXTURE_LAYOUTS, REPO_ROOT, cli_command

HEAVY = ("jsonschema", "rich", "ocilayout.verify", "ocilayout.schemas", "ocilayout.filters", "ocilayout.listing")


def modules_after(code: str, *argv: str, env: dict[str, str] | None = None) -> set[str]:
    """The names in sys.modules after running `code` (with sys.argv[1:] = argv) in a fresh
    interpreter; SystemExit is expected (click exits)."""
    script = (
        "import sys, json\n"
        f"sys.argv = ['ocilayout', *{list(argv)!r}]\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except SystemExit:\n    pass\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
    )
    marker = proc.stderr.rpartition("\nMODULES ")[2]
    assert marker, proc.stderr
    return set(json.loads(marker))


def test_importing_the_cli_loads_no_library_module() -> None:
    loaded = modules_after("import ocilayout.cli")
    assert not {m for m in loaded if m.split(".")[0] in ("jsonschema", "rich")}
    assert not loaded & {"ocilayout.layout", "ocilayout.graph", "ocilayout.verify", "ocilayout.filters"}


@pytest.mark.parametrize("command", ["ls", "tree", "du"])
def test_read_commands_load_no_verify_schema_filter(command: str) -> None:
    layout = str(FIXTURE_LAYOUTS / "multi")
    loaded = modules_after("from ocilayout.cli import main\nmain()", command, layout)
    heavy = {m for m in loaded if m.split(".")[0] in ("jsonschema", "rich")} | (loaded & set(HEAVY))
    if command == "ls":
        heavy.discard("ocilayout.listing")
        assert "ocilayout.delete" not in loaded and "ocilayout.transaction" not in loaded
    if command == "tree":
        heavy.discard("ocilayout.listing")
    if command == "du":
        heavy.discard("ocilayout.filters")
    assert not heavy, f"{command} imported {sorted(heavy)}"


def test_rm_help_loads_no_library_module() -> None:
    loaded = modules_after("from ocilayout.cli import main\nmain()", "rm", "--help")
    assert not loaded & {"ocilayout.layout", "ocilayout.graph", "ocilayout.delete", "jsonschema"}


# -- the stored top-level help ----------------------------------------------------------------


def click_help(columns: int) -> str:
    """What click itself prints for `ocilayout --help` at this terminal width."""
    return subprocess.run(
        [sys.executable, "-c", "from ocilayout.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": str(columns)},
        check=True,
    ).stdout


def test_stored_help_is_current() -> None:
    from ocilayout import _help

    cli_source = Path(__import__("ocilayout.cli").cli.__file__).read_bytes()
    assert _help.CLI_CRC32 == zlib.crc32(cli_source), "cli.py changed: run `python -m ocilayout._help`"
    assert _help.TEXT == click_help(200), "stored help differs from click's: run `python -m ocilayout._help`"


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("columns", [80, 200])
def test_help_fast_path_prints_clicks_text_without_click(flag: str, columns: int) -> None:
    env = {"COLUMNS": str(columns)}
    proc = subprocess.run(cli_command(flag), capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == click_help(columns)
    loaded = modules_after("from ocilayout.entry import main\nmain()", flag, env=env)
    assert "click" not in loaded and "ocilayout.cli" not in loaded


def test_narrow_terminal_and_other_arguments_go_to_click() -> None:
    proc = subprocess.run(
        cli_command("--help"), capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "60"}
    )
    assert proc.returncode == 0 and proc.stdout == click_help(60)
    assert "click" in modules_after("from ocilayout.entry import main\nmain()", "--help", env={"COLUMNS": "60"})
    assert "click" in modules_after("from ocilayout.entry import main\nmain()", "--help", "ls")


def test_stale_stored_help_is_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ocilayout import _help, entry

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(_help, "CLI_CRC32", _help.CLI_CRC32 ^ 1)
    assert entry.print_stored_help() is False
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(_help, "CLI_CRC32", _help.CLI_CRC32 ^ 1)
    assert entry.print_stored_help() is True
    assert capsys.readouterr().out == _help.TEXT


def test_terminal_columns_follows_shutil(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from ocilayout.entry import terminal_columns

    for value in ("120", "0", "-3", "x", None):
        if value is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", value)
        assert terminal_columns() == shutil.get_terminal_size().columns
