"""Verification (DESIGN 3.8): is every blob that `index.json` reaches present and intact?

Checks, each failure one `Problem`:
- `oci-layout` valid (JSON object, supported `imageLayoutVersion`): kind `layout`;
- `index.json` readable and valid against the `index` schema; every entry a valid
  descriptor: kind `index`;
- every reachable blob present in the layout's own blobs/ or the shared directory
  (`missing`; downgraded to a warning with `allow_sparse`), a regular file whose
  references can be read (`unreadable`);
- its size equal to every descriptor's that references it (`size`; descriptors with
  size -1, Docker schema1 layers, carry none);
- its content hashing to its digest (`digest`), streamed in 1 MiB chunks over two
  threads (hashlib releases the GIL, so both cores work);
- manifests, indexes, artifact manifests and OCI/Docker configs valid against the
  project's schemas (`schema`);
- no cycle (`cycle`) and no absurd nesting (`depth`);
- and, listed as problems too, blobs of the layout's own blobs/ that nothing reaches
  (`unreachable`) and files there that are not blobs (`stray`).

The library reports progress through an optional callback; it never prints.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .descriptor import Descriptor, parse_descriptor
from .digest import ALGORITHMS, Digest, parse_digest
from .errors import CorruptLayoutError, OcilayoutError
from .graph import MAX_DEPTH, Graph, NodeState, Visit
from .indexfile import loads_strict
from .mediatypes import (
    ARTIFACT_TYPES,
    DOCKER_CONFIG,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_CONFIG,
    Kind,
)
from .parallel import fork_split, worth_forking
from .schemas import problems as _schema_problems
from .storage import MAX_DOCUMENT_BYTES, Inventory, LayoutStore, _open_regular, open_store

CHUNK = 1024 * 1024
DEFAULT_WORKERS = 2
# Longest a progress callback waits between two calls while bytes are being hashed.
PROGRESS_INTERVAL = 0.1

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(bytes_hashed, bytes_total)`; may be called from worker threads (never
two calls at once), at most every PROGRESS_INTERVAL seconds, and once more at the end."""

PathLike = str | os.PathLike[str]

PROBLEM_KINDS = (
    "layout",
    "index",
    "missing",
    "unreadable",
    "size",
    "digest",
    "schema",
    "cycle",
    "depth",
    "unreachable",
    "stray",
)

_SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the layout. `subject` is a digest or a path."""

    kind: str
    subject: str
    message: str

    def __str__(self) -> str:
        """One line, always: file names and messages may hold control characters."""
        return f"{self.kind}: {_printable(self.subject)}: {_printable(self.message)}"


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


@dataclass(slots=True)
class VerifyReport:
    """The result of one `verify` call; `ok` only when `problems` is empty."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reachable: int = 0
    blobs_checked: int = 0
    bytes_hashed: int = 0
    unreachable: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 when problems were found."""
        return 0 if self.ok else 1


# -- the walk -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Blob:
    """What the walk learnt about one reachable digest."""

    digest: Digest
    # (declared size, who declares it): a root's label, or the parent's (kind, digest), made
    # into text only for a message (a 100,000-image layout has ~550,000 references)
    claims: list[tuple[int, str | tuple[Kind, Digest]]] = field(default_factory=list)
    schema_kind: str | None = None
    state: NodeState | None = None  # of the node the walk gave (None: none yet)

    def where(self, position: int = 0) -> str:
        """Who makes the `position`-th reference to this blob."""
        return _where(self.claims[position][1])


def _where(who: str | tuple[Kind, Digest]) -> str:
    return who if isinstance(who, str) else f"{who[0]} {who[1]}"


def _schema_kind(descriptor: Descriptor, state: NodeState | None, kind: Kind | None) -> str | None:
    """Which schema a reachable blob must satisfy, if any (from its node's state and kind)."""
    if state is NodeState.PARSED:
        if kind is Kind.INDEX:
            return "index"
        if kind is Kind.IMAGE:
            if descriptor.media_type in _SCHEMA1_TYPES:
                return None  # Docker schema1: no schema of ours describes it
            return "manifest"
        if kind is Kind.ARTIFACT and descriptor.media_type in ARTIFACT_TYPES:
            return "artifact-manifest"
        return None
    if descriptor.media_type in _CONFIG_TYPES:
        return "config"
    return None


def _walk(graph: Graph, roots: Sequence[tuple[Descriptor, str]], problems: list[Problem]) -> dict[Digest, _Blob]:
    """Every reachable blob with every reference to it (a blob referenced by several parents
    has its size checked against each), from the graph's one walk.

    The walk keeps no parsed manifest (a big layout's would fill memory): what a later
    reference to an entered manifest needs, its node's state and kind, is kept here."""
    blobs: dict[Digest, _Blob] = {}
    kinds: dict[Digest, tuple[NodeState, Kind]] = {}  # entered manifests the graph does not keep
    labels = iter(where for _, where in roots)
    leaf, configs = Visit.LEAF, _CONFIG_TYPES
    for descriptor, parent, _, visit, node in graph.walk((descriptor for descriptor, _ in roots), keep=False):
        digest = descriptor.digest
        claim = (descriptor.size, next(labels) if parent is None else (parent.kind, parent.digest))
        blob = blobs.get(digest)
        if blob is None:
            blob = blobs[digest] = _Blob(digest, [claim])
        else:
            blob.claims.append(claim)
        if visit is leaf:  # most steps (configs, layers): no node, only a schema for configs
            if blob.schema_kind is None and descriptor.media_type in configs:
                blob.schema_kind = "config"
            continue
        if visit is Visit.CYCLE:
            where = blob.where(-1)
            problems.append(Problem("cycle", str(digest), f"referenced by {where}, which it (indirectly) references"))
            continue
        state: NodeState | None
        kind: Kind | None
        if node is not None:
            state, kind = node.state, node.kind
            if node.children:
                kinds[digest] = (state, kind)
        elif visit is Visit.AGAIN and digest in kinds:
            state, kind = kinds[digest]  # what the graph would have kept
        else:
            state = kind = None
        if state is not None and (
            blob.state is None or (blob.state is NodeState.NOT_READ and state is not NodeState.NOT_READ)
        ):
            blob.state = state
        if blob.schema_kind is None:
            blob.schema_kind = _schema_kind(descriptor, state, kind)
        if visit is Visit.DEEP:
            problems.append(
                Problem("depth", str(digest), f"nested deeper than {graph.max_depth} levels; not followed further")
            )
        elif visit is Visit.ENTER and state is NodeState.UNREADABLE:
            problems.append(Problem("unreadable", str(digest), (node.problem if node else None) or "cannot be read"))
    return blobs


# -- presence, size, digest and schema of each blob ------------------------------------------------

# What checking one blob found (plain data: a forked child sends these back marshalled):
#   (MISSING,)                          in no blob directory
#   (BROKEN, message)                   its file cannot be looked at (a symlink, a directory...)
#   (FOUND, path, size, error, hexdigest, schema problems)
#                                       present, of `size` bytes; `error` if reading failed,
#                                       `hexdigest` only when it is not the digest's own
MISSING, BROKEN, FOUND = 0, 1, 2
_Outcome = tuple[Any, ...]

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
# The constructors themselves: `hashlib.new(name)` looks the name up on every call.
_HASHES: dict[str, Callable[..., Any]] = {name: getattr(hashlib, name) for name in ALGORITHMS}
_SMALL = 256 * 1024  # read whole in one call; bigger blobs stream through the buffer
_PER_BLOB = 16 * 1024  # the cost of one blob's open, read and bookkeeping, in bytes hashed


class _Meter:
    """Bytes hashed so far (here, plus a forked child's through shared memory); calls the
    progress callback now and then."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self.shared: mmap.mmap | None = None  # the child's count, when one hashes too
        self._lock = threading.Lock()
        self._next = 0.0

    def add(self, count: int) -> None:
        if self.callback is None:
            return
        with self._lock:
            self.done += count
            now = time.monotonic()
            if now >= self._next:
                self._next = now + PROGRESS_INTERVAL
                self.callback(self._count(), self.total)

    def _count(self) -> int:
        return self.done + (int.from_bytes(self.shared[:8], "little") if self.shared is not None else 0)

    def finish(self) -> None:
        with self._lock:
            if self.callback is not None:
                done = self._count()
                self.callback(done, max(self.total, done))


class _ChildMeter:
    """The forked child's side of the meter: its count in shared memory."""

    def __init__(self, shared: mmap.mmap) -> None:
        self.shared = shared
        self.done = 0

    def add(self, count: int) -> None:
        self.done += count
        self.shared[:8] = self.done.to_bytes(8, "little")


class _Checker:
    """Checks blobs: found where `store.locate` finds them, sized by the one fstat of the open
    file, hashed from the same descriptor, documents validated from the same bytes.

    Anything unusual about a file (not a regular file, an error other than absence, a
    symlinked blobs directory) is checked again the long way, exactly as before, so that the
    fast way never changes a verdict or a message."""

    def __init__(self, store: LayoutStore, meter: _Meter | _ChildMeter) -> None:
        self.store = store
        self.meter = meter
        self.buffer = bytearray(CHUNK)
        self.stop = threading.Event()
        self._dirs: dict[str, list[str] | None] = {}

    def _directories(self, algorithm: str, digest: Digest) -> list[str] | None:
        """Where `locate` looks for blobs of this algorithm, as text; None when one of them
        is unusual (then every blob takes the long way)."""
        if algorithm not in self._dirs:
            try:
                paths = self.store.candidate_paths(digest)
                for path in paths:
                    self.store._check_parent_dirs(path)
                self._dirs[algorithm] = [os.fspath(path.parent) for path in paths]
            except OcilayoutError:
                self._dirs[algorithm] = None
        return self._dirs[algorithm]

    def check(self, digest: Digest, kind: str | None, unreadable: bool) -> _Outcome:
        algorithm, _, encoded = digest.partition(":")  # once per blob: half a million at 100,000 images
        directories = self._directories(algorithm, digest)
        if directories is None:
            return self._long_way(digest, kind, unreadable)
        for directory in directories:
            path = f"{directory}/{encoded}"
            try:
                fd = os.open(path, _OPEN_FLAGS)
            except FileNotFoundError:
                continue
            except OSError:
                return self._long_way(digest, kind, unreadable)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return self._long_way(digest, kind, unreadable)
                return self._hash(fd, path, st.st_size, algorithm, encoded, kind, unreadable)
            finally:
                os.close(fd)
        return (MISSING,)

    def _hash(
        self, fd: int, path: str, size: int, algorithm: str, encoded: str, kind: str | None, unreadable: bool
    ) -> _Outcome:
        keep = kind is not None and size <= MAX_DOCUMENT_BYTES
        try:
            if size <= _SMALL:
                data = os.read(fd, size + 1)  # the whole file and, in the same call, its end
                hasher = _HASHES[algorithm](data)
                document: bytes | bytearray | None = data if keep else None
                if len(data) > size:  # it grew since the fstat: read on to its end, as the long way does
                    rest = self._stream(fd, hasher, bytearray(data) if keep else None)
                    document = rest if keep else None
                else:
                    self.meter.add(len(data))
            else:
                hasher = _HASHES[algorithm]()
                document = self._stream(fd, hasher, bytearray() if keep else None)
        except OSError as exc:
            return (FOUND, path, size, f"cannot read: {exc.strerror or exc}", None, [])
        hexdigest = hasher.hexdigest()
        problems = []
        if document is not None and kind is not None and not unreadable:
            problems = _validate_document(bytes(document), kind)
        return (FOUND, path, size, None, None if hexdigest == encoded else hexdigest, problems)

    def _stream(self, fd: int, hasher: Any, document: bytearray | None) -> bytearray | None:
        buffer, view = self.buffer, memoryview(self.buffer)
        while not self.stop.is_set():
            count = os.readv(fd, [buffer])
            if not count:
                break
            hasher.update(view[:count])
            if document is not None:
                document += view[:count]
                if len(document) > MAX_DOCUMENT_BYTES:
                    document = None
            self.meter.add(count)
        return document

    def _long_way(self, digest: Digest, kind: str | None, unreadable: bool) -> _Outcome:
        """`store.locate`, an lstat, and a read through `_open_regular`, with their messages."""
        store = self.store
        try:
            path = store.locate(digest)
            actual = os.lstat(path).st_size if path is not None else None
        except CorruptLayoutError as exc:
            return (BROKEN, _strip_path(str(exc), store.root))
        except OSError as exc:
            return (BROKEN, exc.strerror or str(exc))
        if path is None or actual is None:
            return (MISSING,)
        try:
            with _open_regular(path) as handle:  # no symlink followed, no FIFO opened
                hasher = hashlib.new(digest.algorithm)
                document = self._stream(
                    handle.fileno(), hasher, bytearray() if kind is not None and actual <= MAX_DOCUMENT_BYTES else None
                )
        except OcilayoutError as exc:
            return (FOUND, str(path), actual, str(exc), None, [])
        except OSError as exc:
            return (FOUND, str(path), actual, f"cannot read: {exc.strerror or exc}", None, [])
        hexdigest = hasher.hexdigest()
        problems = []
        if document is not None and kind is not None and not unreadable:
            problems = _validate_document(bytes(document), kind)
        return (FOUND, str(path), actual, None, None if hexdigest == digest.encoded else hexdigest, problems)


# What to check about one blob: its digest, the schema its content must satisfy, whether the
# walk already found it unreadable (no schema check then), and its size as declared (or 0).
_Item = tuple[Digest, "str | None", bool, int]
T = TypeVar("T")


def _check_all(
    store: LayoutStore, items: list[_Item], meter: _Meter, workers: int, also: Callable[[], T]
) -> tuple[list[_Outcome], T]:
    """Every item's outcome, in the items' order, and what `also()` returns (work for this
    process meanwhile): on two processes when there are many items (each blob's bookkeeping
    holds the GIL), else on `workers` threads (hashlib and reads release it)."""
    if workers > 1 and worth_forking(len(items)):
        return _check_forked(store, items, meter, also)
    return _check_here(store, items, meter, workers), also()


def _check_here(store: LayoutStore, items: list[_Item], meter: _Meter, workers: int) -> list[_Outcome]:
    checker = _Checker(store, meter)
    if workers <= 1 or len(items) <= 1:
        return [checker.check(digest, kind, unreadable) for digest, kind, unreadable, _ in items]
    order = sorted(range(len(items)), key=lambda i: items[i][3], reverse=True)  # big ones first
    tasks: list[list[int]] = []
    current: list[int] = []
    weight = 0
    for i in order:  # tasks of many small blobs; a large blob is a task of its own
        current.append(i)
        weight += items[i][3]
        if len(current) >= 64 or weight >= 4 * CHUNK:
            tasks.append(current)
            current, weight = [], 0
    if current:
        tasks.append(current)
    local = threading.local()

    def run(task: list[int]) -> list[tuple[int, _Outcome]]:
        mine = getattr(local, "checker", None)
        if mine is None:
            mine = local.checker = _Checker(store, meter)
            mine.stop = checker.stop
        done = []
        for i in task:
            if mine.stop.is_set():
                break
            digest, kind, unreadable, _ = items[i]
            done.append((i, mine.check(digest, kind, unreadable)))
        return done

    outcomes: list[_Outcome] = [(FOUND, "", 0, "not checked", None, [])] * len(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocilayout-hash") as pool:
        try:
            for part in pool.map(run, tasks):
                for i, outcome in part:
                    outcomes[i] = outcome
        except BaseException:
            checker.stop.set()  # interrupted, or a worker failed: the others stop at their next blob
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return outcomes


def _check_forked(
    store: LayoutStore, items: list[_Item], meter: _Meter, also: Callable[[], T]
) -> tuple[list[_Outcome], T]:
    """About half of the work (by declared bytes and blob count) in a forked child, the rest
    and `also()` here, at once; the child's bytes reach the progress meter through shared
    memory."""
    order = sorted(range(len(items)), key=lambda i: items[i][3], reverse=True)
    sides: tuple[list[int], list[int]] = ([], [])
    load = [len(items) * _PER_BLOB // 8, 0]  # `also` (a listing of blobs/): about an eighth of a blob each
    for i in order:  # largest first, each to the lighter side
        side = 0 if load[0] <= load[1] else 1
        sides[side].append(i)
        load[side] += items[i][3] + _PER_BLOB
    here, there = sides
    shared = mmap.mmap(-1, 8)  # anonymous and shared: the child writes, this process reads

    def check(indexes: list[int], checker: _Checker) -> list[_Outcome]:
        return [checker.check(items[i][0], items[i][1], items[i][2]) for i in indexes]

    meter.shared = shared
    try:
        (extra, mine), theirs = fork_split(
            lambda: (also(), check(here, _Checker(store, meter))),
            lambda: check(there, _Checker(store, _ChildMeter(shared))),
        )
        meter.done += int.from_bytes(shared[:8], "little")
    finally:
        meter.shared = None
        shared.close()
    outcomes: list[_Outcome] = [()] * len(items)
    for i, outcome in zip(here, mine):
        outcomes[i] = outcome
    for i, outcome in zip(there, theirs):
        outcomes[i] = tuple(outcome)
    return outcomes, extra


def _validate_document(data: bytes, kind: str) -> list[str]:
    try:
        document = loads_strict(data, "content")
    except CorruptLayoutError as exc:
        return [f"{kind}: {exc}"]
    if kind == "manifest" and isinstance(document, dict) and (
        document.get("schemaVersion") == 1 or "fsLayers" in document
    ):
        return []  # Docker schema1: not described by our schemas
    return _schema_problems(document, kind)


# -- the whole check ------------------------------------------------------------------------------


def verify_layout(
    path: PathLike,
    shared_blobs: PathLike | None = None,
    *,
    allow_sparse: bool = False,
    progress: ProgressCallback | None = None,
    workers: int = DEFAULT_WORKERS,
    max_depth: int = MAX_DEPTH,
) -> VerifyReport:
    """Check the layout at `path` (reading also from `shared_blobs`); never changes anything.

    A bad `oci-layout` or `index.json` is a problem in the report, not an exception; only a
    path that is not there (NotFoundError) or not a directory (CorruptLayoutError) raises.
    """
    started = time.perf_counter()
    root = Path(path)
    store = open_store(root, Path(shared_blobs) if shared_blobs is not None else None)
    report = VerifyReport(root)

    try:
        store.check_layout_file()
    except OcilayoutError as exc:
        report.problems.append(Problem("layout", "oci-layout", _strip_path(str(exc), root, "oci-layout")))

    roots = _read_roots(store, report)
    graph = Graph(store, strict=False, max_depth=max_depth, cache=False)  # verify reads every blob itself
    blobs: dict[Digest, _Blob] = {}
    if roots is not None:
        blobs = _walk(graph, roots, report.problems)
        report.warnings.extend(w for w in graph.warnings if not w.startswith(("missing ", "cannot read ")))
    report.reachable = len(blobs)

    items: list[_Item] = [
        (
            blob.digest,
            blob.schema_kind,
            blob.state is NodeState.UNREADABLE,
            max((size for size, _ in blob.claims), default=0),
        )
        for blob in blobs.values()
    ]
    meter = _Meter(sum(item[3] for item in items), progress)
    know_reach = roots is not None
    outcomes, scan = _check_all(store, items, meter, max(1, workers), lambda: _scan(store, blobs, know_reach))
    meter.finish()
    # Presence and sizes first, then digests and schemas: each in the walk's order.
    for blob, outcome in zip(blobs.values(), outcomes):
        digest = blob.digest
        if outcome[0] == BROKEN:
            report.problems.append(Problem("unreadable", str(digest), outcome[1]))
        elif outcome[0] == MISSING:
            message = f"not in blobs/{' nor in the shared blob directory' if store.shared_blobs else ''}" + (
                f" (referenced by {blob.where()})"
            )
            if allow_sparse:
                report.warnings.append(f"missing {digest}: {message}")
            else:
                report.problems.append(Problem("missing", str(digest), message))
        else:
            actual = outcome[2]
            wrong: dict[int, list[int]] = {}
            for position, (declared, _) in enumerate(blob.claims):
                if declared >= 0 and declared != actual:
                    wrong.setdefault(declared, []).append(position)
            for declared, positions in wrong.items():
                others = f" (and {len(positions) - 1} more)" if len(positions) > 1 else ""
                report.problems.append(
                    Problem(
                        "size",
                        str(digest),
                        f"is {actual} bytes but {blob.where(positions[0])}{others} declares {declared}",
                    )
                )
    for blob, outcome in zip(blobs.values(), outcomes):
        if outcome[0] != FOUND:
            continue
        _, _, size, error, hexdigest, schema_lines = outcome
        if error is not None:
            report.problems.append(Problem("unreadable", str(blob.digest), _strip_path(error, root)))
            continue
        report.blobs_checked += 1
        report.bytes_hashed += size
        if hexdigest is not None:
            report.problems.append(
                Problem("digest", str(blob.digest), f"content hashes to {blob.digest.algorithm}:{hexdigest}")
            )
        for line in schema_lines:
            report.problems.append(Problem("schema", str(blob.digest), line))

    _list_unreferenced(store, blobs, report, scan, know_reach=know_reach)
    report.seconds = time.perf_counter() - started
    return report


def _read_roots(store: LayoutStore, report: VerifyReport) -> list[tuple[Descriptor, str]] | None:
    """The entries of index.json, each checked; None when index.json itself is unusable."""
    root = store.root
    try:
        data = store.read_index_bytes()
        document = loads_strict(data, "index.json")
    except OcilayoutError as exc:
        report.problems.append(Problem("index", "index.json", _strip_path(str(exc), root, "index.json")))
        return None
    schema_lines = _schema_problems(document, "index")
    for line in schema_lines:
        report.problems.append(Problem("index", "index.json", line.removeprefix("index: ")))
    if not isinstance(document, dict):
        return None
    manifests = document.get("manifests")
    if not isinstance(manifests, list):
        if not schema_lines:
            report.problems.append(Problem("index", "index.json", "manifests is not a list"))
        return [] if manifests is None else None
    roots = []
    for position, raw in enumerate(manifests):
        where = f"index.json manifests[{position}]"
        try:
            roots.append((parse_descriptor(raw, where), where))
        except OcilayoutError as exc:
            if not any(f"$.manifests[{position}]" in line for line in schema_lines):
                report.problems.append(Problem("index", "index.json", _strip_path(str(exc), root, "index.json")))
    return roots


def _scan(store: LayoutStore, blobs: dict[Digest, _Blob], know_reach: bool) -> Inventory | CorruptLayoutError:
    """The listing of blobs/ (what no entry reaches, strays), or why there is none."""
    try:
        return store.inventory(reached=blobs if know_reach else None)
    except CorruptLayoutError as exc:
        return exc


def _list_unreferenced(
    store: LayoutStore,
    blobs: dict[Digest, _Blob],
    report: VerifyReport,
    scan: Inventory | CorruptLayoutError,
    *,
    know_reach: bool,
) -> None:
    root = store.root
    if isinstance(scan, CorruptLayoutError):
        report.problems.append(Problem("stray", "blobs", _strip_path(str(scan), root)))
        return
    if know_reach:
        for entry in scan.blobs:
            if entry.digest is not None and entry.digest not in blobs:
                report.unreachable.append(str(entry.digest))
                report.problems.append(
                    Problem("unreachable", str(entry.digest), f"{entry.size} bytes; no entry of index.json reaches it")
                )
    else:
        report.warnings.append("index.json unusable: unreachable blobs not listed")
    for temp in scan.temp_files:
        shown = _relative(temp.path, root)
        report.strays.append(shown)
        report.problems.append(Problem("stray", shown, "leftover temporary file of ocilayout (gc removes it)"))
    for stray in scan.strays:
        if _digest_of(stray.path) in blobs:
            continue  # a reachable digest that is not a regular file: reported as unreadable
        shown = _relative(stray.path, root)
        report.strays.append(shown)
        report.problems.append(Problem("stray", shown, stray.reason))


def _digest_of(path: Path) -> Digest | None:
    try:
        return parse_digest(f"{path.parent.name}:{path.name}")
    except OcilayoutError:
        return None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _strip_path(message: str, root: Path, subject: str | None = None) -> str:
    """Messages from the store name full paths; show them relative to the layout, and drop a
    leading `<subject>: ` that the problem line already shows."""
    text = message.replace(f"{root}{os.sep}", "")
    if subject is not None:
        text = text.removeprefix(f"{subject}: ")
    return text


__all__ = ["PROBLEM_KINDS", "Problem", "ProgressCallback", "VerifyReport", "verify_layout"]
