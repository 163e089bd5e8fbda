"""Read-only views: `ls` rows, `inspect` documents and the `tree` of nested content."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .descriptor import Descriptor
from .digest import Digest
from .errors import CorruptLayoutError
from .graph import Graph, Node, NodeState, Visit
from .indexfile import IndexFile
from .mediatypes import CREATED, DOCKER_CONFIG, OCI_CONFIG, Kind, is_leaf_type
from .parallel import fork_split, worth_forking
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
    referrers: int = 0  # manifests whose subject is this one, among everything the entries reach


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


Summary = tuple[str, list[str], int, "str | None", int]  # kind, platforms, size, created, missing


def list_images(index: IndexFile, graph: Graph) -> list[ImageRow]:
    """A row per entry: kind, platforms, total size of its unique blobs, created time."""
    digests = list(index.by_digest())  # one summary per digest, of the entry that opens it
    summaries = dict(zip(digests, summarise([index.walked_by(d) for d in digests], graph)))
    rows = []
    for entry in index.entries:
        kind, platforms, size, created, missing = summaries[entry.digest]
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


def summarise(descriptors: list[Descriptor], graph: Graph) -> list[Summary]:
    """The summary of each descriptor's content, in order; a big layout's second half is
    summarised by a forked child at the same time (both cores)."""
    if not worth_forking(len(descriptors)):
        graph.prepare(descriptors)  # loads the cache's records, or borrows them
        present = graph.store.present_digests()
        with graph.store.prefetch(graph.unrecorded_digests(descriptors)):
            return [_summarise(d, graph, present) for d in descriptors]
    half = len(descriptors) // 2
    warned = len(graph.warnings)
    graph.prepare(descriptors)  # the child inherits the cache's records instead of loading them again
    mark = graph.learning_mark()

    def part(first: int, last: int) -> list[Summary]:
        present = graph.store.present_digests()  # each process lists blobs/ itself: nothing serial
        with graph.store.prefetch(graph.unrecorded_digests(descriptors[first:last])):
            return [_summarise(d, graph, present) for d in descriptors[first:last]]

    def there() -> tuple[list[Summary], list[str], bytes]:
        return part(half, len(descriptors)), graph.warnings[warned:], graph.learnt_since(mark)

    mine, (theirs, warnings, learnt) = fork_split(lambda: part(0, half), there)
    for warning in warnings:  # after this half's own: the order of a single pass
        graph.warn(warning)
    graph.add_learnt(learnt)  # what the child read goes into the cache too
    return mine + theirs


def _summarise(descriptor: Descriptor, graph: Graph, present: set[str]) -> Summary:
    """Kind, platforms, size of the unique blobs, created and the number of missing blobs of
    one entry's content. Parsed manifests are not kept (a big layout's would fill memory)."""
    recorded = _summarise_recorded(descriptor, graph, present)
    if recorded is not None:
        return recorded
    sizes: dict[Digest, int] = {}
    missing = 0
    node: Node | None = None
    for child, parent, _, _, step_node in graph.walk([descriptor], keep=False):
        if parent is None:
            node = step_node
        digest = child.digest
        if digest in sizes:
            if sizes[digest] < 0 <= child.size:
                sizes[digest] = child.size
            continue
        sizes[digest] = child.size
        # Configs and layers are never opened by the walk; one listing of each blobs/<alg>/
        # says whether they exist (a stat per blob costs as much as the whole walk).
        if digest not in present:
            missing += 1
            if is_leaf_type(child.media_type):
                graph.warn(_missing_blob(child))  # missing manifests are warned by the graph
    if node is None:  # a leaf by media type: never opened
        node = graph.node(descriptor, keep=False)
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
    return kind, platforms, sum(size for size in sizes.values() if size > 0), created, missing


def _summarise_recorded(descriptor: Descriptor, graph: Graph, present: set[str]) -> Summary | None:
    """`_summarise` of an image manifest the reference cache describes with leaf-typed
    children only (most entries of a big layout): the same sums from the record's sizes.
    None: take the walk."""
    image = graph.recorded_image(descriptor)
    if image is None:
        return None
    # As the walk visits them: the entry, then each child; a digest counts once.
    sizes: dict[str, int] = {descriptor.digest: descriptor.size}
    missing = 0
    if descriptor.digest not in present:
        missing += 1
        if is_leaf_type(descriptor.media_type):
            graph.warn(_missing_blob(descriptor))
    for digest, media_type, size in zip(image.leaves, image.media_types, image.sizes):
        if digest in sizes:
            if sizes[digest] < 0 <= size:
                sizes[digest] = size
            continue
        sizes[digest] = size
        if digest not in present:
            missing += 1
            graph.warn(_missing_blob(Descriptor(media_type, Digest(digest), size)))
    created = image.annotations.get(CREATED)
    platforms: list[str] = []
    kind = Kind.IMAGE.value if image.artifact_type is None else Kind.ARTIFACT.value
    config = image.config
    if config is not None:
        if config.media_type not in (OCI_CONFIG, DOCKER_CONFIG, None):
            kind = Kind.ARTIFACT.value
        info = graph.config_info(config)
        if info is not None:
            created = created or info.created
            if info.os and info.architecture:
                platform = f"{info.os}/{info.architecture}"
                platforms = [f"{platform}/{info.variant}" if info.variant else platform]
    return kind, platforms, sum(size for size in sizes.values() if size > 0), created, missing


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
    out: dict[str, Any] = {
        "mediaType": descriptor.media_type,
        "digest": str(descriptor.digest),
        "size": descriptor.size,
    }
    if descriptor.platform is not None:
        p = descriptor.platform
        out["platform"] = {"os": p.os, "architecture": p.architecture} | ({"variant": p.variant} if p.variant else {})
    return out


def build_tree(graph: Graph, descriptor: Descriptor, name: str | None = None) -> TreeNode:
    """The nested structure under one entry, from the graph's one walk: a blob's children are
    shown once ("shown above" later; a DAG listing one index twice per level would otherwise
    print 2**depth lines); cycles and absurd depth are marked, not followed."""
    root: TreeNode | None = None
    by_depth: list[TreeNode] = []
    for child, parent, depth, visit, node in graph.walk([descriptor]):
        if parent is None:
            tree = root = _tree_node(graph, child, node, "entry", name)
        else:
            tree = _tree_node(graph, child, node, _role(parent, child))
            by_depth[depth - 1].children.append(tree)
        del by_depth[depth:]
        by_depth.append(tree)
        if visit is Visit.CYCLE:
            tree.note = "cycle: already an ancestor"
        elif visit is Visit.DEEP:
            tree.note = f"deeper than {graph.max_depth} levels; not shown"
        elif visit is Visit.AGAIN and node is not None and node.children:
            tree.note = tree.note or "shown above"
    assert root is not None
    return root


def _role(parent: Node, child: Descriptor) -> str:
    if parent.config is not None and child is parent.config:
        return "config"
    if child.digest in parent.layers:
        return "layer"
    if parent.kind is Kind.INDEX:
        return "manifest"
    return "blob"


def _tree_node(graph: Graph, descriptor: Descriptor, node: Node | None, role: str, name: str | None = None) -> TreeNode:
    if node is None:
        node = graph.node(descriptor)  # a leaf by media type: never opened
    state = node.state
    if state is NodeState.NOT_READ and node.kind is Kind.LEAF and not graph.store.present(descriptor.digest):
        state = NodeState.MISSING
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
