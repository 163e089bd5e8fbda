"""The layout's exclusive advisory lock, held by every command that changes a layout."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import LockTimeoutError, OperationFailed, UsageError

LOCK_FILE = ".ocilayout.lock"
DEFAULT_LOCK_TIMEOUT = 30.0


@contextmanager
def layout_lock(root: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive flock on `<root>/.ocilayout.lock` for the block.

    The lock file is never deleted: unlinking it would let two processes lock two
    different files of the same name. The kernel drops the lock when a process dies.
    """
    if not (0 <= timeout < float("inf")):  # NaN fails this too; NaN would wait forever
        raise UsageError(f"invalid lock timeout {timeout!r}: must be a finite number of seconds >= 0")
    path = root / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise OperationFailed(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + max(timeout, 0.0)
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise OperationFailed(f"cannot lock {path}: {exc.strerror}") from None
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"layout {root} is locked by another process (waited {timeout:g}s; see --lock-timeout)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
