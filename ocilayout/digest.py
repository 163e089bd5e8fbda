"""Digest parsing: the only way a string becomes something a blob path can be built from."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidDigestError

# Algorithms we can address on disk, with the exact length of their lowercase hex encoding.
# The image-spec grammar allows other algorithms, but a blob under an algorithm we cannot
# hash could never be verified, and refusing it up front keeps paths predictable.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

# image-spec: algorithm ":" encoded, algorithm-component [a-z0-9]+ joined by [+._-]
_GRAMMAR = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_LOWER_HEX = re.compile(r"^[0-9a-f]+$")
# The common case, checked with one anchored match before the general grammar.
_FAST = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A validated digest: `algorithm` is registered, `encoded` is lowercase hex of the right length."""

    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @property
    def short(self) -> str:
        """The first 12 hex characters, as `docker images` shows IDs."""
        return self.encoded[:12]


def parse_digest(value: object) -> Digest:
    """Parse and validate `value`; raise InvalidDigestError (never build a path) when unsafe."""
    if not isinstance(value, str):
        raise InvalidDigestError(f"digest must be a string, got {type(value).__name__}")
    fast = _FAST.fullmatch(value)
    if fast is not None:
        return Digest(fast.group(1), fast.group(2)) if fast.group(1) else Digest(fast.group(3), fast.group(4))
    shown = _shown(value)
    match = _GRAMMAR.fullmatch(value)  # fullmatch: `$` alone would accept a trailing newline
    if match is None:
        raise InvalidDigestError(f"invalid digest {shown}: not algorithm:hex")
    algorithm, encoded = match.group(1), match.group(2)
    expected = ALGORITHMS.get(algorithm)
    if expected is None:
        raise InvalidDigestError(f"invalid digest {shown}: unsupported algorithm {algorithm!r}")
    if not _LOWER_HEX.match(encoded):
        raise InvalidDigestError(f"invalid digest {shown}: encoded part must be lowercase hex")
    if len(encoded) != expected:
        raise InvalidDigestError(
            f"invalid digest {shown}: {algorithm} needs {expected} hex characters, got {len(encoded)}"
        )
    return Digest(algorithm, encoded)


def is_digest(value: str) -> bool:
    """True when `value` parses as a digest."""
    try:
        parse_digest(value)
    except InvalidDigestError:
        return False
    return True


def _shown(value: str) -> str:
    # Hostile input may be huge or hold control characters; keep error lines one short line.
    text = value if len(value) <= 80 else value[:77] + "..."
    return repr(text)
