"""The console script's first module: signals are handled before anything heavy is imported.

SIGINT and SIGTERM end the process at once with one line and 130 or 143, at any moment,
start-up included. That is safe because every change is crash-safe (DESIGN 3.3): a process
killed at any instant leaves every reachable blob; at worst orphans or a temporary file
remain for `gc`.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    name = "interrupted" if signum == signal.SIGINT else "terminated"
    try:
        os.write(2, f"error: {name}\n".encode())
    finally:
        os._exit(EXIT_CODES.get(signum, 128 + signum))


def install() -> None:
    """Route SIGINT and SIGTERM to a one-line exit."""
    for signum in EXIT_CODES:
        signal.signal(signum, _interrupted)


def main() -> None:
    """`ocilayout`: signals first, then the command line."""
    install()
    from .cli import main as cli_main

    cli_main()
