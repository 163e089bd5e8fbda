"""Garbage collection (DESIGN 3.6): delete blobs that no entry of `index.json` reaches.

One function, `collect`, serves both forms: a layout's own `blobs/`, and a shared blob
directory over the complete list of layouts that use it (named by the user). Rules kept:
- What stays is `graph.live_set` of every entry of every layout involved; while it is in
  doubt (unreadable blob, missing manifest, absent entry), nothing is deleted.
- Blobs modified less than `grace` seconds ago are kept: another tool may be writing an
  image whose `index.json` entry is not there yet.
- Files under `blobs/` that are not blobs are reported, never deleted; our own temporary
  files (`.ocilayout-tmp-*`) older than the grace period are removed.
- Deleting goes through `transaction`: locks, index.json read under them, and the re-read
  that spares blobs a lock-ignoring writer made reachable meanwhile.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .atomicwrite import TEMP_PREFIX
from .errors import CorruptLayoutError, NotFoundError, UsageError
from .graph import live_set
from .indexfile import IndexFile
from .lock import DEFAULT_LOCK_TIMEOUT, LOCK_FILE
from .storage import INDEX_FILE, LAYOUT_FILE, BlobFile, LayoutStore, StrayFile, open_store
from .transaction import transaction

DEFAULT_GRACE = 3600.0

PathLike = str | os.PathLike[str]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RemovedBlob:
    """A blob gc deleted (or, in a dry run, would delete)."""

    digest: str
    size: int


@dataclass(slots=True)
class GcReport:
    """The result of one `gc` call.

    `path` is the layout collected, or the shared blob directory (then `layouts` lists the
    layouts whose reach was honoured). `complete` is False when what the entries reach is in
    doubt: then nothing was deleted (see `warnings`).
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


# -- the one collector --------------------------------------------------------------------------


def collect(
    stores: Sequence[LayoutStore],
    shared_dir: Path | None = None,
    *,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    strict: bool = False,
    allow_sparse: bool = False,
    clock: Clock = time.time,
    known: IndexFile | None = None,
) -> GcReport:
    """Delete what no entry of `stores` reaches, older than `grace`, from one directory.

    Without `shared_dir`: the own blobs/ of the single store (a shared directory it reads
    from is never collected). With it: `shared_dir`, and the caller promises that `stores`
    are *all* the layouts using it. `known` is the first layout's index.json as the caller
    already parsed it (reused when unchanged).
    """
    grace = _check_grace(grace)
    target = shared_dir if shared_dir is not None else stores[0].blobs_dir
    extra_locks = [] if shared_dir is None or _owning_layout(shared_dir) is not None else [shared_dir]
    with transaction(
        stores,
        lock_timeout,
        dry_run=dry_run,
        allow_sparse=allow_sparse,
        strict=strict,
        extra_locks=extra_locks,
        known=known,
    ) as txn:
        now = clock()
        layouts = [s.root for s in stores] if shared_dir else []
        report = GcReport(shared_dir or txn.store.root, dry_run, grace, layouts=layouts)
        reached: set[str] = set()
        for store, index, graph in zip(txn.stores, txn.indexes, txn.graphs):
            live = live_set(graph, (e.descriptor for e in index.entries), allow_sparse=allow_sparse)
            reached |= live.reached
            where = f"{store.root}: " if shared_dir is not None else ""
            report.warnings.extend(f"{where}{w}" for w in [*index.warnings, *graph.warnings])
            if not live.certain:
                report.complete = False
                report.warnings.append(live.doubt_message(where))
        report.reachable = len(reached)
        inventory = txn.store.inventory(target, reached=reached, ignore=(LOCK_FILE,) if shared_dir else ())
        report.strays = inventory.strays
        temp_files = inventory.temp_files if shared_dir else [*inventory.temp_files, *_root_temp_files(txn.store.root)]
        cutoff = now - grace
        doomed: list[BlobFile] = []
        for blob in inventory.blobs:
            if blob.mtime > cutoff:
                report.kept_young += 1
                report.kept_young_bytes += blob.size
            elif report.complete:
                doomed.append(blob)
        old_temps = [t.path for t in temp_files if t.mtime <= cutoff] if report.complete else []
        result = txn.commit(None, [(b.digest, b.path) for b in doomed if b.digest is not None], old_temps)
    for blob in doomed:
        digest = blob.digest
        if digest in result.freed and str(digest) not in result.errors:
            report.removed.append(RemovedBlob(str(digest), result.freed[digest]))
    report.temp_files_removed = [p for p in old_temps if p in result.files_removed]
    report.errors.update(result.errors)
    report.blobs_removed = len(report.removed)
    report.bytes_freed = sum(r.size for r in report.removed)
    if result.kept_for_foreign_writer:
        report.kept_for_foreign_writer = [str(d) for d in result.kept_for_foreign_writer]
        report.warnings.append(
            f"kept {len(result.kept_for_foreign_writer)} blobs that another writer made reachable meanwhile"
        )
    return report


def gc_shared(
    shared_dir: PathLike,
    layouts: Sequence[PathLike],
    *,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    strict: bool = False,
    allow_sparse: bool = False,
    clock: Clock = time.time,
) -> GcReport:
    """Collect in `shared_dir` what none of `layouts` reaches.

    The caller promises that `layouts` is the *complete* list of layouts using
    `shared_dir`: a blob used only by a layout not named is deleted. A directory that is
    the own `blobs/` of a layout not named is refused (UsageError naming it): that layout
    certainly uses it. Each layout is locked for the whole change; the layouts' own blobs/
    are not collected here (run `gc` on each for that).
    """
    if isinstance(layouts, (str, bytes)):
        raise TypeError(f"layouts must be a sequence of paths, not a single {type(layouts).__name__}")
    if not layouts:
        raise UsageError("gc of a shared blob directory needs the complete list of layouts that use it (--layout)")
    shared = Path(shared_dir)
    if not shared.exists():
        raise NotFoundError(f"{shared}: no such shared blob directory")
    if not shared.is_dir() or shared.is_symlink():
        raise CorruptLayoutError(f"{shared}: not a directory")
    roots = sorted(dict.fromkeys(Path(os.path.realpath(p)) for p in layouts))
    owner = _owning_layout(shared)
    if owner is not None and owner not in roots:
        raise UsageError(
            f"{shared} is the blobs directory of the layout {owner}, which is not among the --layout list: "
            "name it too, or it would lose blobs it uses"
        )
    stores = [open_store(root, shared) for root in roots]
    for store in stores:
        store.check_layout_file()
    return collect(
        stores,
        shared,
        grace=grace,
        dry_run=dry_run,
        lock_timeout=lock_timeout,
        strict=strict,
        allow_sparse=allow_sparse,
        clock=clock,
    )


def _owning_layout(directory: Path) -> Path | None:
    """The layout whose own `blobs/` `directory` is, if any (by real path). Either file of a
    layout beside it is enough: a half-written or damaged layout still owns its blobs."""
    real = Path(os.path.realpath(directory))
    parent = real.parent
    if real.name == "blobs" and ((parent / LAYOUT_FILE).exists() or (parent / INDEX_FILE).exists()):
        return parent
    return None


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


__all__ = ["DEFAULT_GRACE", "GcReport", "RemovedBlob", "StrayFile", "collect", "gc_shared", "parse_duration"]
