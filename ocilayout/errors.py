"""One exception hierarchy; each category maps to one CLI exit code (DESIGN 4)."""

from __future__ import annotations


class OcilayoutError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1


class OperationFailed(OcilayoutError):
    """Some of the requested work failed (the rest may have succeeded)."""

    exit_code = 1


class UsageError(OcilayoutError):
    """The caller asked for something malformed (bad reference, bad option value)."""

    exit_code = 2


class AmbiguousReferenceError(UsageError):
    """A reference matched more than one image; `candidates` lists them."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


class NotFoundError(OcilayoutError):
    """A reference, platform or blob does not exist."""

    exit_code = 3


class ConflictError(OcilayoutError):
    """The operation would remove names the caller did not name (needs --force)."""

    exit_code = 4


class CorruptLayoutError(OcilayoutError):
    """The layout is invalid: bad oci-layout, bad index.json, unsafe digest, bad blob."""

    exit_code = 5


class InvalidDigestError(CorruptLayoutError):
    """A digest string does not follow the image-spec grammar or is unsafe as a path."""


class LockTimeoutError(OcilayoutError):
    """Another process holds the layout lock."""

    exit_code = 6
