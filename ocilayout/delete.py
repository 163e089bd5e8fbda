"""Removing images: untag vs delete, conflicts, prune, referrers, batch (DESIGN 3.2, 3.7).

`plan_removal` is pure: it decides, from one `index.json` and one graph, which entries
go and which blobs no remaining entry reaches. The caller commits the plan through the
write path. A blob's "use count" is its membership in the reach of the remaining
entries: a blob is deleted only when the removed entries reach it and no remaining
entry does, through the root index and every nested index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .cascade import settle
from .descriptor import Platform
from .digest import Digest
from .errors import ConflictError, NotFoundError, OcilayoutError
from .graph import Graph
from .indexfile import Entry, IndexFile, walked_by
from .mediatypes import Kind
from .resolve import Resolved, resolve
from .storage import LayoutStore
from .trim import PlatformTrim, plan_trim


@dataclass(slots=True)
class ImageRemoval:
    """What happened to one image (one digest) of the batch."""

    id: str
    names: list[str]
    untagged: list[str] = field(default_factory=list)
    deleted: bool = False
    bytes_freed: int = 0
    blobs_deleted: int = 0
    reason: str = "requested"
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ReferenceFailure:
    """A reference that could not be acted on; `exit_code` is its error category."""

    reference: str
    message: str
    exit_code: int


@dataclass(slots=True)
class RemovalReport:
    """The result of one `rm` call."""

    images: list[ImageRemoval] = field(default_factory=list)
    failures: list[ReferenceFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blobs_deleted: int = 0
    bytes_freed: int = 0
    dry_run: bool = False
    trims: list[PlatformTrim] = field(default_factory=list)  # `rm REF --platform P`

    @property
    def ok(self) -> bool:
        """True when every reference was handled without error."""
        return not self.failures and not any(i.errors for i in self.images) and not any(t.errors for t in self.trims)

    @property
    def exit_code(self) -> int:
        """0; the failures' one shared category when nothing else happened; else 1 (partial)."""
        if self.ok:
            return 0
        codes = {f.exit_code for f in self.failures}
        did_something = bool(self.trims) or any(i.deleted or i.untagged for i in self.images)
        if len(codes) == 1 and not did_something:
            return codes.pop()
        return 1


@dataclass(slots=True)
class RemovalPlan:
    """Entries to keep, blobs to delete, and the report to fill in once committed."""

    new_entries: list[dict[str, Any]] | None
    doomed: list[Digest]
    owners: dict[Digest, int]  # doomed blob → position of the image it is attributed to
    report: RemovalReport
    new_blobs: list[tuple[Digest, bytes]] = field(default_factory=list)  # written before index.json
    trim_owners: dict[Digest, int] = field(default_factory=dict)  # doomed blob → position in report.trims


@dataclass(slots=True)
class _Request:
    digest: Digest
    names: set[str] = field(default_factory=set)
    by_id: bool = False


def plan_removal(
    store: LayoutStore,
    index: IndexFile,
    graph: Graph,
    references: Sequence[str],
    *,
    filters: dict[str, list[str]] | None = None,
    force: bool = False,
    prune: bool = False,
    keep_referrers: bool = False,
    allow_sparse: bool = False,
    remove_all: bool = False,
    ignore_missing: bool = False,
) -> RemovalPlan:
    """Decide a whole batch against one index: one rewrite and one blob pass follow.

    `remove_all` (podman's `rm --all`) takes every image with all its names, no conflict;
    `ignore_missing` (`--ignore`) makes a reference that matches nothing no failure.
    """
    report = RemovalReport(warnings=list(index.warnings))
    groups = index.by_digest()
    requests: dict[Digest, _Request] = {}
    if remove_all:
        force = True
        for digest in groups:
            requests[digest] = _Request(digest, by_id=True)

    for reference in references:
        try:
            resolved = resolve(index, reference)
        except NotFoundError as exc:
            if not ignore_missing:
                message = str(exc) + child_hint(index, graph, reference)
                report.failures.append(ReferenceFailure(reference, message, exc.exit_code))
            continue
        except OcilayoutError as exc:
            report.failures.append(ReferenceFailure(reference, str(exc), exc.exit_code))
            continue
        request = requests.setdefault(resolved.digest, _Request(resolved.digest))
        _add(request, resolved)
    if filters:
        from .filters import select

        for digest in select(index, graph, filters):
            requests.setdefault(digest, _Request(digest)).by_id = True

    removed_entries: set[int] = set()
    deleted: list[Digest] = []
    for digest, request in requests.items():
        entries = groups[digest]
        all_names = [e.name for e in entries if e.name is not None]
        image = ImageRemoval(id=str(digest), names=sorted(set(all_names)))
        report.images.append(image)
        remaining = set(all_names) - request.names
        if request.by_id and remaining and len(set(all_names)) > 1 and not force:
            message = (
                f"conflict: image {digest} has several names ({', '.join(sorted(set(all_names)))}); "
                "remove them by name or use --force"
            )
            image.errors.append(message)
            report.failures.append(ReferenceFailure(str(digest), message, ConflictError.exit_code))
            continue
        if request.by_id or not remaining:
            removed_entries.update(e.position for e in entries)
            image.untagged = sorted(set(all_names))
            image.deleted = True
            deleted.append(digest)
        else:
            removed_entries.update(e.position for e in entries if e.name in request.names)
            image.untagged = sorted(request.names)

    if prune and deleted:
        _prune_parents(graph, groups, deleted, removed_entries, report)
    doomed, owners = _settle(store, index, graph, removed_entries, report, keep_referrers, allow_sparse)
    new_entries = None
    if removed_entries:
        new_entries = [e.raw for e in index.entries if e.position not in removed_entries]
    report.warnings.extend(w for w in graph.warnings if w not in report.warnings)
    return RemovalPlan(new_entries, doomed, owners, report)


def plan_platform_removal(
    store: LayoutStore,
    index: IndexFile,
    graph: Graph,
    references: Sequence[str],
    platforms: Sequence[Platform],
    *,
    keep_referrers: bool = False,
    allow_sparse: bool = False,
    ignore_missing: bool = False,
) -> RemovalPlan:
    """`rm REF --platform P`: each REF's index rewritten without P (trim.py), its names moved,
    and the blobs only P and the old index blobs used, with the cascades (DESIGN 3.7, 3.11)."""
    trimmed = plan_trim(store, index, graph, references, platforms, ignore_missing=ignore_missing)
    report = RemovalReport(warnings=list(index.warnings), trims=trimmed.trims)
    for reference, exc in trimmed.failures:
        report.failures.append(ReferenceFailure(reference, str(exc), exc.exit_code))
    settled = settle(
        store, graph, trimmed.survivors, trimmed.gone, keep_referrers=keep_referrers, allow_sparse=allow_sparse
    )
    report.warnings.extend(settled.warnings)
    positions: dict[Digest, list[int]] = {}
    for position, descriptor, _ in trimmed.survivors:
        positions.setdefault(descriptor.digest, []).append(position)
    dropped: set[int] = set()
    cascaded_at = []
    for cascaded in settled.cascaded:
        dropped.update(positions[cascaded.digest])
        cascaded_at.append(len(report.images))
        reason = f"{cascaded.reason} of {cascaded.cause}"
        report.images.append(ImageRemoval(id=str(cascaded.digest), names=[], deleted=True, reason=reason))
    owners = {d: cascaded_at[-2 - owner] for d, owner in settled.doomed.items() if owner <= -2}
    trim_owners = {d: owner for d, owner in settled.doomed.items() if owner >= 0}
    new_entries = None  # every REF failed: index.json stays as it is
    if trimmed.trims:
        new_entries = [raw for position, raw in enumerate(trimmed.new_entries) if position not in dropped]
    report.warnings.extend(w for w in graph.warnings if w not in report.warnings)
    return RemovalPlan(new_entries, list(settled.doomed), owners, report, trimmed.new_blobs, trim_owners)


def child_hint(index: IndexFile, graph: Graph, reference: str) -> str:
    """When `reference` is a digest (or hex prefix) of a manifest inside an index entry, at any
    depth, rather than of an entry: which index, and how to reach it (`--platform`). Looked
    for only after a miss."""
    algorithm, separator, text = reference.partition(":")
    if not separator:
        algorithm, text = "", reference
    elif algorithm not in ("sha256", "sha512"):
        return ""  # `name:tag`: not a digest
    if len(text) < 4 or any(c not in "0123456789abcdef" for c in text):
        return ""
    for digest, entries in index.by_digest().items():
        head = index.walked_by(digest)
        if graph.node(head).kind is not Kind.INDEX:
            continue
        for child, _, depth, *_ in graph.walk([head]):
            found = child.digest
            if depth and found.encoded.startswith(text) and algorithm in ("", found.algorithm):
                name = entries[0].name or str(digest)
                platform = str(child.platform) if child.platform else "OS/ARCH"
                return (
                    f"; it is the {platform} manifest inside the index {name} ({digest}), not an entry: "
                    f"name the index, with --platform {platform} where a command takes one"
                )
    return ""


def _add(request: _Request, resolved: Resolved) -> None:
    if resolved.by_id:
        request.by_id = True
    elif resolved.reference is not None:
        request.names.add(resolved.reference)


def _remove_image(
    digest: Digest, entries: list[Entry], reason: str, removed: set[int], report: RemovalReport, deleted: list[Digest]
) -> None:
    removed.update(e.position for e in entries)
    deleted.append(digest)
    report.images.append(ImageRemoval(id=str(digest), names=[], deleted=True, reason=reason))


def _prune_parents(
    graph: Graph,
    groups: dict[Digest, list[Entry]],
    deleted: list[Digest],
    removed: set[int],
    report: RemovalReport,
) -> None:
    """moby's prune: for each deleted image, its parents (images whose layer list is a strict
    prefix of its own), longest first, go while they are dangling and no surviving image
    still builds on them; the first that is named or still built on ends the chain."""
    from .filters import is_parent

    try:
        layers = {d: graph.node(walked_by([e.descriptor for e in es])).layers for d, es in groups.items()}
        for child in list(deleted):
            own = layers[child]
            parents = [d for d in groups if d not in deleted and is_parent(layers[d], own)]
            parents.sort(key=lambda d: (-len(layers[d]), not _is_dangling(groups[d])))
            for parent in parents:
                if not _is_dangling(groups[parent]) or any(e.position in removed for e in groups[parent]):
                    break
                gone = set(deleted) | {parent}
                if any(
                    is_parent(layers[parent], layers[other])
                    for other, entries in groups.items()
                    if other not in gone and not all(e.position in removed for e in entries)
                ):
                    break
                _remove_image(parent, groups[parent], f"parent of {child}", removed, report, deleted)
    except OcilayoutError as exc:
        report.warnings.append(f"prune skipped: {exc}")


def _is_dangling(entries: list[Entry]) -> bool:
    return all(e.name is None for e in entries)


def _settle(
    store: LayoutStore,
    index: IndexFile,
    graph: Graph,
    removed: set[int],
    report: RemovalReport,
    keep_referrers: bool,
    allow_sparse: bool,
) -> tuple[list[Digest], dict[Digest, int]]:
    """The cascades (DESIGN 3.7) of the removed entries, added to `removed` and the report, and
    the blobs of our own blobs/ that nothing surviving reaches (none while in doubt)."""
    if not removed:
        return [], {}
    positions = {img.id: i for i, img in enumerate(report.images) if img.deleted}
    gone = [(positions.get(str(e.digest), -1), e.descriptor) for e in index.entries if e.position in removed]
    survivors = [(e.position, e.descriptor, e.name) for e in index.entries if e.position not in removed]
    settled = settle(store, graph, survivors, gone, keep_referrers=keep_referrers, allow_sparse=allow_sparse)
    report.warnings.extend(settled.warnings)
    groups = index.by_digest()
    cascaded_at = []
    for cascaded in settled.cascaded:
        removed.update(e.position for e in groups[cascaded.digest])
        cascaded_at.append(len(report.images))
        reason = f"{cascaded.reason} of {cascaded.cause}"
        report.images.append(ImageRemoval(id=str(cascaded.digest), names=[], deleted=True, reason=reason))
    owners = {d: owner if owner >= -1 else cascaded_at[-2 - owner] for d, owner in settled.doomed.items()}
    return list(owners), owners


def finish_report(plan: RemovalPlan, freed: dict[Digest, int], errors: dict[str, str], dry_run: bool) -> RemovalReport:
    """Fill bytes and errors into the report once blobs are (or would be) deleted."""
    report = plan.report
    report.dry_run = dry_run
    for digest, size in freed.items():
        owner = plan.owners.get(digest, -1)
        if 0 <= owner < len(report.images):
            report.images[owner].bytes_freed += size
            report.images[owner].blobs_deleted += 1
        elif digest in plan.trim_owners:
            report.trims[plan.trim_owners[digest]].bytes_freed += size
            report.trims[plan.trim_owners[digest]].blobs_deleted += 1
        report.bytes_freed += size
        report.blobs_deleted += 1
    by_text = {str(d): owner for d, owner in plan.owners.items()}
    trim_by_text = {str(d): owner for d, owner in plan.trim_owners.items()}
    for key, message in errors.items():
        owner = by_text.get(key, -1)
        if 0 <= owner < len(report.images):
            report.images[owner].errors.append(message)
        elif key in trim_by_text:
            report.trims[trim_by_text[key]].errors.append(message)
        else:
            report.failures.append(ReferenceFailure(key, message, 1))
    return report


__all__ = [
    "ImageRemoval",
    "RemovalReport",
    "ReferenceFailure",
    "RemovalPlan",
    "plan_removal",
    "plan_platform_removal",
    "finish_report",
]
