"""Turning report objects into text for people and JSON for machines (CLI only)."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .listing import ImageRow, TreeNode


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums and paths as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
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
    """Indented JSON, stable key order as produced."""
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def human_size(size: int) -> str:
    """Decimal units, as `docker images` shows sizes."""
    if size < 0:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1000
    return f"{size}B"


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces; the last column is not padded."""
    table = [list(header), *[[printable(cell) for cell in r] for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


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
