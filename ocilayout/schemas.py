"""JSON Schema checks for the documents found in an OCI image layout.

The schemas live as plain JSON files (draft 2020-12) so that they can be read, reviewed and
reused without Python. They only check *shape* (types, required members, digest and media-type
grammar); questions that need the layout itself (does the blob exist, does the size match,
is the layout version supported) are answered elsewhere.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

if TYPE_CHECKING:  # jsonschema costs 0.3 s to import; a clean layout never needs it
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError
    from referencing import Registry

__all__ = ["SCHEMA_KINDS", "SCHEMA_BASE_URI", "problems", "schema_dir", "schema_id", "validate", "validator_for"]

# One schema file per kind: schemas/<kind>.json.
SCHEMA_KINDS: tuple[str, ...] = ("layout", "descriptor", "index", "manifest", "artifact-manifest", "config")

# Every schema's $id is SCHEMA_BASE_URI + "<kind>.json"; cross-references use these ids, so
# resolution never touches the network (".invalid" can never resolve, by RFC 2606).
SCHEMA_BASE_URI = "https://ocilayout.invalid/schemas/"

# Longest problem line we return: messages embed (parts of) the offending document, which may
# be huge or hostile, and callers print them one per line.
MAX_LINE = 200

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A file that must be present for a directory to count as our schema directory.
_MARKER = "descriptor.json"


def schema_dir() -> Path:
    """Directory holding the schema files.

    In an installed wheel they are package data at ``ocilayout/schemas/`` (hatch force-include);
    in a source checkout or editable install they are the repository's top-level ``schemas/``.
    """
    try:
        packaged = importlib.resources.files("ocilayout") / "schemas"
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - package always importable here
        packaged = None
    # Only a real directory is usable: we hand out a Path, and a zipped package has none.
    if isinstance(packaged, Path) and (packaged / _MARKER).is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "schemas"
    if (checkout / _MARKER).is_file():
        return checkout
    raise RuntimeError(
        f"ocilayout schema files not found: looked in {packaged} (installed package data) "
        f"and {checkout} (source checkout); the installation is incomplete"
    )


def schema_id(kind: str) -> str:
    """The ``$id`` of the schema for `kind` (ValueError for an unknown kind)."""
    _check_kind(kind)
    return f"{SCHEMA_BASE_URI}{kind}.json"


@functools.cache
def _registry() -> Registry:
    """All schema files, keyed by their ``$id``, so ``$ref`` between them resolves offline."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    directory = schema_dir()
    resources: list[tuple[str, Resource[Any]]] = []
    for kind in SCHEMA_KINDS:
        path = directory / f"{kind}.json"
        try:
            contents = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot load schema {path}: {exc}") from exc
        expected = f"{SCHEMA_BASE_URI}{kind}.json"
        if not isinstance(contents, dict) or contents.get("$id") != expected:
            # A wrong $id would make $ref silently resolve to nothing or to another file.
            raise RuntimeError(f"schema {path} must have $id {expected!r}")
        resources.append((expected, DRAFT202012.create_resource(contents)))
    return Registry().with_resources(resources).crawl()


@functools.cache
def validator_for(kind: str) -> Draft202012Validator:
    """The validator for `kind`, built once and shared (ValueError for an unknown kind).

    No format checker is attached: every constraint we rely on is expressed with patterns,
    so results do not depend on which optional format libraries happen to be installed.
    """
    from jsonschema import Draft202012Validator

    _check_kind(kind)
    registry = _registry()
    schema = registry.contents(schema_id(kind))
    return Draft202012Validator(schema, registry=registry)


def validate(document: object, kind: str) -> list[str]:
    """Problems with `document` as a `kind` document, one short line each; empty when valid.

    Each line reads ``<kind>: <location>: <message>`` where location is a JSON-path-like
    ``$.layers[0].digest``. Lines are sorted by location (then message) so output and tests
    are stable regardless of jsonschema's traversal order.
    """
    validator = validator_for(kind)
    errors = sorted(validator.iter_errors(document), key=_sort_key)
    return [_format(kind, error) for error in errors]


def _check_kind(kind: str) -> None:
    if kind not in SCHEMA_KINDS:
        raise ValueError(f"unknown schema kind {kind!r}; expected one of {', '.join(SCHEMA_KINDS)}")


def _sort_key(error: ValidationError) -> tuple[tuple[tuple[int, int, str], ...], str]:
    # Ints and strings cannot be compared directly; tag each path element with its type.
    path = tuple((0, item, "") if isinstance(item, int) else (1, 0, str(item)) for item in error.absolute_path)
    return path, error.message


def _location(path: Iterable[object]) -> str:
    parts = ["$"]
    for item in path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(item, str) and _IDENTIFIER.match(item):
            parts.append(f".{item}")
        else:
            # json.dumps escapes quotes and control characters, keeping the line one line.
            parts.append(f"[{json.dumps(str(item))}]")
    return "".join(parts)


def _format(kind: str, error: ValidationError) -> str:
    location = _shorten(_location(error.absolute_path), MAX_LINE // 2)
    prefix = f"{kind}: {location}: "
    message = _one_line(error.message)
    return prefix + _shorten(message, max(MAX_LINE - len(prefix), 20))


def _one_line(text: str) -> str:
    # Messages embed repr() of document parts; make sure nothing can break the line.
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- schema checks, with a fast path ------------------------------------------------------------
#
# jsonschema spends about 5 ms on one manifest (mostly its $ref machinery); a layout of
# 100,000 images holds over 200,000 documents. `_Generated` turns our schema files into
# plain Python predicates that only ever answer "certainly valid": a False, or a keyword it
# does not know when compiling, falls back to jsonschema, which is also what words the
# problems. So a gap here costs speed, never a missed problem -- provided a True is never
# wrong, which tests/test_verify.py checks against jsonschema on many documents.

Predicate = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$schema", "$comment", "title", "description", "$defs", "examples", "default"})


class _Unsupported(Exception):
    """A schema construct the fast path does not handle: use jsonschema for that kind."""


_PLAIN_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "null": type(None),
    "boolean": bool,
    "integer": int,  # 2.0 is an integer to JSON Schema; left to jsonschema here
    "number": (int, float),
}


def _same(a: Any, b: Any) -> bool:
    """JSON equality, stricter than JSON Schema's (2 vs 2.0 differ): strictness only costs speed."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


class _Generated:
    """"Certainly valid" predicates compiled to Python source: one function per schema node,
    every keyword a few inline statements (closures cost a call per keyword: 16 us a
    manifest, 4 s of `verify` at 100,000 images). A keyword it does not know raises
    `_Unsupported` while compiling: that kind then goes to jsonschema alone."""

    def __init__(self, documents: dict[str, Any]) -> None:
        self.documents = documents
        self.names: dict[tuple[str, str], str] = {}
        self.namespace: dict[str, Any] = {"_same": _same}
        self.lines: list[str] = []
        self.aliases: list[str] = []  # `name = other` for schemas that are a lone $ref

    def root(self, uri: str) -> Predicate:
        name = self._at(uri, "")
        source = "\n".join([*self.lines, *self.aliases])
        exec(compile(source, f"<ocilayout schema {uri}>", "exec"), self.namespace)  # noqa: S102
        function: Predicate = self.namespace[name]
        return function

    def _constant(self, value: Any) -> str:
        name = f"_c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def _at(self, uri: str, pointer: str) -> str:
        key = (uri, pointer)
        if key in self.names:
            return self.names[key]
        name = self.names[key] = f"_v{len(self.names)}"  # named before compiling: "$ref": "#" recurses
        if uri not in self.documents:
            raise _Unsupported(uri)
        node = self.documents[uri]
        for part in [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]:
            if not isinstance(node, dict) or part not in node:
                raise _Unsupported(f"{uri}#{pointer}")
            node = node[part]
        self._function(name, node, uri)
        return name

    def _function(self, name: str, schema: Any, base: str) -> None:
        body: list[str] = []
        if schema is False:
            body.append("return False")
        elif schema is not True:
            if not isinstance(schema, dict):
                raise _Unsupported(repr(schema))
            if "$id" in schema and schema["$id"] != base:
                raise _Unsupported("nested $id")
            keys = [key for key in schema if key not in _ANNOTATIONS and key not in ("$id", "then", "else")]
            if keys == ["$ref"]:  # the same function under another name
                uri, _, pointer = urljoin(base, schema["$ref"]).partition("#")
                self.aliases.append(f"{name} = {self._at(uri, pointer)}")
                return
            self.known: type | None = None  # the one exact type x has, once a type keyword said so
            for key in keys:
                body.extend(self._keyword(key, schema[key], schema, base))
        self.lines.append(f"def {name}(x):")
        self.lines.extend(f"    {line}" for line in body)
        self.lines.append("    return True")

    def _sub(self, schema: Any, base: str) -> str:
        name = f"_v{len(self.names)}"
        self.names[("", name)] = name
        known = getattr(self, "known", None)
        self._function(name, schema, base)
        self.known = known
        return name

    def _is(self, cls: type) -> str:
        """`isinstance(x, cls) and ` unless the type keyword already made sure ('' then)."""
        return "" if self.known is cls else f"isinstance(x, {cls.__name__}) and "

    def _keyword(self, key: str, value: Any, schema: dict[str, Any], base: str) -> list[str]:
        if key == "type":
            types = [value] if isinstance(value, str) else list(value)
            unknown = [t for t in types if t not in _PLAIN_TYPES]
            if unknown:
                raise _Unsupported(f"type {unknown[0]}")
            classes: tuple[type, ...] = ()
            for type_name in types:
                entry = _PLAIN_TYPES[type_name]
                classes += entry if isinstance(entry, tuple) else (entry,)
            test = f"isinstance(x, {self._constant(classes)})"
            if "boolean" not in types and any(issubclass(bool, c) for c in classes):
                test += " and not isinstance(x, bool)"  # True is no integer
            if len(classes) == 1 and classes[0] in (str, dict, list):
                self.known = classes[0]  # later keywords of this schema need not ask again
            return [f"if not ({test}): return False"]
        if key == "required":
            return [f"if {self._is(dict)}not {self._constant(frozenset(value))}.issubset(x.keys()): return False"]
        if key == "properties":
            props = {name: self._sub(sub, base) for name, sub in value.items()}
            lines = ["if isinstance(x, dict):" if self.known is not dict else "if True:"]
            for name, function in props.items():
                key_text = self._constant(name)
                lines.append(f"    if {key_text} in x and not {function}(x[{key_text}]): return False")
            return lines
        if key == "additionalProperties":
            if "patternProperties" in schema:
                raise _Unsupported("patternProperties")
            known = self._constant(frozenset(schema.get("properties", {})))
            extra = self._sub(value, base)
            return [
                "if isinstance(x, dict):" if self.known is not dict else "if True:",
                "    for k, v in x.items():",
                f"        if k not in {known} and not {extra}(v): return False",
            ]
        if key == "items":
            if "prefixItems" in schema:
                raise _Unsupported("prefixItems")
            each = self._sub(value, base)
            head = "if isinstance(x, list):" if self.known is not list else "if True:"
            return [head, "    for v in x:", f"        if not {each}(v): return False"]
        if key == "pattern":
            regex = self._constant(re.compile(value))
            return [f"if {self._is(str)}{regex}.search(x) is None: return False"]
        if key == "not":
            regex = self._constant(re.compile(_lone_pattern(value)))
            if self.known is str:
                return [f"if {regex}.search(x) is not None: return False"]
            return [f"if not isinstance(x, str) or {regex}.search(x) is not None: return False"]
        if key == "if":
            regex = self._constant(re.compile(_lone_pattern(value)))
            then = self._sub(schema.get("then", True), base)
            otherwise = self._sub(schema.get("else", True), base)
            condition = f"(not isinstance(x, str) or {regex}.search(x) is not None)"
            return [f"if not ({then}(x) if {condition} else {otherwise}(x)): return False"]
        if key == "allOf":
            parts = [self._sub(sub, base) for sub in value]
            return [f"if not {part}(x): return False" for part in parts]
        if key == "const":
            if type(value) in (str, int):  # _same: the exact type, and equal
                return [f"if not (type(x) is {type(value).__name__} and x == {value!r}): return False"]
            return [f"if not _same(x, {self._constant(value)}): return False"]
        if key == "enum":
            kinds = {type(option) for option in value}
            if len(kinds) == 1 and kinds <= {str, int}:
                (kind,) = kinds
                allowed = self._constant(frozenset(value))
                return [f"if not (type(x) is {kind.__name__} and x in {allowed}): return False"]
            options = self._constant(list(value))
            return [f"if not any(_same(x, o) for o in {options}): return False"]
        if key in ("minimum", "maximum"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise _Unsupported(key)
            # Floats are left to jsonschema (False here means "not sure").
            compare = ">=" if key == "minimum" else "<="
            return [
                "if not (isinstance(x, bool) or not isinstance(x, (int, float))"
                f" or (isinstance(x, int) and x {compare} {value!r})): return False"
            ]
        if key == "minLength":
            return [f"if {self._is(str)}len(x) < {value!r}: return False"]
        if key == "$ref":
            uri, _, pointer = urljoin(base, value).partition("#")
            return [f"if not {self._at(uri, pointer)}(x): return False"]
        raise _Unsupported(key)


def _lone_pattern(schema: Any) -> str:
    """Under `not` and `if` the answer must be exact both ways: only `{"pattern": ...}` is."""
    if not isinstance(schema, dict) or set(schema) - {"pattern", "$comment"} or "pattern" not in schema:
        raise _Unsupported("not/if other than a lone pattern")
    pattern: str = schema["pattern"]
    return pattern


_fast_lock = threading.Lock()
_fast_validators: dict[str, Predicate | None] = {}


def _fast_validator(kind: str) -> Predicate | None:
    """The compiled "certainly valid" predicate for a schema kind, or None (jsonschema only)."""
    with _fast_lock:
        if kind not in _fast_validators:
            try:
                documents = {}
                for path in sorted(schema_dir().glob("*.json")):
                    document = json.loads(path.read_text(encoding="utf-8"))
                    documents[document["$id"]] = document
                roots = [uri for uri in documents if uri.rsplit("/", 1)[-1] == f"{kind}.json"]
                if len(roots) != 1:
                    raise _Unsupported(kind)
                _fast_validators[kind] = _Generated(documents).root(roots[0])
            except (_Unsupported, OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError):
                _fast_validators[kind] = None
        return _fast_validators[kind]


def problems(document: Any, kind: str) -> list[str]:
    """Problems with `document` against the `kind` schema (empty when valid): the fast path
    first, jsonschema (imported only then) to confirm and word what it could not accept."""
    fast = _fast_validator(kind)
    if fast is not None and fast(document):
        return []
    return validate(document, kind)
