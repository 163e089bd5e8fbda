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
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .descriptor import Descriptor, parse_descriptor
from .digest import Digest, parse_digest
from .errors import CorruptLayoutError, OcilayoutError
from .graph import MAX_DEPTH, Graph, Node, NodeState, Visit
from .indexfile import loads_strict
from .mediatypes import (
    ARTIFACT_TYPES,
    DOCKER_CONFIG,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_CONFIG,
    Kind,
)
from .schemas import problems as _schema_problems
from .storage import MAX_DOCUMENT_BYTES, LayoutStore, _open_regular, open_store

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
    claims: list[tuple[int, str]] = field(default_factory=list)  # (declared size, who declares it)
    schema_kind: str | None = None
    node: Node | None = None


def _schema_kind(descriptor: Descriptor, node: Node | None) -> str | None:
    """Which schema a reachable blob must satisfy, if any."""
    if node is not None and node.state is NodeState.PARSED:
        if node.kind is Kind.INDEX:
            return "index"
        if node.kind is Kind.IMAGE:
            if descriptor.media_type in _SCHEMA1_TYPES:
                return None  # Docker schema1: no schema of ours describes it
            return "manifest"
        if node.kind is Kind.ARTIFACT and descriptor.media_type in ARTIFACT_TYPES:
            return "artifact-manifest"
        return None
    if descriptor.media_type in _CONFIG_TYPES:
        return "config"
    return None


def _walk(graph: Graph, roots: Sequence[tuple[Descriptor, str]], problems: list[Problem]) -> dict[Digest, _Blob]:
    """Every reachable blob with every reference to it (a blob referenced by several parents
    has its size checked against each), from the graph's one walk."""
    blobs: dict[Digest, _Blob] = {}
    labels = iter(where for _, where in roots)
    for descriptor, parent, _, visit, node in graph.walk(descriptor for descriptor, _ in roots):
        digest = descriptor.digest
        where = next(labels) if parent is None else f"{parent.kind} {parent.digest}"
        blob = blobs.get(digest)
        if blob is None:
            blob = blobs[digest] = _Blob(digest)
        blob.claims.append((descriptor.size, where))
        if visit is Visit.CYCLE:
            problems.append(Problem("cycle", str(digest), f"referenced by {where}, which it (indirectly) references"))
            continue
        if node is not None and (
            blob.node is None or (blob.node.state is NodeState.NOT_READ and node.state is not NodeState.NOT_READ)
        ):
            blob.node = node
        if blob.schema_kind is None:
            blob.schema_kind = _schema_kind(descriptor, node)
        if visit is Visit.DEEP:
            problems.append(
                Problem("depth", str(digest), f"nested deeper than {graph.max_depth} levels; not followed further")
            )
        elif visit is Visit.ENTER and node is not None and node.state is NodeState.UNREADABLE:
            problems.append(Problem("unreadable", str(digest), node.problem or "cannot be read"))
    return blobs


# -- hashing ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    blob: _Blob
    path: Path
    size: int


@dataclass(slots=True)
class _Result:
    hexdigest: str | None = None
    error: str | None = None
    schema_problems: list[str] = field(default_factory=list)


class _Meter:
    """Bytes hashed so far, shared by the workers; calls the progress callback now and then."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self._lock = threading.Lock()
        self._next = 0.0

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            if self.callback is not None:
                now = time.monotonic()
                if now >= self._next:
                    self._next = now + PROGRESS_INTERVAL
                    self.callback(self.done, self.total)

    def finish(self) -> None:
        with self._lock:
            if self.callback is not None:
                self.callback(self.done, self.total)


def _hash_all(store: LayoutStore, jobs: list[_Job], meter: _Meter, workers: int) -> list[_Result]:
    """Hash every job's blob (in the given order, over `workers` threads of the standard
    library's pool: hashlib and reads release the GIL); validate documents on the way."""
    stop = threading.Event()
    buffers = threading.local()

    def run(chunk: list[_Job]) -> list[_Result]:
        buffer = getattr(buffers, "buffer", None)
        if buffer is None:
            buffer = buffers.buffer = bytearray(CHUNK)
        return [
            _Result(error="not checked") if stop.is_set() else _hash_one(store, job, buffer, meter, stop)
            for job in chunk
        ]

    # Tasks of many small blobs keep the pool's bookkeeping small (a 100,000-image layout has
    # ~470,000 blobs); a large blob is a task of its own, so both threads stay busy.
    chunks: list[list[_Job]] = []
    current: list[_Job] = []
    weight = 0
    for job in jobs:
        current.append(job)
        weight += job.size
        if len(current) >= _JOBS_PER_TASK or weight >= _BYTES_PER_TASK:
            chunks.append(current)
            current, weight = [], 0
    if current:
        chunks.append(current)
    if workers <= 1 or len(jobs) <= 1:
        return [result for chunk in chunks for result in run(chunk)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocilayout-hash") as pool:
        try:
            return [result for part in pool.map(run, chunks) for result in part]
        except BaseException:
            stop.set()  # interrupted, or a worker failed: the others stop at their next chunk
            pool.shutdown(wait=False, cancel_futures=True)
            raise


_JOBS_PER_TASK = 64
_BYTES_PER_TASK = 4 * CHUNK


def _hash_one(store: LayoutStore, job: _Job, buffer: bytearray, meter: _Meter, stop: threading.Event) -> _Result:
    digest = job.blob.digest
    hasher = hashlib.new(digest.algorithm)
    view = memoryview(buffer)
    keep = job.blob.schema_kind is not None and job.size <= MAX_DOCUMENT_BYTES
    document = bytearray() if keep else None
    result = _Result()
    try:
        with _open_regular(job.path) as handle:  # no symlink followed, no FIFO opened
            fd = handle.fileno()
            while not stop.is_set():
                count = os.readv(fd, [buffer])  # straight into our buffer: no BufferedReader copy
                if not count:
                    break
                hasher.update(view[:count])
                if document is not None:
                    document += view[:count]
                    if len(document) > MAX_DOCUMENT_BYTES:
                        document = None
                meter.add(count)
    except OcilayoutError as exc:
        result.error = str(exc)
        return result
    except OSError as exc:
        result.error = f"cannot read: {exc.strerror or exc}"
        return result
    result.hexdigest = hasher.hexdigest()
    if document is not None and job.blob.schema_kind is not None:
        result.schema_problems = _validate_document(bytes(document), job.blob)
    return result


def _validate_document(data: bytes, blob: _Blob) -> list[str]:
    kind = blob.schema_kind
    assert kind is not None
    if blob.node is not None and blob.node.state is NodeState.UNREADABLE:
        return []  # already reported as unreadable
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

    jobs = _present_blobs(store, blobs, report, allow_sparse)
    jobs.sort(key=lambda j: j.size, reverse=True)
    meter = _Meter(sum(j.size for j in jobs), progress)
    results = _hash_all(store, jobs, meter, max(1, workers))
    meter.finish()
    by_digest: dict[Digest, tuple[_Job, _Result]] = {j.blob.digest: (j, r) for j, r in zip(jobs, results)}
    for blob in blobs.values():
        found = by_digest.get(blob.digest)
        if found is None:
            continue
        job, result = found
        if result.error is not None:
            report.problems.append(Problem("unreadable", str(blob.digest), _strip_path(result.error, root)))
            continue
        report.blobs_checked += 1
        report.bytes_hashed += job.size
        if result.hexdigest != blob.digest.encoded:
            report.problems.append(
                Problem("digest", str(blob.digest), f"content hashes to {blob.digest.algorithm}:{result.hexdigest}")
            )
        for line in result.schema_problems:
            report.problems.append(Problem("schema", str(blob.digest), line))

    _list_unreferenced(store, blobs, report, know_reach=roots is not None)
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


def _present_blobs(
    store: LayoutStore, blobs: dict[Digest, _Blob], report: VerifyReport, allow_sparse: bool
) -> list[_Job]:
    """Check presence and sizes; return the blobs to hash."""
    jobs = []
    for blob in blobs.values():
        digest = blob.digest
        try:
            path = store.locate(digest)
            actual = os.lstat(path).st_size if path is not None else None
        except CorruptLayoutError as exc:
            report.problems.append(Problem("unreadable", str(digest), _strip_path(str(exc), store.root)))
            continue
        except OSError as exc:
            report.problems.append(Problem("unreadable", str(digest), exc.strerror or str(exc)))
            continue
        if path is None or actual is None:
            first = blob.claims[0][1]
            message = f"not in blobs/{' nor in the shared blob directory' if store.shared_blobs else ''}" + (
                f" (referenced by {first})"
            )
            if allow_sparse:
                report.warnings.append(f"missing {digest}: {message}")
            else:
                report.problems.append(Problem("missing", str(digest), message))
            continue
        wrong: dict[int, list[str]] = {}
        for declared, where in blob.claims:
            if declared >= 0 and declared != actual:
                wrong.setdefault(declared, []).append(where)
        for declared, wheres in wrong.items():
            others = f" (and {len(wheres) - 1} more)" if len(wheres) > 1 else ""
            report.problems.append(
                Problem("size", str(digest), f"is {actual} bytes but {wheres[0]}{others} declares {declared}")
            )
        jobs.append(_Job(blob, path, actual))
    return jobs


def _list_unreferenced(
    store: LayoutStore, blobs: dict[Digest, _Blob], report: VerifyReport, *, know_reach: bool
) -> None:
    root = store.root
    try:
        scan = store.inventory(reached=blobs if know_reach else None)
    except CorruptLayoutError as exc:
        report.problems.append(Problem("stray", "blobs", _strip_path(str(exc), root)))
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
