"""Digest parsing: the only way a string becomes something a blob path can be built from."""

from __future__ import annotations

import re

from .errors import InvalidDigestError

# Algorithms we can address on disk, with the exact length of their lowercase hex encoding.
# The image-spec grammar allows other algorithms, but a blob under an algorithm we cannot
# hash could never be verified, and refusing it up front keeps paths predictable.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

# image-spec: algorithm ":" encoded, algorithm-component [a-z0-9]+ joined by [+._-]
_GRAMMAR = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_LOWER_HEX = re.compile(r"^[0-9a-f]+$")
# The common case, checked with one anchored match before the general grammar.
FAST_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


class Digest(str):
    """A validated digest, kept as its text `alg:hex` (registered algorithm, lowercase hex of
    the right length).

    A `str` so that a big layout's hundreds of thousands of digests cost one string each,
    hash and compare as text, and print and serialise as themselves. Only `parse_digest`
    (and `parse_digest_fast`) make one from untrusted text.
    """

    __slots__ = ()

    @property
    def algorithm(self) -> str:
        """`sha256` or `sha512`."""
        return self[: self.index(":")]

    @property
    def encoded(self) -> str:
        """The lowercase hex part."""
        return self[self.index(":") + 1 :]

    @property
    def short(self) -> str:
        """The first 12 hex characters, as `docker images` shows IDs."""
        return self.encoded[:12]


def parse_digest(value: object) -> Digest:
    """Parse and validate `value`; raise InvalidDigestError (never build a path) when unsafe."""
    if type(value) is str and FAST_DIGEST.fullmatch(value) is not None:
        return Digest(value)
    if type(value) is Digest:
        return value
    if not isinstance(value, str):
        raise InvalidDigestError(f"digest must be a string, got {type(value).__name__}")
    value = str(value)
    if FAST_DIGEST.fullmatch(value) is not None:
        return Digest(value)
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
    raise InvalidDigestError(f"invalid digest {shown}")  # unreachable: FAST_DIGEST covers the rest


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
