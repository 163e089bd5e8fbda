"""Turning a user's reference into an image of the layout (DESIGN 3.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .descriptor import Descriptor, Platform
from .digest import ALGORITHMS, Digest, is_digest, parse_digest
from .errors import AmbiguousReferenceError, NotFoundError, UsageError
from .graph import Graph, NodeState
from .indexfile import Entry, IndexFile
from .mediatypes import Kind

# Shorter prefixes match too much by accident: `rm 1` meant as a name must not delete by ID.
MIN_PREFIX = 4
_HEX = re.compile(r"^[0-9a-f]+$")


class ResolvedBy(str, Enum):
    """How a reference matched; delete semantics depend on it."""

    NAME = "name"
    DIGEST = "digest"
    PREFIX = "prefix"
    ONLY = "only-entry"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Resolved:
    """An image picked by a reference: its entries in `index.json`, and the descriptor to use.

    With `--platform`, `descriptor` is the matching child of the entry's index and
    `entries` still names the top-level entries the child was found under.
    """

    reference: str | None
    by: ResolvedBy
    digest: Digest
    descriptor: Descriptor
    entries: tuple[Entry, ...]
    platform: Platform | None = None

    @property
    def names(self) -> list[str]:
        """Every ref name that points at the entry's digest."""
        return [e.name for e in self.entries if e.name is not None]

    @property
    def by_id(self) -> bool:
        """True when the reference named the content rather than a name."""
        return self.by is not ResolvedBy.NAME


def resolve(
    index: IndexFile, reference: str | None, graph: Graph | None = None, platform: Platform | None = None
) -> Resolved:
    """Resolve by exact name, full digest, unique hex prefix, or the single entry."""
    resolved = _resolve_entry(index, reference)
    if platform is None:
        return resolved
    if graph is None:
        raise UsageError("--platform needs the layout's blobs")
    return _pick_platform(resolved, graph, platform)


def _resolve_entry(index: IndexFile, reference: str | None) -> Resolved:
    groups = index.by_digest()
    if reference is None:
        if len(groups) == 1:
            digest, entries = next(iter(groups.items()))
            return Resolved(None, ResolvedBy.ONLY, digest, entries[0].descriptor, tuple(entries))
        if not groups:
            raise NotFoundError("the layout has no images")
        raise UsageError(f"the layout has {len(groups)} images; name one")
    if not reference:
        raise UsageError("empty reference")

    named = index.names().get(reference)
    if named:
        digests = sorted({e.digest for e in named})
        if len(digests) > 1:
            raise AmbiguousReferenceError(
                f"name {reference!r} is on {len(digests)} different images: " + ", ".join(map(str, digests)),
                [str(d) for d in digests],
            )
        return Resolved(reference, ResolvedBy.NAME, digests[0], named[0].descriptor, tuple(groups[digests[0]]))

    if ":" in reference and reference.split(":", 1)[0] in ALGORITHMS and is_digest(reference):
        digest = parse_digest(reference)
        found = groups.get(digest)
        if not found:
            raise NotFoundError(f"no image {digest} in index.json")
        return Resolved(reference, ResolvedBy.DIGEST, digest, found[0].descriptor, tuple(found))

    prefix = reference
    algorithm = None
    if ":" in reference:
        algorithm, prefix = reference.split(":", 1)
        if algorithm not in ALGORITHMS:
            raise NotFoundError(f"no image named {reference!r}")
    if _HEX.match(prefix) and len(prefix) >= MIN_PREFIX:
        matches = sorted(
            d for d in groups if d.encoded.startswith(prefix) and (algorithm is None or d.algorithm == algorithm)
        )
        if len(matches) > 1:
            raise AmbiguousReferenceError(
                f"prefix {reference!r} matches {len(matches)} images: " + ", ".join(str(d) for d in matches),
                [str(d) for d in matches],
            )
        if matches:
            entries = groups[matches[0]]
            return Resolved(reference, ResolvedBy.PREFIX, matches[0], entries[0].descriptor, tuple(entries))
    raise NotFoundError(f"no image named {reference!r}")


def _pick_platform(resolved: Resolved, graph: Graph, wanted: Platform) -> Resolved:
    node = graph.node(resolved.descriptor)
    if node.state is NodeState.MISSING:
        raise NotFoundError(f"blob {resolved.digest} is missing; cannot look for {wanted}")
    if node.kind is Kind.INDEX:
        available = []
        for child in node.children:
            platform = child.platform
            if platform is None:
                continue
            available.append(str(platform))
            if platform.matches(wanted):
                return Resolved(
                    resolved.reference, resolved.by, child.digest, child, resolved.entries, platform
                )
        listed = ", ".join(available) if available else "none"
        raise NotFoundError(f"{resolved.reference or resolved.digest} has no {wanted} (platforms: {listed})")
    own = resolved.descriptor.platform
    if own is None and node.config is not None:
        info = graph.config_info(node.config)
        if info and info.os and info.architecture:
            own = Platform(info.os, info.architecture, info.variant)
    if own is not None and own.matches(wanted):
        return Resolved(resolved.reference, resolved.by, resolved.digest, resolved.descriptor, resolved.entries, own)
    raise NotFoundError(f"{resolved.reference or resolved.digest} is {own or 'of unknown platform'}, not {wanted}")
