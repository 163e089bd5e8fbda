"""Adding and removing names (DESIGN 3.5): `tag` moves a name, `untag` keeps content dangling."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .descriptor import Descriptor
from .errors import NotFoundError, UsageError
from .indexfile import IndexFile, with_name
from .mediatypes import REF_NAME
from .resolve import Resolved

# image-spec ref.name grammar: components of alphanumerics joined by separators, split by "/".
_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


@dataclass(slots=True)
class TagReport:
    """Result of `tag`: the name, where it points now, and where it pointed before."""

    name: str
    digest: str
    moved_from: str | None = None
    unchanged: bool = False
    dry_run: bool = False


@dataclass(slots=True)
class UntagReport:
    """Result of `untag`: names removed, images left dangling, names not found."""

    untagged: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    dry_run: bool = False


def validate_name(name: str) -> None:
    """Refuse names that the image-spec grammar does not allow."""
    if len(name) > 255 or not _REF_NAME.fullmatch(name):
        raise UsageError(f"invalid name {name!r}: not an image-spec ref name")


def plan_tag(index: IndexFile, source: Resolved, name: str) -> tuple[list[dict[str, Any]] | None, TagReport]:
    """New entries with `name` on the source image, moved away from wherever it was."""
    validate_name(name)
    report = TagReport(name=name, digest=str(source.digest))
    holders = [e for e in index.entries if e.name == name]
    if holders and all(e.digest == source.digest for e in holders) and source.platform is None:
        report.unchanged = True
        return None, report
    if holders:
        report.moved_from = str(holders[0].digest)
    holder_positions = {e.position for e in holders}
    groups = index.by_digest()
    keep_dangling = {
        groups[digest][0].position
        for digest in {e.digest for e in holders}
        if all(e.position in holder_positions for e in groups[digest])
    }
    entries: list[dict[str, Any]] = []
    for entry in index.entries:
        if entry.position not in holder_positions:
            entries.append(entry.raw)
        elif entry.position in keep_dangling:
            entries.append(with_name(entry.raw, None))  # its last name moves: the image stays, dangling
    reuse = next(
        (
            i
            for i, raw in enumerate(entries)
            if source.platform is None and _raw_digest(raw) == str(source.digest) and _raw_name(raw) is None
        ),
        None,
    )
    if reuse is not None:
        entries[reuse] = with_name(entries[reuse], name)
    elif source.platform is None:
        entries.append(with_name(source.entries[0].raw, name))
    else:
        entries.append(with_name(descriptor_json(source.descriptor), name))
    return entries, report


def plan_untag(index: IndexFile, names: list[str]) -> tuple[list[dict[str, Any]] | None, UntagReport]:
    """Remove names; an image losing its last name stays as one dangling entry."""
    report = UntagReport()
    by_name = index.names()
    drop: set[int] = set()
    for name in dict.fromkeys(names):
        holders = by_name.get(name)
        if not holders:
            report.not_found.append(name)
            continue
        drop.update(e.position for e in holders)
        report.untagged.append(name)
    if not drop:
        return None, report
    entries: list[dict[str, Any]] = []
    kept_digests = {e.digest for e in index.entries if e.position not in drop}
    made_dangling: set[str] = set()
    for entry in index.entries:
        if entry.position not in drop:
            entries.append(entry.raw)
        elif entry.digest not in kept_digests and str(entry.digest) not in made_dangling:
            made_dangling.add(str(entry.digest))
            entries.append(with_name(entry.raw, None))
    report.dangling = sorted(made_dangling)
    return entries, report


def descriptor_json(descriptor: Descriptor) -> dict[str, Any]:
    """A descriptor as index.json stores it."""
    out: dict[str, Any] = {}
    if descriptor.media_type is not None:
        out["mediaType"] = descriptor.media_type
    out["digest"] = str(descriptor.digest)
    out["size"] = descriptor.size
    if descriptor.artifact_type:
        out["artifactType"] = descriptor.artifact_type
    if descriptor.platform is not None:
        p = descriptor.platform
        platform: dict[str, Any] = {"architecture": p.architecture, "os": p.os}
        if p.os_version:
            platform["os.version"] = p.os_version
        if p.variant:
            platform["variant"] = p.variant
        out["platform"] = platform
    annotations = {k: v for k, v in descriptor.annotations.items() if k != REF_NAME}
    if annotations:
        out["annotations"] = annotations
    return out


def _raw_digest(raw: dict[str, Any]) -> object:
    return raw.get("digest")


def _raw_name(raw: dict[str, Any]) -> object:
    annotations = raw.get("annotations")
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None


def require_names_found(report: UntagReport) -> None:
    """Raise NotFoundError when no requested name existed."""
    if report.not_found and not report.untagged:
        raise NotFoundError("no such name: " + ", ".join(report.not_found))
