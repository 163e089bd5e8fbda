"""A terminal progress bar for long checks (CLI only; the library takes a plain callback).

The bar goes to stderr, and only when stderr is a terminal: piped or redirected output
stays free of control characters.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

ProgressCallback = Callable[[int, int], None]


@contextmanager
def byte_progress(
    description: str, *, enabled: bool | None = None, stream: IO[str] | None = None
) -> Iterator[ProgressCallback | None]:
    """Yield a `callback(done_bytes, total_bytes)` drawing a rich bar, or None when not shown.

    `enabled` None means: shown when `stream` (default stderr) is a terminal.
    """
    stream = stream if stream is not None else sys.stderr
    if enabled is None:
        enabled = _is_terminal(stream)
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(file=stream, stderr=stream is sys.stderr)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    # Redrawn by the callback (which the library calls at most every 0.1 s), not by rich's
    # refresh thread: a running thread would keep `verify` from forking its second process.
    with Progress(*columns, console=console, transient=False, auto_refresh=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            bar.refresh()

        yield update


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = ["ProgressCallback", "byte_progress"]
