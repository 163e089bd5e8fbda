"""Fuzzing with hypothesis: parsers raise only OcilayoutError subclasses, and whole random
(often hostile) layouts go through ls, tree, inspect, verify, rm --dry-run and gc --dry-run with
no uncaught exception, an exit code in {0,1,2,3,4,5}, nothing changed, and no file outside the
layout opened.

Each target is a (strategy, check) pair in TARGETS; the tests below run every target with
OCILAYOUT_FUZZ_EXAMPLES examples (default 40; the CLI targets a quarter of that, at least 10).
`bench/fuzz_long.py` runs the same targets far longer; results are in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocilayout.cli import cli
from ocilayout.descriptor import parse_descriptor
from ocilayout.digest import ALGORITHMS, parse_digest
from ocilayout.errors import OcilayoutError
from ocilayout.graph import Graph
from ocilayout.indexfile import loads_strict, parse_index
from ocilayout.storage import LayoutStore

EXAMPLES = int(os.environ.get("OCILAYOUT_FUZZ_EXAMPLES", "40"))
REF_NAME = "org.opencontainers.image.ref.name"
MEDIA_TYPES = [
    None,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.artifact.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/x-unknown",
    "",
]
GOOD = "sha256:" + "ab" * 32

# -- strategies -----------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _mutations(base: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(base),
        st.just(base.upper()),
        st.integers(0, len(base)).map(lambda i: base[:i]),
        st.tuples(st.integers(0, len(base)), st.sampled_from(["/", "..", "\x00", "\n", "%2f", "\\", ":", " ", "é"]))
        .map(lambda t: base[: t[0]] + t[1] + base[t[0]:]),
        st.sampled_from(["sha512:", "sha384:", "md5:", "SHA256:", "sha256+b64u:", "../", "/"]).map(
            lambda a: a + base.split(":", 1)[1]),
    )


digest_like = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[a-z0-9+._-]{0,12}:[a-zA-Z0-9=_./-]{0,140}", fullmatch=True),
    _mutations(GOOD),
    st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
    st.binary(min_size=64, max_size=64).map(lambda b: "sha512:" + b.hex()),
)

descriptor_like = st.fixed_dictionaries(
    {"digest": digest_like | json_scalars,
     "size": st.one_of(st.integers(min_value=-(2**66), max_value=2**66), json_scalars)},
    optional={
        "mediaType": st.sampled_from(MEDIA_TYPES) | json_scalars,
        "annotations": st.dictionaries(st.text(max_size=10), st.text(max_size=10) | json_scalars, max_size=3)
        | json_values,
        "platform": st.fixed_dictionaries({"os": st.text(max_size=6), "architecture": st.text(max_size=6)})
        | json_values,
        "artifactType": json_scalars,
    },
) | json_values

index_like = st.fixed_dictionaries(
    {"schemaVersion": st.sampled_from([2, 2, 2, 1, "2", 2.0, True]) | json_scalars,
     "manifests": st.lists(descriptor_like, max_size=4) | json_values},
    optional={"mediaType": st.sampled_from(MEDIA_TYPES), "annotations": json_values, "x-unknown": json_values},
)


def _flip(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for p in positions:
        if out:
            out[p % len(out)] ^= 0xFF
    return bytes(out)


index_bytes = st.one_of(
    st.binary(max_size=200),
    index_like.map(lambda d: json.dumps(d).encode()),
    st.tuples(index_like.map(lambda d: json.dumps(d).encode()), st.lists(st.integers(0, 10_000), max_size=3)).map(
        lambda t: _flip(*t)),
    st.integers(1, 3000).map(lambda n: b'{"schemaVersion":2,"manifests":[],"x":' + b"[" * n + b"]" * n + b"}"),
)

# -- parser checks --------------------------------------------------------------------------------


def check_digest(value: Any) -> None:
    try:
        digest = parse_digest(value)
    except OcilayoutError:
        return
    assert str(digest) == value
    assert digest.algorithm in ALGORITHMS and len(digest.encoded) == ALGORITHMS[digest.algorithm]
    assert set(digest.encoded) <= set("0123456789abcdef")


def check_descriptor(raw: Any) -> None:
    try:
        descriptor = parse_descriptor(raw, "fuzz")
    except OcilayoutError:
        return
    assert 0 <= descriptor.size < 2**63
    assert descriptor.name is None or isinstance(descriptor.name, str)
    check_digest(str(descriptor.digest))


def check_index(data: bytes) -> None:
    try:
        index = parse_index(data)
    except OcilayoutError:
        return
    again = parse_index(index.serialise(e.raw for e in index.entries))
    assert [e.digest for e in again.entries] == [e.digest for e in index.entries]
    assert [e.name for e in again.entries] == [e.name for e in index.entries]


def check_loads(data: bytes) -> None:
    try:
        loads_strict(data, "fuzz")
    except OcilayoutError:
        pass


# -- random layouts -------------------------------------------------------------------------------

SENTINEL = b"fuzz sentinel outside the layout"


@st.composite
def random_layout(draw: st.DrawFn) -> dict[str, Any]:
    """A description of a layout: blobs (some honest, some lying about their digest, some not
    files at all) whose JSON references each other (cycles allowed), and an index.json."""
    count = draw(st.integers(1, 6))
    names = [draw(st.binary(min_size=32, max_size=32)).hex() for _ in range(count)]
    pool = ["sha256:" + n for n in names]

    def ref(junk_one_in: int = 5) -> dict[str, Any]:
        # mostly well-formed references into the pool, so the walk goes deep; sometimes junk
        sane = draw(st.integers(1, junk_one_in)) != 1
        out: dict[str, Any] = {"digest": draw(st.sampled_from(pool) if sane else digest_like),
                               "size": draw(st.integers(0, 500) if sane else st.integers(-2, 500) | json_scalars)}
        media_type = draw(st.sampled_from(MEDIA_TYPES))
        if media_type is not None:
            out["mediaType"] = media_type
        return out

    blobs = []
    for name in names:
        shape = draw(st.sampled_from(["manifest", "index", "artifact", "json", "bytes", "honest", "dir", "symlink",
                                      "fifo", "missing"]))
        content = b""
        if shape == "manifest":
            content = json.dumps({"schemaVersion": 2, "config": ref(), "layers": [ref() for _ in range(draw(
                st.integers(0, 3)))], **({"subject": ref()} if draw(st.booleans()) else {})}).encode()
        elif shape == "index":
            content = json.dumps({"schemaVersion": 2, "manifests": [ref() for _ in range(draw(
                st.integers(0, 3)))]}).encode()
        elif shape == "artifact":
            content = json.dumps({"mediaType": "application/vnd.oci.artifact.manifest.v1+json",
                                  "blobs": [ref() for _ in range(draw(st.integers(0, 3)))]}).encode()
        elif shape == "json":
            content = json.dumps(draw(json_values)).encode()
        elif shape in ("bytes", "honest"):
            content = draw(st.binary(max_size=64))
        blobs.append((name, shape, content))

    entries = []
    for _ in range(draw(st.integers(0, 4))):
        entry = ref(junk_one_in=25)
        if draw(st.booleans()):
            entry["annotations"] = {REF_NAME: draw(st.sampled_from(["latest", "v1", "a/b", "x"]))}
        entries.append(entry)
    if draw(st.integers(0, 9)) == 0:
        index = draw(index_bytes)
    else:
        document: dict[str, Any] = {"schemaVersion": 2, "manifests": entries}
        if draw(st.booleans()):
            document["mediaType"] = "application/vnd.oci.image.index.v1+json"
        index = json.dumps(document).encode()
    layout_file = draw(st.sampled_from([b'{"imageLayoutVersion":"1.0.0"}'] * 28 + [b"{}", b"[", b'{"imageLayoutVersion":"2"}']))
    reference = draw(st.sampled_from(["latest", "v1", "a/b", names[0][:6], "sha256:" + names[0], "nope", "ab"]))
    return {"blobs": blobs, "index": index, "oci_layout": layout_file, "reference": reference}


def write_layout(spec: dict[str, Any], base: Path) -> tuple[Path, Path]:
    root, outside = base / "layout", base / "outside"
    (root / "blobs" / "sha256").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(SENTINEL)
    (root / "oci-layout").write_bytes(spec["oci_layout"])
    (root / "index.json").write_bytes(spec["index"])
    for name, shape, content in spec["blobs"]:
        if shape == "honest":
            name = hashlib.sha256(content).hexdigest()
        path = root / "blobs" / "sha256" / name
        if os.path.lexists(path):  # two blobs drew the same name: the first one stays
            continue
        if shape == "dir":
            path.mkdir()
        elif shape == "symlink":
            path.symlink_to(outside / "secret")
        elif shape == "fifo":
            os.mkfifo(path)
        elif shape != "missing":
            path.write_bytes(content)
    return root, outside


def _tree_state(root: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            state[path] = (st_.st_mode, st_.st_size, st_.st_mtime_ns, st_.st_ino)
    return state


def check_graph(spec: dict[str, Any]) -> None:
    """The walker over random blobs: terminates; only OcilayoutError escapes."""
    with tempfile.TemporaryDirectory() as tmp:
        root, _ = write_layout(spec, Path(tmp))
        store = LayoutStore(root)
        graph = Graph(store)
        roots = []
        for _, _, content in spec["blobs"]:
            with contextlib.suppress(ValueError, RecursionError):
                document = json.loads(content) if content else None
                if isinstance(document, dict):
                    for key in ("manifests", "layers", "blobs"):
                        if isinstance(document.get(key), list):
                            roots.extend(document[key])
        for raw in roots:
            try:
                descriptor = parse_descriptor(raw, "fuzz")
            except OcilayoutError:
                continue
            try:
                graph.node(descriptor)
                graph.reach([descriptor])
                graph.config_info(descriptor)
                graph.document(descriptor)
            except OcilayoutError:
                pass


CLI_CODES = {0, 1, 2, 3, 4, 5}


def check_cli(spec: dict[str, Any]) -> None:
    """ls, tree, inspect, verify, rm --dry-run, gc --dry-run over a random layout."""
    from test_hostile import Spy  # the same outside-the-layout spy as the hostile corpus

    with tempfile.TemporaryDirectory() as tmp:
        root, outside = write_layout(spec, Path(tmp))
        before = _tree_state(Path(tmp))
        spy = Spy(outside)
        mp = pytest.MonkeyPatch()
        try:
            spy.install(mp)
            runner = CliRunner()
            ref = spec["reference"]
            for args in (["ls", str(root)], ["ls", str(root), "--format", "json"], ["tree", str(root)],
                         ["inspect", str(root), ref], ["verify", str(root)], ["rm", str(root), ref, "--dry-run"],
                         ["rm", str(root), "--filter", "dangling=true", "--dry-run"],
                         ["gc", str(root), "--dry-run", "--grace", "0"]):
                result = runner.invoke(cli, args)
                assert result.exception is None or isinstance(result.exception, SystemExit), (
                    f"{args[0]}: uncaught {result.exception!r}")
                assert result.exit_code in CLI_CODES, (args, result.exit_code, result.stderr)
                if result.exit_code not in (0, 1):
                    assert any(line.startswith("error:") for line in result.stderr.splitlines()), (args, result.stderr)
        finally:
            mp.undo()
        assert spy.touched == [], spy.touched
        assert _tree_state(Path(tmp)) == before, "a read-only command changed the layout"


TARGETS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
    "parse_digest": (digest_like | json_scalars, check_digest),
    "parse_descriptor": (descriptor_like, check_descriptor),
    "parse_index": (index_bytes, check_index),
    "loads_strict": (st.binary(max_size=300) | index_bytes, check_loads),
    "graph": (random_layout(), check_graph),
    "cli": (random_layout(), check_cli),
}


def run_target(name: str, max_examples: int, counter: list[int] | None = None, **extra: Any) -> None:
    strategy, check = TARGETS[name]

    def counted(value: Any) -> None:
        if counter is not None:
            counter[0] += 1
        check(value)

    test = settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        **extra,
    )(given(strategy)(counted))
    test()


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz(name: str) -> None:
    examples = EXAMPLES if name not in ("cli", "graph") else max(10, EXAMPLES // 4)
    run_target(name, examples)


def test_deep_json_is_an_ocilayout_error() -> None:
    for depth in (1000, 10_000, 100_000):
        with pytest.raises(OcilayoutError):
            parse_index(b"[" * depth + b"]" * depth)
