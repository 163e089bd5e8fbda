"""What a deletion takes along, and the blobs it frees (DESIGN 3.2, 3.7).

When entries go (rm, prune) or an index loses platforms (trimming), some of the unnamed
entries that stay lose their reason to exist:

- a *dangling referrer* (unnamed, with a `subject`) whose subject is any manifest or index
  the deletion frees — a platform manifest deep inside a deleted index included — goes too,
  and so do its own dangling referrers, recursively;
- an unnamed entry that is a *child of a deleted index* (oras-go writes every child of an
  index as an extra top-level entry) goes too when no surviving entry other than such
  children reaches it — unless it is a referrer: that one follows its subject only.

Both rules feed each other (a removed child frees what its referrers point at), so they are
applied until nothing changes. Only the few candidates are walked one by one; every other
surviving entry is walked once, in the one live set. When that live set is in doubt the
freed set cannot be known: then only the referrers of the removed entries' own digests go
(as before these rules) and no blob is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .descriptor import Descriptor
from .digest import Digest, parse_digest
from .graph import Graph, LiveSet, _walk_live, live_set
from .indexfile import walked_by
from .mediatypes import Kind
from .storage import LayoutStore

Root = tuple[int, Descriptor, "str | None"]
"""A surviving entry: (position in the new `manifests[]`, descriptor, ref name or None)."""


@dataclass(slots=True)
class Cascaded:
    """An unnamed entry that goes with the deletion: why, and because of which digest."""

    digest: Digest
    reason: str  # "referrer" or "child"
    cause: Digest  # the freed subject, or the deleted index holding it


@dataclass(slots=True)
class Settlement:
    """The cascade's entries (digests whose entries all go) and the blobs nothing keeps."""

    cascaded: list[Cascaded] = field(default_factory=list)
    doomed: dict[Digest, int] = field(default_factory=dict)  # blob → owner of the removal
    warnings: list[str] = field(default_factory=list)


def settle(
    store: LayoutStore,
    graph: Graph,
    survivors: Sequence[Root],
    gone: Sequence[tuple[int, Descriptor]],
    *,
    keep_referrers: bool = False,
    allow_sparse: bool = False,
) -> Settlement:
    """Apply both cascade rules to `survivors` after the roots `gone` (owner, descriptor)
    stopped being roots, and decide which blobs of our own `blobs/` nothing keeps.

    A cascaded digest's blobs are owned by `-2 - k` where `k` is its place in `cascaded`
    (the caller maps that onto its report); every other doomed blob by the owner of the
    first gone root reaching it.
    """
    result = Settlement()
    groups: dict[Digest, list[Root]] = {}
    for root in survivors:
        groups.setdefault(root[1].digest, []).append(root)
    gone = [(owner, descriptor) for owner, descriptor in gone if descriptor.digest not in groups]  # untagged only
    if not gone:
        return result
    # What the gone roots reach (nodes stay cached: the candidates' walks reuse them).
    reach: dict[Digest, int] = {}
    held: dict[Digest, Digest] = {}  # digest in the manifests of an index they reach → that index
    for owner, descriptor in gone:
        _index_children(graph, descriptor, reach, owner, held)

    dangling = {d: roots for d, roots in groups.items() if all(name is None for _, _, name in roots)}
    subjects: dict[Digest, Digest] = {}
    for digest, roots in dangling.items():
        subject = graph.node(walked_by([root[1] for root in roots])).subject
        if subject is not None:
            subjects[digest] = subject.digest
    referrers_of: dict[Digest, list[Digest]] = {}
    if not keep_referrers:
        for referrer, target in subjects.items():
            referrers_of.setdefault(target, []).append(referrer)

    # The candidates, walked one by one: unnamed entries without a subject held in the
    # manifests of a gone root or of another candidate (a referrer is judged by its subject
    # alone, even inside a deleted index: a signature that notation also lists in a
    # referrers index stays while its image does), and the referrers a chain of subjects
    # connects to what the gone roots or the candidates reach.
    holders: dict[Digest, set[Digest | None]] = {}  # child candidate → deleted-if-gone holders
    candidates: dict[Digest, LiveSet] = {}
    frontier: list[tuple[Digest, Digest | None, bool]] = [(d, None, d in held) for d in reach]
    while frontier:
        digest, via, is_held = frontier.pop()
        found = []
        if is_held and digest in dangling and digest not in subjects:
            holders.setdefault(digest, set()).add(via)
            found.append(digest)
        found += referrers_of.get(digest, ())
        for candidate in found:
            if candidate in candidates:
                continue
            own = _walk_live(graph, [root[1] for root in dangling[candidate]], allow_sparse, keep=True)
            candidates[candidate] = own
            inner: dict[Digest, int] = {}
            inner_held: dict[Digest, Digest] = {}
            for root in dangling[candidate]:
                _index_children(graph, root[1], inner, 0, inner_held)
            for d, index in inner_held.items():
                held.setdefault(d, index)
            frontier.extend((d, candidate, d in inner_held) for d in inner)

    sure = [root[1] for root in survivors if root[1].digest not in candidates]
    live = live_set(graph, sure, allow_sparse=allow_sparse)
    if not live.certain:
        return _in_doubt(result, live, candidates, holders, referrers_of, gone)
    removed: dict[Digest, Cascaded] = {}
    reached = live.reached
    while True:
        staying = [d for d in candidates if d not in removed]
        # A child of a deleted index: one of its holders is gone (None) or cascaded.
        orphaned = {d for d in staying if any(h is None or h in removed for h in holders.get(d, ()))}
        shield: set[str] = set()  # beyond the live set, what protects a child: all but such children
        for digest in staying:
            if digest not in orphaned:
                shield |= candidates[digest].reached
        kept = set(shield)
        for digest in orphaned:
            kept |= candidates[digest].reached
        freed: set[str] = {d for d in reach if d not in reached and d not in kept}
        for digest in removed:
            freed.update(d for d in candidates[digest].reached if d not in reached and d not in kept)
        new: list[Cascaded] = []
        for digest in staying:
            if digest in orphaned and digest not in reached and digest not in shield:
                cause = next((h for h in holders[digest] if h is not None and h in removed), None)
                new.append(Cascaded(digest, "child", cause or held[digest]))
            elif not keep_referrers and digest in subjects and subjects[digest] in freed:
                new.append(Cascaded(digest, "referrer", subjects[digest]))
        if not new:
            break
        for cascaded in new:
            removed[cascaded.digest] = cascaded
            result.cascaded.append(cascaded)
    # A candidate that goes may be in doubt (what it reaches no longer matters); one that stays
    # may not: then what it keeps is unknown.
    if any(not own.certain for digest, own in candidates.items() if digest not in removed):
        result.cascaded = []
        return _in_doubt(result, live, candidates, holders, referrers_of, gone)

    owners: dict[str, int] = {digest: owner for digest, owner in reach.items()}
    for k, cascaded in enumerate(result.cascaded):
        for blob in candidates[cascaded.digest].reached:
            owners.setdefault(blob, -2 - k)
    # absent, or only in the shared directory (which we never touch): not ours to delete
    for blob, owner in owners.items():
        if blob not in reached and blob not in kept:
            digest = parse_digest(blob)  # a live set may hold plain text (the reference cache)
            if store.is_local(digest):
                result.doomed[digest] = owner
    return result


def _in_doubt(
    result: Settlement,
    live: LiveSet,
    candidates: dict[Digest, LiveSet],
    holders: dict[Digest, set[Digest | None]],
    referrers_of: dict[Digest, list[Digest]],
    gone: Sequence[tuple[int, Descriptor]],
) -> Settlement:
    """What is freed cannot be known: no blob goes, and of the cascades only the referrers of
    the gone roots themselves, while what is known to stay (children of deleted indexes stay
    too) does not reach their subject."""
    for own in candidates.values():
        live.doubt.extend(own.doubt)
    result.warnings.append(live.doubt_message())
    known = set(live.reached)
    for candidate, own in candidates.items():
        if candidate in holders:
            known |= own.reached
    seen = {desc.digest for _, desc in gone}
    todo = [d for d in seen if d not in known]
    while todo:
        target = todo.pop(0)
        for referrer in referrers_of.get(target, ()):
            if referrer not in seen and referrer not in known:
                seen.add(referrer)
                result.cascaded.append(Cascaded(referrer, "referrer", target))
                todo.append(referrer)
    return result


def _index_children(
    graph: Graph, root: Descriptor, reach: dict[Digest, int], owner: int, held: dict[Digest, Digest]
) -> None:
    """Add what `root` reaches to `reach` (owned by `owner`), and to `held` the digests met in
    an index's `manifests`, each with the index holding it (the first one met)."""
    for child, parent, depth, _, _ in graph.walk([root]):
        reach.setdefault(child.digest, owner)
        if depth and parent is not None and parent.kind is Kind.INDEX:
            held.setdefault(child.digest, parent.digest)


__all__ = ["Cascaded", "Root", "Settlement", "settle"]
