"""The one write path every changing command uses (DESIGN 3.3, 3.4).

Lock → read the current `index.json` → compute → write the new `index.json`
atomically → delete blobs → unlock. A crash at any instant leaves every blob
that `index.json` reaches in place; at worst orphans remain for `gc`.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .digest import Digest
from .errors import OcilayoutError
from .graph import Graph
from .indexfile import IndexFile, parse_index
from .lock import layout_lock
from .storage import LayoutStore

# Test hook: name a point and the process SIGKILLs itself there, so tests can prove the
# write order without racing a kill against the scheduler.
CRASH_ENV = "OCILAYOUT_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here, as a crash would, when the test hook names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(slots=True)
class CommitResult:
    """What the write path did."""

    index_written: bool = False
    freed: dict[Digest, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # digest or path → message
    kept_for_foreign_writer: list[Digest] = field(default_factory=list)
    files_removed: dict[Path, int] = field(default_factory=dict)


class Transaction:
    """A locked change of one layout; `index` is read after the lock is held."""

    def __init__(self, store: LayoutStore, index: IndexFile, index_bytes: bytes) -> None:
        self.store = store
        self.index = index
        self._index_bytes = index_bytes

    def commit(
        self,
        new_entries: list[dict[str, Any]] | None,
        delete: Iterable[Digest] = (),
        graph: Graph | None = None,
        delete_files: Iterable[Path] = (),
    ) -> CommitResult:
        """Write `new_entries` (None: unchanged), then remove `delete` from the own blobs dir."""
        result = CommitResult()
        expected = self._index_bytes
        if new_entries is not None:
            expected = self.index.serialise(new_entries)
            self.store.write_index(expected)
            result.index_written = True
            crash_point("after-index-write")
        doomed = list(delete)
        if doomed:
            doomed = self._spare_foreign(doomed, expected, graph, result)
        for position, digest in enumerate(doomed):
            try:
                result.freed[digest] = self.store.remove_local_blob(digest)
            except (OSError, OcilayoutError) as exc:
                result.errors[str(digest)] = f"cannot delete blob {digest}: {getattr(exc, 'strerror', None) or exc}"
            if position == 0:
                crash_point("after-first-blob-delete")
        for path in delete_files:
            try:
                result.files_removed[path] = self.store.remove_file(path)
            except OSError as exc:
                result.errors[str(path)] = f"cannot delete {path}: {exc.strerror}"
        return result

    def _spare_foreign(
        self, doomed: list[Digest], expected: bytes, graph: Graph | None, result: CommitResult
    ) -> list[Digest]:
        """Keep blobs that a writer ignoring our lock made reachable since we read index.json."""
        try:
            current = self.store.read_index_bytes()
        except OcilayoutError:
            result.kept_for_foreign_writer = doomed
            return []
        if current == expected:
            return doomed
        try:
            foreign = parse_index(current)
        except OcilayoutError:
            result.kept_for_foreign_writer = doomed
            return []
        # Compare with what we wrote, not what we read: a writer that rewrote index.json from
        # an older read may have put back entries we just removed, and those count as added.
        known = {e.digest for e in parse_index(expected).entries}
        added = [e.descriptor for e in foreign.entries if e.digest not in known]
        if graph is None or not added:
            return doomed if not added else []
        reach = graph.reach(added)
        if not reach.complete:
            result.kept_for_foreign_writer = doomed
            return []
        spared = [d for d in doomed if d in reach]
        result.kept_for_foreign_writer = spared
        return [d for d in doomed if d not in reach]


@contextmanager
def change(store: LayoutStore, lock_timeout: float) -> Iterator[Transaction]:
    """Lock the layout and yield a transaction over the index as it is now."""
    with layout_lock(store.root, lock_timeout):
        data = store.read_index_bytes()
        index = parse_index(data, str(store.root / "index.json"))
        yield Transaction(store, index, data)
