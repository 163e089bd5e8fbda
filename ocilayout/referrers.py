"""Referrers (DESIGN 3.7): the manifests whose `subject` is a given manifest or index, found
among the entries and everything they reach — like `oras discover`, for a layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from .digest import Digest
from .graph import Graph
from .indexfile import IndexFile
from .mediatypes import CREATED


@dataclass(slots=True)
class Referrer:
    """One manifest that refers to a subject; `referrers` holds its own (with `recursive`)."""

    digest: str
    artifact_type: str | None
    media_type: str | None
    names: list[str]
    size: int
    created: str | None
    subject: str
    referrers: list[Referrer] = field(default_factory=list)


@dataclass(slots=True)
class ReferrersReport:
    """`referrers REF`: what refers to REF's digest."""

    subject: str
    referrers: list[Referrer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def find_referrers(
    index: IndexFile,
    graph: Graph,
    subject: Digest,
    *,
    recursive: bool = False,
    artifact_type: str | None = None,
) -> ReferrersReport:
    """Every manifest reachable from the entries whose `subject` is `subject` (and, with
    `recursive`, their referrers in turn), optionally only of `artifact_type`."""
    by_subject: dict[str, list[Referrer]] = {}
    names: dict[str, list[str]] = {}
    for entry in index.entries:
        if entry.name is not None:
            names.setdefault(entry.digest, []).append(entry.name)
    seen: set[str] = set()
    for descriptor, _, _, _, node in graph.walk(e.descriptor for e in index.entries):
        if node is None or node.subject is None or descriptor.digest in seen:
            continue
        seen.add(descriptor.digest)
        kind = node.artifact_type or descriptor.artifact_type or (node.config.media_type if node.config else None)
        by_subject.setdefault(node.subject.digest, []).append(
            Referrer(
                digest=str(descriptor.digest),
                artifact_type=kind,
                media_type=descriptor.media_type,
                names=sorted(set(names.get(descriptor.digest, []))),
                size=descriptor.size,
                created=node.annotations.get(CREATED),
                subject=str(node.subject.digest),
            )
        )

    def collect(target: str, depth: int, path: frozenset[str]) -> list[Referrer]:
        found = []
        for referrer in by_subject.get(target, []):
            if artifact_type is not None and referrer.artifact_type != artifact_type:
                continue
            copy = Referrer(**{k: getattr(referrer, k) for k in Referrer.__slots__ if k != "referrers"})
            if recursive and referrer.digest not in path and depth < graph.max_depth:
                copy.referrers = collect(referrer.digest, depth + 1, path | {referrer.digest})
            found.append(copy)
        return sorted(found, key=lambda r: (r.created or "", r.digest))

    report = ReferrersReport(str(subject), collect(str(subject), 0, frozenset({str(subject)})))
    report.warnings = [*index.warnings, *graph.warnings]
    return report
