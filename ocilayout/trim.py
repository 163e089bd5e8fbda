"""Platform trimming (DESIGN 3.11): `rm REF --platform P` writes a new index without P.

The new index keeps every other byte of the old one: the removed descriptors are cut out of
its `manifests` text, and an index nested inside that lost platforms is rewritten the same
way, its parents re-pointed up to the entry. Buildx attestation manifests
(`vnd.docker.reference.type: attestation-manifest`) of a removed platform go with it. Every
name of REF moves to the new root in the same `index.json` write; the new blobs are durable
before that write, and only then are the blobs nothing reaches any more deleted — the
removed platforms, the old index blobs, and what the cascades (DESIGN 3.7) take along.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from .descriptor import Descriptor, Platform, parse_descriptor
from .digest import Digest
from .errors import CorruptLayoutError, NotFoundError, OcilayoutError, UsageError
from .graph import Graph, NodeState
from .indexfile import Entry, IndexFile, loads_strict, splice_array, with_members
from .mediatypes import Kind
from .resolve import resolve
from .storage import MAX_DOCUMENT_BYTES, LayoutStore

ATTESTATION_TYPE = "vnd.docker.reference.type"
ATTESTATION_SUBJECT = "vnd.docker.reference.digest"


@dataclass(slots=True)
class RemovedManifest:
    """A descriptor cut out of an index: the platform manifest (or its attestation)."""

    digest: str
    platform: str | None
    index: str  # the index (old digest) it was cut from
    attestation_of: str | None = None


@dataclass(slots=True)
class PlatformTrim:
    """One trimmed image: its names, old and new root digests, what was cut out."""

    reference: str
    names: list[str]
    old_digest: str
    new_digest: str
    removed: list[RemovedManifest] = field(default_factory=list)
    rewritten: dict[str, str] = field(default_factory=dict)  # every index blob replaced: old → new
    bytes_freed: int = 0
    blobs_deleted: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Rewrite:
    digest: Digest
    data: bytes


class _Trimmer:
    """Rewrites one root index (and the indexes inside it) without the wanted platforms."""

    def __init__(self, store: LayoutStore, graph: Graph, wanted: Sequence[Platform], trim: PlatformTrim) -> None:
        self.store = store
        self.graph = graph
        self.wanted = wanted
        self.trim = trim
        self.done: dict[Digest, _Rewrite | None] = {}  # None: unchanged; a rewrite of no children: emptied
        self.new_blobs: list[tuple[Digest, bytes]] = []
        self.path: set[Digest] = set()
        self.matched: set[Platform] = set()

    def rewrite(self, descriptor: Descriptor) -> _Rewrite | None:
        """The index's new blob, None when nothing in it changes; data b"" when nothing is left."""
        digest = descriptor.digest
        if digest in self.done:
            return self.done[digest]
        if digest in self.path:  # a cycle: leave that reference alone
            return None
        if len(self.path) >= self.graph.max_depth:
            depth = self.graph.max_depth
            raise CorruptLayoutError(f"indexes nested deeper than {depth} levels at {digest}: cannot trim")
        try:
            data = self.store.read_blob(digest, MAX_DOCUMENT_BYTES)
            document = loads_strict(data, f"blob {digest}")
        except NotFoundError:
            raise CorruptLayoutError(f"index {digest} is missing: cannot trim it") from None
        manifests = document.get("manifests") if isinstance(document, dict) else None
        if not isinstance(manifests, list):
            raise CorruptLayoutError(f"blob {digest} is no index (no manifests list): cannot trim it")
        self.path.add(digest)
        try:
            result = self._rewrite_children(digest, data, manifests)
        finally:
            self.path.discard(digest)
        self.done[digest] = result
        return result

    def _rewrite_children(self, digest: Digest, data: bytes, manifests: list[Any]) -> _Rewrite | None:
        kept: list[tuple[int, dict[str, Any]]] = []
        cut: list[RemovedManifest] = []
        for position, raw in enumerate(manifests):
            try:
                child = parse_descriptor(raw, f"blob {digest} manifests[{position}]")
            except OcilayoutError:
                kept.append((position, {}))  # not ours to judge: kept as written
                continue
            matching = [p for p in self.wanted if child.platform is not None and child.platform.matches(p)]
            if matching:
                self.matched.update(matching)
                cut.append(RemovedManifest(str(child.digest), str(child.platform), str(digest)))
                continue
            node = self.graph.node(child)
            if node.kind is Kind.INDEX and node.state is NodeState.PARSED:
                inner = self.rewrite(child)
                if inner is not None and not inner.data:
                    platform = str(child.platform) if child.platform else None
                    cut.append(RemovedManifest(str(child.digest), platform, str(digest)))
                    continue
                if inner is not None:
                    kept.append((position, _repointed(inner)))
                    continue
            kept.append((position, {}))
        # Attestations of what was cut go with it, unless their manifest is still listed here
        # (under another platform).
        listed = {manifests[position].get("digest") for position, _ in kept if isinstance(manifests[position], dict)}
        gone = {m.digest for m in cut} - listed
        if gone:
            still = []
            for position, changes in kept:
                annotations = manifests[position].get("annotations") if isinstance(manifests[position], dict) else None
                subject = annotations.get(ATTESTATION_SUBJECT) if isinstance(annotations, dict) else None
                if (
                    isinstance(annotations, dict)
                    and annotations.get(ATTESTATION_TYPE) == "attestation-manifest"
                    and subject in gone
                ):
                    own = str(manifests[position].get("digest"))
                    cut.append(RemovedManifest(own, None, str(digest), attestation_of=subject))
                    continue
                still.append((position, changes))
            kept = still
        if not cut and not any(changes for _, changes in kept):
            return None
        self.trim.removed.extend(cut)
        if not kept:
            return _Rewrite(digest, b"")
        new_data = splice_array(data, "manifests", kept)
        new_digest = Digest(f"{digest.algorithm}:{hashlib.new(digest.algorithm, new_data).hexdigest()}")
        self.graph.adopt(new_digest, new_data)
        self.new_blobs.append((new_digest, new_data))
        self.trim.rewritten[str(digest)] = str(new_digest)
        return _Rewrite(new_digest, new_data)


def _repointed(rewrite: _Rewrite) -> dict[str, Any]:
    """A descriptor's new members: digest and size; embedded `data` (OCI 1.1) would hold the
    old bytes, so it goes."""
    return {"digest": str(rewrite.digest), "size": len(rewrite.data), "data": None}


@dataclass(slots=True)
class TrimPlan:
    """New blobs, the new entries, and the trims (the removal is planned by the caller)."""

    trims: list[PlatformTrim]
    new_blobs: list[tuple[Digest, bytes]]
    new_entries: list[dict[str, Any]]
    gone: list[tuple[int, Descriptor]]  # old root descriptors, owner = trim position
    survivors: list[tuple[int, Descriptor, str | None]]
    failures: list[tuple[str, OcilayoutError]] = field(default_factory=list)


def plan_trim(
    store: LayoutStore,
    index: IndexFile,
    graph: Graph,
    references: Sequence[str],
    platforms: Sequence[Platform],
    *,
    ignore_missing: bool = False,
) -> TrimPlan:
    """Rewrite each REF's index without `platforms`. A REF that is unknown, no index, holds
    not every platform named, or would be left empty is a failure of its own (the others are
    still trimmed; `ignore_missing` passes over unknown REFs), and nothing of it is written."""
    if not platforms:
        raise UsageError("name at least one --platform to remove")
    trims: list[PlatformTrim] = []
    new_blobs: list[tuple[Digest, bytes]] = []
    replaced: dict[Digest, Descriptor] = {}  # old root → new root descriptor
    failures: list[tuple[str, OcilayoutError]] = []
    for reference in references:
        try:
            resolved = resolve(index, reference)
        except NotFoundError as exc:
            if not ignore_missing:
                failures.append((reference, exc))
            continue
        except OcilayoutError as exc:
            failures.append((reference, exc))
            continue
        if resolved.digest in replaced:
            continue
        try:
            trim, result, trimmer = _trim_one(store, graph, reference, resolved.descriptor, resolved.entries, platforms)
        except OcilayoutError as exc:
            failures.append((reference, exc))
            continue
        descriptor = resolved.descriptor
        replaced[descriptor.digest] = Descriptor(
            descriptor.media_type, result.digest, len(result.data), descriptor.platform, descriptor.annotations
        )
        new_blobs.extend(trimmer.new_blobs)
        trims.append(trim)


    owner = {Digest(t.old_digest): k for k, t in enumerate(trims)}
    new_entries: list[dict[str, Any]] = []
    survivors: list[tuple[int, Descriptor, str | None]] = []
    gone: dict[Digest, tuple[int, Descriptor]] = {}
    for entry in index.entries:
        new = replaced.get(entry.digest)
        if new is None:
            new_entries.append(entry.raw)
            survivors.append((len(survivors), entry.descriptor, entry.name))
            continue
        gone.setdefault(entry.digest, (owner[entry.digest], entry.descriptor))
        new_entries.append(with_members(entry.raw, digest=str(new.digest), size=new.size, data=None))
        old = entry.descriptor
        descriptor = Descriptor(new.media_type, new.digest, new.size, old.platform, old.annotations)
        survivors.append((len(survivors), descriptor, entry.name))
    return TrimPlan(trims, new_blobs, new_entries, list(gone.values()), survivors, failures)


def _trim_one(
    store: LayoutStore,
    graph: Graph,
    reference: str,
    descriptor: Descriptor,
    entries: Sequence[Entry],
    platforms: Sequence[Platform],
) -> tuple[PlatformTrim, _Rewrite, _Trimmer]:
    """One REF's trim, or the error that says why it cannot be trimmed."""
    node = graph.node(descriptor)
    if node.state is NodeState.MISSING:
        raise CorruptLayoutError(f"{reference}: its index {descriptor.digest} is missing: cannot trim it")
    if node.kind is not Kind.INDEX:
        raise UsageError(
            f"{reference} is a single image ({descriptor.digest}), not a multi-platform index: "
            "--platform trims platforms out of an index; use rm without --platform to remove the image"
        )
    names = sorted({e.name for e in entries if e.name is not None})
    trim = PlatformTrim(reference, names, str(descriptor.digest), str(descriptor.digest))
    trimmer = _Trimmer(store, graph, platforms, trim)
    result = trimmer.rewrite(descriptor)
    wanted = ", ".join(str(p) for p in platforms)
    absent = [str(p) for p in platforms if p not in trimmer.matched]
    if result is None or absent:
        available = sorted({str(c.platform) for c in node.children if c.platform is not None})
        raise NotFoundError(
            f"{reference} has no {', '.join(absent) or wanted} manifest "
            f"(platforms: {', '.join(available) or 'none listed'}); nothing changed"
        )
    if not result.data:
        raise UsageError(
            f"removing {wanted} would leave {reference} with no platform: use rm {reference} without --platform"
        )
    trim.new_digest = str(result.digest)
    return trim, result, trimmer


__all__ = ["PlatformTrim", "RemovedManifest", "TrimPlan", "plan_trim"]
