"""Everything the command line prints: report objects as text for people and JSON for
machines, warnings and errors on stderr. The library never prints."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import click

from .errors import CorruptLayoutError

if TYPE_CHECKING:
    from .delete import RemovalReport
    from .du import DuReport
    from .gc import GcReport
    from .layout import Listing, Tree
    from .listing import ImageRow, TreeNode
    from .prune import PruneReport
    from .referrers import Referrer, ReferrersReport
    from .tagging import TagReport, UntagReport
    from .verify import VerifyReport


_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums and paths as plain JSON values."""
    kind = type(value)
    if kind in _PLAIN_TYPES:  # most values of a big report: no further question
        return value
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Indented JSON, stable key order as produced; escaped ASCII when the text holds what
    UTF-8 cannot encode (a lone surrogate read from an escape)."""
    try:
        return plain_dumps(to_jsonable(value))
    except RecursionError:
        raise CorruptLayoutError("a document is nested too deeply to print") from None


def plain_dumps(plain: Any) -> str:
    """`dumps` of a value that is already plain JSON data (no dataclasses, enums or paths)."""
    text = indented_json(plain)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(plain, indent=2, ensure_ascii=True)
    return text


_encode_text = json.encoder.encode_basestring  # C: what dumps(ensure_ascii=False) uses for strings


def indented_json(value: Any, indent: str = "\n") -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False)`, byte for byte, for plain values
    (dict, list, tuple, str, int, float, bool, None).

    The standard library's indenting encoder is pure Python, one generator step per token:
    5 s for `ls --format json` of 100,000 images. This one joins whole containers and
    leaves strings to the C escaper. A value json would refuse is refused the same way.
    """
    kind = type(value)
    if kind is str:
        return _encode_text(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is dict:
        if not value:
            return "{}"
        inner = indent + "  "
        parts = []
        for key, item in value.items():
            of = type(item)  # the common scalars inline: a call per value costs more than its text
            if of is str:
                text = _encode_text(item)
            elif item is None:
                text = "null"
            elif of is int:
                text = int.__repr__(item)
            else:
                text = indented_json(item, inner)
            parts.append(f"{_encode_text(key) if type(key) is str else _key(key)}: {text}")
        return "{" + inner + ("," + inner).join(parts) + indent + "}"
    if kind is list or kind is tuple:
        if not value:
            return "[]"
        inner = indent + "  "
        return "[" + inner + ("," + inner).join([indented_json(v, inner) for v in value]) + indent + "]"
    if isinstance(value, str):
        return _encode_text(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, (list, tuple, dict)):
        return indented_json(dict(value) if isinstance(value, dict) else list(value), indent)
    return json.dumps(value)  # raises TypeError as json.dumps would


def _key(key: Any) -> str:
    """A dict key as json writes it (str, or int, float, bool and None as text)."""
    if type(key) is str:
        return _encode_text(key)
    if isinstance(key, str):
        return _encode_text(key)
    if key is True or key is False or key is None:
        return f'"{json.dumps(key)}"'
    if isinstance(key, int):
        return f'"{int.__repr__(key)}"'
    if isinstance(key, float):
        return f'"{_float_text(key)}"'
    return json.dumps({key: 0})  # raises TypeError as json.dumps would


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return float.__repr__(value)


def human_size(size: int) -> str:
    """Decimal units, as `docker images` shows sizes; three significant digits (999.9 kB
    shows as 1MB, never as "1e+03kB")."""
    if size < 1000:
        return f"{size}B" if size >= 0 else "?"
    value = size / 1000
    for unit in _UNITS:
        text = f"{value:.3g}"
        if "e" not in text or unit == "EB":
            return text + unit
        value /= 1000
    raise AssertionError("unreachable")


_UNITS = ("kB", "MB", "GB", "TB", "PB", "EB")


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces; the last column is not padded."""
    return table_of(header, list(zip(*rows)) if rows else [()] * len(header))


def table_of(header: Sequence[str], cols: Sequence[Sequence[str]]) -> str:
    """`columns` of a table given column by column (a table of 100,000 rows is then a few C
    loops, not a Python step per cell); a column is escaped cell by cell only when some cell
    needs it."""
    cells = [(title, *c) for title, c in zip(header, cols)]
    cells = [c if "".join(c).isprintable() else tuple(map(printable, c)) for c in cells]
    last = cells.pop()
    padded = [map(str.ljust, c, repeat(max(map(len, c)))) for c in cells]
    return "\n".join([line.rstrip() for line in map("   ".join, zip(*padded, last))])


def image_table(rows: Sequence[ImageRow]) -> str:
    """The `ls` table."""
    body = [
        [
            row.name if row.name is not None else "<none>",
            row.short_digest,
            row.kind,
            ",".join(row.platforms) or "-",
            human_size(row.size) + (f" ({row.missing} missing)" if row.missing else ""),
            row.created or "-",
        ]
        for row in rows
    ]
    return columns(["NAME", "DIGEST", "KIND", "PLATFORMS", "SIZE", "CREATED"], body)


def tree_text(roots: Sequence[TreeNode]) -> str:
    """Nested content drawn with box characters, one blob per line."""
    lines: list[str] = []
    for root in roots:
        lines.append(_tree_label(root))
        stack: list[tuple[TreeNode, str, bool]] = [
            (child, "", i == len(root.children) - 1) for i, child in reversed(list(enumerate(root.children)))
        ]
        while stack:
            node, prefix, last = stack.pop()
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_tree_label(node)}")
            inner = prefix + ("    " if last else "│   ")
            for i, child in reversed(list(enumerate(node.children))):
                stack.append((child, inner, i == len(node.children) - 1))
    return "\n".join(lines)


def _tree_label(node: TreeNode) -> str:
    parts = []
    if node.role == "entry":
        parts.append(node.name if node.name is not None else "<none>")
    else:
        parts.append(node.role)
    if node.platform:
        parts.append(node.platform)
    parts.append(node.digest)
    detail = [node.kind] if node.kind not in ("leaf",) else []
    detail.append(human_size(node.size))
    if node.state in ("missing", "unreadable"):
        detail.append(node.state)
    if node.note:
        detail.append(node.note)
    return printable(" ".join(parts) + f" ({', '.join(detail)})")


def printable(text: str) -> str:
    """`text` with control characters escaped: names come from untrusted JSON and must not
    break a table row or send escape sequences to the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


MAX_MESSAGE = 400


def one_line(text: str) -> str:
    """A message as one safe line: whitespace (newlines included) folded, control characters
    and what UTF-8 cannot encode escaped (names and paths come from untrusted files), and
    cut to MAX_MESSAGE characters."""
    line = printable(" ".join(text.split())) if text else "unknown error"
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


ERROR_KINDS = {
    1: "failed",
    2: "usage",
    3: "not-found",
    4: "conflict",
    5: "corrupt",
    6: "lock-timeout",
    130: "interrupted",
    143: "terminated",
}


def print_error(message: str, *, code: int | None = None, as_json: bool = False) -> None:
    """One `error:` line on stderr; with `as_json`, also the error document on stdout:
    `{"error": {"message": ..., "exit_code": N, "kind": ...}}`."""
    line = one_line(message)
    click.echo(f"error: {line}", err=True)
    if as_json and code is not None:
        kind = ERROR_KINDS.get(code, "failed")
        click.echo(dumps({"error": {"message": line, "exit_code": code, "kind": kind}}))


def print_note(message: str) -> None:
    """One `note:` line on stderr."""
    click.echo(f"note: {one_line(message)}", err=True)


def print_warnings(warnings: Sequence[str], quiet: bool) -> None:
    """`warning:` lines on stderr, unless quiet."""
    if quiet:
        return
    for warning in warnings:
        click.echo(f"warning: {one_line(warning)}", err=True)


def print_json(value: Any) -> None:
    """A report as indented JSON on stdout."""
    click.echo(dumps(value))


def print_listing(listing: Listing, output_format: str, quiet: bool) -> None:
    """`ls`: the table, digests only (quiet), or JSON."""
    print_warnings(listing.warnings, quiet or output_format == "json")
    if output_format == "json":
        click.echo(listing_json(listing.rows, listing.warnings), color=True)  # JSON has no ANSI codes to strip
    elif quiet:
        for digest in dict.fromkeys(r.digest for r in listing.rows):
            click.echo(digest)
    else:
        click.echo(image_table(listing.rows))


def listing_json(rows: Sequence[ImageRow], warnings: Sequence[str]) -> str:
    """`ls --format json`: `dumps({"images": [...], "warnings": [...]})`, byte for byte, a
    row at a time from one template (100,000 rows in about 0.2 s instead of 5 s)."""
    from .listing import ImageRow

    fields = [f.name for f in dataclasses.fields(ImageRow)]
    if fields != _ROW_FIELDS:  # ImageRow changed: the generic way
        plain = [{name: getattr(r, name) for name in fields} | {"short_digest": r.short_digest} for r in rows]
        return plain_dumps({"images": plain, "warnings": list(warnings)})
    encode = _encode_text
    texts = []
    for row in rows:
        name, created, platforms, media_type = row.name, row.created, row.platforms, row.media_type
        if (
            type(row.digest) is not str
            or type(row.kind) is not str
            or type(row.size) is not int
            or type(row.missing) is not int
            or type(platforms) is not list
            or not (name is None or type(name) is str)
            or not (created is None or type(created) is str)
            or not (media_type is None or type(media_type) is str)
            or any(type(p) is not str for p in platforms)
        ):
            odd = {f: getattr(row, f) for f in fields} | {"short_digest": row.short_digest}
            texts.append(indented_json(odd, "\n    "))
            continue
        texts.append(
            _ROW_TEMPLATE
            % (
                "null" if name is None else encode(name),
                encode(row.digest),
                encode(row.kind),
                "null" if media_type is None else encode(media_type),
                "[\n        " + ",\n        ".join(map(encode, platforms)) + "\n      ]" if platforms else "[]",
                int.__repr__(row.size),
                "null" if created is None else encode(created),
                int.__repr__(row.missing),
                encode(row.short_digest),
            )
        )
    images = "[\n    " + ",\n    ".join(texts) + "\n  ]" if texts else "[]"
    text = '{\n  "images": ' + images + ',\n  "warnings": ' + indented_json(list(warnings), "\n  ") + "\n}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped ASCII, as dumps does
        plain = [{f: getattr(r, f) for f in fields} | {"short_digest": r.short_digest} for r in rows]
        text = json.dumps({"images": plain, "warnings": list(warnings)}, indent=2, ensure_ascii=True)
    return text


_ROW_FIELDS = ["name", "digest", "kind", "media_type", "platforms", "size", "created", "missing"]
_ROW_TEMPLATE = (
    '{\n      "name": %s,\n      "digest": %s,\n      "kind": %s,\n      "media_type": %s,\n'
    '      "platforms": %s,\n      "size": %s,\n      "created": %s,\n      "missing": %s,\n'
    '      "short_digest": %s\n    }'
)


def print_tree(tree: Tree, output_format: str, quiet: bool) -> None:
    """`tree`: box drawing or JSON."""
    print_warnings(tree.warnings, quiet or output_format == "json")
    if output_format == "json":
        click.echo(dumps({"roots": tree.roots, "warnings": tree.warnings}), color=True)  # JSON has no ANSI
    else:
        click.echo(tree_text(tree.roots))


def print_tag(report: TagReport, name: str, output_format: str) -> None:
    """`tag`: what moved where."""
    if output_format == "json":
        click.echo(dumps(report))
    elif report.unchanged:
        click.echo(printable(f"{name} already points at {report.digest}"))
    else:
        moved = f" (moved from {report.moved_from})" if report.moved_from else ""
        click.echo(printable(f"{'Would tag' if report.dry_run else 'Tagged'}: {name} -> {report.digest}{moved}"))


def print_untag(report: UntagReport, output_format: str) -> None:
    """`untag`: names removed; names not found as errors."""
    if output_format == "json":
        document = to_jsonable(report)
        if report.not_found:
            code = 3 if not report.untagged else 1
            message = "no such name: " + ", ".join(report.not_found)
            error = {"message": one_line(message), "exit_code": code, "kind": ERROR_KINDS[code]}
            document = {"error": error} | document
        click.echo(dumps(document))
    else:
        for name in report.untagged:
            click.echo(printable(f"{'Would untag' if report.dry_run else 'Untagged'}: {name}"))
    for name in report.not_found:
        print_error(f"no such name: {name}")


def _with_error(document: dict[str, Any], report: RemovalReport) -> dict[str, Any]:
    """A failed removal's JSON with the `error` member first, each failure on stderr too."""
    code = report.exit_code
    if not code:
        return document
    messages = [f.message for f in report.failures] + [m for i in report.images for m in i.errors]
    messages += [m for t in report.trims for m in t.errors]
    for message in dict.fromkeys(messages):
        click.echo(f"error: {one_line(message)}", err=True)
    first = one_line(messages[0]) if messages else "some work failed"
    return {"error": {"message": first, "exit_code": code, "kind": ERROR_KINDS.get(code, "failed")}} | document


def print_removal(report: RemovalReport, output_format: str, quiet: bool) -> None:
    """`rm`: per image what was untagged and deleted, then the total. A failure is also an
    `error:` line on stderr and, in JSON, an `error` member beside the report."""
    if output_format == "json":
        click.echo(dumps(_with_error(to_jsonable(report), report)))
        return
    print_warnings(report.warnings, quiet)
    would = "Would " if report.dry_run else ""
    for trim in report.trims:
        if quiet:
            click.echo(trim.new_digest)
            continue
        names = ", ".join(trim.names) if trim.names else trim.reference
        verb = "Would trim" if would else "Trimmed"
        click.echo(printable(f"{verb}: {names} {trim.old_digest} -> {trim.new_digest}"))
        for removed in trim.removed:
            what = f"attestation of {removed.attestation_of}" if removed.attestation_of else removed.platform or "?"
            click.echo(printable(f"  removed {what} {removed.digest}"))
        click.echo(f"  ({trim.blobs_deleted} blobs, {human_size(trim.bytes_freed)})")
    for image in report.images:
        if quiet:
            if image.deleted:
                click.echo(image.id)
            continue
        for name in image.untagged:
            click.echo(printable(f"{would}{'untag' if would else 'Untagged'}: {name}"))
        if image.deleted:
            why = "" if image.reason == "requested" else f" [{image.reason}]"
            click.echo(
                f"{would}{'delete' if would else 'Deleted'}: {image.id}{why}"
                f" ({image.blobs_deleted} blobs, {human_size(image.bytes_freed)})"
            )
    for failure in report.failures:
        print_error(f"{failure.reference}: {failure.message}")
    shown = {failure.message for failure in report.failures}
    # e.g. a blob that could not be deleted (read-only file system)
    for message in [m for i in report.images for m in i.errors] + [m for t in report.trims for m in t.errors]:
        if message not in shown:
            click.echo(f"error: {one_line(message)}", err=True)
    if not quiet and (report.trims or any(image.deleted for image in report.images)):
        verb = "Would reclaim" if report.dry_run else "Total reclaimed space"
        click.echo(f"{verb}: {human_size(report.bytes_freed)} in {report.blobs_deleted} blobs")


def print_gc(report: GcReport, output_format: str, quiet: bool) -> None:
    """`gc`: each blob deleted, temporary files, strays, what was kept young, the total."""
    if output_format == "json":
        click.echo(dumps(report))
        return
    print_warnings(report.warnings, quiet)
    dry = report.dry_run
    for blob in report.removed:
        if quiet:
            click.echo(blob.digest)
        else:
            click.echo(f"{'Would delete' if dry else 'Deleted'}: {blob.digest} ({human_size(blob.size)})")
    for key, message in report.errors.items():
        click.echo(f"error: {one_line(message)}", err=True)
    if quiet:
        return
    for path in report.temp_files_removed:
        click.echo(f"{'Would remove' if dry else 'Removed'} temporary file: {one_line(repr(str(path))[1:-1])}")
    for stray in report.strays:
        click.echo(f"Not a blob (kept): {one_line(repr(str(stray.path))[1:-1])}: {stray.reason}")
    if report.kept_young:
        click.echo(
            f"Kept {report.kept_young} unreferenced blobs ({human_size(report.kept_young_bytes)}) "
            f"younger than the grace period ({report.grace:g}s)"
        )
    verb = "Would reclaim" if dry else "Total reclaimed space"
    click.echo(f"{verb}: {human_size(report.bytes_freed)} in {report.blobs_removed} blobs")


def print_verify(report: VerifyReport, output_format: str, quiet: bool) -> None:
    """`verify`: one line per problem (or JSON), warnings, and a summary on stderr."""
    if output_format == "json":
        counts = {
            "reachable": report.reachable,
            "blobs_checked": report.blobs_checked,
            "bytes_hashed": report.bytes_hashed,
            "problems": len(report.problems),
            "unreachable": len(report.unreachable),
            "strays": len(report.strays),
        }
        document: dict[str, Any] = {
            "ok": report.ok,
            "problems": report.problems,
            "counts": counts,
            "warnings": report.warnings,
        }
        if not report.ok:
            message = f"{len(report.problems)} problem{'s' if len(report.problems) != 1 else ''} found"
            document = {"error": {"message": message, "exit_code": 1, "kind": "failed"}} | document
        click.echo(dumps(document))
    else:
        for problem in report.problems:
            click.echo(str(problem))
    print_warnings(report.warnings, quiet or output_format == "json")
    if not quiet:
        state = "ok" if report.ok else f"{len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}"
        click.echo(
            f"{state}: {report.blobs_checked} of {report.reachable} reachable blobs checked, "
            f"{human_size(report.bytes_hashed)} hashed in {report.seconds:.1f}s",
            err=True,
        )


def print_prune(report: PruneReport, output_format: str, quiet: bool) -> None:
    """`prune`: per repository the names kept and removed (with their dates), then what the
    removal did, as `rm` prints it."""
    if output_format == "json":
        document = to_jsonable(report)
        document["bytes_freed"] = report.bytes_freed
        click.echo(plain_dumps(_with_error(document, report.removal)))
        return
    print_warnings(report.warnings, quiet)
    if not quiet:
        would = "would remove" if report.dry_run else "removed"
        for repo in report.repositories:
            click.echo(
                printable(f"{repo.repository}: kept {len(repo.kept)}, {would} {len(repo.removed)}")
                + (f" ({repo.images_deleted} images, {human_size(repo.bytes_freed)})" if repo.images_deleted else "")
            )
            for item in repo.removed:
                click.echo(printable(f"  - {item.name} ({item.created or 'undated'})"))
        for item in report.dangling_removed:
            click.echo(f"<none>: {would} {item.digest} ({item.created})")
        if report.undated:
            print_warnings([f"kept {len(report.undated)} undated names or images: no created time is known"], quiet)
    print_removal(report.removal, "table", quiet)


def print_du(report: DuReport, output_format: str, quiet: bool) -> None:
    """`du`: a row per image, then the layout totals."""
    totals = report.totals
    if output_format == "json":
        # Plain values already: only the totals need converting (a generic pass over 100,000
        # rows cost seconds).
        images = [
            {"digest": i.digest, "names": list(i.names), "size": i.size, "exclusive": i.exclusive,
             "shared": i.shared, "created": i.created}
            for i in report.images
        ]
        document = {"images": images, "totals": to_jsonable(totals), "warnings": list(report.warnings)}
        click.echo(plain_dumps(document), color=True)
        return
    print_warnings(report.warnings, quiet)
    if quiet:
        if report.images:
            click.echo("\n".join(image.digest for image in report.images))
        return
    rows = report.images
    sizes: dict[int, str] = {}  # one text per distinct size (shared sizes repeat)

    def sized(values: Iterable[int]) -> list[str]:
        return [sizes.get(v) or sizes.setdefault(v, human_size(v)) for v in values]

    table = [
        [",".join(i.names) or "<none>" for i in rows],
        [i.digest.partition(":")[2][:12] for i in rows],
        sized(i.size for i in rows),
        sized(i.shared for i in rows),
        sized(i.exclusive for i in rows),
        [i.created or "-" for i in rows],
    ]
    click.echo(table_of(["NAMES", "DIGEST", "SIZE", "SHARED", "EXCLUSIVE", "CREATED"], table))
    frees = "gc frees" if totals.certain else "gc frees nothing while in doubt"
    click.echo(
        f"\nReachable: {human_size(totals.reachable)} in {totals.reachable_blobs} blobs; "
        f"unreachable: {human_size(totals.unreachable)} in {totals.unreachable_blobs} blobs ({frees})"
        + (
            f" + {human_size(totals.unreachable_young)} in {totals.unreachable_young_blobs} "
            "younger than the grace period"
            if totals.unreachable_young_blobs
            else ""
        )
        + f"; on disk: {human_size(totals.on_disk)} in {totals.blobs} blobs"
    )
    if not totals.certain:
        click.echo("Exclusive sizes are 0 where what another image reaches is in doubt (see warnings).")


def print_referrers(report: ReferrersReport, output_format: str, quiet: bool) -> None:
    """`referrers`: a tree under the subject (digest, artifact type, names, size, created)."""
    if output_format == "json":
        click.echo(dumps(report))
        return
    print_warnings(report.warnings, quiet)
    if quiet:
        stack = list(reversed(report.referrers))
        while stack:
            referrer = stack.pop()
            click.echo(referrer.digest)
            stack.extend(reversed(referrer.referrers))
        return
    lines = [report.subject]
    todo: list[tuple[Referrer, str, bool]] = [
        (r, "", i == len(report.referrers) - 1) for i, r in reversed(list(enumerate(report.referrers)))
    ]
    while todo:
        referrer, prefix, last = todo.pop()
        names = f" [{', '.join(referrer.names)}]" if referrer.names else ""
        label = f"{referrer.artifact_type or referrer.media_type or '?'} {referrer.digest}{names}"
        label += f" ({human_size(referrer.size)}{', ' + referrer.created if referrer.created else ''})"
        lines.append(printable(f"{prefix}{'└── ' if last else '├── '}{label}"))
        inner = prefix + ("    " if last else "│   ")
        children = referrer.referrers
        todo.extend((c, inner, i == len(children) - 1) for i, c in reversed(list(enumerate(children))))
    click.echo("\n".join(lines))
