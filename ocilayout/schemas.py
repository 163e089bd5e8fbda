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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["SCHEMA_KINDS", "SCHEMA_BASE_URI", "schema_dir", "schema_id", "validate", "validator_for"]

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
