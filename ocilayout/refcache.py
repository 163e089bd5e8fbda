"""The reference cache (DESIGN 3.12): what a strict parse of a manifest, index or image config
found, kept by digest outside the layout, so that a walk stats a blob instead of reading and
parsing it again.

Why a record stays true:
- it is made only from a clean strict parse (no leniency warning) of content whose hash equals
  its digest: it is then a fact about that digest, in any layout, forever;
- it holds only what does not depend on the reference: the kind the *content* declares (index,
  image, artifact, or none — then the referencing media type decides, as it does uncached);
- no verdict about a file is ever kept (missing, unreadable, not JSON, too big): those are
  looked at again each time.

Each use goes through the store (own blobs/ first, then the shared directory) and stats the
blob: a record is used only when a regular file of exactly the recorded size is there. A
missing blob stays missing; a truncated or replaced one is read and parsed again.

A record is never trusted blindly: it comes from a cache directory owned by this user and
writable by nobody else, from a file whose format and code fingerprint are this version's
(`meta`), from a chunk whose checksum matches, and every field is validated when decoded
(digests against the digest grammar: no path can be built from a bad one). Anything else —
not a database, another version, a bad checksum, a malformed record — is ignored, and the
file or chunk is rebuilt at the next write.

Storage: one SQLite file (WAL, busy timeout) per format version. Records are short texts,
grouped per layout (its real path) in chunks: each command that learnt something adds one
chunk in one transaction at its end, so a command loads its layout's records with one query.
The layout is only where records are filed; a record is true for its digest anywhere. Chunks
are merged when they pile up (dropping records whose blob is gone), and whole layouts are
evicted, least recently used first, past a byte or chunk cap.

A layout with no records of its own (a new path: a `cp -al` copy, a pipeline's fresh layout
built from the same images) borrows: before its first lookup (`Graph.prepare`), the layout
whose sampled manifest keys (`marks`: one key in sixteen, by digest) share most of its entries'
digests lends its records (checked against the lender's checksums, each still stat'ed here
before use), and those it used are filed under the new layout when it writes. A mark is only
a hint: a forged one can choose a lender, never make a record believed.

Connections never outlive a call (load or flush), so none crosses a fork; a forked live-set
child never writes: the records it learns travel back to the parent with its live set.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .descriptor import MAX_SIZE, Descriptor, Platform
from .digest import FAST_DIGEST, Digest
from .mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    LEAF_TYPES,
    OCI_ARTIFACT_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
)

if TYPE_CHECKING:
    import sqlite3

FORMAT = 1
FILE_NAME = f"refs-v{FORMAT}.sqlite"
DIR_ENV = "OCILAYOUT_CACHE_DIR"
OFF_ENV = "OCILAYOUT_NO_CACHE"
DEBUG_ENV = "OCILAYOUT_CACHE_DEBUG"
MAX_BYTES_ENV = "OCILAYOUT_CACHE_MAX_BYTES"
# Test hook: every command first walks its whole layout once with a fresh graph and writes
# what it learnt, so that the command itself runs on a warm cache (see tests/conftest.py).
PREWARM_ENV = "OCILAYOUT_TEST_PREWARM"

DEFAULT_MAX_BYTES = 1024 * 1024 * 1024  # 1,000,000 images take about 500 MB
MAX_CHUNK_ROWS = 10_000  # chunks over all layouts: the eviction query stays cheap
MAX_CHUNKS_PER_LAYOUT = 8  # more, and the next write merges them
BUSY_TIMEOUT_S = 2.0
TOUCH_EVERY_S = 3600.0  # a layout only read is marked used at most this often
_CHECKSUM_TAG = f"ocilayout-refcache-{FORMAT}\0".encode()

# Media types stored as small numbers (records are mostly digests and these). Part of the format.
_MEDIA_TYPES: tuple[str, ...] = (
    OCI_INDEX,
    OCI_MANIFEST,
    OCI_CONFIG,
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    OCI_EMPTY,
    OCI_ARTIFACT_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
)
_MEDIA_CODES: dict[str | None, int] = {m: i for i, m in enumerate(_MEDIA_TYPES)}
_NO_ANNOTATIONS: Mapping[str, str] = MappingProxyType({})

# Content kinds, as a record stores them ("none": the referencing media type decides).
KIND_NONE, KIND_INDEX, KIND_IMAGE, KIND_ARTIFACT = 0, 1, 2, 3
NOT_LEAFY = "*"  # the `leaves` field of a record whose children are not all leaf-typed

_switch = True
_lock = threading.RLock()
_registry: dict[tuple[str, str], LayoutFacts] = {}
_atexit_registered = False
_fingerprint: str | None = None
notes: list[str] = []  # why the cache was not used or not written (last 50), for --debug and tests


# -- switches and location ------------------------------------------------------------------


def set_enabled(enabled: bool) -> None:
    """Turn the cache on or off for this process (the CLI's `--no-cache`)."""
    global _switch
    _switch = bool(enabled)


def is_enabled() -> bool:
    """True unless turned off by `set_enabled(False)` or `OCILAYOUT_NO_CACHE` (any value but 0)."""
    return _switch and os.environ.get(OFF_ENV, "") in ("", "0")


def cache_dir() -> Path | None:
    """`$OCILAYOUT_CACHE_DIR`, else `$XDG_CACHE_HOME/ocilayout`, else `~/.cache/ocilayout`."""
    explicit = os.environ.get(DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative path is invalid and ignored
        return Path(xdg) / "ocilayout"
    home = os.path.expanduser("~")
    if home == "~" or not os.path.isabs(home):
        return None
    return Path(home) / ".cache" / "ocilayout"


def cache_file() -> Path | None:
    """The cache file this version uses (it may not exist)."""
    directory = cache_dir()
    return None if directory is None else directory / FILE_NAME


def max_bytes() -> int:
    """The byte cap over all layouts' records."""
    try:
        return max(0, int(os.environ.get(MAX_BYTES_ENV, "")))
    except ValueError:
        return DEFAULT_MAX_BYTES


def note(message: str) -> None:
    """Remember why the cache was skipped; printed on stderr when OCILAYOUT_CACHE_DEBUG is set."""
    del notes[:-49]
    notes.append(message)
    if os.environ.get(DEBUG_ENV):
        sys.stderr.write(f"debug: reference cache: {message}\n")


# -- one layout's records, for one command --------------------------------------------------


def attach(root: Path, size_of: Callable[[Digest], int | None]) -> LayoutFacts | None:
    """The records filed under the layout at `root` (loaded lazily), shared by every graph of
    this command; None when the cache is off or has no place. `size_of` stats a blob as the
    store would read it (None: absent or not a regular file)."""
    if not is_enabled():
        return None
    directory = cache_dir()
    if directory is None:
        return None
    key = (os.fspath(directory), os.path.realpath(root))
    with _lock:
        facts = _registry.get(key)
        if facts is None or facts.pid != os.getpid():
            facts = _registry[key] = LayoutFacts(directory, key[1], size_of)
            _register_atexit()
        return facts


def finish() -> None:
    """Write what this process learnt (one transaction per layout) and forget the records: the
    end of a command."""
    with _lock:
        pending = list(_registry.values())
        _registry.clear()
    for facts in pending:
        facts.flush()


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(finish)


KINDS = ("M", "C")  # record kinds: manifests and indexes, image configs (filed in separate chunks)


class _Buffers:
    """Records ready to write: keys and rests, each followed by a newline, and their count.

    New records wait in a short list as (key, rest) pairs — one append, atomic even with
    threads: a key never gets another record's rest — and are joined into the buffers a few
    thousand at a time, under a lock (no object per record once joined)."""

    __slots__ = ("_keys", "_rests", "_new", "_count", "_lock")

    def __init__(self) -> None:
        self._keys = bytearray()
        self._rests = bytearray()
        self._new: list[tuple[str, str]] = []
        self._count = 0
        self._lock = threading.Lock()

    def add(self, key: str, rest: str) -> None:
        # Under the lock: an append racing the swap in `_join_locked` would land in a list
        # already joined, and the record would be lost.
        with self._lock:
            self._new.append((key, rest))
            if len(self._new) >= 4096:
                self._join_locked()

    def add_joined(self, keys: bytes | bytearray, rests: bytes | bytearray, count: int) -> None:
        with self._lock:
            self._join_locked()
            self._keys += keys
            self._rests += rests
            self._count += count

    def _join(self) -> None:
        with self._lock:
            self._join_locked()

    def _join_locked(self) -> None:
        new, self._new = self._new, []
        if new:
            self._keys += ("\n".join([key for key, _ in new]) + "\n").encode("ascii")
            self._rests += ("\n".join([rest for _, rest in new]) + "\n").encode("ascii")
            self._count += len(new)

    @property
    def count(self) -> int:
        return self._count + len(self._new)

    def take(self) -> tuple[bytearray, bytearray, int]:
        """Keys, rests and count, detached from this object (which starts empty again): no other
        thread can grow them while they are written, nor make them disagree."""
        with self._lock:
            self._join_locked()
            taken = (self._keys, self._rests, self._count)
            self._keys, self._rests, self._count = bytearray(), bytearray(), 0
        return taken

    @property
    def keys(self) -> bytearray:
        """Every key, each followed by a newline (read after `rests` or together: same order)."""
        self._join()
        return self._keys

    @property
    def rests(self) -> bytearray:
        """Every rest, in the same order, each followed by a newline."""
        self._join()
        return self._rests


class LayoutFacts:
    """Records of one layout: those loaded from the cache file and those learnt since.

    Each kind of record is loaded on its first lookup (`rm` never loads configs).
    """

    def __init__(self, directory: Path, layout: str, size_of: Callable[[Digest], int | None]) -> None:
        self.directory = directory
        self.layout = layout
        self.size_of = size_of
        self.pid = os.getpid()
        self.records: dict[str, str] = {}  # key ("M<digest>" / "C<digest>") -> the rest of its record
        self.loaded: set[str] = set()  # kinds loaded (or tried)
        # Per kind, the records this process (or its fork child) learnt, ready to write: the keys
        # and the rests, each ending with a newline, in two buffers (no object per record).
        self.pending: dict[str, _Buffers] = {kind: _Buffers() for kind in KINDS}
        self.hits: set[str] = set()
        self.max_id: dict[str, int] = {}  # per kind, the newest chunk loaded: a merge replaces up to it
        self.last_used = 0.0
        self.merge: set[str] = set()  # kinds whose chunks to merge (too many, duplicates, a bad one)
        self.rebuild = False  # the file is not a database of this version: replace it
        self.own_chunks: dict[str, int] = {}  # per kind, this layout's chunks that loaded
        self.lent: set[str] = set()  # keys of records borrowed from another layout, not yet filed here
        self.borrowed: set[str] = set()  # kinds a lender was looked for (once each)
        self.lender: str | None = None  # the layout that lent manifest records
        self._load_lock = threading.Lock()

    # reading

    def load(self, kind: str = "M") -> None:
        """Read this layout's chunks of one kind (once); any problem leaves them out."""
        if kind in self.loaded:
            return
        with self._load_lock:
            if kind in self.loaded:
                return
            records: dict[str, str] = {}
            try:
                self._load(kind, records)
            except Exception as exc:  # never let the cache break a command
                records.clear()
                self._failed("reading", exc)
            self.records.update(records)
            self.loaded.add(kind)

    def _open(self) -> sqlite3.Connection | None:
        """A connection to a trusted cache file of this version, or None (nothing to believe)."""
        path = self.directory / FILE_NAME
        if self.rebuild or not os.path.lexists(path):
            return None
        if not _trusted_dir(self.directory) or not _trusted_file(path):
            return None
        con = _connect(path)
        try:
            if _meta_ok(con):
                return con
        except BaseException:
            con.close()
            raise
        con.close()
        # Not yet initialised (another process may be creating it right now), or of another
        # version: nothing to believe; the next write resets it in its transaction.
        note(f"{path}: empty, or another version's or foreign; not used")
        return None

    def _load(self, kind: str, records: dict[str, str]) -> None:
        con = self._open()
        if con is None:
            return
        try:
            chunks, lines = self._read_chunks(con, self.layout, kind, records)
        finally:
            con.close()
        self.own_chunks[kind] = chunks
        if chunks > MAX_CHUNKS_PER_LAYOUT or lines > 2 * len(records) + 64:
            self.merge.add(kind)

    def _read_chunks(self, con: sqlite3.Connection, layout: str, kind: str, records: dict[str, str]) -> tuple[int, int]:
        """Add the records of `layout`'s good chunks of `kind` to `records`; (chunks that
        passed, record lines). Bookkeeping for merges and touches only for our own layout."""
        own = layout == self.layout
        lines = 0
        chunks = 0
        for chunk_id, used, data, checksum in con.execute(
            "SELECT id, used, data, sum FROM chunks WHERE layout = ? AND kind = ? ORDER BY id", (layout, kind)
        ):
            if own:
                if type(chunk_id) is int:
                    self.max_id[kind] = max(self.max_id.get(kind, 0), chunk_id)
                if type(used) in (int, float):
                    self.last_used = max(self.last_used, float(used))
            if type(data) is not bytes or checksum != _checksum(layout, kind, data):
                if own:
                    self.merge.add(kind)
                note(f"{self.directory / FILE_NAME}: a chunk of {layout} fails its checksum; ignored")
                continue
            # Keys, then NUL, then the rest of each record in the same order: split and
            # paired in C (a Python loop over 100,000 lines costs more than the query).
            cut = data.find(b"\0")
            view = memoryview(data)
            keys = str(view[:cut], "ascii", "replace").split("\n")
            rests = str(view[cut + 1 :], "ascii", "replace").split("\n")
            view.release()
            if cut < 0 or len(keys) != len(rests):
                if own:
                    self.merge.add(kind)
                continue
            chunks += 1
            lines += len(keys)
            records.update(zip(keys, rests))
        return chunks, lines

    def borrow(self, kind: str, digests: Iterable[str]) -> None:
        """Once per kind, and only for a layout with no chunk of that kind: load the records of
        the other layout whose sampled keys share most of `digests` (manifests this layout
        holds: a copy, or a layout made from the same images). Nothing to borrow: one query."""
        if kind in self.borrowed:
            return
        self.load(kind)
        with self._load_lock:
            if kind in self.borrowed or self.own_chunks.get(kind, 1):
                self.borrowed.add(kind)
                return
            lent: dict[str, str] = {}
            try:
                if not self._borrow(kind, digests, lent):
                    return  # nothing to ask with (no sampled digest): a later call may have some
            except Exception as exc:  # never let the cache break a command
                lent.clear()
                self._failed("reading", exc)
            self.borrowed.add(kind)
            for key in self.records.keys() & lent.keys():
                del lent[key]
            self.records.update(lent)  # used like our own; those used are filed here (`_file_lent`)
            self.lent.update(lent)

    def _file_lent(self) -> None:
        """Borrowed records used so far become ours: learnt, written at the next flush."""
        if self.lent:
            used = self.lent & self.hits
            self.lent -= used
            records = self.records
            for kind in KINDS:  # joined in C: a copy's first command files every record it used
                keys = [key for key in used if key[0] == kind]
                if keys:
                    self.pending[kind].add_joined(
                        ("\n".join(keys) + "\n").encode("ascii", "replace"),
                        ("\n".join([records[key] for key in keys]) + "\n").encode("ascii", "replace"),
                        len(keys),
                    )

    def _borrow(self, kind: str, digests: Iterable[str], lent: dict[str, str]) -> bool:
        """Fill `lent`; False when there was nothing to ask with."""
        # The lender of manifest records: the layout whose sampled keys share the most of our
        # probes, the most recently used among equals (one indexed query, whatever the cache
        # holds). Configs come from the layout that lent the manifests, if one did.
        probes: list[str] = []
        if kind == "M":
            for digest in digests:
                if _sampled("M" + digest):
                    probes.append("M" + digest)
                    if len(probes) >= MAX_PROBES:
                        break
            if not probes:
                return False
        elif self.lender is None:
            return True
        con = self._open()
        if con is None:
            return True
        try:
            lender = self.lender
            if probes:
                marks = ",".join("?" * len(probes))
                row = con.execute(
                    f"SELECT layout, COUNT(*) AS n FROM marks WHERE key IN ({marks}) AND layout != ?"
                    " GROUP BY layout ORDER BY n DESC,"
                    " (SELECT MAX(used) FROM chunks WHERE chunks.layout = marks.layout) DESC LIMIT 1",
                    (*probes, self.layout),
                ).fetchone()
                lender = row[0] if row is not None and type(row[0]) is str else None
            if lender is None:
                return True
            self._read_chunks(con, lender, kind, lent)
            if kind == "M":
                self.lender = lender
            note(f"{self.layout}: borrowed {len(lent)} records of {lender}")
        finally:
            con.close()
        return True

    def get(self, key: str) -> str | None:
        """The record filed under `key` ("M" or "C" and a digest), without its key; None if none."""
        kind = key[0]
        if kind not in self.loaded:
            self.load(kind)
        rest = self.records.get(key)
        if rest is None and kind != "M" and kind not in self.borrowed and self.lender is not None:
            # Manifests are borrowed by `Graph.prepare` (many probes choose the lender well);
            # other kinds come from the same lender when first missed.
            self.borrow(kind, ())
            rest = self.records.get(key)
        if rest is not None:
            self.hits.add(key)
        return rest

    # learning

    def add(self, key: str, rest: str) -> None:
        """A record this process made (`encode_manifest`, `encode_config`: ASCII, one line)."""
        self.pending[key[0]].add(key, rest)

    def learning_mark(self) -> dict[str, tuple[int, int, int]]:
        """Where the learnt records end now (see `learnt_since`)."""
        return {kind: (len(b.keys), len(b.rests), b.count) for kind, b in self.pending.items()}

    def learnt_since(self, mark: dict[str, tuple[int, int, int]]) -> bytes:
        """The records learnt after `mark`, as a fork child's message for `add_learnt`."""
        self._file_lent()  # borrowed records the child used travel back as learnt
        parts: list[bytes] = []
        for kind in KINDS:
            b = self.pending[kind]
            keys_at, rests_at, count_at = mark.get(kind, (0, 0, 0))
            keys = memoryview(b.keys)[keys_at:].tobytes()
            rests = memoryview(b.rests)[rests_at:].tobytes()
            parts += [b"%d" % (b.count - count_at), keys, rests]
        return b"\0".join(parts)

    def add_learnt(self, message: bytes) -> None:
        """The records our fork child learnt (`learnt_since`); a malformed message adds none."""
        parts = message.split(b"\0")
        if len(parts) != 3 * len(KINDS):
            return
        for i, kind in enumerate(KINDS):
            count, keys, rests = parts[3 * i : 3 * i + 3]
            if not count.isdigit() or keys.count(b"\n") != int(count) or rests.count(b"\n") != int(count):
                return
        for i, kind in enumerate(KINDS):
            count, keys, rests = parts[3 * i : 3 * i + 3]
            self.pending[kind].add_joined(keys, rests, int(count))

    # writing

    def flush(self) -> None:
        """One transaction: add the learnt records as a chunk per kind (or merge this layout's
        chunks of a kind), then evict past the caps. Failing quietly: the cache is only ever an
        optimisation."""
        if os.getpid() != self.pid or not self.loaded:
            return  # a fork child never writes; nothing was ever looked up: nothing to say
        self._file_lent()
        touch = time.time() - self.last_used > TOUCH_EVERY_S and bool(self.hits)
        learnt = any(b.count for b in self.pending.values())
        if not (learnt or self.merge or self.rebuild or touch):
            return
        try:
            try:
                self._flush()
            except Exception as exc:
                if not _damaged(exc):
                    raise
                self.rebuild = True  # replace the file and write once more
                self._flush()
        except Exception as exc:
            self._failed("writing", exc)
        finally:
            self.pending = {kind: _Buffers() for kind in KINDS}

    def _flush(self) -> None:
        import sqlite3

        directory = self.directory
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            note(f"{directory}: cannot create the cache directory ({exc.strerror or exc}); running uncached")
            return
        if not _trusted_dir(directory):
            return
        path = directory / FILE_NAME
        if self.rebuild:
            _remove_database(path)
            self.rebuild = False
            self.merge = {kind for kind in self.loaded if kind in self.max_id}
            self.max_id = {}
        if not os.path.lexists(path):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            except FileExistsError:
                pass
        if not _trusted_file(path):
            return
        con = _connect(path)
        try:
            con.execute("PRAGMA page_size = 65536")  # these two only take effect on a new, empty file:
            con.execute("PRAGMA auto_vacuum = INCREMENTAL")  # big pages write a chunk twice as fast
            con.execute("PRAGMA journal_mode = WAL")
            # No fsync: a cache need not survive a power loss, and one damaged by it is detected
            # (SQLite's own checks, the chunk checksums) and rebuilt; a killed process loses nothing.
            con.execute("PRAGMA synchronous = OFF")
            con.execute("PRAGMA journal_size_limit = 8388608")
            con.execute("BEGIN IMMEDIATE")
            try:
                if not _meta_ok(con):
                    _create_schema(con)
                    # The chunks we loaded (if any) are gone: file their records again.
                    self.merge = {kind for kind in self.loaded if kind in self.max_id}
                    self.max_id = {}
                now = time.time()
                for kind in KINDS:
                    if kind in self.merge:
                        keys, rests, count = self._merged(kind).take()
                        con.execute(
                            "DELETE FROM chunks WHERE layout = ? AND kind = ? AND id <= ?",
                            (self.layout, kind, self.max_id.get(kind, 0)),
                        )
                    else:
                        keys, rests, count = self.pending[kind].take()
                    if count:
                        self._insert(con, kind, keys, rests, now)
                con.execute("UPDATE chunks SET used = ? WHERE layout = ?", (now, self.layout))
                _evict(con, self.layout)
                _crash_point("cache-before-commit")
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
            if self.merge:
                try:
                    con.execute("PRAGMA incremental_vacuum")
                except sqlite3.Error:
                    pass
        finally:
            con.close()
        self.merge = set()

    def _insert(
        self, con: sqlite3.Connection, kind: str, key_buffer: bytearray, rest_buffer: bytearray, now: float
    ) -> None:
        """One chunk: the keys, NUL, the rests (each block joined by newlines), written from the
        buffers without joining them into one more copy."""
        keys = memoryview(key_buffer)[:-1]  # without the last newline
        rests = memoryview(rest_buffer)[:-1]
        size = len(keys) + 1 + len(rests)
        if size > max_bytes():
            note(f"{self.layout}: {size} bytes of records exceed the cache cap; not kept")
            return
        digest = _checksum_start(self.layout, kind)
        for part in (keys, b"\0", rests):
            digest.update(part)
        cursor = con.execute(
            "INSERT INTO chunks (layout, kind, used, bytes, data, sum) VALUES (?, ?, ?, ?, zeroblob(?), ?)",
            (self.layout, kind, now, size, size, digest.digest()[:16]),
        )
        with con.blobopen("chunks", "data", cursor.lastrowid) as blob:  # type: ignore[arg-type]
            blob.write(keys)
            blob.write(b"\0")
            blob.write(rests)
        if kind == "M":
            sample = [key for key in str(keys, "ascii", "replace").split("\n") if _sampled(key)]
            rows = [(key, self.layout) for key in sample]
            con.executemany("INSERT OR IGNORE INTO marks (key, layout) VALUES (?, ?)", rows)

    def _merged(self, kind: str) -> _Buffers:
        """Every record of `kind` worth keeping: those used or learnt now, and those whose blob
        is still in this layout with the recorded size (records of deleted images go)."""
        merged = _Buffers()
        learnt_keys, learnt_rests, learnt_count = self.pending[kind].take()
        merged.add_joined(learnt_keys, learnt_rests, learnt_count)
        known = set(learnt_keys.decode("ascii").split("\n"))
        for key, rest in self.records.items():
            if key[0] != kind or key in known:
                continue
            if key not in self.hits:
                size = rest.partition("\t")[0]
                if FAST_DIGEST.fullmatch(key, 1) is None or self.size_of(Digest(key[1:])) != _int(size):
                    continue
            merged.add(key, rest)
        return merged

    def _failed(self, what: str, exc: BaseException) -> None:
        if _damaged(exc):
            self.rebuild = True
            note(f"{self.directory / FILE_NAME}: damaged ({exc}); ignored, rebuilt at the next write")
        else:
            note(f"{what} {self.directory / FILE_NAME}: {exc}; running uncached")


def _damaged(exc: BaseException) -> bool:
    """Whether SQLite says the file is no database or a corrupt one (SQLITE_CORRUPT, SQLITE_NOTADB)."""
    import sqlite3

    return isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorcode", None) in (11, 26)


CRASH_ENV = "OCILAYOUT_TEST_CRASH_AT"  # the same test hook as transaction.crash_point


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


# -- the file ----------------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    import sqlite3

    return sqlite3.connect(os.fspath(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)


def _meta_ok(con: sqlite3.Connection) -> bool:
    import sqlite3

    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        con.execute("SELECT id, layout, kind, used, bytes, data, sum FROM chunks LIMIT 0").fetchall()
        con.execute("SELECT key, layout FROM marks LIMIT 0").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such" in str(exc):  # a new file, or one of another shape
            return False
        raise
    return meta.get("format") == str(FORMAT) and meta.get("code") == code_fingerprint()


def _create_schema(con: sqlite3.Connection) -> None:
    """Drop whatever the file holds and create this version's tables (inside the caller's
    write transaction)."""
    for kind, name in con.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index', 'view', 'trigger')"
        " AND name NOT LIKE 'sqlite_%'"
    ).fetchall():
        if kind in ("table", "view", "trigger"):
            con.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute(
        "CREATE TABLE chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, layout TEXT NOT NULL, kind TEXT NOT NULL,"
        " used REAL NOT NULL, bytes INTEGER NOT NULL, data BLOB NOT NULL, sum BLOB NOT NULL)"
    )
    con.execute("CREATE INDEX chunks_layout ON chunks (layout, kind)")
    # A sample of each layout's manifest keys (`_sampled`): which layout may lend its records.
    con.execute(
        "CREATE TABLE marks (key TEXT NOT NULL, layout TEXT NOT NULL, PRIMARY KEY (key, layout)) WITHOUT ROWID"
    )
    con.execute("CREATE INDEX marks_layout ON marks (layout)")
    con.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)", [("format", str(FORMAT)), ("code", code_fingerprint())]
    )


def _evict(con: sqlite3.Connection, current: str) -> None:
    """Drop whole layouts, least recently used first, while over the byte or chunk cap."""
    cap = max_bytes()
    total, rows = con.execute("SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM chunks").fetchone()
    if total <= cap and rows <= MAX_CHUNK_ROWS:
        return
    for layout, size, count in con.execute(
        "SELECT layout, SUM(bytes), COUNT(*) FROM chunks GROUP BY layout ORDER BY MAX(used)"
    ).fetchall():
        if total <= cap and rows <= MAX_CHUNK_ROWS:
            break
        if layout == current:
            continue
        con.execute("DELETE FROM chunks WHERE layout = ?", (layout,))
        con.execute("DELETE FROM marks WHERE layout = ?", (layout,))
        total -= size
        rows -= count


MAX_PROBES = 64  # sampled digests a borrower asks about


def _sampled(key: str) -> bool:
    """One manifest key in sixteen, chosen by its digest (the first hex digit is 0), so a
    lender and a borrower sample the same keys without agreeing on anything."""
    at = key.find(":") + 1
    return 0 < at < len(key) and key[at] == "0"


def _remove_database(path: Path) -> None:
    """Remove a damaged or foreign cache file with its WAL and shared-memory files (the WAL
    first: a stale one must never be replayed into the new file)."""
    for suffix in ("-wal", "-shm", ""):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            note(f"cannot remove {path}{suffix}: {exc.strerror or exc}")


def _trusted_dir(directory: Path) -> bool:
    """Only a directory of ours that nobody else can write to may hold records we trust."""
    try:
        st = os.stat(directory)
    except OSError as exc:
        note(f"{directory}: {exc.strerror or exc}; running uncached")
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        note(f"{directory}: not a directory of this user writable by nobody else (chmod 700 it); running uncached")
        return False
    return True


def _trusted_file(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError as exc:
        note(f"{path}: {exc.strerror or exc}; running uncached")
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        note(f"{path}: not a regular file of this user writable by nobody else; running uncached")
        return False
    return True


def _checksum_start(layout: str, kind: str) -> Any:
    digest = hashlib.sha256(_CHECKSUM_TAG)
    digest.update(f"{layout}\0{kind}\0".encode("utf-8", "surrogateescape"))
    return digest


def _checksum(layout: str, kind: str, data: bytes) -> bytes:
    """The checksum of a chunk's data, its layout and its kind."""
    digest = _checksum_start(layout, kind)
    digest.update(data)
    return bytes(digest.digest()[:16])


def code_fingerprint() -> str:
    """This version's format and the source of the code that decides what a record says: any
    change there makes older records someone else's."""
    global _fingerprint
    if _fingerprint is None:
        digest = hashlib.sha256(f"format {FORMAT}\0".encode())
        here = Path(__file__).resolve().parent
        for name in ("refcache.py", "graph.py", "descriptor.py", "digest.py", "mediatypes.py"):
            try:
                digest.update((here / name).read_bytes())
            except OSError:
                digest.update(f"{name}: no source\0".encode())
        _fingerprint = digest.hexdigest()[:32]
    return _fingerprint


# -- records -------------------------------------------------------------------------------------


def content_matches(digest: Digest, data: bytes) -> bool:
    """Whether `data` hashes to `digest`: only then may a parse of it become a record."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm == "sha256":
        return hashlib.sha256(data).hexdigest() == encoded
    if algorithm == "sha512":
        return hashlib.sha512(data).hexdigest() == encoded
    return False


def leaves_of(children: tuple[Descriptor, ...]) -> tuple[str, ...] | None:
    """The children's digests when every child is leaf-typed (a walk need not push them)."""
    for child in children:
        if child.media_type not in LEAF_TYPES:
            return None
    return tuple([child.digest for child in children])


def encode_manifest(
    size: int,
    content_kind: int,
    leaves: tuple[str, ...] | None,
    children: tuple[Descriptor, ...],
    config_at: int,
    layers_at: int,
    layers_count: int,
    subject: Descriptor | None,
    annotations: Mapping[str, str],
    artifact_type: str | None,
) -> str:
    """An "M" record (its key is "M" and the digest): size, content kind, leaves (the children's
    digests when all are leaf-typed, else `*`), and the other fields as JSON (children without
    their digests when the leaves give them)."""
    with_digest = leaves is None
    if not with_digest and subject is None and not annotations and artifact_type is None:
        # The common image manifest, without the JSON encoder: children are [code, size] pairs.
        try:
            pairs = ",".join([f"[{_MEDIA_CODES[c.media_type]},{c.size}]" for c in children])
        except KeyError:  # a media type without a code
            pass
        else:
            if not any([c.platform is not None or c.annotations or c.artifact_type is not None for c in children]):
                leaf_text = ",".join(leaves)  # type: ignore[arg-type]
                tail = f"{config_at},{layers_at},{layers_count},null,null,null"
                return f"{size}\t{content_kind}\t{leaf_text}\t[[{pairs}],{tail}]"
    body = [
        [_encode_descriptor(c, with_digest) for c in children],
        config_at,
        layers_at,
        layers_count,
        None if subject is None else _encode_descriptor(subject, True),
        dict(annotations) if annotations else None,
        artifact_type,
    ]
    leaf_text = NOT_LEAFY if leaves is None else ",".join(leaves)
    return f"{size}\t{content_kind}\t{leaf_text}\t{_ENCODE(body)}"

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps with options makes one per call
# The C scanner json.loads ends in, without its three Python layers.
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode(body: str) -> Any:
    """`json.loads(body)` for a record body as `_ENCODE` writes it (no surrounding whitespace):
    ValueError for anything else. Half the time of json.loads on the short bodies of records,
    100,000 of which a warm `du` decodes."""
    try:
        value, end = _SCAN(body, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(body):
        raise ValueError("extra data")
    return value


_KIND_TEXTS = {"0": KIND_NONE, "1": KIND_INDEX, "2": KIND_IMAGE, "3": KIND_ARTIFACT}


def split_manifest(rest: str) -> tuple[int, int, tuple[str, ...] | None, str] | None:
    """(size, content kind, leaves, body) of an "M" record; None when malformed. The leaves are
    not checked here: they only ever add to what is kept, and decoding the body checks that
    they are the children's digests."""
    parts = rest.split("\t", 3)
    if len(parts) != 4:
        return None
    size_text, kind_text, leaf_text, body = parts
    content_kind = _KIND_TEXTS.get(kind_text)
    if content_kind is None or not size_text.isdigit() or len(size_text) > 18:
        return None
    if leaf_text == NOT_LEAFY:
        return int(size_text), content_kind, None, body
    if "/" in leaf_text or "." in leaf_text:  # they only add to what is kept, yet never a path
        return None
    return int(size_text), content_kind, tuple(leaf_text.split(",")) if leaf_text else (), body


ManifestFields = tuple[
    tuple[Descriptor, ...],
    "Descriptor | None",
    tuple[Digest, ...],
    "Descriptor | None",
    Mapping[str, str],
    "str | None",
]


def decode_manifest(body: str, leaves: tuple[str, ...] | None) -> ManifestFields:
    """(children, config, layers, subject, annotations, artifact type) of an "M" line's body;
    ValueError when anything is off (digests are checked against the digest grammar: no path
    is ever built from a bad one)."""
    try:
        raw = _decode(body)
        if type(raw) is not list or len(raw) != 7:
            raise ValueError("not a record")
        raw_children, config_at, layers_at, layers_count, raw_subject, raw_annotations, artifact_type = raw
        if type(raw_children) is not list:
            raise ValueError("children")
        if leaves is None:
            children = tuple([_decode_descriptor(c, None) for c in raw_children])
        else:
            if len(leaves) != len(raw_children):
                raise ValueError("leaves are not the children")
            children = tuple([_decode_descriptor(c, d) for c, d in zip(raw_children, leaves)])
            if not all(c.media_type in LEAF_TYPES for c in children):
                raise ValueError("leaves are not leaf-typed")
        n = len(children)
        if type(config_at) is not int or not -1 <= config_at < n:
            raise ValueError("config")
        if type(layers_at) is not int or type(layers_count) is not int:
            raise ValueError("layers")
        if not (0 <= layers_at and 0 <= layers_count and layers_at + layers_count <= n):
            raise ValueError("layers")
        subject = None if raw_subject is None else _decode_descriptor(raw_subject, None)
        annotations = _decode_strings(raw_annotations)
        if artifact_type is not None and type(artifact_type) is not str:
            raise ValueError("artifactType")
    except (TypeError, IndexError, KeyError, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    if leaves is None and leaves_of(children) is not None:
        raise ValueError("leaves missing")
    layers = tuple([c.digest for c in children[layers_at : layers_at + layers_count]])
    return (
        children,
        children[config_at] if config_at >= 0 else None,
        layers,
        subject,
        annotations if annotations is not None else {},
        artifact_type,
    )


LeafyFields = tuple[list[str], list[int], int, Mapping[str, str], "str | None"]


def decode_leafy(body: str, leaves: tuple[str, ...], *, checked: bool = False) -> LeafyFields | None:
    """The media types and sizes of a leafy record's children (its `leaves` in order), its
    config position, annotations and artifact type, without a Descriptor per child (what `ls`
    sums); None whenever `decode_manifest` would not give exactly that (the caller then takes
    the general way). `checked`: the caller matched every leaf against the digest grammar."""
    try:
        raw = _decode(body)
        if type(raw) is not list or len(raw) != 7:
            return None
        raw_children, config_at, layers_at, layers_count, raw_subject, raw_annotations, artifact_type = raw
        if type(raw_children) is not list or len(raw_children) != len(leaves) or raw_subject is not None:
            return None
        media_types: list[str] = []
        sizes: list[int] = []
        codes = _MEDIA_TYPES
        for child, digest in zip(raw_children, leaves):
            if type(child) is not list or len(child) != 2:
                return None
            code, size = child
            if type(code) is not int or type(size) is not int:
                return None
            if not 0 <= code < len(codes) or not 0 <= size <= MAX_SIZE:
                return None
            media_type = codes[code]
            if media_type not in LEAF_TYPES or (not checked and FAST_DIGEST.fullmatch(digest) is None):
                return None
            media_types.append(media_type)
            sizes.append(size)
        n = len(sizes)
        if type(config_at) is not int or not -1 <= config_at < n:
            return None
        if type(layers_at) is not int or type(layers_count) is not int:
            return None
        if not (0 <= layers_at and 0 <= layers_count and layers_at + layers_count <= n):
            return None
        annotations = _decode_strings(raw_annotations)
        if artifact_type is not None and type(artifact_type) is not str:
            return None
    except (ValueError, TypeError, RecursionError):
        return None
    return media_types, sizes, config_at, annotations if annotations is not None else _NO_ANNOTATIONS, artifact_type


def encode_config(
    size: int, created: str | None, os_: str | None, arch: str | None, variant: str | None, labels: Mapping[str, str]
) -> str:
    """A "C" record (its key is "C" and the digest): size and the config fields as JSON."""
    body = [created, os_, arch, variant, dict(labels) if labels else None]
    return f"{size}\t{_ENCODE(body)}"


def decode_config(rest: str) -> tuple[int, str | None, str | None, str | None, str | None, Mapping[str, str]] | None:
    """(size, created, os, architecture, variant, labels) of a "C" record; None when malformed."""
    size_text, sep, body = rest.partition("\t")
    if not sep or not size_text.isdigit() or len(size_text) > 18:
        return None
    try:
        raw = _decode(body)
        if type(raw) is not list or len(raw) != 5:
            return None
        created, os_, arch, variant, raw_labels = raw
        if not {type(created), type(os_), type(arch), type(variant)} <= _TEXT_OR_NONE:
            return None
        labels = _decode_strings(raw_labels)
    except (ValueError, TypeError, RecursionError):
        return None
    return int(size_text), created, os_, arch, variant, labels if labels is not None else {}


def config_created(rest: str) -> tuple[int, str | None] | None:
    """(size, created) of a "C" record: `decode_config(rest)[:2]`, or None when that refuses it.
    The usual record is matched whole by one pattern instead of decoded (`du` dates 100,000
    images by their configs); any other goes through `decode_config`."""
    match = _CONFIG_SHAPE.fullmatch(rest)
    if match is not None:
        return int(match[1]), match[2]
    record = decode_config(rest)
    return None if record is None else (record[0], record[1])


# A "C" record as `encode_config` writes it when no string needs an escape: JSON strings
# without escapes or control characters (what the strict scanner accepts unescaped), labels a
# flat object of such strings.
_PLAIN = r'"[^"\\\x00-\x1f]*"'
_CONFIG_SHAPE = re.compile(
    rf'([0-9]{{1,18}})\t\[(?:"([^"\\\x00-\x1f]*)"|null)(?:,(?:{_PLAIN}|null)){{3}},'
    rf"(?:null|\{{(?:{_PLAIN}:{_PLAIN}(?:,{_PLAIN}:{_PLAIN})*)?\}})\]"
)


def _encode_descriptor(d: Descriptor, with_digest: bool) -> list[Any]:
    out: list[Any] = [_MEDIA_CODES.get(d.media_type, d.media_type), d.digest, d.size]
    if not with_digest:
        del out[1]
    if d.platform is not None or d.annotations or d.artifact_type is not None:
        p = d.platform
        out.append(None if p is None else [p.os, p.architecture, p.variant, p.os_version])
        out.append(dict(d.annotations) if d.annotations else None)
        out.append(d.artifact_type)
    return out


def _decode_descriptor(raw: Any, digest: str | None) -> Descriptor:
    """A descriptor from its record; `digest` given when the record leaves it out."""
    if type(raw) is not list:
        raise ValueError("descriptor")
    if digest is not None and len(raw) == 2:  # the common [code, size]
        code, size = raw
        if (
            type(code) is int
            and 0 <= code < len(_MEDIA_TYPES)
            and type(size) is int
            and 0 <= size <= MAX_SIZE
            and FAST_DIGEST.fullmatch(digest) is not None
        ):
            return Descriptor(_MEDIA_TYPES[code], Digest(digest), size, None, _NO_ANNOTATIONS)
    if digest is None:
        if len(raw) not in (3, 6):
            raise ValueError("descriptor")
        media_type, digest, size = raw[0], raw[1], raw[2]
        extra = raw[3:]
    else:
        if len(raw) not in (2, 5):
            raise ValueError("descriptor")
        media_type, size = raw[0], raw[1]
        extra = raw[2:]
    if type(media_type) is int:
        if not 0 <= media_type < len(_MEDIA_TYPES):
            raise ValueError("media type code")
        media_type = _MEDIA_TYPES[media_type]
    elif media_type is not None and type(media_type) is not str:
        raise ValueError("media type")
    if type(digest) is not str or FAST_DIGEST.fullmatch(digest) is None:
        raise ValueError("digest")
    if type(size) is not int or not -1 <= size <= MAX_SIZE:
        raise ValueError("size")
    if not extra:
        return Descriptor(media_type, Digest(digest), size, None, _NO_ANNOTATIONS)
    raw_platform, raw_annotations, artifact_type = extra
    platform = None
    if raw_platform is not None:
        if type(raw_platform) is not list or len(raw_platform) != 4:
            raise ValueError("platform")
        os_, arch, variant, version = raw_platform
        if type(os_) is not str or type(arch) is not str:
            raise ValueError("platform")
        if not all(v is None or (type(v) is str and v) for v in (variant, version)):
            raise ValueError("platform")
        platform = Platform(os_, arch, variant, version)
    annotations = _decode_strings(raw_annotations)
    if artifact_type is not None and type(artifact_type) is not str:
        raise ValueError("artifactType")
    return Descriptor(
        media_type, Digest(digest), size, platform, annotations if annotations else _NO_ANNOTATIONS, artifact_type
    )


_TEXT_OR_NONE = frozenset({str, type(None)})
_TEXT = frozenset({str})


def _decode_strings(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if type(raw) is not dict or not set(map(type, raw.values())) <= _TEXT:
        raise ValueError("string map")
    return raw


def _int(text: str) -> int:
    return int(text) if text.isdigit() and len(text) <= 18 else -2
