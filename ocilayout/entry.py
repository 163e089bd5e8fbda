"""The console script's first module: signals are handled before anything heavy is imported.

SIGINT and SIGTERM end the process at once with one line and 130 or 143, at any moment,
start-up included. That is safe because every change is crash-safe (DESIGN 3.3): a process
killed at any instant leaves every reachable blob; at worst orphans or a temporary file
remain for `gc`.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from types import FrameType

EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


def wants_json(args: list[str]) -> bool:
    """Whether a command line asks for `--format json` (for errors met before, or outside,
    the command's own parsing)."""
    return "--format=json" in args or any(a == "--format" and b == "json" for a, b in zip(args, args[1:]))


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    name = "interrupted" if signum == signal.SIGINT else "terminated"
    code = EXIT_CODES.get(signum, 128 + signum)
    try:
        graph = sys.modules.get("ocilayout.graph")
        for pid in list(getattr(graph, "FORKED", ())):  # a live-set child must not outlive us
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os.write(2, f"error: {name}\n".encode())
        if wants_json(sys.argv[1:]):
            document = {"error": {"message": name, "exit_code": code, "kind": name}}
            os.write(1, (json.dumps(document) + "\n").encode())
    finally:
        os._exit(code)


def install() -> None:
    """Route SIGINT and SIGTERM to a one-line exit."""
    for signum in EXIT_CODES:
        signal.signal(signum, _interrupted)


def terminal_columns() -> int:
    """The width `shutil.get_terminal_size()` reports (COLUMNS, else stdout's terminal, else
    80), without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def print_stored_help() -> bool:
    """Print `ocilayout --help` from `_help.TEXT` when it is certainly what click would print:
    cli.py unchanged since the text was made, and a terminal of 80 columns or more (click
    formats help to min(columns, 80) - 2). Otherwise False: click prints it."""
    import zlib

    from . import _help

    if not _help.TEXT or terminal_columns() < 80:
        return False
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli.py"), "rb") as source:
            if zlib.crc32(source.read()) != _help.CLI_CRC32:
                return False
    except OSError:
        return False
    sys.stdout.write(_help.TEXT)
    sys.stdout.flush()
    return True


def main() -> None:
    """`ocilayout`: signals first, then the command line."""
    install()
    if sys.argv[1:] in (["--help"], ["-h"]) and print_stored_help():
        return
    # A command is one short process that allocates hundreds of thousands of acyclic objects
    # (index entries, descriptors): the cyclic collector's passes over them cost seconds at
    # 100,000 images and free nothing reference counting does not (the library pauses it
    # the same way inside each command).
    gc.disable()
    from .cli import main as cli_main

    cli_main()
