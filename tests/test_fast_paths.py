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


def test_fork_split_carries_bytes_and_byte_parts_without_marshal(monkeypatch) -> None:
    """Bytes and a list of bytes come back as one bytes object (no marshalled copy); other
    values through marshal, a str not mistaken for bytes."""
    import marshal

    parent = os.getpid()
    big = os.urandom(3 * 65536 + 5)  # more than a pipe holds: written in several calls
    assert fork_split(lambda: 0, lambda: big) == (0, big)
    assert fork_split(lambda: 0, lambda: [b"a\0", big, b"", b"z"]) == (0, b"a\0" + big + b"z")
    assert fork_split(lambda: 0, lambda: [b"a", "b"]) == (0, [b"a", "b"])
    assert fork_split(lambda: 0, lambda: "text") == (0, "text")
    monkeypatch.setattr(marshal, "dumps", lambda value: (_ for _ in ()).throw(AssertionError("marshalled")))
    assert fork_split(lambda: 0, lambda: [b"x", b"y"]) == (0, b"xy")
    assert os.getpid() == parent


def test_fork_split_here_raising_kills_the_child() -> None:
    def here() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        fork_split(here, lambda: __import__("time").sleep(30))
    assert not graph_module.FORKED


# -- schema predicates: generated source against jsonschema ------------------------------------


def _schema_documents() -> dict[str, object]:
    from ocilayout import schemas

    documents = {}
    for path in sorted(schemas.schema_dir().glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        documents[document["$id"]] = document
    return documents


def _predicate(kind: str):
    from ocilayout import schemas

    documents = _schema_documents()
    [uri] = [u for u in documents if u.endswith(f"/{kind}.json")]
    return schemas._Generated(documents).root(uri)


def _decide(kind: str, doc: object) -> bool:
    """The generated "certainly valid" predicate, checked against jsonschema itself: it may
    send a valid document the slow way, never pass an invalid one."""
    from ocilayout import schemas

    decided = _predicate_cached(kind)(doc)
    if decided:
        assert schemas.validate(doc, kind) == [], (kind, doc)
    return decided


KINDS = ("layout", "descriptor", "index", "manifest", "artifact-manifest", "config")
descriptor_values = st.fixed_dictionaries(
    {
        "mediaType": st.sampled_from(["application/vnd.oci.image.layer.v1.tar", "a/b", "a/b\n", "", 3]),
        "digest": st.sampled_from(["sha256:" + "0" * 64, "sha256:" + "0" * 63, "sha512:" + "a" * 128, "x", None]),
        "size": st.sampled_from([0, 3, -1, 2**63, True, 2.0, "3"]),
    },
    optional={
        "urls": st.lists(st.sampled_from(["", "https://x", 1]), max_size=2),
        "annotations": st.dictionaries(st.sampled_from(["a", "org.opencontainers.image.created"]),
                                       st.sampled_from(["x", "2024-01-01T00:00:00Z", "not a date", 1]), max_size=2),
        "platform": st.fixed_dictionaries({"os": st.sampled_from(["linux", 1]),
                                           "architecture": st.sampled_from(["amd64", ""])}),
        "data": st.sampled_from(["", "YWJj", "abc", 1]),
        "artifactType": st.sampled_from(["a/b", "x", 2]),
    },
)
document_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, allow_infinity=False) | texts
    | descriptor_values,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests", "blobs", "subject",
                         "annotations", "artifactType", "imageLayoutVersion", "architecture", "os", "rootfs",
                         "diff_ids", "type", "history", "created", "variant", "Labels", "Env"]),
        inner,
        max_size=5,
    ),
    max_leaves=15,
)


@settings(max_examples=1500, deadline=None)
@given(doc=document_values, kind=st.sampled_from(KINDS))
def test_generated_schema_predicates_never_pass_an_invalid_document(doc: object, kind: str) -> None:
    _decide(kind, doc)


_PREDICATES: dict[str, tuple] = {}


def _predicate_cached(kind: str):
    if kind not in _PREDICATES:
        _PREDICATES[kind] = _predicate(kind)
    return _PREDICATES[kind]


def _real_documents() -> list[object]:
    samples: list[object] = []
    for root in sorted(FIXTURES.rglob("blobs")):
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.stat().st_size < 100_000:
                try:
                    samples.append(json.loads(path.read_bytes()))
                except ValueError:
                    continue
    for name in ("oci-layout", "index.json"):
        for found in sorted(FIXTURES.rglob(name)):
            try:
                document = json.loads(found.read_bytes())
            except ValueError:
                continue
            samples.append(document)
            if isinstance(document, dict) and isinstance(document.get("manifests"), list):
                samples.extend(document["manifests"])
    return [d for d in samples if isinstance(d, dict)]


REAL_DOCUMENTS = _real_documents()
SPECIAL = [0, 1, -1, 2**63 - 1, 2**63, True, False, None, 2.0, "", "x", "a/b", "a/b\n", "sha256:" + "0" * 64,
           "sha256:" + "0" * 63, "sha512:" + "a" * 128, "2024-01-01T00:00:00Z", "YWJj", "abc", [], [""], {}, {"a": 1},
           "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json", 2, "linux"]


def _mutated(doc: object, path: list[int], value: object, delete: bool) -> object:
    if not path or not isinstance(doc, (dict, list)) or not doc:
        return value
    keys = list(doc.keys()) if isinstance(doc, dict) else list(range(len(doc)))
    key = keys[path[0] % len(keys)]
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    if delete and len(path) == 1:
        del copy[key]  # type: ignore[arg-type]
    else:
        copy[key] = _mutated(copy[key], path[1:], value, delete)  # type: ignore[index]
    return copy


@settings(max_examples=2000, deadline=None)
@given(
    which=st.integers(min_value=0),
    path=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=4),
    value=st.sampled_from(SPECIAL),
    delete=st.booleans(),
    kind=st.sampled_from(KINDS),
)
def test_generated_schema_predicates_on_mutated_documents(which, path, value, delete, kind) -> None:
    _decide(kind, _mutated(REAL_DOCUMENTS[which % len(REAL_DOCUMENTS)], path, value, delete))


def _paths(doc: object, prefix: tuple[object, ...] = (), depth: int = 4):
    """Every (container path, key) in a document, to depth `depth`."""
    if depth == 0 or not isinstance(doc, (dict, list)):
        return
    keys = list(doc.keys()) if isinstance(doc, dict) else list(range(len(doc)))
    for key in keys:
        yield prefix + (key,)
        yield from _paths(doc[key], prefix + (key,), depth - 1)  # type: ignore[index]


def _replaced(doc: object, path: tuple[object, ...], value: object, delete: bool) -> object:
    copy = dict(doc) if isinstance(doc, dict) else list(doc)  # type: ignore[call-overload]
    key = path[0]
    if len(path) == 1:
        if delete:
            del copy[key]
        else:
            copy[key] = value
    else:
        copy[key] = _replaced(copy[key], path[1:], value, delete)
    return copy


@pytest.mark.parametrize("kind", KINDS)
def test_generated_schema_predicates_on_every_mutation_of_valid_documents(kind: str) -> None:
    """Each valid document of the kind, each place in it, each special value (and deletion)."""
    valid = [d for d in REAL_DOCUMENTS if _decide(kind, d)]
    if kind == "artifact-manifest":
        valid.append({"mediaType": "application/vnd.oci.artifact.manifest.v1+json", "artifactType": "a/b",
                      "blobs": [{"mediaType": "a/b", "digest": "sha256:" + "0" * 64, "size": 1, "urls": ["u"]}]})
    assert valid
    checked = 0
    for doc in valid[:60]:
        for path in _paths(doc):
            for value in [*SPECIAL, "y" * 2, "u"]:
                _decide(kind, _replaced(doc, path, value, False))
                checked += 1
            _decide(kind, _replaced(doc, path, None, True))
    assert checked


@pytest.mark.parametrize("kind", KINDS)
def test_generated_schema_predicates_on_real_documents(kind: str) -> None:
    from ocilayout import schemas

    samples = REAL_DOCUMENTS
    assert samples
    decided = [_decide(kind, doc) for doc in samples]
    assert any(decided) or kind in ("artifact-manifest",)
    # a valid document the fast path sends the slow way is rare: only whole floats (2.0)
    for doc, fast in zip(samples, decided):
        if not fast and schemas.validate(doc, kind) == []:
            assert ".0" in json.dumps(doc), (kind, doc)
