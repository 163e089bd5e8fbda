"""The one write path every changing command uses (DESIGN 3.3, 3.4).

Lock every layout involved (sorted, each directory once) → read each `index.json` →
compute → write the new `index.json` atomically → re-read every `index.json` and spare
the blobs that a writer ignoring our lock made reachable → delete blobs → unlock. A crash
at any instant leaves every blob that `index.json` reaches in place; at worst orphans
remain for `gc`. A dry run goes through the same steps, takes no lock and changes nothing.
"""

from __future__ import annotations

import os
import signal
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from .digest import Digest
from .errors import OcilayoutError
from .graph import Graph, live_set
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
    """What the write path did (or, in a dry run, would do)."""

    freed: dict[Digest, int] = field(default_factory=dict)  # blob → bytes
    errors: dict[str, str] = field(default_factory=dict)  # digest or path → message
    kept_for_foreign_writer: list[Digest] = field(default_factory=list)
    files_removed: dict[Path, int] = field(default_factory=dict)


class Transaction:
    """A locked change of one or more layouts; `indexes[i]` was read with the locks held.

    The first store is the one whose `index.json` a commit may rewrite; the others (shared
    `gc`) are only read, locked so that their entries cannot change meanwhile.
    """

    def __init__(
        self,
        stores: Sequence[LayoutStore],
        indexes: Sequence[IndexFile],
        graphs: Sequence[Graph],
        *,
        dry_run: bool,
        allow_sparse: bool,
    ) -> None:
        self.stores = list(stores)
        self.indexes = list(indexes)
        self.graphs = list(graphs)
        self.dry_run = dry_run
        self.allow_sparse = allow_sparse

    @property
    def store(self) -> LayoutStore:
        """The layout this transaction may rewrite."""
        return self.stores[0]

    @property
    def index(self) -> IndexFile:
        """Its `index.json` as read under the lock."""
        return self.indexes[0]

    @property
    def graph(self) -> Graph:
        """Its walker (one per command: each blob parsed once)."""
        return self.graphs[0]

    def commit(
        self,
        new_entries: list[dict[str, Any]] | None = None,
        blobs: Sequence[tuple[Digest, Path]] = (),
        files: Sequence[Path] = (),
        new_blobs: Sequence[tuple[Digest, bytes]] = (),
    ) -> CommitResult:
        """Write `new_blobs` (digest, content: durable before anything refers to them), then
        `new_entries` (None: unchanged), then delete `blobs` (digest, file) and `files`.

        `blobs` must lie in a directory no other layout reads without being in this
        transaction: the own `blobs/` of the first store, or a shared directory whose every
        user is among the stores.
        """
        result = CommitResult()
        if self.dry_run:
            result.freed = {digest: _size(path) for digest, path in blobs}
            result.files_removed = {path: _size(path) for path in files}
            return result
        for digest, data in new_blobs:
            self.store.write_blob(digest, data)
            crash_point("after-new-blob")
        expected = [index.source for index in self.indexes]
        if new_entries is not None:
            expected[0] = self.index.serialise(new_entries)
            self.store.write_index(expected[0])
            crash_point("after-index-write")
        doomed = list(blobs)
        if doomed:
            spared = self._spare_foreign({d for d, _ in doomed}, expected)
            if spared:
                result.kept_for_foreign_writer = sorted(spared)
                doomed = [(d, p) for d, p in doomed if d not in spared]
        for position, (digest, path) in enumerate(doomed):
            try:
                result.freed[digest] = self.store.remove_blob_file(path)
            except (OSError, OcilayoutError) as exc:
                result.errors[str(digest)] = f"cannot delete blob {digest}: {getattr(exc, 'strerror', None) or exc}"
            if position == 0:
                crash_point("after-first-blob-delete")
        for path in files:
            try:
                result.files_removed[path] = self.store.remove_file(path)
            except OSError as exc:
                result.errors[str(path)] = f"cannot delete {path}: {exc.strerror}"
        return result

    def _spare_foreign(self, doomed: set[Digest], expected: list[bytes]) -> set[Digest]:
        """Blobs that entries added since we read (or wrote) some `index.json` now reach.

        Compared with what we wrote, not what we read: a writer that rewrote index.json from
        an older read may have put back entries we just removed, and those count as added.
        Whatever cannot be judged (an unreadable index.json, doubt in what the new entries
        reach) spares everything.
        """
        spared: set[Digest] = set()
        for store, graph, wanted in zip(self.stores, self.graphs, expected):
            try:
                current = store.read_index_bytes()
                if current == wanted:
                    continue
                known = {e.digest for e in parse_index(wanted).entries}
                foreign = parse_index(current)
            except OcilayoutError:
                return doomed
            added = [e.descriptor for e in foreign.entries if e.digest not in known]
            if not added:
                continue
            live = live_set(graph, added, allow_sparse=self.allow_sparse)
            if not live.certain:
                return doomed
            spared.update(d for d in doomed if d in live)
        return spared


@contextmanager
def transaction(
    stores: Sequence[LayoutStore],
    lock_timeout: float,
    *,
    dry_run: bool = False,
    allow_sparse: bool = False,
    strict: bool = False,
    extra_locks: Sequence[Path] = (),
    known: IndexFile | None = None,
) -> Iterator[Transaction]:
    """Lock `stores` (and `extra_locks`) and yield a transaction over their indexes as they are now.

    Each directory is locked once, in sorted order of its real path, so naming a layout twice
    (or a shared directory that is a layout's root) cannot deadlock on our own lock, and two
    processes never wait for each other in a circle. `known`, an `index.json` already parsed
    by the caller, is reused when the file has not changed since (parsed once per command).
    """
    with ExitStack() as stack:
        if not dry_run:
            directories = {os.path.realpath(s.root): s.root for s in stores}
            for path in extra_locks:
                directories.setdefault(os.path.realpath(path), path)
            for real in sorted(directories):
                stack.enter_context(layout_lock(directories[real], lock_timeout))
        indexes = []
        for store in stores:
            data = store.read_index_bytes()
            if known is not None and data == known.source:
                indexes.append(known)
            else:
                indexes.append(parse_index(data, str(store.root / "index.json")))
        graphs = [Graph(store, strict=strict) for store in stores]
        for graph, index in zip(graphs, indexes):
            graph.expect([entry.descriptor for entry in index.entries])
        yield Transaction(stores, indexes, graphs, dry_run=dry_run, allow_sparse=allow_sparse)


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0
