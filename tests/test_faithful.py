"""Rewrites of `index.json` keep every value we did not mean to change (DESIGN 4): unknown
fields of the index and of its entries — big integers, long decimals, exponents, `-0.0`,
unicode escapes, lone surrogates, nesting — compared with arbitrary precision
(`parse_float=Decimal`), and the result parses with a strict parser (no NaN/Infinity)."""

from __future__ import annotations

import json
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocilayout import CorruptLayoutError, Layout

REF = "org.opencontainers.image.ref.name"


def strict_load(data: bytes) -> object:
    """Like Go's decoder: NaN/Infinity refused; numbers kept exactly."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data.decode("utf-8"), parse_float=Decimal, parse_constant=refuse)


# Number and string *texts* that a float round trip or a UTF-8 encode would damage.
NUMBER_TEXTS = [
    "123456789012345678901234567890",
    "-98765432109876543210",
    "0.1000000000000000055511151231257827",
    "1E5",
    "2.5e-300",
    "-0.0",
    "-0",
    "1.50",
    "6.02214076e23",
]
STRING_TEXTS = ['"\\ud800"', '"\\udfff x"', '"\\u00e9t\\u00e9"', '"\\ud83d\\ude00"', '"tab\\tquote\\""', '"é"']

values = st.recursive(
    st.sampled_from(NUMBER_TEXTS + STRING_TEXTS + ["true", "null", "[]", "{}"]),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(st.sampled_from(["a", "b", "c\\u0041"]), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f'"{k}": {v}' for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=6,
)


def _layout(tmp: Path, generate_module, index_extra: str, entry_extra: str) -> Path:
    root = tmp / "lay"
    w = generate_module.LayoutWriter(root)
    a = w.image([b"layer a"])
    b = w.image([b"layer b"])
    w.add_entry(a, name="a")
    w.add_entry(b, name="b")
    w.finish()
    index = json.loads((root / "index.json").read_bytes())
    entries = []
    for entry in index["manifests"]:
        text = json.dumps(entry)[:-1]
        entries.append(text + f', "x-extra": {entry_extra}}}')
    (root / "index.json").write_text(
        '{"schemaVersion": 2, "x-top": ' + index_extra + ', "manifests": [\n  ' + ",\n  ".join(entries) + "\n]}\n"
    )
    return root


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index_extra=values, entry_extra=values, op=st.sampled_from(["rm", "tag", "untag", "tag-move"]))
def test_unknown_values_survive_every_rewrite(generate_module, index_extra, entry_extra, op) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = _layout(Path(tmp), generate_module, index_extra, entry_extra)
        before = strict_load((root / "index.json").read_bytes())
        layout = Layout.open(root)
        if op == "rm":
            layout.delete(["b"])
        elif op == "tag":
            layout.tag("a", "a2")
        elif op == "tag-move":
            layout.tag("a", "b")  # b's last name moves: b stays as a dangling entry
        else:
            layout.untag(["a"])
        after = strict_load((root / "index.json").read_bytes())
        assert after["x-top"] == before["x-top"]
        assert after["schemaVersion"] == 2
        survivors = [m for m in after["manifests"] if m["digest"] == before["manifests"][0]["digest"]]
        assert survivors, "entry a's image is still there"
        for entry in survivors:
            assert entry["x-extra"] == before["manifests"][0]["x-extra"]
            assert entry["size"] == before["manifests"][0]["size"]
        # ocilayout itself reads what it wrote.
        Layout.open(root).list()


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"])
def test_non_finite_numbers_are_corrupt(fixture_layout, token) -> None:
    root = fixture_layout("multi")
    text = (root / "index.json").read_text()
    (root / "index.json").write_text(text.replace('"schemaVersion":2', f'"schemaVersion":2,"x":{token}', 1)
                                     .replace('"schemaVersion": 2', f'"schemaVersion": 2, "x": {token}', 1))
    assert token in (root / "index.json").read_text()
    with pytest.raises(CorruptLayoutError):
        Layout.open(root)


def test_a_rewritten_index_with_odd_values_is_read_by_skopeo(generate_module, tmp_path) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (Debian package skopeo)")
    import subprocess

    root = _layout(tmp_path, generate_module, '[1E5, -0.0, "\\ud800", 123456789012345678901234567890]', "2.5e-300")
    Layout.open(root).delete(["b"])
    result = subprocess.run([skopeo, "inspect", "--raw", f"oci:{root}:a"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["schemaVersion"] == 2


def test_a_rewritten_index_with_odd_values_is_read_by_umoci(generate_module, tmp_path) -> None:
    umoci = shutil.which("umoci")
    if umoci is None:
        pytest.skip("umoci is not installed (Debian package umoci)")
    import subprocess

    root = _layout(tmp_path, generate_module, '{"n": [1E5, -0.0, 123456789012345678901234567890]}', '"\\u00e9"')
    Layout.open(root).tag("a", "a2")
    result = subprocess.run([umoci, "ls", "--layout", str(root)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert {"a", "a2", "b"} <= set(result.stdout.split())


def test_a_rename_keeps_other_annotations_as_written(tmp_path) -> None:
    """Non-string annotation values (tolerated when read) keep their text through tag/untag."""
    from ocilayout.indexfile import parse_index, with_name

    digest = "sha256:" + "a" * 64
    text = (
        '{"schemaVersion": 2, "manifests": [{"digest": "%s", "size": 1, "annotations": '
        '{"n": 1e-400, "org.opencontainers.image.ref.name": "a", "d": 0.1000000000000000055511151231257827}}]}'
        % digest
    ).encode()
    index = parse_index(text)
    for name in (None, "b"):
        out = strict_load(index.serialise([with_name(index.entries[0].raw, name)]))
        annotations = out["manifests"][0]["annotations"]
        assert annotations["n"] == Decimal("1e-400")
        assert annotations["d"] == Decimal("0.1000000000000000055511151231257827")
        assert annotations.get(REF) == name


def test_a_new_entry_with_a_lone_surrogate_is_written_escaped() -> None:
    """`tag --platform` copies a child descriptor's annotations from a blob into a new entry."""
    from ocilayout.indexfile import parse_index

    index = parse_index(b'{"schemaVersion": 2, "manifests": []}')
    data = index.serialise([{"digest": "sha256:" + "a" * 64, "size": 1, "annotations": {"x": "\ud800"}}])
    assert b"\\ud800" in data and json.loads(data)["manifests"][0]["annotations"]["x"] == "\ud800"


def test_a_number_with_too_many_digits_is_a_clear_error(fixture_layout) -> None:
    root = fixture_layout("multi")
    text = (root / "index.json").read_text()
    (root / "index.json").write_text(text.replace('"schemaVersion":2', '"schemaVersion":2,"x":' + "9" * 5000, 1)
                                     .replace('"schemaVersion": 2', '"schemaVersion": 2, "x": ' + "9" * 5000, 1))
    with pytest.raises(CorruptLayoutError, match="4300 digits"):
        Layout.open(root)
