"""Work shared between this process and a forked child: both cores for the read-only passes
over a big layout (`ls`, `du`), where each half of the entries is independent.

The child computes its half and sends the result back marshalled through a pipe; when it
cannot be made, fails or is killed, this process computes that half itself, so the answer
never depends on the child. Signals are handled as in `graph.live_set` (whose child
machinery this reuses): the child dies quietly, and the signal handler kills it.
"""

from __future__ import annotations

import marshal
import os
import signal
from typing import Any, Callable, TypeVar

from .graph import _GUARDED_SIGNALS, FORKED, _may_fork, _reap

A = TypeVar("A")
B = TypeVar("B")


def worth_forking(items: int) -> bool:
    """Whether `items` independent pieces of work are worth a second process (enough of
    them, two usable cores, no threads, not disabled by OCILAYOUT_NO_FORK)."""
    return _may_fork(items)


def fork_split(here: Callable[[], A], there: Callable[[], B]) -> tuple[A, B]:
    """(`here()`, `there()`), `there` computed at the same time in a forked child.

    `there()` must return what `marshal` can carry (None, bool, int, float, str, bytes,
    and tuples, lists, dicts and sets of them). Bytes, and a list of bytes, arrive here as
    one bytes object (the list joined), without marshalling. Exceptions of `here` propagate
    (the child is killed); a child that fails in any way is replaced by calling `there()`
    here (then a list of bytes stays a list).
    """
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return here(), there()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _GUARDED_SIGNALS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(read_end)
        os.close(write_end)
        return here(), there()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            for signum in _GUARDED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            os.close(read_end)
            result: Any = there()
            # Bytes, or a list of bytes (sent one after the other), go as they are behind a
            # tag byte: a big live set is then never copied to be marshalled, on either side.
            parts: list[bytes]
            if type(result) is bytes:
                parts = [_RAW, result]
            elif type(result) is list and all(type(b) is bytes for b in result):
                parts = [_RAW, *result]
            else:
                parts = [_MARSHAL, marshal.dumps(result)]
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(write_end, view) :]
            code = 0
        finally:
            os._exit(code)
    FORKED.add(pid)
    pipe = None
    try:
        os.close(write_end)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        mine = here()
        pipe = os.fdopen(read_end, "rb")
        payload = pipe.read()
    except BaseException:
        _reap(pid, kill=True)
        raise
    finally:
        if pipe is not None:
            pipe.close()
        else:
            os.close(read_end)
    if _reap(pid) == 0:
        tag, payload = payload[:1], payload[1:]
        if tag == _RAW:
            return mine, payload  # type: ignore[return-value]
        try:
            if tag == _MARSHAL:
                theirs: B = marshal.loads(payload)
                return mine, theirs
        except (ValueError, EOFError, TypeError):
            pass
    del payload
    return mine, there()


_RAW, _MARSHAL = b"r", b"m"
