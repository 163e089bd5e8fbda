"""Retention (`prune`, DESIGN 3.10): per repository keep the newest names, remove the rest with
`rm`'s rules in one transaction.

The policy only chooses *names* (and, with `dangling`, unnamed entries); what happens to the
images and their blobs is `delete.plan_removal`'s: a name whose image keeps another name is
only untagged; an image left without names is deleted with the blobs nothing else uses, and
its dangling referrers go too.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .delete import ImageRemoval, RemovalReport
from .digest import Digest
from .errors import UsageError
from .filters import image_facts
from .graph import Graph
from .indexfile import IndexFile

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_AGE = 1000 * 366 * 86400.0


def parse_age(text: str) -> timedelta:
    """`36h`, `7d`, `2w`, `90m`, `1d12h` (a sum); UsageError otherwise."""
    value = text.strip().lower()
    position, seconds = 0, 0.0
    while position < len(value):
        match = _DURATION.match(value, position)
        if match is None:
            break
        seconds += float(match.group(1)) * _UNIT[match.group(2)]
        position = match.end()
    if not value or position != len(value) or not seconds < float("inf"):
        raise UsageError(f"invalid duration {text!r}: a number with s, m, h, d or w (e.g. 36h, 7d, 2w)")
    if seconds > _MAX_AGE:
        raise UsageError(f"invalid duration {text!r}: longer than 1000 years")
    return timedelta(seconds=seconds)


def repository_of(name: str) -> str:
    """`app:1` → `app`; `reg:5000/app:v2` → `reg:5000/app`; `app@sha256:…` → `app`; a name
    without a tag is its own."""
    name = name.split("@", 1)[0]  # a digest-pinned name belongs to its repository
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name


@dataclass(frozen=True, slots=True)
class NameAge:
    """One name with its image and the time the policy judged it by (None: undated)."""

    name: str
    digest: str
    created: str | None


@dataclass(slots=True)
class RepositoryReport:
    """What the policy kept and removed in one repository."""

    repository: str
    kept: list[NameAge] = field(default_factory=list)
    removed: list[NameAge] = field(default_factory=list)
    images_deleted: int = 0
    bytes_freed: int = 0


@dataclass(slots=True)
class PruneReport:
    """The result of one `prune`: per repository, plus the removal it made."""

    repositories: list[RepositoryReport] = field(default_factory=list)
    dangling_removed: list[NameAge] = field(default_factory=list)
    undated: list[str] = field(default_factory=list)  # names kept because no time is known
    warnings: list[str] = field(default_factory=list)
    removal: RemovalReport = field(default_factory=RemovalReport)
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        """Bytes of the blobs deleted (or that would be)."""
        return self.removal.bytes_freed

    @property
    def exit_code(self) -> int:
        """As `rm`'s."""
        return self.removal.exit_code


@dataclass(frozen=True, slots=True)
class Policy:
    """What to keep: the newest `keep_last` per repository and all younger than `keep_within`."""

    keep_last: int | None = None
    keep_within: timedelta | None = None
    references: tuple[str, ...] = ()  # globs: the names the policy applies to (all if empty)
    keep: tuple[str, ...] = ()  # globs: names always kept
    dangling: bool = False  # also remove unnamed entries older than keep_within (all without it)

    def check(self) -> None:
        """Refuse a policy that would keep nothing by accident."""
        if self.keep_last is None and self.keep_within is None and not self.dangling:
            raise UsageError("prune needs --keep-last N and/or --keep-within DURATION (or --dangling)")
        if self.keep_last is not None and self.keep_last < 0:
            raise UsageError(f"--keep-last must be >= 0, got {self.keep_last}")
        if self.keep_within is not None and not timedelta(0) <= self.keep_within <= timedelta(seconds=_MAX_AGE):
            raise UsageError(f"--keep-within must be between 0 and 1000 years, got {self.keep_within}")


@dataclass(slots=True)
class Choice:
    """What the policy chose: names to remove, unnamed images to remove, and the report so far."""

    names: list[str]
    dangling: list[Digest]
    report: PruneReport


def choose(index: IndexFile, graph: Graph, policy: Policy, now: datetime) -> Choice:
    """Apply `policy` to the names of `index` (pure: nothing is read but manifests and configs)."""
    policy.check()
    report = PruneReport()
    cutoff = now - policy.keep_within if policy.keep_within is not None else None

    repositories: dict[str, list[tuple[str, Digest]]] = {}
    for name, entries in index.names().items():
        digest = entries[0].digest
        if any(e.digest != digest for e in entries):
            report.warnings.append(f"name {name!r} is on several images: kept, not judged")
            continue
        if policy.references and not any(fnmatch.fnmatchcase(name, g) for g in policy.references):
            continue
        repositories.setdefault(repository_of(name), []).append((name, digest))
    # Ages only of the images the policy looks at: a narrow --reference reads few configs.
    wanted: set[Digest] = {d for names in repositories.values() for _, d in names}
    if policy.dangling:
        wanted.update(d for d, es in index.by_digest().items() if all(e.name is None for e in es))
    facts = {f.digest: f for f in image_facts(index, graph, wanted)}

    def age(digest: Digest) -> datetime | None:
        return facts[digest].created

    def entry(name: str, digest: Digest) -> NameAge:
        created = age(digest)
        return NameAge(name, str(digest), created.isoformat() if created else None)

    removed: list[str] = []
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    for repository in sorted(repositories):
        result = RepositoryReport(repository)
        report.repositories.append(result)
        images: dict[Digest, list[str]] = {}
        for name, digest in repositories[repository]:
            images.setdefault(digest, []).append(name)
        # Images newest first (ties: by their first name, so every run chooses the same);
        # `keep_last` counts images, and all names of a kept image stay.
        ordered = sorted(images.items(), key=lambda item: min(item[1]))
        ordered.sort(key=lambda item: age(item[0]) or oldest, reverse=True)
        counted = 0
        for digest, names in ordered:
            created = age(digest)
            protected_names = {n for n in names if any(fnmatch.fnmatchcase(n, g) for g in policy.keep)}
            newest = (
                policy.keep_last is not None
                and created is not None
                and counted < policy.keep_last
                and len(protected_names) < len(names)  # an image kept by --keep alone uses no slot
            )
            if newest:
                counted += 1
            for name in sorted(names):
                protected = name in protected_names
                if created is None:
                    report.undated.append(name)
                keep = (
                    protected
                    or created is None
                    or newest
                    or (cutoff is not None and created >= cutoff)
                    or (policy.keep_last is None and policy.keep_within is None)  # --dangling alone
                )
                (result.kept if keep else result.removed).append(entry(name, digest))
                if not keep:
                    removed.append(name)

    dangling: list[Digest] = []
    if policy.dangling:
        for digest, entries in index.by_digest().items():
            if any(e.name is not None for e in entries):
                continue
            if graph.node(index.walked_by(digest)).subject is not None:
                continue  # a referrer (signature, SBOM): it goes with its subject, never alone
            created = age(digest)
            if cutoff is None:  # --dangling alone: every unnamed image
                dangling.append(digest)
                report.dangling_removed.append(entry("<none>", digest))
                continue
            if created is None:
                report.undated.append(str(digest))
                continue
            if created < cutoff:
                dangling.append(digest)
                report.dangling_removed.append(entry("<none>", digest))
    return Choice(removed, dangling, report)


def fill(report: PruneReport, removal: RemovalReport) -> PruneReport:
    """Attribute the removal (images deleted, bytes freed) to the repositories whose names
    the deleted images had."""
    report.removal = removal
    report.dry_run = removal.dry_run
    by_repository = {r.repository: r for r in report.repositories}
    by_id = {image.id: image for image in removal.images if image.deleted}

    def repository_for(image: ImageRemoval) -> str | None:
        """The first of its names' repositories; for what went along (`referrer of D`, `child
        of D`), that of the deleted image D it went with, followed up the chain."""
        seen: set[str] = set()
        while image.id not in seen:
            seen.add(image.id)
            repositories = sorted({repository_of(n) for n in image.names} & set(by_repository))
            if repositories:
                return repositories[0]
            _, _, cause = image.reason.partition(" of ")
            if cause not in by_id:
                return None
            image = by_id[cause]
        return None

    for image in by_id.values():
        repository = repository_for(image)  # bytes counted once, under one repository
        if repository is not None:
            by_repository[repository].images_deleted += 1 if image.names else 0  # not its signatures
            by_repository[repository].bytes_freed += image.bytes_freed
    return report


def now_utc() -> datetime:
    """The policy's clock."""
    return datetime.now(timezone.utc)


__all__ = ["NameAge", "Policy", "PruneReport", "RepositoryReport", "parse_age", "repository_of"]
