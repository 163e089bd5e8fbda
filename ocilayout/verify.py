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
import importlib.resources
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from .descriptor import Descriptor, parse_descriptor
from .digest import Digest, parse_digest
from .errors import CorruptLayoutError, OcilayoutError
from .gc import scan_blob_dir
from .graph import MAX_DEPTH, Graph, Node, NodeState
from .indexfile import loads_strict
from .mediatypes import (
    ARTIFACT_TYPES,
    DOCKER_CONFIG,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_CONFIG,
    Kind,
)
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


def _schema_kind(descriptor: Descriptor, node: Node) -> str | None:
    """Which schema a reachable blob must satisfy, if any."""
    if node.state is NodeState.PARSED:
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


class _Walk:
    """Depth-first walk with colours, so a cycle is seen (and reported) rather than skipped.

    Every reference is recorded (a blob referenced by several parents has its size checked
    against each); every blob is read and parsed at most once (the graph caches).
    """

    def __init__(self, graph: Graph, max_depth: int) -> None:
        self.graph = graph
        self.max_depth = max_depth
        self.blobs: dict[Digest, _Blob] = {}
        self.problems: list[Problem] = []
        self._done: set[Digest] = set()

    def run(self, roots: Sequence[tuple[Descriptor, str]]) -> None:
        for descriptor, where in roots:
            self._visit_tree(descriptor, where)

    def _record(self, descriptor: Descriptor, where: str) -> _Blob:
        blob = self.blobs.get(descriptor.digest)
        if blob is None:
            blob = self.blobs[descriptor.digest] = _Blob(descriptor.digest)
        blob.claims.append((descriptor.size, where))
        return blob

    def _visit_tree(self, root: Descriptor, where: str) -> None:
        # Items: (descriptor, who references it, depth) to enter a blob, or (digest,) to leave it.
        on_path: set[Digest] = set()
        stack: list[tuple[Any, ...]] = [(root, where, 0)]
        while stack:
            item = stack.pop()
            if len(item) == 1:
                on_path.discard(item[0])
                self._done.add(item[0])
                continue
            descriptor, referrer, depth = item
            digest = descriptor.digest
            blob = self._record(descriptor, referrer)
            if digest in on_path:
                self.problems.append(
                    Problem("cycle", str(digest), f"referenced by {referrer}, which it (indirectly) references")
                )
                continue
            node = self.graph.node(descriptor)
            if blob.node is None or (blob.node.state is NodeState.NOT_READ and node.state is not NodeState.NOT_READ):
                blob.node = node
            if blob.schema_kind is None:
                blob.schema_kind = _schema_kind(descriptor, node)
            if digest in self._done or not node.children:
                # A leaf is never marked done: a later reference with a manifest media type
                # may still make the graph read it.
                if node.state is NodeState.UNREADABLE and digest not in self._done:
                    self._done.add(digest)
                    self.problems.append(Problem("unreadable", str(digest), node.problem or "cannot be read"))
                continue
            if depth >= self.max_depth:
                self._done.add(digest)
                self.problems.append(
                    Problem("depth", str(digest), f"nested deeper than {self.max_depth} levels; not followed further")
                )
                continue
            on_path.add(digest)
            stack.append((digest,))
            label = f"{node.kind} {digest}"
            for child in reversed(node.children):
                stack.append((child, label, depth + 1))


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
    """Hash every job's blob (largest first, `workers` threads); validate documents on the way."""
    results: list[_Result | None] = [None] * len(jobs)
    counter = itertools.count()
    stop = threading.Event()
    failures: list[BaseException] = []

    def work() -> None:
        buffer = bytearray(CHUNK)
        try:
            while not stop.is_set():
                position = next(counter)  # atomic under the GIL
                if position >= len(jobs):
                    return
                results[position] = _hash_one(store, jobs[position], buffer, meter, stop)
        except BaseException as exc:  # surfaced in the calling thread
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, name=f"ocilayout-hash-{i}", daemon=True) for i in range(workers)]
    try:
        if workers <= 1 or len(jobs) <= 1:
            work()
        else:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    except BaseException:
        stop.set()
        raise
    if failures:
        raise failures[0]
    return [r if r is not None else _Result(error="not checked") for r in results]


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


# -- schema checks, with a fast path ------------------------------------------------------------
#
# jsonschema spends about 5 ms on one manifest (mostly its $ref machinery); a layout of
# 100,000 images holds over 200,000 documents. `_FastSchemas` turns our schema files into
# plain Python predicates that only ever answer "certainly valid": a False, or a keyword it
# does not know when compiling, falls back to jsonschema, which is also what words the
# problems. So a gap here costs speed, never a missed problem -- provided a True is never
# wrong, which tests/test_verify.py checks against jsonschema on many documents.

Predicate = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$schema", "$comment", "title", "description", "$defs", "examples", "default"})


class _Unsupported(Exception):
    """A schema construct the fast path does not handle: use jsonschema for that kind."""


class _FastSchemas:
    def __init__(self, documents: dict[str, Any]) -> None:
        self.documents = documents  # $id -> schema document
        self._cache: dict[tuple[str, str], Predicate] = {}

    def root(self, uri: str) -> Predicate:
        return self._at(uri, "")

    def _at(self, uri: str, pointer: str) -> Predicate:
        key = (uri, pointer)
        found = self._cache.get(key)
        if found is not None:
            return found
        cell: list[Predicate] = []
        self._cache[key] = lambda x: cell[0](x)  # recursion ("$ref": "#") resolves later
        if uri not in self.documents:
            raise _Unsupported(uri)
        node = self.documents[uri]
        for part in [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]:
            if not isinstance(node, dict) or part not in node:
                raise _Unsupported(f"{uri}#{pointer}")
            node = node[part]
        compiled = self._compile(node, uri)
        cell.append(compiled)
        self._cache[key] = compiled
        return compiled

    def _compile(self, schema: Any, base: str) -> Predicate:
        if schema is True:
            return lambda x: True
        if schema is False:
            return lambda x: False
        if not isinstance(schema, dict):
            raise _Unsupported(repr(schema))
        if "$id" in schema and schema["$id"] != base:
            raise _Unsupported("nested $id")
        checks: list[Predicate] = []
        for key, value in schema.items():
            if key in _ANNOTATIONS or key in ("$id", "then", "else"):
                continue
            checks.append(self._keyword(key, value, schema, base))
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            first, second = checks
            return lambda x: first(x) and second(x)

        def every(x: Any) -> bool:
            for check in checks:
                if not check(x):
                    return False
            return True

        return every

    def _keyword(self, key: str, value: Any, schema: dict[str, Any], base: str) -> Predicate:
        if key == "type":
            return _type_check([value] if isinstance(value, str) else list(value))
        if key == "required":
            names = frozenset(value)
            return lambda x: not isinstance(x, dict) or names.issubset(x.keys())
        if key == "properties":
            props = {name: self._compile(sub, base) for name, sub in value.items()}

            def properties(x: Any) -> bool:
                if isinstance(x, dict):
                    for name, item in x.items():
                        check = props.get(name)
                        if check is not None and not check(item):
                            return False
                return True

            return properties
        if key == "additionalProperties":
            if "patternProperties" in schema:
                raise _Unsupported("patternProperties")
            known = set(schema.get("properties", {}))
            extra = self._compile(value, base)

            def additional(x: Any) -> bool:
                if isinstance(x, dict):
                    for name, item in x.items():
                        if name not in known and not extra(item):
                            return False
                return True

            return additional
        if key == "items":
            if "prefixItems" in schema:
                raise _Unsupported("prefixItems")
            each = self._compile(value, base)

            def items(x: Any) -> bool:
                if isinstance(x, list):
                    for item in x:
                        if not each(item):
                            return False
                return True

            return items
        if key == "pattern":
            return _exact_pattern(value)
        if key == "not":
            inner = _exact_pattern_schema(value)
            return lambda x: not inner(x)
        if key == "if":
            condition = _exact_pattern_schema(value)
            then = self._compile(schema.get("then", True), base)
            otherwise = self._compile(schema.get("else", True), base)
            return lambda x: then(x) if condition(x) else otherwise(x)
        if key == "allOf":
            parts = [self._compile(sub, base) for sub in value]
            return lambda x: all(p(x) for p in parts)
        if key == "const":
            return lambda x: _same(x, value)
        if key == "enum":
            options = list(value)
            return lambda x: any(_same(x, o) for o in options)
        if key in ("minimum", "maximum"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise _Unsupported(key)
            low = key == "minimum"
            # Floats are left to jsonschema (False here means "not sure").
            return lambda x: (
                isinstance(x, bool)
                or not isinstance(x, (int, float))
                or (isinstance(x, int) and (x >= value if low else x <= value))
            )
        if key == "minLength":
            return lambda x: not isinstance(x, str) or len(x) >= value
        if key == "$ref":
            uri, _, pointer = urljoin(base, value).partition("#")
            return self._at(uri, pointer)
        raise _Unsupported(key)


_PLAIN_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "null": type(None),
    "boolean": bool,
    "integer": int,  # 2.0 is an integer to JSON Schema; left to jsonschema here
    "number": (int, float),
}


def _type_check(types: list[str]) -> Predicate:
    unknown = [t for t in types if t not in _PLAIN_TYPES]
    if unknown:
        raise _Unsupported(f"type {unknown[0]}")
    classes: tuple[type, ...] = ()
    for name in types:
        entry = _PLAIN_TYPES[name]
        classes += entry if isinstance(entry, tuple) else (entry,)
    if "boolean" in types:
        return lambda x: isinstance(x, classes)
    return lambda x: isinstance(x, classes) and not isinstance(x, bool)  # True is no integer


def _exact_pattern(pattern: str) -> Predicate:
    regex = re.compile(pattern)
    return lambda x: not isinstance(x, str) or regex.search(x) is not None


def _exact_pattern_schema(schema: Any) -> Predicate:
    """Under `not` and `if` the answer must be exact both ways: only `{"pattern": ...}` is."""
    if not isinstance(schema, dict) or set(schema) - {"pattern", "$comment"} or "pattern" not in schema:
        raise _Unsupported("not/if other than a lone pattern")
    return _exact_pattern(schema["pattern"])


def _same(a: Any, b: Any) -> bool:
    """JSON equality, stricter than JSON Schema's (2 vs 2.0 differ): strictness only costs speed."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


_fast_lock = threading.Lock()
_fast_validators: dict[str, Predicate | None] = {}


def _schema_files() -> list[Path]:
    """Our schema files, found where `schemas.schema_dir()` looks (package data first, then the
    checkout), without importing `schemas`: jsonschema takes 0.3 s to import, and a clean
    layout never needs it."""
    candidates: list[Path] = []
    packaged = importlib.resources.files("ocilayout") / "schemas"
    if isinstance(packaged, Path):
        candidates.append(packaged)
    candidates.append(Path(__file__).resolve().parent.parent / "schemas")
    for directory in candidates:
        if (directory / "descriptor.json").is_file():
            return sorted(directory.glob("*.json"))
    raise _Unsupported("schema files not found")


def _fast_validator(kind: str) -> Predicate | None:
    """The compiled "certainly valid" predicate for a schema kind, or None (jsonschema only)."""
    with _fast_lock:
        if kind not in _fast_validators:
            try:
                documents = {}
                for path in _schema_files():
                    document = json.loads(path.read_text(encoding="utf-8"))
                    documents[document["$id"]] = document
                roots = [uri for uri in documents if uri.rsplit("/", 1)[-1] == f"{kind}.json"]
                if len(roots) != 1:
                    raise _Unsupported(kind)
                _fast_validators[kind] = _FastSchemas(documents).root(roots[0])
            except (_Unsupported, OSError, ValueError, KeyError, TypeError, AttributeError):
                _fast_validators[kind] = None
        return _fast_validators[kind]


def _schema_problems(document: Any, kind: str) -> list[str]:
    """Problems with `document` against the `kind` schema (empty when valid)."""
    fast = _fast_validator(kind)
    if fast is not None and fast(document):
        return []
    from . import schemas

    return schemas.validate(document, kind)


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
    walk = _Walk(Graph(store, strict=False), max_depth)
    if roots is not None:
        walk.run(roots)
        report.problems.extend(walk.problems)
        report.warnings.extend(
            w for w in walk.graph.warnings if not w.startswith(("missing ", "cannot read "))
        )
    report.reachable = len(walk.blobs)

    jobs = _present_blobs(store, walk, report, allow_sparse)
    jobs.sort(key=lambda j: j.size, reverse=True)
    meter = _Meter(sum(j.size for j in jobs), progress)
    results = _hash_all(store, jobs, meter, max(1, workers))
    meter.finish()
    by_digest: dict[Digest, tuple[_Job, _Result]] = {j.blob.digest: (j, r) for j, r in zip(jobs, results)}
    for blob in walk.blobs.values():
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

    _list_unreferenced(store, walk, report, know_reach=roots is not None)
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


def _present_blobs(store: LayoutStore, walk: _Walk, report: VerifyReport, allow_sparse: bool) -> list[_Job]:
    """Check presence and sizes; return the blobs to hash."""
    jobs = []
    for blob in walk.blobs.values():
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


def _list_unreferenced(store: LayoutStore, walk: _Walk, report: VerifyReport, *, know_reach: bool) -> None:
    root = store.root
    try:
        scan = scan_blob_dir(store, reached=walk.blobs if know_reach else None)
    except CorruptLayoutError as exc:
        report.problems.append(Problem("stray", "blobs", _strip_path(str(exc), root)))
        return
    if know_reach:
        for entry in scan.blobs:
            if entry.digest is not None and entry.digest not in walk.blobs:
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
        if _digest_of(stray.path) in walk.blobs:
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
