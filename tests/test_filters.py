"""Times as filters, prune and du read them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ocilayout import Layout
from ocilayout.filters import image_facts, iso_time, parse_time, select

plain_utc = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")
)
shaped = st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", fullmatch=True)


@given(st.one_of(plain_utc, shaped, st.text(max_size=40)))
@example("2024-02-30T06:30:27Z")  # the shape, not a date
@example("2024-01-02T06:30:27.123456789Z")
@example(" 2024-01-02T06:30:27Z")
@example("\u0662\u0660\u0662\u0664-01-02T06:30:27Z")  # digits of another script
def test_iso_time_is_the_parsed_time_in_iso_form(text: str) -> None:
    moment = parse_time(text)
    assert iso_time(text) == (moment.isoformat() if moment is not None else None)


def test_iso_time_of_a_plain_utc_time() -> None:
    assert iso_time("2024-01-02T06:30:27Z") == "2024-01-02T06:30:27+00:00"
    assert datetime.fromisoformat(iso_time("2024-01-02T06:30:27Z") or "") == datetime(
        2024, 1, 2, 6, 30, 27, tzinfo=timezone.utc
    )


@pytest.mark.parametrize("layer_typed_first", [True, False])
def test_an_image_is_judged_by_the_entry_it_is_walked_by(generate_module, tmp_path, layer_typed_first) -> None:
    """An image also listed under a layer type (a leaf, never opened): its labels and date come
    from its manifest whatever the order of its entries, as ls and du read it."""
    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    image = w.image([b"layer"], labels={"n": "a"})
    entries = [({**image, "mediaType": generate_module.OCI_LAYER}, None), (image, "a:1")]
    for descriptor, name in entries if layer_typed_first else entries[::-1]:
        w.add_entry(descriptor, name=name)
    w.finish()
    layout = Layout.open(root, cache=False)
    assert select(layout.index, layout.graph(), {"label": ["n=a"]}) == [image["digest"]]
    (facts,) = image_facts(layout.index, layout.graph())
    assert facts.created is not None and facts.labels["n"] == "a"
