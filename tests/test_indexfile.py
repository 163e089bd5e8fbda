"""`index.json` parsing, validation and lossless serialisation."""

from __future__ import annotations

import json

import pytest

from ocilayout.digest import parse_digest
from ocilayout.errors import CorruptLayoutError, InvalidDigestError
from ocilayout.indexfile import IndexFile, loads_strict, parse_index, with_name
from ocilayout.mediatypes import OCI_INDEX, OCI_MANIFEST, REF_NAME

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def entry(digest: str = D1, name: str | None = None, **extra: object) -> dict[str, object]:
    e: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": 10, **extra}
    if name is not None:
        e["annotations"] = {REF_NAME: name}
    return e


def index_bytes(manifests: object, **extra: object) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests, **extra}).encode()


def test_parse_entries_in_order() -> None:
    index = parse_index(index_bytes([entry(D1, "a"), entry(D2), entry(D1, "b")]))
    assert [e.position for e in index.entries] == [0, 1, 2]
    assert [e.name for e in index.entries] == ["a", None, "b"]
    assert index.entries[1].digest == parse_digest(D2)
    assert index.warnings == ()
    assert list(index.names()) == ["a", "b"]
    groups = index.by_digest()
    assert [e.position for e in groups[parse_digest(D1)]] == [0, 2]


def test_empty_manifests() -> None:
    assert parse_index(index_bytes([])).entries == ()


def test_manifests_null_accepted_with_warning() -> None:
    index = parse_index(b'{"schemaVersion":2,"manifests":null}', "x/index.json")
    assert index.entries == ()
    assert len(index.warnings) == 1
    assert "x/index.json" in index.warnings[0] and "null" in index.warnings[0]


def test_manifests_absent_rejected() -> None:
    with pytest.raises(CorruptLayoutError, match="no manifests"):
        parse_index(b'{"schemaVersion":2}')


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b'{"schemaVersion": 2, "manifests": [', "invalid JSON"),
        (b"not json", "invalid JSON"),
        (b'{"schemaVersion":2,"manifests":[]} trailing', "invalid JSON"),
        (b"\xff\xfe{}", "UTF-8|invalid JSON"),
        (b"[]", "JSON object"),
        (b"2", "JSON object"),
        (b"null", "JSON object"),
        (b'"index"', "JSON object"),
        (b'{"schemaVersion":2,"schemaVersion":2,"manifests":[]}', "duplicate key 'schemaVersion'"),
        (b'{"schemaVersion":2,"manifests":[{"digest":"x","digest":"y","size":1}]}', "duplicate key 'digest'"),
        (b'{"schemaVersion":2,"manifests":[],"annotations":{"a":"1","a":"2"}}', "duplicate key 'a'"),
        (b'{"schemaVersion":1,"manifests":[]}', "schemaVersion"),
        (b'{"schemaVersion":"2","manifests":[]}', "schemaVersion"),
        (b'{"schemaVersion":2.0,"manifests":[]}', "schemaVersion"),
        (b'{"schemaVersion":true,"manifests":[]}', "schemaVersion"),
        (b'{"manifests":[]}', "schemaVersion"),
        (b'{"schemaVersion":2,"manifests":{}}', "must be a list"),
        (b'{"schemaVersion":2,"manifests":"x"}', "must be a list"),
        (b'{"schemaVersion":2,"manifests":[1]}', r"manifests\[0\]: descriptor must be an object"),
        (b'{"schemaVersion":2,"manifests":[{"digest":"sha256:' + b"1" * 64 + b'","size":"1"}]}', "size"),
    ],
)
def test_rejected(data: bytes, message: str) -> None:
    with pytest.raises(CorruptLayoutError, match=message) as info:
        parse_index(data, "L/index.json")
    assert str(info.value).startswith("L/index.json")
    assert "\n" not in str(info.value)


def test_traversal_digest_rejected() -> None:
    with pytest.raises(InvalidDigestError, match=r"manifests\[1\].*\.\./\.\./x"):
        parse_index(index_bytes([entry(D1), entry("sha256:../../x")]))


@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a":', "}")])
def test_deep_nesting_is_corrupt_not_recursion_error(opener: str, closer: str) -> None:
    depth = 10_000
    data = ('{"schemaVersion":2,"manifests":[],"x":' + opener * depth + "1" + closer * depth + "}").encode()
    with pytest.raises(CorruptLayoutError, match="nested too deeply|invalid JSON"):
        parse_index(data)


def test_deep_nesting_inside_manifests() -> None:
    depth = 100_000
    data = ('{"schemaVersion":2,"manifests":' + "[" * depth + "]" * depth + "}").encode()
    with pytest.raises(CorruptLayoutError):
        parse_index(data)


def test_loads_strict_names_what() -> None:
    with pytest.raises(CorruptLayoutError, match="^blob X: duplicate key"):
        loads_strict(b'{"a":1,"a":1}', "blob X")
    assert loads_strict(b'{"a":[1,{"b":null}]}', "x") == {"a": [1, {"b": None}]}


def test_serialise_keeps_unknown_fields() -> None:
    original = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "annotations": {"org.example.top": "kept"},
        "x-future": {"nested": [1, 2, 3]},
        "manifests": [
            {**entry(D1, "a"), "urls": ["https://example.invalid/x"], "x-entry": True, "platform": {"os": "linux", "architecture": "amd64", "os.features": ["f"]}},
            {**entry(D2), "annotations": {"org.example.note": "ü"}},
        ],
    }
    index = parse_index(json.dumps(original).encode())
    out = json.loads(index.serialise(e.raw for e in index.entries))
    assert out == original
    # and a rewrite that drops one entry changes only manifests
    out2 = json.loads(index.serialise([index.entries[1].raw]))
    assert out2 == {**original, "manifests": [original["manifests"][1]]}
    assert index.document == original  # serialise does not mutate the parsed document


def test_serialise_is_utf8_json_with_newline() -> None:
    index = parse_index(index_bytes([entry(D1, "ünïcode")]))
    data = index.serialise(e.raw for e in index.entries)
    assert data.endswith(b"\n")
    assert "ünïcode".encode() in data
    assert parse_index(data).entries[0].name == "ünïcode"


def test_with_name_sets_and_removes() -> None:
    raw = {**entry(D1), "annotations": {REF_NAME: "a", "keep": "me"}}
    renamed = with_name(raw, "b")
    assert renamed["annotations"] == {REF_NAME: "b", "keep": "me"}
    assert raw["annotations"] == {REF_NAME: "a", "keep": "me"}  # input untouched
    unnamed = with_name(raw, None)
    assert unnamed["annotations"] == {"keep": "me"}
    bare = with_name(entry(D1, "only"), None)
    assert "annotations" not in bare
    assert with_name(entry(D1), "new")["annotations"] == {REF_NAME: "new"}


def test_index_file_is_immutable_value() -> None:
    index = parse_index(index_bytes([entry(D1, "a")]))
    assert isinstance(index, IndexFile)
    with pytest.raises(AttributeError):
        index.entries = ()  # type: ignore[misc]


def test_entries_share_their_strings_with_their_descriptors() -> None:
    """A big index.json is mostly digests, media types and annotations: each is held once (the
    entry object and its descriptor share it; one object per distinct media type), and the
    text written back is unchanged."""
    import json as json_module

    from ocilayout.indexfile import parse_index

    manifests = [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + f"{i:064x}", "size": 7,
         "annotations": {"org.opencontainers.image.ref.name": f"n{i}"}}
        for i in range(3)
    ]
    data = json_module.dumps({"schemaVersion": 2, "manifests": manifests}).encode()
    index = parse_index(data)
    first, second = index.entries[0], index.entries[1]
    assert first.raw["digest"] is first.descriptor.digest
    assert first.descriptor.annotations is first.raw["annotations"]
    assert first.raw["mediaType"] is second.raw["mediaType"] is second.descriptor.media_type
    assert json_module.dumps(index.document).encode() == data
