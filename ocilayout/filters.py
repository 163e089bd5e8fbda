"""`--filter KEY=VALUE` selection of images, as podman's image filters (DESIGN 3.2).

Different keys AND together; repeated values of one key OR together.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Container

from .digest import Digest
from .errors import OcilayoutError, UsageError
from .graph import Graph
from .indexfile import Entry, IndexFile
from .mediatypes import CREATED, Kind
from .resolve import resolve

FILTER_KEYS = ("dangling", "label", "reference", "before", "since", "id", "intermediate")


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What filters look at, per image (one digest with all its entries)."""

    digest: Digest
    names: tuple[str, ...]
    created: datetime | None
    labels: dict[str, str]
    layers: tuple[Digest, ...]


_HEX = re.compile(r"[0-9a-f]+")


def parse_filters(specs: list[str]) -> dict[str, list[str]]:
    """Group `KEY=VALUE` strings by key, rejecting unknown keys up front."""
    grouped: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise UsageError(f"invalid filter {spec!r}: expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}")
        if key in ("dangling", "intermediate") and value not in ("true", "false"):
            raise UsageError(f"invalid filter {spec!r}: {key} takes true or false")
        # An empty value selects everything (`id=`) or nothing, and is always a slip, e.g. an
        # empty shell variable in a pipeline: refuse it before anything is deleted.
        meaningful = value.split(":", 1)[1] if key == "id" and ":" in value else value
        if not meaningful.strip():
            raise UsageError(f"invalid filter {spec!r}: {key} needs a value")
        if key == "id" and not _HEX.fullmatch(meaningful):
            raise UsageError(f"invalid filter {spec!r}: id takes a hex digest prefix")
        grouped.setdefault(key, []).append(value)
    return grouped


def image_facts(index: IndexFile, graph: Graph, only: Container[Digest] | None = None) -> list[ImageFacts]:
    """Facts of every image of the index (or of those in `only`), in index order."""
    facts = []
    for digest, entries in index.by_digest().items():
        if only is not None and digest not in only:
            continue
        node = graph.node(index.walked_by(digest))
        labels: dict[str, str] = dict(node.annotations)
        created_text = _entry_created(entries) or node.annotations.get(CREATED)
        if node.config is not None:
            info = graph.config_info(node.config)
            if info is not None:
                labels.update(info.labels)
                created_text = created_text or info.created
        facts.append(
            ImageFacts(
                digest=digest,
                names=tuple(e.name for e in entries if e.name is not None),
                created=parse_time(created_text) if created_text else None,
                labels=labels,
                layers=node.layers if node.kind is Kind.IMAGE else (),
            )
        )
    return facts


def select(index: IndexFile, graph: Graph, filters: dict[str, list[str]]) -> list[Digest]:
    """Digests of the images that pass every filter key."""
    facts = image_facts(index, graph)
    groups = [[_predicate(key, value, index, graph, facts) for value in values] for key, values in filters.items()]
    return [image.digest for image in facts if all(any(t(image) for t in tests) for tests in groups)]


def is_parent(parent: tuple[Digest, ...], child: tuple[Digest, ...]) -> bool:
    """moby's parent relation on layer lists: a strict, non-empty prefix."""
    return 0 < len(parent) < len(child) and child[: len(parent)] == parent


def _predicate(
    key: str, value: str, index: IndexFile, graph: Graph, facts: list[ImageFacts]
) -> Callable[[ImageFacts], bool]:
    if key == "dangling":
        want = value == "true"
        return lambda image: (not image.names) == want
    if key == "label":
        name, sep, expected = value.partition("=")
        if sep:
            return lambda image: image.labels.get(name) == expected
        return lambda image: name in image.labels
    if key == "reference":
        return lambda image: any(fnmatch.fnmatchcase(n, value) for n in image.names)
    if key == "id":
        text = value.split(":", 1)[1] if ":" in value else value
        return lambda image: image.digest.encoded.startswith(text)
    if key in ("before", "since"):
        moment = _moment(value, index, graph, facts)
        if key == "before":
            return lambda image: image.created is not None and image.created < moment
        return lambda image: image.created is not None and image.created > moment
    if key == "intermediate":
        want = value == "true"
        all_layers = [image.layers for image in facts]

        def intermediate(image: ImageFacts) -> bool:
            is_parent_of_something = any(is_parent(image.layers, other) for other in all_layers)
            return (not image.names and is_parent_of_something) == want

        return intermediate
    raise UsageError(f"unknown filter key {key!r}")


def _moment(value: str, index: IndexFile, graph: Graph, facts: list[ImageFacts]) -> datetime:
    parsed = parse_time(value)
    if parsed is not None:
        return parsed
    try:
        digest = resolve(index, value).digest
    except OcilayoutError:
        raise UsageError(f"invalid filter time {value!r}: neither a time nor an image of the layout") from None
    for image in facts:
        if image.digest == digest and image.created is not None:
            return image.created
    raise UsageError(f"image {value!r} has no created time to compare with")


_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str) -> datetime | None:
    """RFC 3339 (nanoseconds allowed, as Go writes them) or a bare date; None if neither."""
    candidate = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    candidate = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), candidate, count=1)
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


_PLAIN_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def iso_time(text: str) -> str | None:
    """`parse_time(text).isoformat()`, or None: how du shows a time. The common
    "2024-01-02T06:30:27Z" needs only a range check (100,000 of them in a big layout)."""
    if _PLAIN_UTC.fullmatch(text) is not None:
        try:
            datetime.fromisoformat(text[:19])
        except ValueError:
            return None
        return text[:19] + "+00:00"
    moment = parse_time(text)
    return moment.isoformat() if moment is not None else None


def _entry_created(entries: list[Entry]) -> str | None:
    for entry in entries:
        value = entry.descriptor.annotations.get(CREATED)
        if value:
            return value
    return None
