"""The `index.json` document: parsed from bytes, edited as values, serialised back.

Unknown fields of the index and of each entry are kept exactly as read, so a rewrite
changes only what an operation means to change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

from .descriptor import Descriptor, parse_descriptor
from .digest import Digest
from .errors import CorruptLayoutError
from .mediatypes import REF_NAME


@dataclass(slots=True)
class Entry:
    """One descriptor of `index.json` `manifests[]`; `raw` is the object as read.

    Treated as immutable (not frozen only because frozen dataclasses construct several
    times slower, and an index of 100,000 images makes 100,000 of these).
    """

    position: int
    descriptor: Descriptor
    raw: dict[str, Any]
    name: str | None = field(init=False)  # the ref name; None for a dangling entry
    digest: Digest = field(init=False)  # of the entry's manifest or index

    def __post_init__(self) -> None:
        self.name = self.descriptor.annotations.get(REF_NAME)
        self.digest = self.descriptor.digest


@dataclass(frozen=True)
class IndexFile:
    """A parsed `index.json`: its top-level object and its validated entries."""

    document: dict[str, Any]
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...] = ()
    source: bytes = field(default=b"", repr=False, compare=False)  # the bytes parsed

    def names(self) -> dict[str, list[Entry]]:
        """Entries by ref name (a name may appear on several entries in the wild)."""
        return self._by_name

    @cached_property
    def _by_name(self) -> dict[str, list[Entry]]:
        by_name: dict[str, list[Entry]] = {}
        for entry in self.entries:
            if entry.name is not None:
                by_name.setdefault(entry.name, []).append(entry)
        return by_name

    def by_digest(self) -> dict[Digest, list[Entry]]:
        """Entries grouped by digest, in index order (computed once; do not mutate)."""
        return self._by_digest

    @cached_property
    def _by_digest(self) -> dict[Digest, list[Entry]]:
        groups: dict[Digest, list[Entry]] = {}
        for entry in self.entries:
            groups.setdefault(entry.digest, []).append(entry)
        return groups

    def serialise(self, raw_entries: Iterable[dict[str, Any]]) -> bytes:
        """Bytes of this index with `manifests` replaced by `raw_entries`, all else kept."""
        document = dict(self.document)
        document["manifests"] = list(raw_entries)
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may disagree on which duplicate wins; refuse rather than guess. Building
    # the dict first and comparing sizes keeps the common case in C.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise CorruptLayoutError(f"duplicate key {key!r}")
            seen.add(key)
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates)


def loads_strict(data: bytes, what: str) -> Any:
    """Parse JSON (UTF-8 only, as Go and the image-spec read it) with duplicate keys, invalid
    UTF-8 and absurd nesting turned into CorruptLayoutError."""
    try:
        # A UTF-8 byte-order mark is tolerated when reading (verify reports it), as before.
        return _DECODER.decode(data.decode("utf-8-sig" if data[:3] == b"\xef\xbb\xbf" else "utf-8"))
    except CorruptLayoutError as exc:
        raise CorruptLayoutError(f"{what}: {exc}") from None
    except RecursionError:
        raise CorruptLayoutError(f"{what}: JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise CorruptLayoutError(f"{what}: not UTF-8 text") from None
    except ValueError as exc:
        raise CorruptLayoutError(f"{what}: invalid JSON ({_first_line(exc)})") from None


def parse_index(data: bytes, what: str = "index.json") -> IndexFile:
    """Parse and validate an `index.json` body."""
    document = loads_strict(data, what)
    if not isinstance(document, dict):
        raise CorruptLayoutError(f"{what}: top level must be a JSON object")
    version = document.get("schemaVersion")
    if type(version) is not int or version != 2:  # 2.0 and true are not 2 to Go readers
        raise CorruptLayoutError(f"{what}: schemaVersion must be 2, got {version!r}")
    warnings: list[str] = []
    manifests = document.get("manifests")
    if manifests is None:
        # Docker 25 `docker save` writes "manifests": null; it means an empty index.
        if "manifests" not in document:
            raise CorruptLayoutError(f"{what}: no manifests list")
        warnings.append(f"{what}: manifests is null; treated as empty")
        manifests = []
    if not isinstance(manifests, list):
        raise CorruptLayoutError(f"{what}: manifests must be a list")
    entries = []
    for position, raw in enumerate(manifests):
        try:
            descriptor = parse_descriptor(raw, what)
        except CorruptLayoutError:
            parse_descriptor(raw, f"{what}: manifests[{position}]")  # the same error, saying where
            raise
        entries.append(Entry(position, descriptor, raw))
    return IndexFile(document, tuple(entries), tuple(warnings), bytes(data))


def with_name(raw: dict[str, Any], name: str | None) -> dict[str, Any]:
    """A copy of an entry object with its ref name set, or removed when `name` is None."""
    entry = dict(raw)
    annotations = dict(entry.get("annotations") or {})
    if name is None:
        annotations.pop(REF_NAME, None)
    else:
        annotations[REF_NAME] = name
    if annotations:
        entry["annotations"] = annotations
    else:
        entry.pop("annotations", None)
    return entry


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
