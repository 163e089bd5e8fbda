"""Garbage collection (DESIGN 3.6): delete blobs that no entry of `index.json` reaches.

Rules kept here:
- Reachability is the graph's (`Graph.reach` over every entry). If any reached blob's
  references cannot be known (unreadable, too deep), *nothing* is deleted: doubt keeps.
- Only the layout's own `blobs/` is collected. A shared blob directory is collected only by
  `gc_shared`, over the complete list of layouts that use it, named by the caller.
- Blobs modified less than `grace` seconds ago are kept: another tool may be writing an
  image whose `index.json` entry is not there yet.
- Files under `blobs/` that are not blobs (names that are not digests, directories,
  symlinks, unknown algorithm directories) are reported, never deleted. Temporary files of
  our own (`.ocilayout-tmp-*`) older than the grace period are removed.
- Deletion goes through the one write path (`writepath.change`): layout lock, index.json
  re-read under the lock, and a final re-read before deleting that spares blobs a
  lock-ignoring writer made reachable meanwhile.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Collection, Container, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from .atomicwrite import TEMP_PREFIX
from .digest import ALGORITHMS, Digest
from .errors import CorruptLayoutError, NotFoundError, OcilayoutError, UsageError
from .graph import Graph, Reach
from .indexfile import IndexFile
from .lock import DEFAULT_LOCK_TIMEOUT, LOCK_FILE, layout_lock
from .storage import BlobFile, LayoutStore, file_kind
from .writepath import change

DEFAULT_GRACE = 3600.0

PathLike = str | os.PathLike[str]
Clock = Callable[[], float]


# -- reports ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemovedBlob:
    """A blob gc deleted (or, in a dry run, would delete)."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class StrayFile:
    """Something under a blobs directory that is not a blob; reported, never deleted."""

    path: Path
    reason: str


@dataclass(slots=True)
class GcReport:
    """The result of one `gc` call.

    `path` is the layout collected, or the shared blob directory for `gc_shared` (then
    `layouts` lists the layouts whose reach was honoured). `complete` is False when some
    reached blob could not be read: then nothing was deleted (see `warnings`).
    """

    path: Path
    dry_run: bool
    grace: float
    layouts: list[Path] = field(default_factory=list)
    complete: bool = True
    reachable: int = 0
    removed: list[RemovedBlob] = field(default_factory=list)
    blobs_removed: int = 0
    bytes_freed: int = 0
    kept_young: int = 0
    kept_young_bytes: int = 0
    kept_for_foreign_writer: list[str] = field(default_factory=list)
    temp_files_removed: list[Path] = field(default_factory=list)
    strays: list[StrayFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every deletion that was attempted succeeded."""
        return not self.errors

    @property
    def exit_code(self) -> int:
        """0, or 1 when some deletion failed."""
        return 0 if self.ok else 1


# -- grace periods ------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float) -> float:
    """Seconds from `3600`, `90s`, `30m`, `1h`, `2d` or a sum such as `1h30m`; UsageError if not."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _check_grace(float(text))
    value = str(text).strip().lower()
    position = 0
    total = 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None or match.end() == position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise UsageError(f"invalid duration {str(text)!r}: use seconds or a number with s, m, h or d (e.g. 1h, 30m)")
    return _check_grace(total)


def _check_grace(grace: float) -> float:
    if grace != grace or grace < 0 or grace == float("inf"):  # NaN, negative, infinite
        raise UsageError(f"invalid grace period {grace!r}: must be a finite number of seconds >= 0")
    return float(grace)


# -- scanning a blobs directory ---------------------------------------------------------------


@dataclass(slots=True)
class BlobDirScan:
    """A blobs directory sorted into blobs, our temporary files, and strays."""

    blobs: list[BlobFile] = field(default_factory=list)
    temp_files: list[BlobFile] = field(default_factory=list)
    strays: list[StrayFile] = field(default_factory=list)
    skipped_reached: int = 0  # valid blobs left out of `blobs` because they are reached


def scan_blob_dir(
    store: LayoutStore,
    directory: Path | None = None,
    *,
    ignore: Iterable[str] = (),
    reached: Container[Digest] | None = None,
) -> BlobDirScan:
    """Sort every entry under `directory` (default: the layout's own blobs/) by what it is.

    `ignore` names top-level entries to skip (the lock file of a shared directory). With
    `reached`, blobs whose digest it contains are only counted, not kept: at 100,000 images
    that is most of 450,000 entries, and memory stays with what gc or verify reports.
    """
    skipped = set(ignore)
    result = BlobDirScan()
    blobs = result.blobs
    unknown_dirs: dict[Path, int] = {}
    for entry in store.scan_blobs(directory):
        digest = entry.digest
        if digest is not None and entry.is_file:  # the common case first
            if reached is not None and digest in reached:
                result.skipped_reached += 1
            else:
                blobs.append(entry)
            continue
        if entry.algorithm == "":
            # A non-directory directly under blobs/.
            if entry.name in skipped:
                continue
            if entry.name.startswith(TEMP_PREFIX) and _is_regular(entry.path):
                result.temp_files.append(entry)
            else:
                result.strays.append(StrayFile(entry.path, f"not an algorithm directory ({_kind_of(entry.path)})"))
            continue
        if entry.algorithm not in ALGORITHMS:
            unknown_dirs[entry.path.parent] = unknown_dirs.get(entry.path.parent, 0) + 1
            continue
        if digest is None:
            if entry.name.startswith(TEMP_PREFIX) and entry.is_file:
                result.temp_files.append(entry)
            else:
                what = "" if entry.is_file else f", {_kind_of(entry.path)}"
                result.strays.append(StrayFile(entry.path, f"name is not a valid {entry.algorithm} digest{what}"))
            continue
        result.strays.append(StrayFile(entry.path, f"not a regular file ({_kind_of(entry.path)})"))
    for path, count in unknown_dirs.items():
        result.strays.append(
            StrayFile(path, f"unknown digest algorithm directory ({count} entr{'y' if count == 1 else 'ies'})")
        )
    return result


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _kind_of(path: Path) -> str:
    try:
        return file_kind(os.lstat(path).st_mode)
    except OSError:
        return "vanished"


def _root_temp_files(root: Path) -> list[BlobFile]:
    """Our temporary files in a layout's top directory (left by a crash during an index write)."""
    found: list[BlobFile] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append(BlobFile(Path(entry.path), "", entry.name, None, st.st_size, st.st_mtime, True))
    return sorted(found, key=lambda b: b.name)


# -- planning -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    doomed: list[BlobFile] = field(default_factory=list)
    temp_files: list[BlobFile] = field(default_factory=list)
    kept_young: int = 0
    kept_young_bytes: int = 0
    strays: list[StrayFile] = field(default_factory=list)
    reachable: int = 0
    complete: bool = True
    warnings: list[str] = field(default_factory=list)


def _sweep(
    scan: BlobDirScan, reached: Collection[Digest], complete: bool, grace: float, now: float
) -> _Plan:
    """Decide from one scan: what is garbage, what is too young, which temp files go."""
    plan = _Plan(strays=scan.strays, reachable=len(reached), complete=complete)
    cutoff = now - grace
    for blob in scan.blobs:
        if blob.digest in reached:
            continue
        if blob.mtime > cutoff:
            plan.kept_young += 1
            plan.kept_young_bytes += blob.size
        elif complete:
            plan.doomed.append(blob)
    if complete:
        plan.temp_files = [t for t in scan.temp_files if t.mtime <= cutoff]
    return plan


def _incomplete_warning(where: str, reach: Reach) -> str:
    shown = ", ".join(str(d) for d in reach.unreadable[:3])
    more = f" and {len(reach.unreadable) - 3} more" if len(reach.unreadable) > 3 else ""
    return (
        f"{where}cannot know what {shown}{more} references; nothing deleted "
        "(fix or remove the unreadable blob, or its entry, and run gc again)"
    )


def _absent_entries_warning(where: str, graph: Graph, index: IndexFile) -> str | None:
    """Why nothing may be deleted when an entry's own manifest is absent (Graph.absent_roots)."""
    absent_digests = {d.digest for d in graph.absent_roots(e.descriptor for e in index.entries)}
    absent = [e for e in index.entries if e.digest in absent_digests]
    if not absent:
        return None
    shown = ", ".join(f"{e.name or '<none>'} ({e.digest})" for e in absent[:3])
    more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
    return (
        f"{where}the manifest of entry {shown}{more} is in no blob directory, so what it references "
        "cannot be known; nothing deleted (does this layout use a shared blob directory? pass --shared-blobs)"
    )


def _plan_layout(store: LayoutStore, index: IndexFile, graph: Graph, grace: float, now: float) -> _Plan:
    reach = graph.reach(e.descriptor for e in index.entries)
    absent = _absent_entries_warning("", graph, index)
    scan = scan_blob_dir(store, reached=reach.descriptors)
    scan.temp_files.extend(_root_temp_files(store.root))
    plan = _sweep(scan, reach.descriptors, reach.complete and absent is None, grace, now)
    if not reach.complete:
        plan.warnings.append(_incomplete_warning("", reach))
    if absent is not None:
        plan.warnings.append(absent)
    return plan


def _report(path: Path, plan: _Plan, *, grace: float, dry_run: bool, warnings: Sequence[str]) -> GcReport:
    return GcReport(
        path=path,
        dry_run=dry_run,
        grace=grace,
        complete=plan.complete,
        reachable=plan.reachable,
        kept_young=plan.kept_young,
        kept_young_bytes=plan.kept_young_bytes,
        strays=list(plan.strays),
        warnings=[*warnings, *plan.warnings],
    )


def _fill_removed(
    report: GcReport,
    plan: _Plan,
    freed: dict[Digest, int] | None,
    files_removed: dict[Path, int] | None,
    errors: dict[str, str],
) -> None:
    for blob in plan.doomed:
        assert blob.digest is not None
        if freed is None:
            report.removed.append(RemovedBlob(str(blob.digest), blob.size))
        elif blob.digest in freed and str(blob.digest) not in errors:
            report.removed.append(RemovedBlob(str(blob.digest), freed[blob.digest]))
    for temp in plan.temp_files:
        if files_removed is None or temp.path in files_removed:
            report.temp_files_removed.append(temp.path)
    report.errors.update(errors)
    report.blobs_removed = len(report.removed)
    report.bytes_freed = sum(r.size for r in report.removed)


# -- one layout ---------------------------------------------------------------------------------


def collect_garbage(
    store: LayoutStore,
    *,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    strict: bool = False,
    clock: Clock = time.time,
) -> GcReport:
    """Delete blobs in `store`'s own blobs/ that no entry reaches and that are older than `grace`.

    A shared blob directory of `store` is read (a blob there may reference local ones) but
    never collected. A dry run takes no lock and changes nothing.
    """
    grace = _check_grace(grace)
    if dry_run:
        index = store.read_index()
        graph = Graph(store, strict=strict)
        plan = _plan_layout(store, index, graph, grace, clock())
        report = _report(store.root, plan, grace=grace, dry_run=True, warnings=[*index.warnings, *graph.warnings])
        _fill_removed(report, plan, None, None, {})
        return report
    with change(store, lock_timeout) as txn:
        graph = Graph(store, strict=strict)
        plan = _plan_layout(store, txn.index, graph, grace, clock())
        doomed = [b.digest for b in plan.doomed if b.digest is not None]
        result = txn.commit(None, doomed, graph, delete_files=[t.path for t in plan.temp_files])
    report = _report(store.root, plan, grace=grace, dry_run=False, warnings=[*txn.index.warnings, *graph.warnings])
    _fill_removed(report, plan, result.freed, result.files_removed, result.errors)
    if result.kept_for_foreign_writer:
        report.kept_for_foreign_writer = [str(d) for d in result.kept_for_foreign_writer]
        report.warnings.append(
            f"kept {len(result.kept_for_foreign_writer)} blobs that another writer made reachable meanwhile"
        )
    return report


# -- a shared blob directory ----------------------------------------------------------------------


def gc_shared(
    shared_dir: PathLike,
    layouts: Sequence[PathLike],
    *,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    strict: bool = False,
    clock: Clock = time.time,
) -> GcReport:
    """Collect in `shared_dir` what none of `layouts` reaches.

    The caller promises that `layouts` is the *complete* list of layouts using
    `shared_dir`: a blob used only by a layout not named is deleted. Each layout is locked
    (in sorted path order, then the shared directory's own lock file) for the whole change.
    If any layout's reach is incomplete, nothing is deleted. The layouts' own blobs/ are not
    collected here (run `gc` on each for that).
    """
    grace = _check_grace(grace)
    if not layouts:
        raise UsageError("gc of a shared blob directory needs the complete list of layouts that use it (--layout)")
    shared = Path(shared_dir)
    if not shared.exists():
        raise NotFoundError(f"{shared}: no such shared blob directory")
    if not shared.is_dir() or shared.is_symlink():
        raise CorruptLayoutError(f"{shared}: not a directory")
    roots = sorted(dict.fromkeys(Path(p).resolve() for p in layouts))
    stores = [_open_store(root, shared) for root in roots]
    with ExitStack() as stack:
        if dry_run:
            transactions = []
            indexes = [store.read_index() for store in stores]
        else:
            transactions = [stack.enter_context(change(store, lock_timeout)) for store in stores]
            indexes = [txn.index for txn in transactions]
            stack.enter_context(layout_lock(shared, lock_timeout))
        now = clock()
        graphs = [Graph(store, strict=strict) for store in stores]
        reached: set[Digest] = set()
        complete = True
        warnings: list[str] = []
        for root, index, graph in zip(roots, indexes, graphs):
            reach = graph.reach(e.descriptor for e in index.entries)
            reached.update(reach.descriptors)
            if not reach.complete:
                complete = False
                warnings.append(_incomplete_warning(f"{root}: ", reach))
            absent = _absent_entries_warning(f"{root}: ", graph, index)
            if absent is not None:
                complete = False
                warnings.append(absent)
        for root, index, graph in zip(roots, indexes, graphs):
            warnings.extend(f"{root}: {w}" for w in [*index.warnings, *graph.warnings])
        scan = scan_blob_dir(stores[0], shared, ignore=(LOCK_FILE,), reached=reached)
        plan = _sweep(scan, reached, complete, grace, now)
        plan.warnings.extend(warnings)
        report = _report(shared, plan, grace=grace, dry_run=dry_run, warnings=())
        report.layouts = list(roots)
        if dry_run:
            _fill_removed(report, plan, None, None, {})
            return report
        spared = _spared_for_foreign_writers(stores, indexes, graphs, {b.digest for b in plan.doomed})
        if spared:
            report.kept_for_foreign_writer = sorted(str(d) for d in spared)
            report.warnings.append(f"kept {len(spared)} blobs that another writer made reachable meanwhile")
            plan.doomed = [b for b in plan.doomed if b.digest not in spared]
        # The shared directory is no layout's own blobs/, so its files go by path (found by our
        # scan of DIR), through the write path of the first layout, every lock still held.
        result = transactions[0].commit(
            None, (), None, delete_files=[b.path for b in plan.doomed] + [t.path for t in plan.temp_files]
        )
    freed = {b.digest: result.files_removed[b.path] for b in plan.doomed if b.digest and b.path in result.files_removed}
    doomed_paths = {str(b.path): b for b in plan.doomed}
    errors = {str(doomed_paths[k].digest) if k in doomed_paths else k: v for k, v in result.errors.items()}
    _fill_removed(report, plan, freed, result.files_removed, errors)
    return report


def _open_store(root: Path, shared: Path) -> LayoutStore:
    if not root.exists():
        raise NotFoundError(f"{root}: no such layout directory")
    if not root.is_dir():
        raise CorruptLayoutError(f"{root}: not a directory")
    store = LayoutStore(root, shared)
    store.check_layout_file()
    return store


def _spared_for_foreign_writers(
    stores: Sequence[LayoutStore], indexes: Sequence[IndexFile], graphs: Sequence[Graph], doomed: set[Digest | None]
) -> set[Digest]:
    """Blobs that entries added to some index.json since we read it (by a writer ignoring our
    lock) now reach: read every index.json once more right before deleting."""
    spared: set[Digest] = set()
    everything = {d for d in doomed if d is not None}
    for store, index, graph in zip(stores, indexes, graphs):
        try:
            current = store.read_index()
        except OcilayoutError:
            return everything
        known = {e.digest for e in index.entries}
        added = [e.descriptor for e in current.entries if e.digest not in known]
        if not added:
            continue
        reach = graph.reach(added)
        if not reach.complete:
            return everything
        spared.update(d for d in everything if d in reach)
    return spared


__all__ = [
    "DEFAULT_GRACE",
    "BlobDirScan",
    "GcReport",
    "RemovedBlob",
    "StrayFile",
    "collect_garbage",
    "gc_shared",
    "parse_duration",
    "scan_blob_dir",
]
