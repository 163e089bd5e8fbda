"""The `index.json` document: parsed from bytes, edited as values, serialised back.

Unknown fields of the index and of each entry are kept exactly as read, so a rewrite
changes only what an operation means to change.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any, Iterable, Sequence

from .descriptor import Descriptor, parse_descriptor
from .digest import Digest
from .errors import CorruptLayoutError
from .mediatypes import LEAF_TYPES, REF_NAME


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
    exact: bool = True  # serialising the values gives back every value as written

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

    def walked_by(self, digest: Digest) -> Descriptor:
        """The descriptor the content of `digest` is summarised and walked by (`walked_by`)."""
        entries = self._by_digest[digest]
        if len(entries) == 1:  # nearly every digest: no list to build
            return entries[0].descriptor
        return walked_by([entry.descriptor for entry in entries])

    def serialise(self, raw_entries: Iterable[dict[str, Any]]) -> bytes:
        """Bytes of this index with `manifests` replaced by `raw_entries`, all else kept.

        Every value we did not change keeps its value (DESIGN 4): from the parsed values when
        that is exact, else by splicing the original text — the text around `manifests` and
        of every entry kept, and of an entry whose name changed all but its annotations.
        """
        entries = list(raw_entries)
        if self.exact:
            document = dict(self.document)
            document["manifests"] = entries
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
            try:
                return text.encode("utf-8") + b"\n"
            except UnicodeEncodeError:  # a new entry copied a lone surrogate from a blob
                return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"
        return splice_manifests(self.source, self.entries, entries)


def walked_by(descriptors: Sequence[Descriptor]) -> Descriptor:
    """Of the descriptors of one digest's entries, the one its content is summarised and
    walked by — what it is (an image, an index, a referrer of a subject) for ls, du, rm and
    prune alike, whatever the order of the entries: the first, unless that one says "leaf" (a
    layer or config type, never opened) and another does not, as the live set of all the
    entries walks it."""
    for descriptor in descriptors:
        if descriptor.media_type not in LEAF_TYPES:
            return descriptor
    return descriptors[0]


# An integer -0 (a -0 float is counted by the parser) and an escaped surrogate; two
# patterns with literal prefixes scan 30 MB in 25 ms, one alternation in 60 ms.
_MINUS_ZERO = re.compile(rb"-0[,}\] \t\r\n]")
_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


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


def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf (NaN never gets here: its token is a constant)
        raise CorruptLayoutError(f"number {text[:40]} is out of range (not finite)")
    _floats.seen = getattr(_floats, "seen", 0) + 1
    return value


def _reject_constant(name: str) -> Any:
    raise CorruptLayoutError(f"{name} is not JSON")


_floats = threading.local()  # floats parsed so far by this thread (`seen`): see parse_index
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_float=_finite, parse_constant=_reject_constant)


def loads_strict(data: bytes, what: str) -> Any:
    """Parse JSON (UTF-8 only, as Go and the image-spec read it) with duplicate keys, invalid
    UTF-8, `NaN`/`Infinity`, numbers out of float range and absurd nesting turned into
    CorruptLayoutError."""
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
        if "int_max_str_digits" in str(exc) or "Exceeds the limit" in str(exc):
            raise CorruptLayoutError(f"{what}: a number has more than 4300 digits; refusing to parse it") from None
        raise CorruptLayoutError(f"{what}: invalid JSON ({_first_line(exc)})") from None


def parse_index(data: bytes, what: str = "index.json") -> IndexFile:
    """Parse and validate an `index.json` body."""
    floats_before = getattr(_floats, "seen", 0)
    document = loads_strict(data, what)
    # Values alone rewrite this text exactly unless it holds a float (its text may not survive
    # a float), a `-0`, or an escaped surrogate (not encodable as UTF-8): then rewrites splice.
    exact = (
        getattr(_floats, "seen", 0) == floats_before
        and _MINUS_ZERO.search(data) is None
        and _SURROGATE.search(data) is None
    )
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
    media_types: dict[str, str] = {}
    for position, raw in enumerate(manifests):
        try:
            descriptor = parse_descriptor(raw, what)
        except CorruptLayoutError:
            parse_descriptor(raw, f"{what}: manifests[{position}]")  # the same error, saying where
            raise
        # One string object per value, shared by the entry object and its descriptor, and one
        # per distinct media type: at 1,000,000 entries, about 200 MB less.
        if raw["digest"] == descriptor.digest:
            raw["digest"] = descriptor.digest
        media_type = descriptor.media_type
        if media_type is not None and type(raw.get("mediaType")) is str:
            shared = media_types.setdefault(media_type, media_type)
            raw["mediaType"] = shared
            if shared is not media_type:
                descriptor.media_type = shared
        entries.append(Entry(position, descriptor, raw))
    return IndexFile(document, tuple(entries), tuple(warnings), bytes(data), exact)


class EditedEntry(dict):  # type: ignore[type-arg]
    """An entry object changed from `origin` (an entry as read) in its ref name (when
    `renamed`) and in the members of `overrides` (key → new value) only."""

    origin: dict[str, Any]
    renamed: bool = False
    ref_name: str | None = None
    overrides: dict[str, Any]


def _edited(raw: dict[str, Any]) -> EditedEntry:
    entry = EditedEntry(raw)
    entry.origin = raw.origin if isinstance(raw, EditedEntry) else raw
    entry.overrides = dict(raw.overrides) if isinstance(raw, EditedEntry) else {}
    if isinstance(raw, EditedEntry) and raw.renamed:
        entry.renamed, entry.ref_name = True, raw.ref_name
    return entry


def with_members(raw: dict[str, Any], **members: Any) -> dict[str, Any]:
    """A copy of an entry object with `members` replaced (e.g. a new `digest` and `size`), or
    removed where the value is None; serialised, every other member keeps its text."""
    entry = _edited(raw)
    for key, value in members.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    entry.overrides.update(members)
    return entry


def with_name(raw: dict[str, Any], name: str | None) -> dict[str, Any]:
    """A copy of an entry object with its ref name set, or removed when `name` is None."""
    entry = _edited(raw)
    entry.renamed = True
    entry.ref_name = name
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


# -- splicing the original text ------------------------------------------------------------

def _skip(text: str, i: int) -> int:
    """The index of the first character at or after `i` that is not JSON whitespace."""
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


_SPAN_DECODER = json.JSONDecoder()  # spans only: the text was already parsed strictly


def _members(text: str, start: int) -> tuple[list[tuple[str, int, int, int]], int]:
    """The members of the object at `start`: (key, key start, value start, value end), and
    the index of its closing brace."""
    i = _skip(text, start + 1)
    members: list[tuple[str, int, int, int]] = []
    if text[i] == "}":
        return members, i
    while True:
        key_start = i
        key, i = scanstring(text, i + 1)
        i = _skip(text, i)
        i = _skip(text, i + 1)  # past ':'
        value_start = i
        _, i = _SPAN_DECODER.raw_decode(text, i)
        members.append((key, key_start, value_start, i))
        i = _skip(text, i)
        if text[i] == "}":
            return members, i
        i = _skip(text, i + 1)  # past ','


def _elements(text: str, start: int) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) of each element of the array at `start`, and its closing bracket."""
    i = _skip(text, start + 1)
    spans: list[tuple[int, int]] = []
    if text[i] == "]":
        return spans, i
    while True:
        _, end = _SPAN_DECODER.raw_decode(text, i)
        spans.append((i, end))
        i = _skip(text, end)
        if text[i] == "]":
            return spans, i
        i = _skip(text, i + 1)


def splice_manifests(source: bytes, originals: Iterable[Entry], entries: list[dict[str, Any]]) -> bytes:
    """`source` with its `manifests` array made of `entries`: an entry read from `source` is
    copied as written; one changed by `with_name` is its original text with a new
    `annotations` value; anything else is serialised."""
    text = source.decode("utf-8-sig" if source[:3] == b"\xef\xbb\xbf" else "utf-8")
    start = _skip(text, 0)
    members, _ = _members(text, start)
    found = [(value_start, value_end) for key, _, value_start, value_end in members if key == "manifests"]
    if not found or text[found[-1][0]] != "[":  # `"manifests": null`
        array_start, array_end = (found[-1] if found else (None, None))
        spans: list[tuple[int, int]] = []
    else:
        array_start = found[-1][0]
        spans, closing = _elements(text, array_start)
        array_end = closing + 1
    by_identity = {id(e.raw): span for e, span in zip(originals, spans)}
    parts = []
    for entry in entries:
        span = by_identity.get(id(entry))
        if span is not None:
            parts.append(text[span[0] : span[1]])
        elif isinstance(entry, EditedEntry) and id(entry.origin) in by_identity:
            parts.append(_edit(text, by_identity[id(entry.origin)], entry))
        else:
            parts.append(_dumps(entry))
    array = "[" + ",".join(parts) + "]"
    if array_start is None:  # no manifests member at all: cannot happen for a parsed index
        raise CorruptLayoutError("index.json has no manifests list to rewrite")
    return (text[:array_start] + array + text[array_end:]).encode("utf-8")


def _edit(text: str, span: tuple[int, int], entry: EditedEntry) -> str:
    """The original text of an edited entry with only its edits applied."""
    edited = _with_ref_name(text, span, entry) if entry.renamed else text[span[0] : span[1]]
    for key, value in entry.overrides.items():
        edited = _set_member(edited, (0, len(edited)), key, None if value is None else _dumps(value))
    return edited


def splice_array(source: bytes, key: str, kept: list[tuple[int, dict[str, Any]]]) -> bytes:
    """`source` (a JSON object) with its `key` array made of the original elements at the
    positions of `kept`, in that order, each with its members replaced by the given values;
    every other byte of the document is kept (a trimmed index stays faithful)."""
    text = source.decode("utf-8-sig" if source[:3] == b"\xef\xbb\xbf" else "utf-8")
    members, _ = _members(text, _skip(text, 0))
    found = [(value_start, value_end) for name, _, value_start, value_end in members if name == key]
    if not found or text[found[-1][0]] != "[":
        raise CorruptLayoutError(f"no {key} array to rewrite")
    array_start = found[-1][0]
    spans, closing = _elements(text, array_start)
    parts = []
    for position, changes in kept:
        element = text[spans[position][0] : spans[position][1]]
        for member, value in changes.items():
            element = _set_member(element, (0, len(element)), member, None if value is None else _dumps(value))
        parts.append(element)
    # The array's own layout (indentation, one element per line) is kept too.
    separator = text[spans[0][1] : spans[1][0]] if len(spans) > 1 else ","
    head = text[array_start + 1 : spans[0][0]] if spans else ""
    tail = text[spans[-1][1] : closing] if spans else ""
    array = "[" + head + separator.join(parts) + tail + "]" if parts else "[]"
    return (text[:array_start] + array + text[closing + 1 :]).encode("utf-8")


def _with_ref_name(text: str, span: tuple[int, int], entry: EditedEntry) -> str:
    """The entry object at `span` with only its ref name changed: inside its `annotations`
    object when there is one (every other annotation keeps its text), else the member added,
    and the member removed when no annotation is left."""
    members, _ = _members(text, span[0])
    current = [m for m in members if m[0] == "annotations"]
    if current and text[current[-1][2]] == "{":
        _, _, value_start, value_end = current[-1]
        name_text = None if entry.ref_name is None else _dumps(entry.ref_name)
        annotations = _set_member(text, (value_start, value_end), REF_NAME, name_text)
        if _members(annotations, 0)[0]:
            return text[span[0] : value_start] + annotations + text[value_end : span[1]]
        return _set_member(text, span, "annotations", None)
    value = entry.get("annotations")
    return _set_member(text, span, "annotations", None if value is None else _dumps(value))


def _set_member(text: str, span: tuple[int, int], key: str, value: str | None) -> str:
    """The object at `span` with member `key` set to the JSON text `value` (replaced, or added
    last), or removed with one comma beside it when `value` is None."""
    members, closing = _members(text, span[0])
    current = [m for m in members if m[0] == key]
    if current:
        _, key_start, value_start, value_end = current[-1]
        if value is not None:
            return text[span[0] : value_start] + value + text[value_end : span[1]]
        before = text[span[0] : key_start].rstrip(" \t\n\r")
        after = text[value_end : span[1]].lstrip(" \t\n\r")
        if after.startswith(","):
            return before + after[1:]
        return before.rstrip(",") + after
    if value is None:
        return text[span[0] : span[1]]
    head = text[span[0] : closing].rstrip(" \t\n\r")
    separator = "" if head.endswith("{") else ","
    return head + separator + _dumps(key) + ":" + value + text[closing : span[1]]


def _dumps(value: Any) -> str:
    # ensure_ascii: an escaped lone surrogate stays an escape (valid JSON), never raw bytes.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
