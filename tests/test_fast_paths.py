"""The speed paths give exactly what the plain ones give: the indenting JSON writer against
`json.dumps`, the `ls` JSON template against the generic report, the two-process listing
against one process, and `fork_split` when its child fails."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocilayout import Layout, render
from ocilayout import graph as graph_module
from ocilayout.listing import ImageRow
from ocilayout.parallel import fork_split

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "layouts"

texts = st.text(st.characters(blacklist_categories=()), max_size=12) | st.sampled_from(
    ["", "\x1b[31m", "a\nb", "\ud800", "é", "\u2028", '"\\', "sha256:" + "a" * 64]
)
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(texts | st.integers(-5, 5) | st.booleans() | st.none() | st.floats(), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_indented_json_is_json_dumps(value: object) -> None:
    assert render.indented_json(value) == json.dumps(value, indent=2, ensure_ascii=False)


def test_indented_json_refuses_what_json_refuses() -> None:
    for bad in (object(), {(1, 2): 3}, [1, {2}]):
        with pytest.raises(TypeError):
            json.dumps(bad, indent=2)
        with pytest.raises(TypeError):
            render.indented_json(bad)


def reference_listing_json(rows: list[ImageRow], warnings: list[str]) -> str:
    """What `ls --format json` printed before the template: the generic path."""
    plain = [render.to_jsonable(r) | {"short_digest": r.short_digest} for r in rows]
    text = json.dumps({"images": plain, "warnings": warnings}, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps({"images": plain, "warnings": warnings}, indent=2, ensure_ascii=True)
    return text


rows_strategy = st.builds(
    ImageRow,
    name=st.none() | texts,
    digest=st.sampled_from(["sha256:" + "a" * 64, "sha512:" + "b" * 128]),
    kind=st.sampled_from(["image", "index", "artifact", "missing", "unknown"]),
    media_type=st.none() | texts,
    platforms=st.lists(texts, max_size=3),
    size=st.integers(0, 2**64),
    created=st.none() | texts,
    missing=st.integers(0, 5),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rows_strategy, max_size=5), st.lists(texts, max_size=3))
def test_listing_json_is_the_generic_report(rows: list[ImageRow], warnings: list[str]) -> None:
    assert render.listing_json(rows, warnings) == reference_listing_json(rows, warnings)


def test_listing_json_odd_values_take_the_generic_way() -> None:
    odd = ImageRow(None, "sha256:" + "c" * 64, "image", None, ("linux/amd64",), True, None, 0)  # type: ignore[arg-type]
    assert render.listing_json([odd], []) == reference_listing_json([odd], [])


def all_fixture_layouts() -> list[Path]:
    found = []
    for oci_layout in sorted(FIXTURES.rglob("oci-layout")):
        found.append(oci_layout.parent)
    return found


@pytest.mark.parametrize("root", all_fixture_layouts(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_two_process_listing_equals_one(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        layout = Layout.open(root)
        monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 10**9)
        alone = layout.list()
    except Exception as exc:  # a broken fixture: the same error both ways
        monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
        with pytest.raises(type(exc)):
            Layout.open(root).list()
        return
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
    shared = Layout.open(root).list()
    assert shared == alone


def test_two_process_listing_of_a_generated_layout(generate_module, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "bench"
    generate_module.main(["bench", "--images", "60", "--seed", "3", "--out", str(root)])
    blobs = sorted((root / "blobs" / "sha256").iterdir())
    for path in blobs[::17]:  # some missing blobs: warnings from both halves
        path.unlink()
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 10**9)
    alone = Layout.open(root).list()
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
    shared = Layout.open(root).list()
    assert alone.warnings and shared == alone


def test_fork_split_replaces_a_failing_child() -> None:
    parent = os.getpid()

    def there() -> object:
        if os.getpid() != parent:
            return object()  # marshal cannot carry it: the child fails
        return "computed here"

    assert fork_split(lambda: 1, there) == (1, "computed here")

    def child_dies() -> str:
        if os.getpid() != parent:
            os._exit(3)
        return "again here"

    assert fork_split(lambda: 2, child_dies) == (2, "again here")


def test_fork_split_here_raising_kills_the_child() -> None:
    def here() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        fork_split(here, lambda: __import__("time").sleep(30))
    assert not graph_module.FORKED
