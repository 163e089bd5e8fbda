"""Table rendering: sizes in decimal units and column layout (the text every listing prints)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ocilayout.render import columns, human_size, printable


def reference_human_size(size: int) -> str:
    """Three significant digits of the largest unit that keeps the number below 1000 once rounded."""
    if size < 0:
        return "?"
    if size < 1000:
        return f"{size}B"
    for power, unit in enumerate(("kB", "MB", "GB", "TB", "PB", "EB"), start=1):
        value = size / 1000**power
        if float(f"{value:.3g}") < 1000 or unit == "EB":
            return f"{value:.3g}{unit}"
    raise AssertionError


@given(st.integers(-(2**63), 2**63 - 1))
def test_human_size_is_three_digits_of_the_right_unit(size: int) -> None:
    text = human_size(size)
    assert text == reference_human_size(size)
    assert "e" not in text


def test_human_size_rounds_up_into_the_next_unit() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 999_499, 999_500, 999_999, 1_500_000, 2**63 - 1)] == [
        "0B", "999B", "1kB", "999kB", "1MB", "1MB", "1.5MB", "9.22EB",
    ]  # fmt: skip


def reference_columns(header: list[str], rows: list[list[str]]) -> str:
    table = [header, *[[printable(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)).rstrip()
        for row in table
    )


cell = st.text(st.characters(codec="utf-8"), max_size=6)


def tables(n: int) -> st.SearchStrategy[tuple[list[str], list[list[str]]]]:
    row = st.lists(cell, min_size=n, max_size=n)
    return st.tuples(row, st.lists(row, max_size=6))


@given(st.integers(1, 4).flatmap(tables))
def test_columns_pad_escape_and_trim_like_the_cell_by_cell_layout(table: tuple[list[str], list[list[str]]]) -> None:
    header, rows = table
    header = [printable(h) for h in header]
    assert columns(header, rows) == reference_columns(header, rows)


def test_columns_escape_control_characters_in_one_cell_only() -> None:
    text = columns(["NAME", "SIZE"], [["a\x1b[31m", "1kB"], ["bb", "2kB"]])
    assert text.splitlines() == ["NAME        SIZE", "a\\x1b[31m   1kB", "bb          2kB"]
