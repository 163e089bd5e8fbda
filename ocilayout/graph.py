"""The walker: what a blob references, decided by its content, and what a set of roots reaches.

Rules (DESIGN 1): an index references its `manifests[]`; an image manifest its `config`
and `layers[]`; an artifact manifest its `blobs[]`; `subject` is recorded but is a weak
edge that keeps nothing alive. When a media type is missing or unknown, the blob itself
is looked at. A blob whose children cannot be known is *unreadable*, and callers that
delete must then keep everything (doubt keeps a blob).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Mapping

from .descriptor import Descriptor, parse_descriptor, platform_from_json
from .digest import Digest, parse_digest
from .errors import CorruptLayoutError, NotFoundError, OcilayoutError
from .indexfile import loads_strict
from .mediatypes import (
    DOCKER_CONFIG,
    OCI_CONFIG,
    LEAF_TYPES,
    Kind,
    kind_of_media_type,
)
from .storage import MAX_DOCUMENT_BYTES, LayoutStore

MAX_DEPTH = 64
_SNIFF_BYTES = 64


class NodeState(str, Enum):
    """How much the walk knows about a blob."""

    PARSED = "parsed"  # read and parsed; children known
    NOT_READ = "not-read"  # a leaf by media type or content; never opened as a document
    MISSING = "missing"  # in neither blobs directory
    UNREADABLE = "unreadable"  # present but its children cannot be known

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class Node:
    """What the walk learnt about one blob."""

    digest: Digest
    kind: Kind
    state: NodeState
    children: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    config: Descriptor | None = None
    layers: tuple[Digest, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigInfo:
    """The few image-config fields that listing and filters use."""

    created: str | None
    os: str | None
    architecture: str | None
    variant: str | None
    labels: Mapping[str, str]


@dataclass(slots=True)
class Reach:
    """Everything a set of roots reaches: digest → a descriptor of it (for its size)."""

    descriptors: dict[Digest, Descriptor] = field(default_factory=dict)
    missing: list[Digest] = field(default_factory=list)
    unreadable: list[Digest] = field(default_factory=list)

    def __contains__(self, digest: object) -> bool:
        return digest in self.descriptors

    @property
    def complete(self) -> bool:
        """False when some reached blob's references could not be read: nothing may be deleted."""
        return not self.unreadable

    def size(self) -> int:
        """Sum of declared sizes of the reached blobs (each counted once)."""
        return sum(d.size for d in self.descriptors.values() if d.size > 0)


class Graph:
    """Reads and parses each blob at most once per instance (one instance per command)."""

    def __init__(self, store: LayoutStore, *, strict: bool = False, max_depth: int = MAX_DEPTH) -> None:
        self.store = store
        self.strict = strict
        self.max_depth = max_depth
        self.warnings: list[str] = []
        self._nodes: dict[Digest, Node] = {}
        self._configs: dict[Digest, ConfigInfo | None] = {}
        self._warned: set[str] = set()
        self._documents: dict[Digest, dict[str, Any]] = {}  # read by document(), not yet by node()

    def warn(self, message: str) -> None:
        """Record a warning once."""
        if message not in self._warned:
            self._warned.add(message)
            self.warnings.append(message)

    # -- one blob -------------------------------------------------------------------

    def node(self, descriptor: Descriptor) -> Node:
        """What `descriptor`'s blob is and references."""
        promised = kind_of_media_type(descriptor.media_type)
        digest = descriptor.digest
        if promised is Kind.LEAF:
            cached = self._nodes.get(digest)
            return cached if cached is not None else Node(digest, Kind.LEAF, NodeState.NOT_READ)
        cached = self._nodes.get(digest)
        if cached is not None:
            return cached
        document = self._documents.pop(digest, None)
        node = self._load(descriptor, promised) if document is None else self._from_document(digest, promised, document)
        self._nodes[digest] = node
        return node

    def document(self, descriptor: Descriptor) -> Any:
        """A blob's parsed JSON for display (None when absent or not JSON); `node` reuses this read."""
        digest = descriptor.digest
        try:
            document = loads_strict(self.store.read_blob(digest, MAX_DOCUMENT_BYTES), f"blob {digest}")
        except OcilayoutError:
            return None
        if isinstance(document, dict) and digest not in self._nodes and kind_of_media_type(
            descriptor.media_type
        ) is not Kind.LEAF:
            self._documents[digest] = document
        return document

    def _load(self, descriptor: Descriptor, promised: Kind) -> Node:
        digest = descriptor.digest
        try:
            if promised is Kind.UNKNOWN:
                head = self.store.read_blob_head(digest, _SNIFF_BYTES)
                stripped = head.lstrip()
                if stripped and not stripped.startswith(b"{"):  # only whitespace so far: JSON may follow
                    return Node(digest, Kind.LEAF, NodeState.NOT_READ)
            data = self.store.read_blob(digest, MAX_DOCUMENT_BYTES)
        except NotFoundError:
            if promised is not Kind.UNKNOWN:
                message = f"missing {promised} {digest} (sparse layout?)"
                if self.strict:
                    raise CorruptLayoutError(message) from None
                self.warn(message)
            return Node(digest, promised, NodeState.MISSING)
        except OcilayoutError as exc:
            if promised is Kind.UNKNOWN and "larger than" in str(exc):
                # An unknown blob too large to be a manifest is data, not a document.
                return Node(digest, Kind.LEAF, NodeState.NOT_READ, problem=str(exc))
            return self._unreadable(digest, promised, str(exc))
        except OSError as exc:
            return self._unreadable(digest, promised, f"blob {digest}: {exc.strerror or exc}")
        try:
            document = loads_strict(data, f"blob {digest}")
        except CorruptLayoutError as exc:
            if promised is Kind.UNKNOWN:
                return Node(digest, Kind.LEAF, NodeState.NOT_READ)
            return self._unreadable(digest, promised, str(exc))
        if not isinstance(document, dict):
            if promised is Kind.UNKNOWN:
                return Node(digest, Kind.LEAF, NodeState.NOT_READ)
            return self._unreadable(digest, promised, f"blob {digest}: not a JSON object")
        return self._from_document(digest, promised, document)

    def _unreadable(self, digest: Digest, promised: Kind, problem: str) -> Node:
        self.warn(f"cannot read {digest}: {problem}; keeping every blob it might reference")
        return Node(digest, promised, NodeState.UNREADABLE, problem=problem)

    def _from_document(self, digest: Digest, promised: Kind, document: dict[str, Any]) -> Node:
        where = f"blob {digest}"
        children: list[Descriptor] = []
        config = None
        layers: list[Digest] = []
        has_manifests = isinstance(document.get("manifests"), list)
        has_image = "config" in document or isinstance(document.get("layers"), list)
        has_blobs = isinstance(document.get("blobs"), list)
        if has_manifests:
            for i, raw in enumerate(document["manifests"]):
                child = self._child(raw, f"{where} manifests[{i}]")
                if child is not None:
                    children.append(child)
        if "config" in document:
            config = self._child(document["config"], f"{where} config")
            if config is not None:
                children.append(config)
        if isinstance(document.get("layers"), list):
            for i, raw in enumerate(document["layers"]):
                child = self._child(raw, f"{where} layers[{i}]")
                if child is not None:
                    children.append(child)
                    layers.append(child.digest)
        if has_blobs:
            for i, raw in enumerate(document["blobs"]):
                child = self._child(raw, f"{where} blobs[{i}]")
                if child is not None:
                    children.append(child)
        if isinstance(document.get("fsLayers"), list):  # Docker schema1
            has_image = True
            for i, raw in enumerate(document["fsLayers"]):
                blob_sum = raw.get("blobSum") if isinstance(raw, dict) else None
                try:
                    children.append(Descriptor(None, parse_digest(blob_sum), -1))
                except OcilayoutError:
                    self.warn(f"{where} fsLayers[{i}]: invalid blobSum skipped")
        if has_manifests:
            kind = Kind.INDEX
        elif has_image:
            kind = Kind.IMAGE
        elif has_blobs:
            kind = Kind.ARTIFACT
        elif promised is Kind.UNKNOWN:
            kind = Kind.LEAF
        else:
            kind = promised
        subject = None
        if isinstance(document.get("subject"), dict):
            subject = self._child(document["subject"], f"{where} subject")
        annotations = document.get("annotations")
        artifact_type = document.get("artifactType")
        return Node(
            digest,
            kind,
            NodeState.PARSED if kind is not Kind.LEAF else NodeState.NOT_READ,
            tuple(children),
            subject,
            config,
            tuple(layers),
            {k: v for k, v in annotations.items() if isinstance(v, str)} if isinstance(annotations, dict) else {},
            artifact_type if isinstance(artifact_type, str) else None,
        )

    def _child(self, raw: object, where: str) -> Descriptor | None:
        """A child descriptor, leniently: a valid digest is kept even if other fields are wrong."""
        try:
            return parse_descriptor(raw, where)
        except OcilayoutError as exc:
            digest_text = raw.get("digest") if isinstance(raw, dict) else None
            try:
                digest = parse_digest(digest_text)
            except OcilayoutError:
                self.warn(f"{exc}; skipped")
                return None
            self.warn(f"{exc}; its blob is kept")
            media_type = raw.get("mediaType") if isinstance(raw, dict) else None
            return Descriptor(
                media_type if isinstance(media_type, str) else None,
                digest,
                -1,
                platform_from_json(raw.get("platform")) if isinstance(raw, dict) else None,
            )

    # -- many blobs -----------------------------------------------------------------

    def reach(self, roots: Iterable[Descriptor]) -> Reach:
        """Every blob reachable from `roots` through strong edges (roots included)."""
        result = Reach()
        seen = result.descriptors
        expanded: set[Digest] = set()
        stack: list[tuple[Descriptor, int]] = [(root, 0) for root in roots]
        stack.reverse()
        while stack:
            descriptor, depth = stack.pop()
            digest = descriptor.digest
            known = seen.get(digest)
            if known is None or (known.size < 0 <= descriptor.size):
                seen[digest] = descriptor
            if digest in expanded:
                continue
            if descriptor.media_type in LEAF_TYPES and digest not in self._nodes:
                continue  # a leaf by media type (never opened); a later non-leaf reference may expand it
            node = self.node(descriptor)
            expanded.add(digest)
            if node.state is NodeState.MISSING and node.kind is not Kind.UNKNOWN:
                result.missing.append(digest)
            elif node.state is NodeState.UNREADABLE:
                result.unreadable.append(digest)
            if not node.children:
                continue
            if depth >= self.max_depth:
                message = f"nesting deeper than {self.max_depth} levels at {digest}; not followed further"
                if self.strict:
                    raise CorruptLayoutError(message)
                self.warn(message)
                result.unreadable.append(digest)
                continue
            depth += 1
            stack.extend((child, depth) for child in reversed(node.children))
        return result

    def absent_roots(self, roots: Iterable[Descriptor]) -> list[Descriptor]:
        """Roots (index.json entries) whose own blob is in no blob directory.

        A sparse copy leaves children of an index out, never an entry's own manifest; a
        missing one rather means a forgotten --shared-blobs (or damage), and the blobs it
        references may well be here. Callers that delete treat this like an unreadable
        blob: doubt keeps, nothing is deleted.
        """
        absent = []
        for root in roots:
            node = self.node(root)  # cached by a reach just computed
            if node.state is NodeState.MISSING:
                absent.append(root)
            elif node.state is NodeState.NOT_READ and self.store.locate_quiet(root.digest) is None:
                absent.append(root)  # an entry typed as a leaf: never opened by the walk
        return absent

    def config_info(self, descriptor: Descriptor) -> ConfigInfo | None:
        """Created time, platform and labels of an image config (read once, cached)."""
        digest = descriptor.digest
        if digest in self._configs:
            return self._configs[digest]
        info = None
        if descriptor.media_type in (OCI_CONFIG, DOCKER_CONFIG, None) or kind_of_media_type(
            descriptor.media_type
        ) is Kind.UNKNOWN:
            info = self._read_config(digest)
        self._configs[digest] = info
        return info

    def _read_config(self, digest: Digest) -> ConfigInfo | None:
        try:
            if self.store.locate(digest) is None:
                return None
            document = loads_strict(self.store.read_blob(digest, MAX_DOCUMENT_BYTES), f"blob {digest}")
        except OcilayoutError:
            return None
        if not isinstance(document, dict):
            return None
        inner = document.get("config")
        labels = inner.get("Labels") if isinstance(inner, dict) else None

        def text(key: str) -> str | None:
            value = document.get(key)
            return value if isinstance(value, str) else None

        return ConfigInfo(
            created=text("created"),
            os=text("os"),
            architecture=text("architecture"),
            variant=text("variant"),
            labels={k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {},
        )
