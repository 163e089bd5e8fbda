"""Descriptors and platforms, parsed from untrusted JSON into validated values."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .digest import FAST_DIGEST, Digest, parse_digest
from .errors import CorruptLayoutError, InvalidDigestError, UsageError
from .mediatypes import REF_NAME

# Sizes beyond a signed 64-bit integer cannot come from any real file system or registry.
MAX_SIZE = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Platform:
    """An `os/architecture[/variant]` triple (plus os.version when the source has one)."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    def matches(self, wanted: Platform) -> bool:
        """True when this platform satisfies `wanted` (a missing wanted variant matches any)."""
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        return wanted.variant is None or _variant(self) == _variant(wanted)


def _variant(platform: Platform) -> str | None:
    # As containerd normalises: arm64 without a variant is v8.
    if platform.architecture == "arm64" and platform.variant is None:
        return "v8"
    return platform.variant


def parse_platform_spec(text: str) -> Platform:
    """Parse a user's `os/arch[/variant]`."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant]")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def platform_from_json(raw: object) -> Platform | None:
    """Platform from a descriptor's `platform` object; None when absent or malformed."""
    if not isinstance(raw, dict):
        return None
    os_, arch = raw.get("os"), raw.get("architecture")
    if not isinstance(os_, str) or not isinstance(arch, str):
        return None
    variant = raw.get("variant")
    version = raw.get("os.version")
    return Platform(
        os_,
        arch,
        variant if isinstance(variant, str) and variant else None,
        version if isinstance(version, str) and version else None,
    )


@dataclass(slots=True)
class Descriptor:
    """A validated content descriptor. `size` is -1 only for Docker schema1 layers, which carry none.

    Treated as immutable; not frozen only because frozen dataclasses construct several times
    slower, and a big layout parses hundreds of thousands of these.
    """

    media_type: str | None
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: _NO_ANNOTATIONS, compare=False, hash=False)
    artifact_type: str | None = None

    @property
    def name(self) -> str | None:
        """The `org.opencontainers.image.ref.name` annotation, if any."""
        return self.annotations.get(REF_NAME)


def parse_descriptor(raw: object, where: str) -> Descriptor:
    """Validate one descriptor object; errors name `where` (e.g. `index.json manifests[3]`).

    Hot: a big layout parses hundreds of thousands of these, so the common shape is checked
    with exact type tests and one anchored digest match before anything slower.
    """
    if type(raw) is not dict:
        raise CorruptLayoutError(f"{where}: descriptor must be an object")
    digest = raw.get("digest")
    size = raw.get("size")
    media_type = raw.get("mediaType")
    if type(digest) is str and FAST_DIGEST.fullmatch(digest) is not None:
        digest = Digest(digest)
    else:
        try:
            digest = parse_digest(digest)
        except InvalidDigestError as exc:
            raise InvalidDigestError(f"{where}: {exc}") from None
    if type(size) is not int:
        raise CorruptLayoutError(f"{where}: size must be an integer")
    if size < 0 or size > MAX_SIZE:
        raise CorruptLayoutError(f"{where}: size {size} is out of range")
    if media_type is not None and type(media_type) is not str:
        if not isinstance(media_type, str):
            raise CorruptLayoutError(f"{where}: mediaType must be a string")
        media_type = str(media_type)
    if "annotations" not in raw and "platform" not in raw and "artifactType" not in raw:
        return Descriptor(media_type, digest, size, None, _NO_ANNOTATIONS)
    raw_annotations = raw.get("annotations")
    annotations = _NO_ANNOTATIONS if raw_annotations is None else _string_map(raw_annotations, where)
    artifact_type = raw.get("artifactType")
    platform = raw.get("platform")
    return Descriptor(
        media_type,
        digest,
        size,
        None if platform is None else platform_from_json(platform),
        annotations,
        artifact_type if isinstance(artifact_type, str) else None,
    )


_NO_ANNOTATIONS: Mapping[str, str] = MappingProxyType({})


def _string_map(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CorruptLayoutError(f"{where}: annotations must be an object")
    # Non-string values are tolerated when reading (we only ever look up string keys) but
    # dropped from the view, so a name is never something other than a string. The common
    # all-strings object is shared, not copied (nothing edits a parsed object in place).
    for value in raw.values():
        if type(value) is not str:
            return {k: v for k, v in raw.items() if isinstance(v, str)}
    return raw
