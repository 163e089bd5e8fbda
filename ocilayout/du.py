"""Space accounting (`du`, DESIGN 3.10), like `docker system df -v`.

Per image (one digest with all its names): `size`, the bytes of every blob it reaches, each
once; `shared`, those of them another image reaches too; `exclusive`, exactly what `rm` of
that image alone (by digest, all names) would free: the blobs in the layout's own `blobs/`
that only it — with the dangling referrers `rm` removes along with it — reaches, and nothing
while what the other images reach is in doubt. Layout totals: reachable, unreachable (what
`gc` would free, split by the grace period), blobs and bytes on disk.

Sizes are the declared sizes of the descriptors (what `verify` checks the files against;
a blob no descriptor sizes is measured on disk); unreachable blobs are measured on disk.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Sequence

from .digest import Digest
from .graph import Graph, live_set
from .indexfile import Entry, IndexFile
from .mediatypes import Kind
from .storage import LayoutStore

SORT_KEYS = ("size", "exclusive", "shared", "name", "created")


@dataclass(slots=True)
class ImageUsage:
    """The space of one image."""

    digest: str
    names: list[str]
    size: int
    exclusive: int
    shared: int
    created: str | None


@dataclass(slots=True)
class Totals:
    """The layout's own `blobs/`, and what its entries reach."""

    reachable: int = 0  # bytes of reached blobs, each once
    reachable_blobs: int = 0
    unreachable: int = 0  # bytes gc would free now (older than the grace period)
    unreachable_blobs: int = 0
    unreachable_young: int = 0  # unreachable but younger than the grace period: gc keeps them
    unreachable_young_blobs: int = 0
    blobs: int = 0  # blob files on disk
    on_disk: int = 0  # their bytes
    certain: bool = True  # False: what some entry reaches is in doubt; gc and rm delete nothing


@dataclass(slots=True)
class DuReport:
    """`du`: per image, then totals."""

    images: list[ImageUsage] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    warnings: list[str] = field(default_factory=list)


def usage(
    store: LayoutStore,
    index: IndexFile,
    graph: Graph,
    selected: Sequence[Digest] | None = None,
    *,
    allow_sparse: bool = False,
    grace: float = 3600.0,
    sort: str = "size",
    clock: float | None = None,
) -> DuReport:
    """Account every image (or the `selected` ones; totals always cover the whole layout)."""
    groups = index.by_digest()
    created = _created(index, graph)  # first: the entries' nodes it reads stay for the walks
    local = _local_names(store)
    declared: dict[str, int] = {}
    reach: dict[Digest, set[str]] = {}
    doubtful: set[Digest] = set()
    users: dict[str, list[Digest]] = {}
    for digest, entries in groups.items():
        live = live_set(graph, [entries[0].descriptor], allow_sparse=allow_sparse, sizes=declared)
        reach[digest] = live.reached
        if not live.certain:
            doubtful.add(digest)
        for blob in live.reached:
            users.setdefault(blob, []).append(digest)

    stats: dict[str, tuple[int, float] | None] = {}

    def size_of(blob: str) -> int:
        """Declared size (what the walk read); the file's own for a local blob without one."""
        size = declared.get(blob, -1)
        if size < 0 and blob in local:
            if blob not in stats:
                stats[blob] = _stat(store, blob)
            found = stats[blob]
            size = found[0] if found is not None else 0
        return max(size, 0)

    report = DuReport()
    report.totals.certain = not doubtful
    cascade = _Cascade(groups, graph, reach, users)
    for digest in selected if selected is not None else list(groups):
        blobs = reach[digest]
        exclusive = 0
        if not (doubtful - {digest}):  # rm frees nothing while a survivor is in doubt
            exclusive = sum(size_of(b) for b in cascade.freed_by(digest) if b in local)
        shared = sum(size_of(b) for b in blobs if len(users[b]) > 1)
        report.images.append(
            ImageUsage(
                digest=str(digest),
                names=sorted({e.name for e in groups[digest] if e.name is not None}),
                size=sum(size_of(b) for b in blobs),
                exclusive=exclusive,
                shared=shared,
                created=created.get(digest),
            )
        )
    _sort(report.images, sort)

    totals = report.totals
    reached = set(users)
    cutoff = (clock if clock is not None else time.time()) - grace
    for blob in local:
        totals.blobs += 1
        if blob in reached:
            totals.on_disk += size_of(blob)
            continue
        found = _stat(store, blob)  # unreached: its own size and age (for the grace period)
        if found is None:
            continue
        size, mtime = found
        totals.on_disk += size
        if mtime > cutoff:
            totals.unreachable_young += size
            totals.unreachable_young_blobs += 1
        else:
            totals.unreachable += size
            totals.unreachable_blobs += 1
    totals.reachable = sum(size_of(b) for b in reached)
    totals.reachable_blobs = len(reached)
    report.warnings = [*index.warnings, *graph.warnings]
    return report


class _Cascade:
    """What `rm` of one image takes along (DESIGN 3.7, as `cascade.settle` decides it), on the
    per-image reach sets: dangling referrers of whatever it frees, and unnamed entries held
    in a deleted index that only such entries still reach."""

    def __init__(
        self,
        groups: dict[Digest, list[Entry]],
        graph: Graph,
        reach: dict[Digest, set[str]],
        users: dict[str, list[Digest]],
    ) -> None:
        self.reach = reach
        self.users = users
        self.referrers_of: dict[str, list[Digest]] = {}
        dangling = [d for d, entries in groups.items() if all(e.name is None for e in entries)]
        children = []
        for digest in dangling:
            subject = graph.node(groups[digest][0].descriptor).subject
            if subject is not None:
                self.referrers_of.setdefault(subject.digest, []).append(digest)
            elif len(users[digest]) > 1:
                children.append(digest)
        # Which images hold each such entry in an index's manifests (walked only for those).
        self.held_by: dict[Digest, set[Digest]] = {}
        for child in children:
            for holder in users[child]:
                if holder == child:
                    continue
                for descriptor, parent, depth, _, _ in graph.walk([groups[holder][0].descriptor]):
                    if descriptor.digest == child and depth and parent is not None and parent.kind is Kind.INDEX:
                        self.held_by.setdefault(child, set()).add(holder)
                        break

    def freed_by(self, digest: Digest) -> set[str]:
        """The blobs `rm` of `digest` alone frees, its cascades included."""
        removed = {digest}
        while True:
            freed = _freed(removed, self.reach, self.users)
            new = {r for blob in freed for r in self.referrers_of.get(blob, ()) if r not in removed}
            orphaned = {c for c, holders in self.held_by.items() if c not in removed and holders & removed}
            gone = removed | orphaned
            new |= {c for c in orphaned if all(u in gone for u in self.users[c])}
            if not new:
                return freed
            removed |= new


def _freed(removed: set[Digest], reach: dict[Digest, set[str]], users: dict[str, list[Digest]]) -> set[str]:
    """Blobs that the removed images reach and no other image does."""
    candidates: set[str] = set().union(*(reach[d] for d in removed))
    size = len(removed)  # a blob more images use than are removed stays: no need to look at them
    return {b for b in candidates if len(users[b]) <= size and all(u in removed for u in users[b])}


def _local_names(store: LayoutStore) -> set[str]:
    """Every regular file of the layout's own `blobs/<alg>/` named like a digest: one listing
    per algorithm and no stat (a stat per blob would cost more than the whole walk)."""
    from .digest import ALGORITHMS

    found: set[str] = set()
    base = store.blobs_dir
    if os.path.islink(base):
        return found
    for algorithm, length in ALGORITHMS.items():
        directory = base / algorithm
        if os.path.islink(directory):
            continue
        name = re.compile(f"[0-9a-f]{{{length}}}")  # only blobs: other files are gc's strays
        try:
            with os.scandir(directory) as entries:
                found.update(
                    f"{algorithm}:{e.name}"
                    for e in entries
                    if name.fullmatch(e.name) and e.is_file(follow_symlinks=False)
                )
        except OSError:
            continue
    return found


def _stat(store: LayoutStore, blob: str) -> tuple[int, float] | None:
    try:
        st = os.lstat(store.blobs_dir / blob.replace(":", "/", 1))
    except OSError:
        return None
    return st.st_size, st.st_mtime


def _created(index: IndexFile, graph: Graph) -> dict[Digest, str | None]:
    from .filters import image_facts

    return {f.digest: f.created.isoformat() if f.created else None for f in image_facts(index, graph)}


def _sort(images: list[ImageUsage], key: str) -> None:
    if key == "name":
        images.sort(key=lambda i: (i.names[0] if i.names else "\uffff", i.digest))
    elif key == "created":
        from datetime import datetime, timezone

        oldest = datetime.min.replace(tzinfo=timezone.utc)
        images.sort(key=lambda i: (datetime.fromisoformat(i.created) if i.created else oldest, i.digest), reverse=True)
    else:
        images.sort(key=lambda i: (getattr(i, key), i.digest), reverse=True)
