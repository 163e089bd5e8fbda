"""The `du` accounting as it was before the one-pass rewrite (commit d519b74, with the
complete cascades of DESIGN 3.7 as a plain fixpoint over sets), kept only as the reference
the new one is compared with (tests/test_du_equivalence.py): a live set per image, users per
blob, and the exclusive bytes of each image from those sets."""

from __future__ import annotations

import time
from typing import Sequence

from ocilayout.digest import Digest
from ocilayout.du import DuReport, ImageUsage, _local_names, _sort, _stat
from ocilayout.graph import Graph, live_set
from ocilayout.indexfile import Entry, IndexFile
from ocilayout.mediatypes import Kind
from ocilayout.storage import LayoutStore


def old_usage(
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
    groups = index.by_digest()
    created = _created(index, graph)
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
        freed, removed = cascade.freed_by(digest)
        if not (doubtful - removed):
            exclusive = sum(size_of(b) for b in freed if b in local)
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
        found = _stat(store, blob)
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
    """What rm of one image takes along: referrers of what it frees, children of a removed
    index that only removed or such children reach; a fixpoint over plain sets."""

    def __init__(
        self,
        groups: dict[Digest, list[Entry]],
        graph: Graph,
        reach: dict[Digest, set[str]],
        users: dict[str, list[Digest]],
    ) -> None:
        self.reach, self.users = reach, users
        self.referrers_of: dict[str, list[Digest]] = {}
        self.held_by: dict[Digest, set[Digest]] = {}
        dangling = [d for d, entries in groups.items() if all(e.name is None for e in entries)]
        for digest in dangling:
            subject = graph.node(groups[digest][0].descriptor).subject
            if subject is not None:
                self.referrers_of.setdefault(subject.digest, []).append(digest)
                continue
            for holder in users.get(digest, []):
                if holder == digest:
                    continue
                for descriptor, parent, depth, _, _ in graph.walk([groups[holder][0].descriptor]):
                    if descriptor.digest == digest and depth and parent is not None and parent.kind is Kind.INDEX:
                        self.held_by.setdefault(digest, set()).add(holder)
                        break

    def freed_by(self, digest: Digest) -> tuple[set[str], set[Digest]]:
        removed = {digest}
        while True:
            freed = _freed(removed, self.reach, self.users)
            new = {r for blob in freed for r in self.referrers_of.get(blob, ()) if r not in removed}
            orphaned = {c for c, holders in self.held_by.items() if c not in removed and holders & removed}
            gone = removed | orphaned
            new |= {c for c in orphaned if all(u in gone for u in self.users[c])}
            if not new:
                return freed, removed
            removed |= new


def _freed(removed: set[Digest], reach: dict[Digest, set[str]], users: dict[str, list[Digest]]) -> set[str]:
    candidates: set[str] = set().union(*(reach[d] for d in removed))
    size = len(removed)
    return {b for b in candidates if len(users[b]) <= size and all(u in removed for u in users[b])}


def _created(index: IndexFile, graph: Graph) -> dict[Digest, str | None]:
    from ocilayout.filters import image_facts

    return {f.digest: f.created.isoformat() if f.created else None for f in image_facts(index, graph)}
