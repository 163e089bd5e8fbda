"""The graph: what a blob references (decided by its content), the one walk over those
references, and the one live set that every deleting command trusts.

Rules (DESIGN 1): an index references its `manifests[]`; an image manifest its `config`
and `layers[]`; an artifact manifest its `blobs[]`; `subject` is recorded but is a weak
edge that keeps nothing alive. When a media type is missing or unknown, the blob itself
is looked at: JSON-looking content (first non-whitespace byte `{`) that fails the strict
parse is *unreadable*, never a leaf.

Where a blob's use count is decided: `live_set` walks the roots that must survive and
returns what they reach plus the *doubt* — digests whose references cannot be known
(unreadable, missing manifests or indexes, absent entries, absurd depth). A deleter may
delete a blob only when the live set has no doubt and does not hold it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from . import refcache
from .descriptor import Descriptor, parse_descriptor, platform_from_json
from .digest import Digest, parse_digest
from .errors import CorruptLayoutError, NotFoundError, OcilayoutError
from .indexfile import loads_strict
from .mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    IMAGE_MANIFEST_TYPES,
    LEAF_TYPES,
    OCI_CONFIG,
    Kind,
    is_leaf_type,
    kind_of_media_type,
)
from .storage import MAX_DOCUMENT_BYTES, LayoutStore

MAX_DEPTH = 64
_SNIFF_BYTES = 64
_JSON_SPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


class NodeState(str, Enum):
    """How much the walk knows about a blob."""

    PARSED = "parsed"  # read and parsed; children known
    NOT_READ = "not-read"  # a leaf by media type or content; never opened as a document
    MISSING = "missing"  # in neither blobs directory
    UNREADABLE = "unreadable"  # present but its children cannot be known

    def __str__(self) -> str:
        return self.value


class Node:
    """What the walk learnt about one blob.

    `leaves`, when not None, is the digests of `children`, every one of them leaf-typed (the
    common image manifest): a live-set walk adds them at once instead of visiting each. A node
    from the reference cache decodes its other fields only when first asked for them.
    """

    __slots__ = (
        "digest",
        "kind",
        "state",
        "problem",
        "leaves",
        "_children",
        "_subject",
        "_config",
        "_layers",
        "_annotations",
        "_artifact_type",
        "_lazy",
    )

    def __init__(
        self,
        digest: Digest,
        kind: Kind,
        state: NodeState,
        children: tuple[Descriptor, ...] = (),
        subject: Descriptor | None = None,
        config: Descriptor | None = None,
        layers: tuple[Digest, ...] = (),
        annotations: Mapping[str, str] | None = None,
        artifact_type: str | None = None,
        problem: str | None = None,
        leaves: tuple[str, ...] | None = None,
    ) -> None:
        self.digest = digest
        self.kind = kind
        self.state = state
        self.problem = problem
        self.leaves = leaves
        self._children = children
        self._subject = subject
        self._config = config
        self._layers = layers
        self._annotations: Mapping[str, str] = {} if annotations is None else annotations
        self._artifact_type = artifact_type
        self._lazy: tuple[str, Graph, Kind, int] | None = None  # a cache record's body, decoded when asked for

    @property
    def has_children(self) -> bool:
        """Whether `children` is not empty (without decoding a cached node)."""
        if self._lazy is not None and self.leaves is not None:
            return bool(self.leaves)
        return bool(self.children)

    @property
    def children(self) -> tuple[Descriptor, ...]:
        """Strong references: index manifests, config and layers, artifact blobs."""
        if self._lazy is not None:
            self._unpack()
        return self._children

    @property
    def subject(self) -> Descriptor | None:
        """The weak `subject` reference of a referrer."""
        if self._lazy is not None:
            self._unpack()
        return self._subject

    @property
    def config(self) -> Descriptor | None:
        """An image manifest's config descriptor."""
        if self._lazy is not None:
            self._unpack()
        return self._config

    @property
    def layers(self) -> tuple[Digest, ...]:
        """An image manifest's layer digests, in order."""
        if self._lazy is not None:
            self._unpack()
        return self._layers

    @property
    def annotations(self) -> Mapping[str, str]:
        """The document's own string annotations."""
        if self._lazy is not None:
            self._unpack()
        return self._annotations

    @property
    def artifact_type(self) -> str | None:
        """The document's `artifactType`."""
        if self._lazy is not None:
            self._unpack()
        return self._artifact_type

    def leaf_sizes(self) -> list[int]:
        """The declared sizes of the children named by `leaves`, in order (from a cache record
        without a Descriptor per child when it decodes so)."""
        lazy = self._lazy
        if lazy is not None and self.leaves is not None:
            fields = refcache.decode_leafy(lazy[0], self.leaves)
            if fields is not None:
                return fields[1]
        return [child.size for child in self.children]

    def _unpack(self) -> None:
        assert self._lazy is not None
        body, graph, promised, size = self._lazy
        self._lazy = None
        try:
            fields = refcache.decode_manifest(body, self.leaves)
        except ValueError:
            # A record that passed its checksum but does not decode (or whose leaves are not its
            # children): only a hand-made one. Believe the blob instead.
            fresh = graph._read(Descriptor(None, self.digest, size), promised)
            self.kind, self.state, self.problem, self.leaves = fresh.kind, fresh.state, fresh.problem, fresh.leaves
            fields = (fresh.children, fresh.config, fresh.layers, fresh.subject, fresh.annotations, fresh.artifact_type)
        self._children, self._config, self._layers, self._subject, self._annotations, self._artifact_type = fields

    def __repr__(self) -> str:
        return (
            f"Node(digest={self.digest!r}, kind={self.kind!s}, state={self.state!s}, children={len(self.children)},"
            f" problem={self.problem!r})"
        )


class RecordedImage(NamedTuple):
    """An image manifest as its cache record gives it (`Graph.recorded_image`)."""

    leaves: tuple[str, ...]  # the children's digests, in order (config and layers)
    media_types: list[str]  # theirs, all leaf types
    sizes: list[int]  # theirs
    config: Descriptor | None
    annotations: Mapping[str, str]
    artifact_type: str | None


class ConfigInfo(NamedTuple):
    """The few image-config fields that listing and filters use (a tuple: a warm ls or du
    makes one per image, and a frozen dataclass costs several times as much to build)."""

    created: str | None
    os: str | None
    architecture: str | None
    variant: str | None
    labels: Mapping[str, str]


_Parsed = tuple[
    int, tuple[Descriptor, ...], int, int, int, "Descriptor | None", Mapping[str, str], "str | None"
]
"""What `Graph._parse` found: (content kind, children, config position or -1, layers start,
layers count, subject, annotations, artifactType)."""

_CONTENT_KINDS = {
    refcache.KIND_NONE: Kind.LEAF,
    refcache.KIND_INDEX: Kind.INDEX,
    refcache.KIND_IMAGE: Kind.IMAGE,
    refcache.KIND_ARTIFACT: Kind.ARTIFACT,
}
_CONTENT_KIND_TEXTS = {str(number): kind for number, kind in _CONTENT_KINDS.items()}


class Visit(str, Enum):
    """What the walk did at one reference (one `Step`)."""

    ENTER = "enter"  # first time: node known; its children follow (if any)
    LEAF = "leaf"  # a leaf by media type: not opened
    AGAIN = "again"  # already entered elsewhere: children not repeated
    CYCLE = "cycle"  # the blob is its own ancestor: not followed
    DEEP = "deep"  # has children but nesting is absurd: not followed


Step = tuple[Descriptor, "Node | None", int, Visit, "Node | None"]
"""One reference met by `Graph.walk`: (descriptor, parent node or None for a root, depth,
visit, node or None for LEAF and CYCLE). A plain tuple: a walk of 100,000 images makes
half a million of them."""


@dataclass(frozen=True, slots=True)
class Doubt:
    """A digest among what must survive whose references cannot be known."""

    digest: Digest
    reason: str  # "unreadable", "missing", "absent-entry", "too-deep"
    detail: str = ""


@dataclass(slots=True)
class LiveSet:
    """What a set of roots reaches (digests) and the doubt."""

    reached: set[str] = field(default_factory=set)
    doubt: list[Doubt] = field(default_factory=list)
    missing: list[Digest] = field(default_factory=list)  # every missing manifest/index, doubt or not

    def __contains__(self, digest: object) -> bool:
        return digest in self.reached

    def __len__(self) -> int:
        return len(self.reached)

    @property
    def certain(self) -> bool:
        """True when every reached blob's references are known: only then may anything go."""
        return not self.doubt

    def update(self, other: LiveSet) -> None:
        """Add what another set of roots reaches (the live set of their union)."""
        self.reached |= other.reached
        # Each doubt and missing digest once: how the roots were split must not show.
        self.doubt = list(dict.fromkeys([*self.doubt, *other.doubt]))
        self.missing = list(dict.fromkeys([*self.missing, *other.missing]))

    def doubt_message(self, where: str = "") -> str:
        """One line: which digests block deletion, and what the user can do."""
        reasons = {d.reason for d in self.doubt}
        shown = ", ".join(str(d.digest) for d in self.doubt[:3])
        more = f" and {len(self.doubt) - 3} more" if len(self.doubt) > 3 else ""
        hints = []
        if "missing" in reasons:
            hints.append(
                "a missing manifest or index may live in a shared blob directory: pass --shared-blobs DIR, "
                "or --allow-sparse if it is absent on purpose"
            )
        if "absent-entry" in reasons:
            hints.append(
                "an entry's own manifest is in no blob directory: pass --shared-blobs DIR, or remove that entry"
            )
        if "unreadable" in reasons or "too-deep" in reasons:
            hints.append("fix or remove the unreadable blob, or the entry reaching it")
        return (
            f"{where}nothing deleted (kept every blob): what {shown}{more} references cannot be read "
            f"({', '.join(sorted(reasons))}); " + "; ".join(hints)
        )


class Graph:
    """Reads and parses each blob at most once per instance (one instance per command).

    With the reference cache (`cache=True` and the store's `cache` not turned off, see
    `refcache`), a manifest, index or config parsed cleanly before — by any command, in any
    layout holding that digest — is not read again: its blob is only stat'ed (present, with the
    recorded size). Whatever this graph parses cleanly is recorded for the next command.
    """

    def __init__(
        self, store: LayoutStore, *, strict: bool = False, max_depth: int = MAX_DEPTH, cache: bool = True
    ) -> None:
        self.store = store
        self.strict = strict
        self.max_depth = max_depth
        self.warnings: list[str] = []
        self._nodes: dict[Digest, Node] = {}
        self._configs: dict[Digest, ConfigInfo | None] = {}
        self._warned: set[str] = set()
        self._documents: dict[Digest, dict[str, Any]] = {}  # read by document(), not yet by node()
        self._lenient = False  # set when a parse kept something leniently (then it is not recorded)
        self._facts = refcache.attach(store.root, store.blob_size) if cache and store.cache else None
        self._hint: Iterable[Descriptor] | None = None  # `expect`

    def warn(self, message: str) -> None:
        """Record a warning once."""
        if message not in self._warned:
            self._warned.add(message)
            self.warnings.append(message)

    def learning_mark(self) -> dict[str, tuple[int, int, int]]:
        """Where the cache records this process learnt end now: a fork child sends back what it
        learns after this mark (`learnt_since`), the parent keeps it (`add_learnt`)."""
        return self._facts.learning_mark() if self._facts is not None else {}

    def learnt_since(self, mark: dict[str, tuple[int, int, int]]) -> bytes:
        """The cache records learnt after `mark` (b"" without a cache)."""
        return self._facts.learnt_since(mark) if self._facts is not None else b""

    def add_learnt(self, message: bytes) -> None:
        """Keep the cache records a fork child learnt (`learnt_since`)."""
        if self._facts is not None and message:
            self._facts.add_learnt(message)

    def prepare(self, roots: Iterable[Descriptor] = ()) -> None:
        """Load the reference cache's manifest records now (before a fork: the child inherits
        them), borrowing another layout's when this one has none and another holds some of
        `roots`."""
        if self._facts is not None:
            self._facts.load("M")
            self._facts.borrow("M", (d.digest for d in roots))

    def expect(self, roots: Iterable[Descriptor]) -> None:
        """The entries this graph will be asked about: its first cache lookup prepares for
        them (`prepare`: a new layout borrows its records before any blob is read)."""
        self._hint = roots

    def _first_lookup(self) -> None:
        hint, self._hint = self._hint, None
        if hint is not None:
            self.prepare(hint)

    def unrecorded_digests(self, roots: Iterable[Descriptor]) -> list[str]:
        """The digests of those `roots` that are not leaf-typed and have no manifest record
        (what a walk of them will read), in order."""
        records = self._facts.records if self._facts is not None else {}
        return [
            root.digest
            for root in roots
            if root.media_type not in LEAF_TYPES and "M" + root.digest not in records
        ]

    def unrecorded(self, roots: Iterable[Descriptor]) -> int:
        """How many of `roots` have no manifest record in the reference cache (all, without one)."""
        facts = self._facts
        if facts is None:
            return sum(1 for _ in roots)
        records = facts.records
        return sum(1 for root in roots if "M" + root.digest not in records)

    def recorded_image(self, descriptor: Descriptor) -> RecordedImage | None:
        """An image manifest the reference cache describes with leaf-typed children only, its
        blob there with the recorded size: what a walk of it would yield, without the walk
        or a Descriptor per child (ls and du on a warm cache). None: walk it."""
        facts = self._facts
        if facts is None:
            return None
        if self._hint is not None:
            self._first_lookup()
        digest = descriptor.digest
        rest = facts.get("M" + digest)
        if rest is None:
            return None  # not recorded: the walk reads it (once)
        if descriptor.media_type in LEAF_TYPES:
            return None  # never opened: the walk yields it as a leaf
        if digest in self._nodes or descriptor.media_type not in IMAGE_MANIFEST_TYPES:
            return self._recorded_node_image(descriptor)
        # The hot path of a warm ls or du: what `_recorded` and `node` would decide, without a Node.
        leafy = _leafy_image(rest)
        if leafy is None:
            return None
        size, leaf_text, body = leafy
        if self.store.blob_size(digest) != size:
            return None  # absent, not a regular file, truncated, replaced: the walk decides
        leaves = tuple(leaf_text.split(",")) if leaf_text else ()
        return self._image_from(leaves, refcache.decode_leafy(body, leaves, checked=True))

    def _recorded_node_image(self, descriptor: Descriptor) -> RecordedImage | None:
        node = self.node(descriptor, keep=False)
        lazy = node._lazy
        leaves = node.leaves
        if lazy is None or leaves is None or node.kind is not Kind.IMAGE or node.state is not NodeState.PARSED:
            return None
        return self._image_from(leaves, refcache.decode_leafy(lazy[0], leaves))

    @staticmethod
    def _image_from(leaves: tuple[str, ...], fields: refcache.LeafyFields | None) -> RecordedImage | None:
        if fields is None:
            return None
        media_types, sizes, config_at, annotations, artifact_type = fields
        config = None
        if config_at >= 0:
            config = Descriptor(media_types[config_at], Digest(leaves[config_at]), sizes[config_at])
        return RecordedImage(leaves, media_types, sizes, config, annotations, artifact_type)

    # -- one blob -------------------------------------------------------------------

    def node(self, descriptor: Descriptor, *, keep: bool = True) -> Node:
        """What `descriptor`'s blob is and references.

        `keep=False` (one pass over a big layout, as `live_set` makes) caches only nodes
        that are not parsed manifests with children: those are most of the memory, and
        the walk enters each blob once anyway.
        """
        digest = descriptor.digest
        cached = self._nodes.get(digest)
        promised = kind_of_media_type(descriptor.media_type)
        if promised is Kind.LEAF:  # never opened, whatever another reference made known (as the walk)
            if cached is not None and cached.kind is Kind.LEAF:
                return cached
            return Node(digest, Kind.LEAF, NodeState.NOT_READ)
        if cached is not None and (cached.state is not NodeState.NOT_READ or promised is Kind.UNKNOWN):
            return cached
        # Not yet seen, or seen as a leaf by content while this reference promises a manifest:
        # then the promise decides (JSON that is no manifest is unreadable, not a leaf).
        document = self._documents.pop(digest, None)
        if document is None:
            node = self._load(descriptor, promised)
        else:
            self._lenient = False
            node = self._node_from(digest, promised, self._parse(digest, document))
        if keep or not node.has_children or node.state is not NodeState.PARSED:
            self._nodes[digest] = node
        return node

    def forget(self, digest: Digest) -> None:
        """Drop a parsed manifest that `node` kept for one walk, as `keep=False` would not have
        kept it (du reads each image's manifest for its date, then walks it: 100,000 kept
        manifests would fill memory)."""
        node = self._nodes.get(digest)
        if node is not None and node.state is NodeState.PARSED and node.has_children:
            del self._nodes[digest]

    def adopt(self, digest: Digest, data: bytes) -> Node:
        """Learn a document about to be written (a trimmed index) before its blob exists, so a
        live set over the new `index.json` can be decided before anything is written."""
        document = loads_strict(data, f"new blob {digest}")
        self._lenient = False
        node = self._node_from(digest, Kind.INDEX, self._parse(digest, document))
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
        facts = self._facts
        if facts is not None:
            if self._hint is not None:
                self._first_lookup()
            rest = facts.get("M" + digest)
            if rest is not None:
                node = self._recorded(digest, promised, rest)
                if node is not None:
                    return node
        return self._read(descriptor, promised)

    def _read(self, descriptor: Descriptor, promised: Kind) -> Node:
        digest = descriptor.digest
        try:
            if promised is Kind.UNKNOWN and not self._looks_like_json(digest):
                return Node(digest, Kind.LEAF, NodeState.NOT_READ)
            data = self.store.read_blob(digest, MAX_DOCUMENT_BYTES)
        except NotFoundError:
            if not is_leaf_type(descriptor.media_type):
                # One text per digest, whichever reference met it first (and in each process of
                # a forked walk): the warnings then do not depend on the order of the entries.
                message = f"missing blob {digest} (sparse layout?)"
                if self.strict:
                    raise CorruptLayoutError(message) from None
                self.warn(message)
            return Node(digest, promised, NodeState.MISSING)
        except OcilayoutError as exc:
            return self._unreadable(digest, promised, str(exc))
        except OSError as exc:
            return self._unreadable(digest, promised, f"blob {digest}: {exc.strerror or exc}")
        try:
            document = loads_strict(data, f"blob {digest}")
        except CorruptLayoutError as exc:
            return self._unreadable(digest, promised, str(exc))
        if not isinstance(document, dict):
            if promised is Kind.UNKNOWN:
                return Node(digest, Kind.LEAF, NodeState.NOT_READ)  # JSON, but no object: no references
            return self._unreadable(digest, promised, f"blob {digest}: not a JSON object")
        self._lenient = False
        parsed = self._parse(digest, document)
        node = self._node_from(digest, promised, parsed)
        facts = self._facts
        if facts is not None and not self._lenient and refcache.content_matches(digest, data):
            content_kind, children, config_at, layers_at, layers_count, subject, annotations, artifact_type = parsed
            facts.add(
                "M" + digest,
                refcache.encode_manifest(
                    len(data),
                    content_kind,
                    node.leaves,
                    children,
                    config_at,
                    layers_at,
                    layers_count,
                    subject,
                    annotations,
                    artifact_type,
                ),
            )
        return node

    def _recorded(self, digest: Digest, promised: Kind, rest: str) -> Node | None:
        """The node a cache record describes, when the blob is there with the recorded size;
        None (read the blob) otherwise, or when the record is malformed (the hot path of a
        warm walk: `refcache.split_manifest` inlined)."""
        parts = rest.split("\t", 3)
        if len(parts) != 4:
            return None
        size_text, kind_text, leaf_text, body = parts
        kind = _CONTENT_KIND_TEXTS.get(kind_text)
        if kind is None or not size_text.isdigit() or len(size_text) > 18:
            return None
        size = int(size_text)
        if self.store.blob_size(digest) != size:
            return None  # absent (let the read say so), not a regular file, truncated, replaced
        if kind is Kind.LEAF:  # the content declares nothing: the reference decides
            kind = Kind.LEAF if promised is Kind.UNKNOWN else promised
        state = NodeState.PARSED if kind is not Kind.LEAF else NodeState.NOT_READ
        if leaf_text != refcache.NOT_LEAFY:  # the common image manifest: the rest is decoded when asked for
            if _LEAF_TEXT.fullmatch(leaf_text) is None:  # each a digest of the grammar: never a path
                return None
            node = Node(digest, kind, state, leaves=tuple(leaf_text.split(",")) if leaf_text else ())
            node._lazy = (body, self, promised, size)
            return node
        try:
            children, config, layers, subject, annotations, artifact_type = refcache.decode_manifest(body, None)
        except ValueError:
            return None
        return Node(digest, kind, state, children, subject, config, layers, annotations, artifact_type)

    def _looks_like_json(self, digest: Digest) -> bool:
        """Whether the first non-whitespace byte of a blob of unknown type is `{` (or cannot be
        seen within the document cap: doubt reads on and lets the parse decide)."""
        head = self.store.read_blob_head(digest, _SNIFF_BYTES)
        if head.startswith(_BOM):
            head = head[len(_BOM) :]
        stripped = head.lstrip(_JSON_SPACE)
        if stripped:
            return stripped.startswith(b"{")
        return len(head) > 0  # only whitespace so far (or a BOM): JSON may follow

    def _unreadable(self, digest: Digest, promised: Kind, problem: str) -> Node:
        self.warn(f"cannot read {digest}: {problem}; keeping every blob it might reference")
        return Node(digest, promised, NodeState.UNREADABLE, problem=problem)

    def _parse(self, digest: Digest, document: dict[str, Any]) -> _Parsed:
        """What a document says whatever references it: its content kind (KIND_NONE when it has
        none of manifests, config, layers, blobs, fsLayers), children, and the node's fields."""
        children: list[Descriptor] = []
        config = None
        config_at = -1
        layers_at = 0
        layers_count = 0
        manifests = document.get("manifests")
        raw_layers = document.get("layers")
        blobs = document.get("blobs")
        has_manifests = type(manifests) is list
        has_image = "config" in document or type(raw_layers) is list
        if has_manifests:
            children.extend(self._children(digest, manifests, "manifests"))  # type: ignore[arg-type]
        if "config" in document:
            config = self._child(document["config"], digest, "config", -1)
            if config is not None:
                config_at = len(children)
                children.append(config)
        if type(raw_layers) is list:
            found = self._children(digest, raw_layers, "layers")
            layers_at = len(children)
            layers_count = len(found)
            children.extend(found)
        if type(blobs) is list:
            children.extend(self._children(digest, blobs, "blobs"))
        fs_layers = document.get("fsLayers")
        if type(fs_layers) is list:  # Docker schema1
            has_image = True
            for i, raw in enumerate(fs_layers):
                blob_sum = raw.get("blobSum") if isinstance(raw, dict) else None
                try:
                    # A schema1 layer has no descriptor; it is a gzipped layer tarball.
                    children.append(Descriptor(DOCKER_LAYER, parse_digest(blob_sum), -1))
                except OcilayoutError:
                    self._lenient = True
                    self.warn(f"blob {digest} fsLayers[{i}]: invalid blobSum skipped")
        if has_manifests:
            content_kind = refcache.KIND_INDEX
        elif has_image:
            content_kind = refcache.KIND_IMAGE
        elif type(blobs) is list:
            content_kind = refcache.KIND_ARTIFACT
        else:
            content_kind = refcache.KIND_NONE
        subject = None
        raw_subject = document.get("subject")
        if isinstance(raw_subject, dict):
            subject = self._child(raw_subject, digest, "subject", -1)
        annotations = document.get("annotations")
        artifact_type = document.get("artifactType")
        return (
            content_kind,
            tuple(children),
            config_at,
            layers_at,
            layers_count,
            subject,
            {k: v for k, v in annotations.items() if isinstance(v, str)} if type(annotations) is dict else {},
            artifact_type if isinstance(artifact_type, str) else None,
        )

    @staticmethod
    def _node_from(digest: Digest, promised: Kind, parsed: _Parsed) -> Node:
        """The node a parsed document makes when referenced with the kind `promised`."""
        content_kind, children, config_at, layers_at, layers_count, subject, annotations, artifact_type = parsed
        kind = _CONTENT_KINDS[content_kind]
        if kind is Kind.LEAF:  # the content declares nothing: the reference decides
            kind = Kind.LEAF if promised is Kind.UNKNOWN else promised
        return Node(
            digest,
            kind,
            NodeState.PARSED if kind is not Kind.LEAF else NodeState.NOT_READ,
            children,
            subject,
            children[config_at] if config_at >= 0 else None,
            tuple([c.digest for c in children[layers_at : layers_at + layers_count]]),
            annotations,
            artifact_type,
            leaves=refcache.leaves_of(children),
        )

    def _children(self, digest: Digest, raws: list[Any], key: str) -> list[Descriptor]:
        """The descriptors of a `manifests`, `layers` or `blobs` list (the hot loop of a walk)."""
        try:
            return [parse_descriptor(raw, "") for raw in raws]
        except OcilayoutError:  # some item is malformed: go one by one, leniently
            found = (self._child(raw, digest, key, i) for i, raw in enumerate(raws))
            return [child for child in found if child is not None]

    def _child(self, raw: object, digest: Digest, key: str, position: int) -> Descriptor | None:
        """A child descriptor, leniently: a valid digest is kept even if other fields are wrong."""
        try:
            return parse_descriptor(raw, "")
        except OcilayoutError as exc:
            self._lenient = True
            where = f"blob {digest}"
            place = f"{where} {key}" if position < 0 else f"{where} {key}[{position}]"
            problem = f"{place}{exc}"
            digest_text = raw.get("digest") if isinstance(raw, dict) else None
            try:
                child_digest = parse_digest(digest_text)
            except OcilayoutError:
                self.warn(f"{problem}; skipped")
                return None
            self.warn(f"{problem}; its blob is kept")
            media_type = raw.get("mediaType") if isinstance(raw, dict) else None
            return Descriptor(
                media_type if isinstance(media_type, str) else None,
                child_digest,
                -1,
                platform_from_json(raw.get("platform")) if isinstance(raw, dict) else None,
            )

    # -- many blobs: the one walk ---------------------------------------------------

    def walk(
        self,
        roots: Iterable[Descriptor],
        *,
        keep: bool = True,
        leaf_sink: set[str] | None = None,
        size_sink: dict[str, int] | None = None,
    ) -> Iterator[Step]:
        """Every reference reachable from `roots` through strong edges, depth first, pre-order.

        Each blob is entered once (later references are AGAIN); a blob that is its own
        ancestor is a CYCLE and nesting past `max_depth` is DEEP — both never followed, so a
        hostile layout cannot loop or exhaust memory. Leaves by media type are not opened.
        With `keep=False` parsed manifests are not cached (see `node`): an AGAIN step may
        then carry no node.

        `leaf_sink` (the live set's digests): the children of an entered node that are all
        leaf-typed are added to it instead of being yielded as LEAF steps — exactly the
        digests those steps would carry, right after the node's ENTER;
        `size_sink` then receives their declared sizes as those steps would give them (the
        first that is not -1), for `du`.
        """
        entered: set[Digest] = set()
        on_path: set[Digest] = set()
        # Items: (descriptor, parent, depth), or (None, digest) to leave `digest`'s subtree.
        stack: list[tuple[Any, Any, int]] = [(root, None, 0) for root in roots]
        stack.reverse()
        leaf_types = LEAF_TYPES
        nodes = self._nodes
        LEAF, ENTER = Visit.LEAF, Visit.ENTER
        while stack:
            descriptor, parent, depth = stack.pop()
            if descriptor is None:
                on_path.discard(parent)
                continue
            digest = descriptor.digest
            if descriptor.media_type in leaf_types:
                # A leaf by media type (never opened, DESIGN 1), even when another reference
                # made it known as a manifest: what a blob keeps must not depend on what was
                # read before. A later non-leaf reference may still open it, so it is not
                # marked entered.
                yield (descriptor, parent, depth, LEAF, None)
                continue
            if digest in on_path:
                yield (descriptor, parent, depth, Visit.CYCLE, None)
                continue
            node = nodes.get(digest)
            if digest in entered:
                if node is not None and node.state is NodeState.NOT_READ:
                    # Entered as a leaf by its content; this reference may promise a manifest,
                    # and then content that is no manifest is unreadable: a new verdict.
                    fresh = self.node(descriptor, keep=keep)
                    yield (descriptor, parent, depth, Visit.AGAIN if fresh is node else ENTER, fresh)
                else:
                    yield (descriptor, parent, depth, Visit.AGAIN, node)
                continue
            if node is None or node.state is NodeState.NOT_READ:
                node = self.node(descriptor, keep=keep)
            if node.leaves is not None and leaf_sink is not None and depth < self.max_depth:
                # Each child would be popped next and yielded as LEAF (leaf-typed). The sizes
                # first: a record that does not decode is replaced by the blob's own parse.
                leaf_sizes = node.leaf_sizes() if size_sink is not None else []
                leaves = node.leaves
                if leaves is not None:
                    entered.add(digest)
                    yield (descriptor, parent, depth, ENTER, node)
                    leaf_sink.update(leaves)
                    if size_sink is not None:
                        for leaf, size in zip(leaves, leaf_sizes):
                            if size_sink.get(leaf, -1) < 0:
                                size_sink[leaf] = size
                    continue
            if depth >= self.max_depth and node.has_children:
                message = f"nesting deeper than {self.max_depth} levels at {digest}; not followed further"
                if self.strict:
                    raise CorruptLayoutError(message)
                self.warn(message)
                entered.add(digest)
                yield (descriptor, parent, depth, Visit.DEEP, node)
                continue
            entered.add(digest)
            yield (descriptor, parent, depth, ENTER, node)
            if node.children:
                on_path.add(digest)
                stack.append((None, digest, 0))
                depth += 1
                stack.extend((child, node, depth) for child in reversed(node.children))

    def reach(self, roots: Iterable[Descriptor]) -> LiveSet:
        """What `roots` reach, sparse children excused (for reading, not deleting); every
        node stays cached for later questions."""
        return _walk_live(self, roots, allow_sparse=True, keep=True)

    def config_info(self, descriptor: Descriptor) -> ConfigInfo | None:
        """Created time, platform and labels of an image config (read once, cached)."""
        if not _config_typed(descriptor.media_type):  # asked of each reference, whatever another one was
            return None
        digest = descriptor.digest
        if digest in self._configs:
            return self._configs[digest]
        info = self._configs[digest] = self._read_config(digest)
        return info

    def recorded_created(self, descriptor: Descriptor) -> tuple[str | None] | None:
        """`(config_info(descriptor).created,)` when known without reading the blob: from the
        reference cache's config record, checked as any record is (a regular readable file of
        the recorded size), with less work than `config_info` and nothing kept in memory (`du`
        dates 100,000 images by their configs). None: `config_info` reads it."""
        if not _config_typed(descriptor.media_type):
            return (None,)
        digest = descriptor.digest
        if digest in self._configs:
            info = self._configs[digest]
            return (info.created if info is not None else None,)
        facts = self._facts
        if facts is None:
            return None
        if self._hint is not None:
            self._first_lookup()
        rest = facts.get("C" + digest)
        found = refcache.config_created(rest) if rest is not None else None
        if found is not None and self.store.blob_size(digest) == found[0]:
            return (found[1],)
        return None

    def _read_config(self, digest: Digest) -> ConfigInfo | None:
        facts = self._facts
        if facts is not None:
            if self._hint is not None:
                self._first_lookup()
            rest = facts.get("C" + digest)
            if rest is not None:
                record = refcache.decode_config(rest)
                if record is not None and self.store.blob_size(digest) == record[0]:
                    return ConfigInfo._make(record[1:])
        try:
            data = self.store.read_blob(digest, MAX_DOCUMENT_BYTES)
            document = loads_strict(data, f"blob {digest}")
        except OcilayoutError:
            return None
        if not isinstance(document, dict):
            return None
        inner = document.get("config")
        labels = inner.get("Labels") if isinstance(inner, dict) else None

        def text(key: str) -> str | None:
            value = document.get(key)
            return value if isinstance(value, str) else None

        info = ConfigInfo(
            created=text("created"),
            os=text("os"),
            architecture=text("architecture"),
            variant=text("variant"),
            labels={k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {},
        )
        if facts is not None and refcache.content_matches(digest, data):
            facts.add(
                "C" + digest,
                refcache.encode_config(len(data), info.created, info.os, info.architecture, info.variant, info.labels),
            )
        return info


def _config_typed(media_type: str | None) -> bool:
    """Whether a config of this media type is read for its created time and platform: an image
    config, or a type we do not know (not a layer's, say)."""
    return media_type in (OCI_CONFIG, DOCKER_CONFIG, None) or kind_of_media_type(media_type) is Kind.UNKNOWN


def live_set(
    graph: Graph, roots: Iterable[Descriptor], *, allow_sparse: bool = False, sizes: dict[str, int] | None = None
) -> LiveSet:
    """What `roots` (the entries that must survive) reach, and the doubt (DESIGN 1).

    Doubt: an unreadable blob; a missing blob whose media type is not a leaf type (a
    manifest or index that may live in a forgotten shared blob directory) unless
    `allow_sparse` declares such absences deliberate; a root whose own blob is in no blob
    directory (never excused: a sparse copy leaves children out, not entries); nesting too
    deep to follow. The one rule every deleter (rm, gc, the foreign-writer re-check) obeys.

    Many roots are split between this process and a forked one (both cores read and parse
    manifests); the union of the two live sets is the live set of all roots. `sizes`, when
    given, receives each reached blob's declared size (for space accounting; never forked).
    """
    roots = list(roots)
    if sizes is not None:
        return _walk_live(graph, roots, allow_sparse, sizes=sizes)
    if _may_fork(len(roots)):
        graph.prepare(roots)  # the child inherits the loaded records instead of loading them again
        if len(roots) >= WARM_FORK_FACTOR * PARALLEL_MIN_ROOTS or graph.unrecorded(roots) >= PARALLEL_MIN_ROOTS:
            half = len(roots) // 2
            return _live_set_forked(graph, roots[:half], roots[half:], allow_sparse)
    return _walk_live(graph, roots, allow_sparse)


def _walk_live(
    graph: Graph,
    roots: Iterable[Descriptor],
    allow_sparse: bool,
    keep: bool = False,
    sizes: dict[str, int] | None = None,
) -> LiveSet:
    result = LiveSet()
    roots = list(roots)
    if sizes is None and not keep:
        roots = _take_recorded_images(graph, roots, result.reached)
    with graph.store.prefetch(graph.unrecorded_digests(roots)):
        _walk_into(graph, roots, allow_sparse, keep, sizes, result)
    result.doubt = list(dict.fromkeys(result.doubt))  # two roots naming one absent blob: one doubt
    return result


def _walk_into(
    graph: Graph,
    roots: list[Descriptor],
    allow_sparse: bool,
    keep: bool,
    sizes: dict[str, int] | None,
    result: LiveSet,
) -> None:
    seen = result.reached
    doubt = result.doubt
    missing_seen: set[str] = set()
    LEAF, AGAIN, PARSED = Visit.LEAF, Visit.AGAIN, NodeState.PARSED
    for descriptor, _, depth, visit, node in graph.walk(roots, keep=keep, leaf_sink=seen, size_sink=sizes):
        digest = descriptor.digest
        seen.add(digest)
        if sizes is not None and sizes.get(digest, -1) < 0:
            sizes[digest] = descriptor.size
        if visit is LEAF:
            if depth == 0 and graph.store.locate_quiet(digest) is None:
                doubt.append(Doubt(digest, "absent-entry", "an entry typed as a leaf, in no blob directory"))
            continue
        if node is None:
            continue
        state = node.state
        if state is NodeState.MISSING:
            # Judged at every reference, by that reference's media type: which reference
            # enters a missing blob first must not decide whether it is doubt.
            if depth == 0:  # an entry is never excused
                doubt.append(Doubt(digest, "absent-entry", "the entry's own manifest is in no blob directory"))
            elif not is_leaf_type(descriptor.media_type) and digest not in missing_seen:
                missing_seen.add(digest)
                result.missing.append(digest)
                if not allow_sparse:
                    doubt.append(Doubt(digest, "missing", f"missing {descriptor.media_type or 'untyped'} blob"))
            continue
        if visit is AGAIN:
            continue
        if state is PARSED:
            if visit is Visit.DEEP:
                doubt.append(Doubt(digest, "too-deep", f"nested deeper than {graph.max_depth} levels"))
        elif state is NodeState.UNREADABLE:
            doubt.append(Doubt(digest, "unreadable", node.problem or ""))


_IMAGE_KIND_TEXT = str(refcache.KIND_IMAGE)
# A leafy record's leaf list, every digest checked at once (they name files: never a path).
_LEAF_TEXT = re.compile(r"(?:(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})(?:,(?=.)|$))*")


def _take_recorded_images(graph: Graph, roots: Iterable[Descriptor], seen: set[str]) -> list[Descriptor]:
    """The warm fast path of a live set: an image-manifest root whose cache record lists only
    leaf-typed children, its blob there with the recorded size, goes into `seen` with those
    children here (exactly what the walk would add for it, and it can add no doubt); the other
    roots are returned for the walk. Most entries of a big layout are such images."""
    facts = graph._facts
    roots = list(roots)
    if facts is None or graph.max_depth < 1 or not roots:
        return roots
    graph.prepare(roots)  # loads the records, or borrows them
    records = facts.records
    hits = facts.hits
    nodes = graph._nodes
    blob_size = graph.store.blob_size
    image_types = IMAGE_MANIFEST_TYPES
    rest_of: list[Descriptor] = []
    for root in roots:
        digest = root.digest
        key = "M" + digest
        record = records.get(key) if root.media_type in image_types and digest not in nodes else None
        leafy = _leafy_image(record) if record is not None else None
        if leafy is not None and blob_size(digest) == leafy[0]:
            hits.add(key)
            seen.add(digest)
            seen.update(leafy[1].split(",") if leafy[1] else ())
            continue
        rest_of.append(root)
    return rest_of


def _leafy_image(record: str) -> tuple[int, str, str] | None:
    """(size, leaf list, body) of an image-manifest record whose children are all leaf-typed
    and named by digests of the grammar; None for any other record."""
    parts = record.split("\t", 3)
    if len(parts) != 4 or parts[1] != _IMAGE_KIND_TEXT or parts[2] == refcache.NOT_LEAFY:
        return None
    size_text, _, leaf_text, body = parts
    if not size_text.isdigit() or len(size_text) > 18 or _LEAF_TEXT.fullmatch(leaf_text) is None:
        return None
    return int(size_text), leaf_text, body


# -- the second core ----------------------------------------------------------------------

PARALLEL_MIN_ROOTS = 2000  # below this, forking costs more than it saves
# Roots the reference cache describes cost about a stat each, a fraction of a read and parse:
# a warm walk forks only from this many times more roots (at 10,000 a fork cost more than it
# saved; bench/RESULTS.md).
WARM_FORK_FACTOR = 20
NO_FORK_ENV = "OCILAYOUT_NO_FORK"


def _may_fork(roots: int) -> bool:
    if roots < PARALLEL_MIN_ROOTS or not hasattr(os, "fork") or os.environ.get(NO_FORK_ENV):
        return False
    if threading.active_count() > 1:  # forking a threaded process is unsafe
        return False
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) > 1


def _live_set_forked(
    graph: Graph, first: list[Descriptor], second: list[Descriptor], allow_sparse: bool
) -> LiveSet:
    """`first` here and `second` in a child process, at once (`parallel.fork_split`).

    The child runs the same walk and sends back its live set as text, with the cache records
    it learnt; if it fails in any way, this process walks `second` itself, so the answer
    never depends on the child.
    """
    from .parallel import fork_split  # parallel builds on this module's child machinery

    def here() -> LiveSet:
        mine = _walk_live(graph, first, allow_sparse)
        if graph._facts is not None:
            graph._facts.flush()  # while the child still walks: what this half learnt, written now
        return mine

    def there() -> list[bytes]:
        mark = graph.learning_mark()  # here: what the child learns (or, if it failed, this walk)
        live = _walk_live(graph, second, allow_sparse)
        return _encode(live, graph.warnings, graph.learnt_since(mark))

    mine, sent = fork_split(here, there)
    # One bytes object from the child; the parts themselves if it failed and this process walked.
    payload: bytes = b"".join(sent) if type(sent) is list else sent  # type: ignore[assignment]
    theirs = _decode(payload, graph)
    if theirs is None:
        theirs = _walk_live(graph, second, allow_sparse)
    mine.update(theirs)
    return mine


_GUARDED_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
FORKED: set[int] = set()  # live-set children running now (a signal handler kills them)


def _reap(pid: int, *, kill: bool = False) -> int:
    FORKED.discard(pid)
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return -1
    return status


def _encode(live: LiveSet, warnings: list[str], learnt: bytes) -> list[bytes]:
    head = {
        "doubt": [[d.digest, d.reason, d.detail] for d in live.doubt],
        "missing": live.missing,
        "warnings": warnings,
    }
    # One line per digest, joined and split in C: this is the serial part of the fork. Then,
    # after a NUL, the reference-cache records the child learnt (only the parent writes them).
    # Parts, not one bytes object: `fork_split` sends them one after the other (no copy).
    return [(json.dumps(head) + "\n").encode(), "\n".join(live.reached).encode(), b"\0", learnt]


def _decode(payload: bytes, graph: Graph) -> LiveSet | None:
    # Sliced, not partitioned: at 1,000,000 images each copy of the payload is hundreds of MB.
    try:
        nul = payload.find(b"\0")
        newline = payload.find(b"\n", 0, nul)
        if nul < 0 or newline < 0:
            return None
        head = json.loads(payload[:newline])
        live = LiveSet()
        live.doubt = [Doubt(Digest(d), reason, detail) for d, reason, detail in head["doubt"]]
        live.missing = [Digest(d) for d in head["missing"]]
        if nul > newline + 1:
            live.reached = set(payload[newline + 1 : nul].decode().split("\n"))
        warnings = head["warnings"]
        learnt = payload[nul + 1 :]
    except (ValueError, KeyError, TypeError):
        return None
    for warning in warnings:
        graph.warn(warning)
    if graph._facts is not None and learnt:
        graph._facts.add_learnt(learnt)
    return live
