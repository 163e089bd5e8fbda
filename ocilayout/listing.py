"""Read-only views: `ls` rows, `inspect` documents and the `tree` of nested content."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .descriptor import Descriptor
from .digest import Digest
from .errors import CorruptLayoutError
from .graph import Graph, Node, NodeState
from .indexfile import IndexFile
from .mediatypes import CREATED, DOCKER_CONFIG, OCI_CONFIG, Kind
from .resolve import Resolved
from .storage import LayoutStore


@dataclass(frozen=True, slots=True)
class ImageRow:
    """One `index.json` entry as `ls` shows it."""

    name: str | None
    digest: str
    kind: str
    media_type: str | None
    platforms: list[str]
    size: int
    created: str | None
    missing: int

    @property
    def short_digest(self) -> str:
        """First 12 hex characters of the digest."""
        return self.digest.split(":", 1)[1][:12]


@dataclass(frozen=True, slots=True)
class InspectReport:
    """An image's descriptor, its manifest or index document, and its config."""

    reference: str | None
    names: list[str]
    descriptor: dict[str, Any]
    kind: str
    platform: str | None
    manifest: Any
    config: Any


@dataclass(slots=True)
class TreeNode:
    """A descriptor in the nested structure; `role` says why its parent points at it."""

    role: str
    digest: str
    media_type: str | None
    size: int
    kind: str
    state: str
    name: str | None = None
    platform: str | None = None
    note: str | None = None
    children: list[TreeNode] = field(default_factory=list)


def list_images(index: IndexFile, graph: Graph) -> list[ImageRow]:
    """A row per entry: kind, platforms, total size of its unique blobs, created time."""
    rows = []
    cache: dict[Any, tuple[str, list[str], int, str | None, int]] = {}
    present: dict[Digest, bool] = {}
    on_disk = _BlobNames(graph.store)
    for entry in index.entries:
        key = entry.digest
        if key not in cache:
            cache[key] = _summarise(entry.descriptor, graph, present, on_disk)
        kind, platforms, size, created, missing = cache[key]
        if not platforms and entry.descriptor.platform is not None:
            platforms = [str(entry.descriptor.platform)]
        rows.append(
            ImageRow(
                name=entry.name,
                digest=str(entry.digest),
                kind=kind,
                media_type=entry.descriptor.media_type,
                platforms=platforms,
                size=size,
                created=entry.descriptor.annotations.get(CREATED) or created,
                missing=missing,
            )
        )
    return rows


def _summarise(
    descriptor: Descriptor, graph: Graph, present: dict[Digest, bool], on_disk: _BlobNames
) -> tuple[str, list[str], int, str | None, int]:
    node = graph.node(descriptor)
    reach = graph.reach([descriptor])
    missing = len(reach.missing)
    # Configs and layers are never opened by the walk; one listing of each blobs/<alg>/ says
    # whether they exist (a stat per blob costs as much as the whole walk on large layouts).
    for digest, child in reach.descriptors.items():
        if digest not in present:
            child_node = graph.node(child)
            if child_node.state is NodeState.MISSING:
                present[digest] = False
                if child_node.kind is Kind.UNKNOWN:
                    graph.warn(_missing_blob(child))
            elif child_node.state is NodeState.NOT_READ:
                present[digest] = digest in on_disk
                if not present[digest]:
                    graph.warn(_missing_blob(child))
            else:
                present[digest] = True
        if not present[digest] and digest not in reach.missing:
            missing += 1
    created = node.annotations.get(CREATED)
    platforms: list[str] = []
    if node.kind is Kind.INDEX:
        platforms = [str(c.platform) for c in node.children if c.platform is not None]
    elif node.config is not None:
        info = graph.config_info(node.config)
        if info is not None:
            created = created or info.created
            if info.os and info.architecture:
                platform = f"{info.os}/{info.architecture}"
                platforms = [f"{platform}/{info.variant}" if info.variant else platform]
    kind = _kind(node) if node.state is not NodeState.MISSING else "missing"
    return kind, platforms, reach.size(), created, missing


class _BlobNames:
    """Regular files under blobs/<alg>/ (own, then shared), listed once per algorithm."""

    def __init__(self, store: LayoutStore) -> None:
        self.store = store
        self.names: dict[str, set[str]] = {}

    def __contains__(self, digest: Digest) -> bool:
        names = self.names.get(digest.algorithm)
        if names is None:
            names = self.names[digest.algorithm] = self._list(digest.algorithm)
        return digest.encoded in names

    def _list(self, algorithm: str) -> set[str]:
        found: set[str] = set()
        for base in (self.store.blobs_dir, self.store.shared_blobs):
            if base is None or os.path.islink(base) or os.path.islink(base / algorithm):
                continue  # never look through a symlinked directory (as LayoutStore.locate)
            try:
                with os.scandir(base / algorithm) as entries:
                    found.update(e.name for e in entries if e.is_file(follow_symlinks=False))
            except OSError:
                continue
        return found


def _missing_blob(descriptor: Descriptor) -> str:
    return f"missing blob {descriptor.digest} ({descriptor.media_type or 'no media type'})"


def _kind(node: Node) -> str:
    """`image`, `index`, `artifact`...: a manifest with an artifactType or a non-image config is an artifact."""
    if node.kind is Kind.IMAGE and (
        node.artifact_type is not None
        or (node.config is not None and node.config.media_type not in (OCI_CONFIG, DOCKER_CONFIG, None))
    ):
        return Kind.ARTIFACT.value
    return node.kind.value


def inspect_image(store: LayoutStore, graph: Graph, resolved: Resolved) -> InspectReport:
    """The raw documents behind a resolved reference."""
    manifest = graph.document(resolved.descriptor)  # read before node(), which reuses it
    node = graph.node(resolved.descriptor)
    if node.state is NodeState.UNREADABLE:  # a symlink, FIFO, directory, oversized or corrupt blob
        raise CorruptLayoutError(f"cannot read {resolved.descriptor.digest}: {node.problem}")
    config = None
    if node.config is not None:
        config = graph.document(node.config)
    raw = dict(resolved.entries[0].raw) if resolved.platform is None else _descriptor_json(resolved.descriptor)
    return InspectReport(
        reference=resolved.reference,
        names=resolved.names,
        descriptor=raw,
        kind=_kind(node),
        platform=str(resolved.platform) if resolved.platform else None,
        manifest=manifest,
        config=config,
    )


def _descriptor_json(descriptor: Descriptor) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": descriptor.media_type, "digest": str(descriptor.digest), "size": descriptor.size}
    if descriptor.platform is not None:
        p = descriptor.platform
        out["platform"] = {"os": p.os, "architecture": p.architecture} | ({"variant": p.variant} if p.variant else {})
    return out


def build_tree(graph: Graph, descriptor: Descriptor, name: str | None = None) -> TreeNode:
    """The nested structure under one entry; cycles and absurd depth are marked, not followed."""
    root = _tree_node(graph, descriptor, "entry", name)
    # Explicit stack: a hostile layout must not be able to exhaust Python's recursion limit.
    stack: list[tuple[TreeNode, Descriptor, tuple[Any, ...]]] = [(root, descriptor, (descriptor.digest,))]
    # Each blob's children are shown once per root: a DAG that lists one index twice per level
    # would otherwise print 2**depth lines. Pre-order, so "shown above" is true on screen.
    expanded: set[Digest] = set()
    while stack:
        tree, desc, path = stack.pop()
        node = graph.node(desc)
        if not node.children:
            continue
        if desc.digest in expanded:
            tree.note = tree.note or "shown above"
            continue
        expanded.add(desc.digest)
        if len(path) > graph.max_depth:
            tree.note = f"deeper than {graph.max_depth} levels; not shown"
            continue
        pending = []
        for child, role in _roles(node):
            sub = _tree_node(graph, child, role)
            tree.children.append(sub)
            if child.digest in path:
                sub.note = "cycle: already an ancestor"
                continue
            pending.append((sub, child, path + (child.digest,)))
        stack.extend(reversed(pending))
    return root


def _roles(node: Node) -> list[tuple[Descriptor, str]]:
    layer_set = set(node.layers)
    roles = []
    for child in node.children:
        if node.config is not None and child is node.config:
            role = "config"
        elif child.digest in layer_set:
            role = "layer"
        elif node.kind is Kind.INDEX:
            role = "manifest"
        else:
            role = "blob"
        roles.append((child, role))
    return roles


def _tree_node(graph: Graph, descriptor: Descriptor, role: str, name: str | None = None) -> TreeNode:
    node = graph.node(descriptor)
    state = node.state
    if state is NodeState.NOT_READ and node.kind is Kind.LEAF:
        state = NodeState.NOT_READ if graph.store.locate_quiet(descriptor.digest) else NodeState.MISSING
        if state is NodeState.MISSING:
            graph.warn(_missing_blob(descriptor))
    return TreeNode(
        role=role,
        digest=str(descriptor.digest),
        media_type=descriptor.media_type,
        size=descriptor.size,
        kind=_kind(node),
        state=state.value,
        name=name,
        platform=str(descriptor.platform) if descriptor.platform else None,
        note=node.problem if node.state is NodeState.UNREADABLE else None,
    )
