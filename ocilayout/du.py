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
import time
from dataclasses import dataclass, field
from itertools import chain, compress
from operator import attrgetter
from typing import Mapping, Sequence

from .descriptor import Descriptor
from .digest import Digest
from .filters import _entry_created, iso_time
from .graph import Graph, Node, NodeState, RecordedImage, live_set
from .indexfile import Entry, IndexFile
from .mediatypes import CREATED, IMAGE_MANIFEST_TYPES, INDEX_TYPES, Kind
from .parallel import fork_split, worth_forking
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
    created: bool = True,
) -> DuReport:
    """Account every image (or the `selected` ones; totals always cover the whole layout).

    One walk per image (what `rm` of it would look at), the layout's images split between
    this process and a forked child; then use counts per blob: a blob's size is shared
    when more than one image reaches it, exclusive when only the images `rm` would remove
    together (the image and its dangling referrers) reach it. `created=False` leaves the
    created times out (None) and reads no config.
    """
    groups = index.by_digest()
    digests = list(groups)
    heads = [index.walked_by(digest) for digest in groups]

    def walk(first: int, last: int) -> _Walked:
        part = heads[first:last]
        with store.prefetch(graph.unrecorded_digests(part)):
            return _walk_images(graph, part, [groups[d] for d in digests[first:last]], allow_sparse, created)

    if worth_forking(len(heads)):
        # This process also lists blobs/ (serial otherwise): it walks a little less than half.
        split = len(heads) * 45 // 100
        warned = len(graph.warnings)
        graph.prepare(heads)  # the child inherits the cache's records instead of loading them again
        mark = graph.learning_mark()

        def there() -> tuple[_Sent, list[str], bytes]:
            ids, *rest = walk(split, len(heads))
            plain = list(map(str, ids))  # in number order; marshal takes no str subclass (Digest)
            return (plain, *rest), graph.warnings[warned:], graph.learnt_since(mark)  # type: ignore[return-value]

        def here() -> tuple[set[str], _Walked, bool]:
            local = _local_names(store)
            mine = walk(0, split)
            return local, mine, local.issuperset(mine[0])  # while the child still walks

        (local, mine, ours), (theirs, warnings, learnt) = fork_split(here, there)
        for warning in warnings:  # after this half's own: the order of one pass
            graph.warn(warning)
        graph.add_learnt(learnt)  # what the child read goes into the cache too
        known = len(mine[0])
        walked = _merge(mine, theirs)
        blobs = list(walked[0])
        all_local = ours and local.issuperset(blobs[known:])  # what the child's half added
    else:
        graph.prepare(heads)  # loads the cache's records, or borrows them
        walked = walk(0, len(heads))
        local = _local_names(store)
        blobs = list(walked[0])
        all_local = local.issuperset(blobs)
    ids, declared, reach, certain, created_at = walked

    count = [0] * len(blobs)  # images reaching each blob
    for image in reach:
        for i in image:
            count[i] += 1
    stats: dict[str, tuple[int, float] | None] = {}

    def size_of(i: int) -> int:
        """The file's own size, for a local blob that no descriptor sizes."""
        blob = blobs[i]
        if blob in local:
            if blob not in stats:
                stats[blob] = _stat(store, blob)
            found = stats[blob]
            return found[0] if found is not None else 0
        return 0

    sizes = [size if size >= 0 else size_of(i) for i, size in enumerate(declared)]
    # Per blob, its bytes where they count: in every image that reaches it (sizes), as shared
    # (more than one image reaches it), as exclusive (only one does, and it is ours to delete).
    shared_sizes = [size if n > 1 else 0 for size, n in zip(sizes, count)]
    if all_local:  # the usual: every blob reached is in our own blobs/
        owned = [True] * len(blobs)
        solo_sizes = [size if n == 1 else 0 for size, n in zip(sizes, count)]
    else:
        owned = list(map(local.__contains__, blobs))  # C loops: 450,000 blobs at 100,000 images
        solo_sizes = [size if n == 1 and ours else 0 for size, n, ours in zip(sizes, count, owned)]
    doubtful = {d for d, sure in zip(digests, certain) if not sure}

    report = DuReport()
    report.totals.certain = not doubtful
    cascade = None
    if any(e.name is None for e in index.entries):  # only unnamed entries can go along
        cascade = _Cascade(index, graph, digests, blobs, reach, count)
    chosen = digests if selected is None else list(selected)
    position = {d: k for k, d in enumerate(digests)} if selected is not None else {}
    images = reach if selected is None else [reach[position[d]] for d in chosen]

    def exclusive_of(digest: Digest, image: tuple[int, ...]) -> int:
        took = cascade.freed_by(digest) if cascade is not None else None
        if took is None:  # nothing goes along: what only this image reaches
            if not doubtful or doubtful == {digest}:  # rm frees nothing while a survivor is in doubt
                return sum(map(solo_sizes.__getitem__, image))
            return 0
        freed, removed = took
        if not doubtful or not doubtful - {digests[k] for k in removed}:
            return sum(sizes[i] for i in freed if owned[i])
        return 0

    # Column by column (100,000 images: C loops where they can be).
    image_sizes = [sum(map(sizes.__getitem__, image)) for image in images]
    image_shared = [sum(map(shared_sizes.__getitem__, image)) for image in images]
    if cascade is None and not doubtful and all(owned):
        # Every blob ours, nothing goes along: exclusive is what no other image reaches.
        exclusive = [whole - other for whole, other in zip(image_sizes, image_shared)]
    elif cascade is None and not doubtful:
        exclusive = [sum(map(solo_sizes.__getitem__, image)) for image in images]
    else:
        exclusive = list(map(exclusive_of, chosen, images))
    report.images = list(
        map(
            ImageUsage,
            map(str, chosen),
            [_names(groups[d]) for d in chosen],
            image_sizes,
            exclusive,
            image_shared,
            created_at if selected is None else [created_at[position[d]] for d in chosen],
        )
    )
    _sort(report.images, sort)

    totals = report.totals
    cutoff = (clock if clock is not None else time.time()) - grace
    totals.blobs = len(local)
    totals.on_disk = sum(compress(sizes, owned))
    unreached = local.difference(ids) if sum(owned) < len(local) else set()
    for blob in unreached:  # its own size and age (for the grace period)
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
    totals.reachable = sum(sizes)
    totals.reachable_blobs = len(blobs)
    report.warnings = [*index.warnings, *graph.warnings]
    return report


class _Cascade:
    """What `rm` of one image takes along (DESIGN 3.7, as `cascade.settle` decides it), on the
    per-image reach and the use counts: dangling referrers of whatever it frees, and unnamed
    entries held in a deleted index that only such entries and the removed ones reach.

    A worklist over counts: each image taken along adds its reach once, so one image costs
    what its cascade reaches, not the layout."""

    def __init__(
        self,
        index: IndexFile,
        graph: Graph,
        digests: list[Digest],
        blobs: list[str],
        reach: list[tuple[int, ...]],
        count: list[int],
    ) -> None:
        self.reach, self.count = reach, count
        groups = index.by_digest()
        self.position = {d: k for k, d in enumerate(digests)}
        self.referrers_of: dict[int, list[int]] = {}  # subject blob → dangling referrer images
        blob_of = {b: i for i, b in enumerate(blobs)}
        children: dict[int, int] = {}  # blob of a subject-less dangling image → that image
        for k, digest in enumerate(digests):
            if any(e.name is not None for e in groups[digest]):
                continue
            subject = graph.node(index.walked_by(digest)).subject
            if subject is not None:
                target = blob_of.get(subject.digest)
                if target is not None:  # a subject nothing reaches cannot be freed
                    self.referrers_of.setdefault(target, []).append(k)
            else:
                own = blob_of.get(digest)
                if own is not None and count[own] > 1:  # another image reaches it: maybe a child
                    children[own] = k
        # holder image → the child images it holds in an index's manifests (each holder walked once)
        self.children_of: dict[int, list[int]] = {}
        self.child_blob: dict[int, int] = {k: b for b, k in children.items()}  # child image → its blob
        self.image_of_child: dict[int, int] = children  # and back
        if children:
            for k, image in enumerate(reach):
                held = [b for b in image if b in children and children[b] != k]
                if not held:
                    continue
                wanted = {blobs[b] for b in held}
                found = set()
                for step in graph.walk([index.walked_by(digests[k])], keep=False):
                    descriptor, parent, depth = step[0], step[1], step[2]
                    if depth and parent is not None and parent.kind is Kind.INDEX and descriptor.digest in wanted:
                        found.add(blob_of[descriptor.digest])
                if found:
                    self.children_of[k] = [children[b] for b in found]

    def freed_by(self, digest: Digest) -> tuple[list[int], set[int]] | None:
        """The blobs `rm` of `digest` alone frees, cascades included, and the images it removes;
        None when nothing can go along (then a blob is freed exactly when this image is its
        only user)."""
        if not self.referrers_of and not self.children_of:
            return None
        count, reach, child_blob, image_of_child = self.count, self.reach, self.child_blob, self.image_of_child
        removed: set[int] = set()
        gone: set[int] = set()  # removed, or held by something removed: no longer shields a child
        orphans: set[int] = set()  # children held by something removed
        within: dict[int, int] = {}  # blob → removed images reaching it
        gone_users: dict[int, int] = {}  # blob of a child → gone images reaching it
        freed: list[int] = []
        work: list[tuple[bool, int]] = [(True, self.position[digest])]  # (remove it?, image) or a check

        def leave(image: int) -> None:
            gone.add(image)
            for blob in reach[image]:
                if blob in image_of_child:
                    gone_users[blob] = gone_users.get(blob, 0) + 1
                    work.append((False, image_of_child[blob]))

        while work:
            remove, image = work.pop()
            if not remove:  # a check: an orphan goes once only gone images reach it
                blob = child_blob[image]
                if image in orphans and image not in removed and gone_users.get(blob, 0) == count[blob]:
                    work.append((True, image))
                continue
            if image in removed:
                continue
            removed.add(image)
            for blob in reach[image]:
                n = within.get(blob, 0) + 1
                within[blob] = n
                if n == count[blob]:
                    freed.append(blob)
                    work.extend((True, referrer) for referrer in self.referrers_of.get(blob, ()))
            if image not in gone:
                leave(image)
            for child in self.children_of.get(image, ()):
                if child not in gone:
                    orphans.add(child)
                    leave(child)
                work.append((False, child))
        return freed, removed


# What one process learns from walking some images: the blobs (digest -> index, in first-seen
# order), their declared sizes (the first that is not -1), per image the indexes of the blobs it reaches,
# whether that is certain, and its created time. Plain data: marshalled from the child, whose
# blobs come as a list in index order.
_Walked = tuple[dict[str, int], list[int], list[tuple[int, ...]], list[bool], list["str | None"]]
_Sent = tuple[list[str], list[int], list[tuple[int, ...]], list[bool], list["str | None"]]


def _walk_images(
    graph: Graph, heads: list[Descriptor], groups: list[list[Entry]], allow_sparse: bool, created: bool
) -> _Walked:
    ids: dict[str, int] = {}
    declared: list[int] = []
    reach: list[tuple[int, ...]] = []
    certain: list[bool] = []
    # What dates each image (its entries, annotations, config), looked up once all are walked:
    # the configs to read are then known, and read ahead together on a cold page cache.
    dates: list[tuple[list[Entry], Mapping[str, str], Descriptor | None] | None] = []
    for head, entries in zip(heads, groups):
        # An index-typed head is tried as an index first (`recorded_image` would decode its
        # record only to find it is no image); one whose content is an image takes the walk.
        recorded = graph.recorded_image(head) if head.media_type not in INDEX_TYPES else None
        if recorded is not None:  # what the walk would find, from the cache record: no walk, no dict per image
            # A blob listed twice (a config that is also a layer) counts once.
            reach.append(_number((head.digest, *recorded.leaves), (head.size, *recorded.sizes), ids, declared))
            certain.append(True)
            dates.append((entries, recorded.annotations, recorded.config) if created else None)
            continue
        node, fanned = _recorded_index(graph, head)
        if node is None and created:
            node = graph.node(head)  # read once: the walk below reuses it
        if fanned is not None:  # the walk's order: the index, then each child and its leaves
            keys = [head.digest, *chain.from_iterable((child.digest, *image.leaves) for child, image in fanned)]
            sized = [head.size, *chain.from_iterable((child.size, *image.sizes) for child, image in fanned)]
            reach.append(_number(keys, sized, ids, declared))
            certain.append(True)
        else:
            sizes: dict[str, int] = {}  # every blob the image reaches, with its declared size
            certain.append(live_set(graph, [head], allow_sparse=allow_sparse, sizes=sizes).certain)
            reach.append(_number(list(sizes), list(sizes.values()), ids, declared))
        dates.append((entries, node.annotations, node.config) if created and node is not None else None)
        if node is not None:
            graph.forget(head.digest)  # kept only for the walk just made: 100,000 of them fill memory
    times: list[str | None] = [None] * len(dates)
    if created:
        unread: list[tuple[int, Descriptor]] = []  # dated by a config to read: read ahead together
        for k, date in enumerate(dates):
            if date is not None:
                entries, annotations, config = date
                text = _entry_created(entries) or annotations.get(CREATED)
                if not text and config is not None:
                    found = graph.recorded_created(config)
                    if found is None:
                        unread.append((k, config))
                        continue
                    text = found[0]
                times[k] = iso_time(text) if text else None
        with graph.store.prefetch([config.digest for _, config in unread]):
            for k, config in unread:
                info = graph.config_info(config)
                times[k] = iso_time(info.created) if info is not None and info.created else None
    return ids, declared, reach, certain, times


def _recorded_index(
    graph: Graph, head: Descriptor
) -> tuple[Node | None, list[tuple[Descriptor, RecordedImage]] | None]:
    """An index whose children are all image manifests the reference cache describes with
    leaf-typed children only (a multi-platform image on a warm cache): each child and its
    record, what the walk of it would reach without the walk; None: walk it. First, the
    index's node when it was read (kept for that walk: the caller `forget`s it after)."""
    if head.media_type not in INDEX_TYPES or graph.max_depth < 2:  # children enter at depth 1, leaves at 2
        return None, None
    node = graph.node(head)
    if node.state is not NodeState.PARSED or node.kind is not Kind.INDEX or not node.children:
        return node, None
    found = []
    for child in node.children:
        if child.media_type not in IMAGE_MANIFEST_TYPES or child.digest == head.digest:
            return node, None
        image = graph.recorded_image(child)
        if image is None:
            return node, None
        found.append((child, image))
    return node, found


def _names(entries: list[Entry]) -> list[str]:
    """An image's names: its entries' names, sorted, each once."""
    if len(entries) == 1:
        return [] if entries[0].name is None else [entries[0].name]
    return sorted({e.name for e in entries if e.name is not None})


def _number(keys: Sequence[str], sizes: Sequence[int], ids: dict[str, int], declared: list[int]) -> tuple[int, ...]:
    """The indexes of one image's blobs (`keys`, with their declared `sizes`), each once, in
    order; new blobs are numbered in first-seen order, and a blob's size is the first that is
    not -1."""
    known = len(declared)
    setdefault = ids.setdefault
    mine = [setdefault(blob, len(ids)) for blob in keys]  # a new blob gets the next number
    if len(ids) - known == len(mine):  # the usual: every blob new, none twice
        declared += sizes
        return tuple(mine)
    for i, size in zip(mine, sizes):
        if i == len(declared):  # a new blob, first seen
            declared.append(size)
        elif declared[i] < 0:
            declared[i] = size
    return tuple(dict.fromkeys(mine))


def _merge(first: _Walked, second: _Walked | _Sent) -> _Walked:
    """The result of one walk over both halves (first's images first)."""
    ids, declared, reach, certain, times = first
    theirs, their_sizes = second[0], second[1]
    # The child's blobs are distinct and in its order: those new here get the next numbers.
    known = len(declared)
    setdefault = ids.setdefault
    remap = [setdefault(blob, len(ids)) for blob in theirs]
    declared.extend(compress(their_sizes, map(known.__le__, remap)))
    if min(declared[:known], default=0) < 0:  # a blob this half could not size: the child's size, if any
        for i, size in zip(remap, their_sizes):
            if declared[i] < 0:
                declared[i] = size
    reach.extend(tuple([remap[i] for i in image]) for image in second[2])
    certain.extend(second[3])
    times.extend(second[4])
    return ids, declared, reach, certain, times


_HEX = "0123456789abcdef"
_HEX_BYTES = _HEX.encode()


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
        prefix = algorithm + ":"
        try:
            with os.scandir(directory) as entries:
                names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
        except OSError:
            continue
        # Only blobs (lowercase hex of the length) count; others are strays. Checked at once
        # for the usual directory of nothing but blobs, name by name otherwise.
        joined = "".join(names)
        if set(map(len, names)) <= {length} and joined.isascii() and not joined.encode().translate(None, _HEX_BYTES):
            found.update(map(prefix.__add__, names))
        else:
            found.update(prefix + name for name in names if len(name) == length and not name.strip(_HEX))
    return found


def _stat(store: LayoutStore, blob: str) -> tuple[int, float] | None:
    try:
        st = os.lstat(store.blobs_dir / blob.replace(":", "/", 1))
    except OSError:
        return None
    return st.st_size, st.st_mtime


def _sort(images: list[ImageUsage], key: str) -> None:
    if key == "name":
        images.sort(key=lambda i: (i.names[0] if i.names else "\uffff", i.digest))
    elif key == "created":
        from datetime import datetime, timezone

        oldest = datetime.min.replace(tzinfo=timezone.utc)
        images.sort(key=lambda i: (datetime.fromisoformat(i.created) if i.created else oldest, i.digest), reverse=True)
    else:  # by key, ties by digest, both descending: two stable passes on C-level keys
        images.sort(key=attrgetter("digest"), reverse=True)
        images.sort(key=attrgetter(key), reverse=True)
