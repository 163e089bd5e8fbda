"""The reference cache (DESIGN 3.12, `ocilayout.refcache`): a warm command reads no manifest it
parsed before and answers exactly as a cold one; a damaged, foreign, poisoned, half-written or
unwritable cache is ignored (and rebuilt), never trusted into a deletion."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import cli_command, run_cli_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocilayout import Layout, refcache
from ocilayout import graph as graph_module
from ocilayout.graph import Graph, live_set
from ocilayout.storage import LayoutStore

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


# -- helpers ---------------------------------------------------------------------------------------


def _bench(generate_module, root: Path, images: int = 30, seed: int = 1) -> Path:
    generate_module.make_bench_layout(root, images, seed=seed)
    return root


def _cache_file() -> Path:
    path = refcache.cache_file()
    assert path is not None
    return path


def _chunk_records(data: bytes) -> dict[str, str]:
    """A chunk's records: key -> rest (keys, NUL, rests, each block joined by newlines)."""
    keys, _, rests = data.decode().partition("\0")
    return dict(zip(keys.split("\n"), rests.split("\n")))


def _chunk_data(records: dict[str, str]) -> bytes:
    return ("\n".join(records) + "\0" + "\n".join(records.values())).encode()


def _records(kind: str | None = None) -> dict[str, str]:
    """Every record in the cache file (key -> rest), over all layouts and chunks."""
    path = _cache_file()
    if not path.exists():
        return {}
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT data FROM chunks").fetchall()
    except sqlite3.OperationalError as exc:  # a file whose first transaction never committed
        assert "no such table" in str(exc)
        rows = []
    finally:
        con.close()
    out = {}
    for (data,) in rows:
        for key, rest in _chunk_records(data).items():
            if kind is None or key.startswith(kind):
                out[key] = rest
    return out


def _count_reads(monkeypatch) -> list[str]:
    """Digests passed to LayoutStore.read_blob / read_blob_head from now on."""
    reads: list[str] = []
    real_read, real_head = LayoutStore.read_blob, LayoutStore.read_blob_head

    def read_blob(self, digest, *args, **kwargs):
        reads.append(str(digest))
        return real_read(self, digest, *args, **kwargs)

    def read_blob_head(self, digest, *args, **kwargs):
        reads.append(str(digest))
        return real_head(self, digest, *args, **kwargs)

    monkeypatch.setattr(LayoutStore, "read_blob", read_blob)
    monkeypatch.setattr(LayoutStore, "read_blob_head", read_blob_head)
    return reads


def _blob_names(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs" / "sha256").iterdir()}


def _write_blob(root: Path, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = root / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _new_layout(root: Path) -> None:
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def _image(root: Path, tag: str, layers: list[dict] | None = None, **extra) -> dict:
    """An image manifest with its own config and one own layer (plus `layers`)."""
    config = _write_blob(root, json.dumps({"created": "2024-01-01T00:00:00Z", "os": "linux",
                                           "architecture": "amd64", "config": {"Labels": {"t": tag}}}).encode())
    own = _write_blob(root, b"\x1f\x8b layer of " + tag.encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config},
        "layers": [{"mediaType": OCI_LAYER, **own}] + (layers or []),
        **extra,
    }
    return {"mediaType": OCI_MANIFEST, **_write_blob(root, json.dumps(manifest).encode()), "own_layer": own["digest"]}


def _write_index(root: Path, entries: list[tuple[str | None, dict]]) -> None:
    manifests = []
    for name, desc in entries:
        item = {k: v for k, v in desc.items() if k not in ("own_layer", "shared")}
        if name is not None:
            item["annotations"] = {REF_NAME: name}
        manifests.append(item)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def _two_images(root: Path) -> tuple[dict, dict]:
    """Images a and b, each with its own layer and one layer both use (`a["shared"]`)."""
    _new_layout(root)
    shared = {"mediaType": OCI_LAYER, **_write_blob(root, b"\x1f\x8b a layer a and b share")}
    a, b = _image(root, "a", layers=[shared]), _image(root, "b", layers=[shared])
    a["shared"] = b["shared"] = shared["digest"]
    _write_index(root, [("a", a), ("b", b)])
    return a, b


def _warm(root: Path) -> None:
    """Fill the cache from `root` as any command would (a listing: manifests and configs)."""
    Layout.open(root).list()
    assert _records("M"), "the listing filled the cache"


def _rewrite_chunks(edit) -> None:
    """Apply `edit(layout, kind, data) -> (data, checksum or None)` to every chunk in place."""
    con = sqlite3.connect(_cache_file())
    try:
        for chunk_id, layout, kind, data, checksum in con.execute(
            "SELECT id, layout, kind, data, sum FROM chunks"
        ).fetchall():
            new_data, new_sum = edit(layout, kind, data)
            con.execute(
                "UPDATE chunks SET data = ?, sum = ? WHERE id = ?",
                (new_data, checksum if new_sum is None else new_sum, chunk_id),
            )
        con.commit()
    finally:
        con.close()


def _dry_rm_json(root: Path, *refs: str, no_cache: bool = False) -> dict:
    args = ["rm", "--dry-run", "--format", "json", *(["--no-cache"] if no_cache else []), str(root), *refs]
    result = run_cli_process(*args)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


# -- location and switches -------------------------------------------------------------------------


def test_cache_location_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(refcache.DIR_ENV, str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert refcache.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv(refcache.DIR_ENV)
    assert refcache.cache_dir() == tmp_path / "xdg" / "ocilayout"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert refcache.cache_dir() == tmp_path / "home" / ".cache" / "ocilayout"


def test_the_suite_never_writes_the_users_cache(tmp_path) -> None:
    directory = refcache.cache_dir()
    assert directory is not None
    home = Path(os.path.expanduser("~"))
    assert home / ".cache" not in directory.parents and directory != home / ".cache" / "ocilayout"


def test_a_warm_command_reads_no_manifest_and_no_config(generate_module, tmp_path, monkeypatch) -> None:
    root = _bench(generate_module, tmp_path / "lay")
    cold = Layout.open(root).list()
    reads = _count_reads(monkeypatch)
    warm = Layout.open(root).list()
    assert reads == []
    assert warm.rows == cold.rows and warm.warnings == cold.warnings
    report = Layout.open(root).delete(["img-000003"], dry_run=True)
    assert reads == [] and report.images


def test_no_cache_flag_and_environment_are_honoured(generate_module, tmp_path, monkeypatch) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=5)
    for args, env in (
        (["--no-cache", "ls", str(root)], {}),
        (["ls", "--no-cache", str(root)], {}),
        (["rm", "--dry-run", str(root), "img-000001", "--no-cache"], {}),
        (["ls", str(root)], {refcache.OFF_ENV: "1"}),
    ):
        result = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=60,
                                env={**os.environ, **env})
        assert result.returncode == 0, result.stderr
        assert not _cache_file().exists(), args
    Layout.open(root, cache=False).list()
    assert not _cache_file().exists()
    refcache.set_enabled(False)
    try:
        Layout.open(root).list()
    finally:
        refcache.set_enabled(True)
    assert not _cache_file().exists()
    assert run_cli_process("ls", root).returncode == 0
    assert _records("M")


def test_no_cache_reads_everything_again(generate_module, tmp_path, monkeypatch) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=5)
    _warm(root)
    reads = _count_reads(monkeypatch)
    Layout.open(root, cache=False).list()
    assert len(reads) >= 5


# -- what goes in ----------------------------------------------------------------------------------


def test_only_clean_hash_verified_parses_are_recorded(tmp_path) -> None:
    root = tmp_path / "lay"
    _new_layout(root)
    clean = _image(root, "clean")
    # A layer descriptor with a bad size: parsed leniently (a warning), never recorded.
    bad_layer = {"mediaType": OCI_LAYER, "digest": "sha256:" + "1" * 64, "size": "12"}
    lenient = _image(root, "lenient", layers=[bad_layer])
    # Content filed under a digest it does not hash to.
    honest = json.dumps({"schemaVersion": 2, "layers": []}).encode()
    liar_digest = "sha256:" + "2" * 64
    (root / "blobs" / "sha256" / ("2" * 64)).write_bytes(honest)
    liar = {"mediaType": OCI_MANIFEST, "digest": liar_digest, "size": len(honest)}
    broken = {"mediaType": OCI_MANIFEST, **_write_blob(root, b'{"layers": [}')}
    missing = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "3" * 64, "size": 10}
    _write_index(root, [("clean", clean), ("lenient", lenient), ("liar", liar), ("broken", broken),
                        ("missing", missing)])
    listing = Layout.open(root).list()
    assert any("size must be an integer" in w for w in listing.warnings)
    recorded = _records("M")
    assert "M" + clean["digest"] in recorded
    for desc in (lenient, liar, broken, missing):
        assert "M" + desc["digest"] not in recorded
    # And the warm listing says exactly what the cold one said.
    assert Layout.open(root).list() == listing


def test_the_kind_a_reference_promises_is_not_recorded(tmp_path) -> None:
    """A document declaring none of manifests/config/layers/blobs takes its kind from the
    reference: a manifest reference makes it an image, an untyped one a leaf."""
    root = tmp_path / "lay"
    _new_layout(root)
    plain = _write_blob(root, json.dumps({"schemaVersion": 2, "annotations": {"k": "v"}}).encode())
    index = _write_blob(root, json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, **plain}, {"mediaType": "application/x-unknown", **plain}]}).encode())
    entries = [("as-image", {"mediaType": OCI_MANIFEST, **plain}), ("untyped", dict(plain)),
               ("as-index", {"mediaType": OCI_INDEX, **plain}), ("nest", {"mediaType": OCI_INDEX, **index})]
    _write_index(root, entries)

    def kinds() -> list:
        graph = Graph(LayoutStore(root))
        return [(visit, node.kind, node.state) if node else (visit,) for _, _, _, visit, node in
                graph.walk(e.descriptor for e in LayoutStore(root).read_index().entries)]

    cold = kinds()
    cold_list = Layout.open(root).list()
    refcache.finish()
    assert "M" + plain["digest"] in _records("M")
    assert kinds() == cold
    assert Layout.open(root).list() == cold_list


# -- what is checked at each use -------------------------------------------------------------------


def test_a_missing_blob_stays_missing_with_a_warm_cache(tmp_path) -> None:
    root = tmp_path / "lay"
    a, b = _two_images(root)
    _warm(root)
    os.unlink(root / "blobs" / "sha256" / a["digest"][7:])  # a's manifest is gone (a shared dir forgotten?)
    before = _blob_names(root)
    report = Layout.open(root).delete(["b"])
    assert _blob_names(root) == before, "doubt: nothing deleted"
    assert any("missing" in w or "cannot be read" in w for w in report.warnings)


@pytest.mark.parametrize("change", ["truncated", "grown", "not-json", "symlink"])
def test_a_changed_manifest_is_read_again(tmp_path, change) -> None:
    root = tmp_path / "lay"
    a, b = _two_images(root)
    _warm(root)
    path = root / "blobs" / "sha256" / a["digest"][7:]
    data = path.read_bytes()
    if change == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif change == "grown":
        path.write_bytes(data + b" " * 10 + b"x")
    elif change == "not-json":
        path.write_bytes(b"{" + b"\0" * (len(data) + 3))
    else:
        target = tmp_path / "elsewhere"
        target.write_bytes(data)
        path.unlink()
        path.symlink_to(target)
    before = _blob_names(root)
    roots = [e.descriptor for e in LayoutStore(root).read_index().entries]
    cold_live = live_set(Graph(LayoutStore(root), cache=False), roots)
    warm_live = live_set(Graph(LayoutStore(root)), roots)
    assert not cold_live.certain and not warm_live.certain
    assert [(d.digest, d.reason) for d in warm_live.doubt] == [(d.digest, d.reason) for d in cold_live.doubt]
    Layout.open(root).delete(["b"])
    assert _blob_names(root) == before, "an unreadable survivor keeps every blob"


@pytest.mark.parametrize("change", ["truncated", "grown", "not-json", "symlink", "missing"])
def test_a_changed_config_dates_its_image_as_without_the_cache(tmp_path, change) -> None:
    """du and ls take a config's created time from its record only while the blob is what was
    recorded (a regular file of that size): otherwise they read it, as without the cache."""
    root = tmp_path / "lay"
    a, _ = _two_images(root)
    _warm(root)
    assert any(k.startswith("C") for k in _records()), "the configs were recorded"
    config = json.loads((root / "blobs" / "sha256" / a["digest"][7:]).read_text())["config"]["digest"]
    path = root / "blobs" / "sha256" / config[7:]
    data = path.read_bytes()
    if change == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif change == "grown":
        assert b'"2024-01-01T00:00:00Z"' in data
        path.write_bytes(data.replace(b'"2024-01-01T00:00:00Z"', b'"2030-01-01T00:00:00.000Z"'))
    elif change == "not-json":
        path.write_bytes(b"\0" * (len(data) + 3))  # other content of the same size is not noticed (README)
    elif change == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(data)
        path.unlink()
        path.symlink_to(target)
    else:
        path.unlink()
    for command in (["du", "--format", "json", root], ["ls", "--format", "json", root]):
        warm = run_cli_process(*command)
        cold = run_cli_process("--no-cache", *command)
        assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), command
    images = json.loads(run_cli_process("du", "--format", "json", root).stdout)["images"]
    dated = {i["digest"]: i["created"] for i in images}
    assert dated[a["digest"]] == ("2030-01-01T00:00:00+00:00" if change == "grown" else None)


# -- damaged, foreign, poisoned caches -------------------------------------------------------------


def _remove_claim(data: bytes, digest: str, layer: str) -> bytes:
    """The chunk with the record of `digest` claiming no `layer` (leaves and body alike)."""
    records = _chunk_records(data)
    size, content_kind, leaves, body = records["M" + digest].split("\t")
    digests = leaves.split(",")
    at = digests.index(layer)
    body_list = json.loads(body)
    del body_list[0][at]
    body_list[3] -= 1
    del digests[at]
    records["M" + digest] = "\t".join([size, content_kind, ",".join(digests), json.dumps(body_list)])
    return _chunk_data(records)


@pytest.mark.parametrize("poison", ["edited-without-checksum", "wrong-size", "moved-to-another-layout",
                                    "bad-digest-in-body", "random-bytes"])
def test_a_poisoned_cache_never_deletes_a_reachable_blob(tmp_path, poison) -> None:
    """Rows claiming that image a does not use the layer it shares with b: rm of b must keep it."""
    root = tmp_path / "lay"
    a, b = _two_images(root)
    _warm(root)
    layer = a["shared"]

    def edit(layout: str, kind: str, data: bytes):
        if kind != "M":
            return data, None
        if poison == "edited-without-checksum":
            return _remove_claim(data, a["digest"], layer), None
        if poison == "wrong-size":
            records = _chunk_records(_remove_claim(data, a["digest"], layer))
            rest = records["M" + a["digest"]]
            assert rest.startswith(f"{a['size']}\t")
            records["M" + a["digest"]] = f"{a['size'] + 1}" + rest[len(str(a["size"])):]
            forged_bytes = _chunk_data(records)
            return forged_bytes, refcache._checksum(layout, kind, forged_bytes)
        if poison == "moved-to-another-layout":
            forged_bytes = _remove_claim(data, a["digest"], layer)
            return forged_bytes, refcache._checksum(layout + "-other", kind, forged_bytes)
        if poison == "bad-digest-in-body":
            # A non-leafy record (as an index's would be) whose child digest could build a path.
            records = _chunk_records(data)
            records["M" + a["digest"]] = (f"{a['size']}\t2\t*\t"
                                          + json.dumps([[[1, "sha256:../../../../etc/passwd", 1]], -1, 0, 0, None,
                                                        None, None]))
            forged_bytes = _chunk_data(records)
            return forged_bytes, refcache._checksum(layout, kind, forged_bytes)
        return os.urandom(len(data)), None

    _rewrite_chunks(edit)
    report = Layout.open(root).delete(["b"])
    remaining = _blob_names(root)
    assert layer[7:] in remaining, "the layer a still uses survives"
    assert a["digest"][7:] in remaining and a["own_layer"][7:] in remaining
    assert b["own_layer"][7:] not in remaining and b["digest"][7:] not in remaining, "b's own blobs go as usual"
    assert report.images and report.blobs_deleted == 3
    # The cache is sound again afterwards.
    assert Layout.open(root).list().rows == Layout.open(root, cache=False).list().rows


def test_a_consistent_forgery_is_believed_which_is_why_only_this_user_may_write_the_cache(tmp_path) -> None:
    """The limit of the checks above, shown: a record forged with a valid checksum and the right
    size is believed. Only a cache directory that nobody but this user can write is used."""
    root = tmp_path / "lay"
    a, b = _two_images(root)
    _warm(root)

    def forge(layout: str, kind: str, data: bytes):
        if kind != "M":
            return data, None
        forged = _remove_claim(data, a["digest"], a["shared"])
        return forged, refcache._checksum(layout, kind, forged)

    _rewrite_chunks(forge)
    entry_a = [Layout.open(root).index.entries[0].descriptor]
    assert a["shared"] not in live_set(Graph(LayoutStore(root)), entry_a)
    assert a["shared"] in live_set(Graph(LayoutStore(root), cache=False), entry_a)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "json-text", "zeroed-header"])
def test_a_damaged_cache_file_is_ignored_then_rebuilt(generate_module, tmp_path, monkeypatch, damage) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=20)
    _warm(root)
    path = _cache_file()
    data = path.read_bytes()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0 or True
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "json-text":
        path.write_text('{"not": "a database"}')
    else:
        path.write_bytes(b"\0" * 100 + data[100:])
    expected = _dry_rm_json(root, "img-000004", no_cache=True)
    assert _dry_rm_json(root, "img-000004") == expected
    listing = Layout.open(root).list()
    assert listing.rows == Layout.open(root, cache=False).list().rows
    # Rebuilt: now warm again.
    reads = _count_reads(monkeypatch)
    assert Layout.open(root).list().rows == listing.rows
    assert reads == []
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


@pytest.mark.parametrize("other", ["newer-format", "other-code", "foreign-schema", "foreign-view"])
def test_a_cache_of_another_version_is_ignored_then_rebuilt(generate_module, tmp_path, monkeypatch, other) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=10)
    _warm(root)
    path = _cache_file()
    con = sqlite3.connect(path)
    if other == "newer-format":
        con.execute("UPDATE meta SET value = '999' WHERE key = 'format'")
    elif other == "other-code":
        con.execute("UPDATE meta SET value = 'an older ocilayout' WHERE key = 'code'")
    elif other == "foreign-schema":
        con.execute("DROP TABLE chunks")
        con.execute("CREATE TABLE chunks (something TEXT)")
    else:
        con.execute("DROP TABLE chunks")
        con.execute("CREATE VIEW chunks AS SELECT 1 AS id")
    con.commit()
    con.close()
    reads = _count_reads(monkeypatch)
    rows = Layout.open(root).list().rows
    assert len(reads) >= 10, "nothing of the other version's was believed"
    assert rows == Layout.open(root, cache=False).list().rows
    del reads[:]
    assert Layout.open(root).list().rows == rows
    assert reads == [], "rebuilt for this version"


def test_sigkill_before_the_cache_commit_leaves_a_usable_cache(generate_module, tmp_path) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=40)
    result = subprocess.run(cli_command("ls", root), capture_output=True, timeout=60,
                            env={**os.environ, refcache.CRASH_ENV: "cache-before-commit"})
    assert result.returncode == -signal.SIGKILL
    assert not _records("M"), "the killed transaction left nothing"
    expected = _dry_rm_json(root, "img-000007", no_cache=True)
    assert _dry_rm_json(root, "img-000007") == expected
    assert _records("M"), "the next command filled it"
    assert _dry_rm_json(root, "img-000007") == expected


@pytest.mark.slow
def test_sigkill_at_random_moments_while_filling(generate_module, tmp_path) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=1500)
    expected = _dry_rm_json(root, "img-000700", no_cache=True)
    rng = random.Random(9)
    for _ in range(6):
        shutil.rmtree(refcache.cache_dir(), ignore_errors=True)
        os.makedirs(refcache.cache_dir(), mode=0o700)
        for delay in (rng.uniform(0.05, 0.5), rng.uniform(0.2, 0.9)):
            process = subprocess.Popen(cli_command("ls", root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        assert _dry_rm_json(root, "img-000700") == expected
        assert _dry_rm_json(root, "img-000700") == expected
        con = sqlite3.connect(_cache_file())
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        con.close()


def test_two_processes_filling_at_once(generate_module, tmp_path) -> None:
    one = _bench(generate_module, tmp_path / "one", images=300, seed=1)
    two = _bench(generate_module, tmp_path / "two", images=300, seed=2)
    procs = [subprocess.Popen(cli_command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for args in (("ls", one), ("ls", one), ("du", one), ("ls", two), ("rm", "--dry-run", two, "img-000001"))]
    for process in procs:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    records = _records("M")
    for root in (one, two):
        for entry in LayoutStore(root).read_index().entries:
            assert "M" + entry.digest in records
    for root in (one, two):
        assert _dry_rm_json(root, "img-000123") == _dry_rm_json(root, "img-000123", no_cache=True)
    con = sqlite3.connect(_cache_file())
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


# -- where it may live -----------------------------------------------------------------------------


def _tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for path in [root, *root.rglob("*")]:
        st = os.lstat(path)
        out[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def test_a_read_only_layout_is_never_written(generate_module, tmp_path) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=10)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        before = _tree_state(root)
        for args in (("ls", root), ("ls", root), ("du", root), ("rm", "--dry-run", root, "img-000002"),
                     ("tree", root), ("referrers", root, "img-000001")):
            result = run_cli_process(*args)
            assert result.returncode == 0, result.stderr
        assert _tree_state(root) == before
        assert _records("M"), "the cache lives outside the layout"
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.parametrize("where", ["under-a-file", "world-writable", "group-writable", "other-owner", "symlinked-file"])
def test_an_unusable_cache_directory_never_fails_a_command(generate_module, tmp_path, monkeypatch, where) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=8)
    directory = tmp_path / "cachedir"
    if where == "under-a-file":
        (tmp_path / "a-file").write_text("x")
        directory = tmp_path / "a-file" / "cache"
    elif where in ("world-writable", "group-writable"):
        directory.mkdir()
        directory.chmod(0o777 if where == "world-writable" else 0o770)
    elif where == "other-owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the directory away")
        directory.mkdir(mode=0o700)
        os.chown(directory, 65534, 65534)
    else:
        directory.mkdir(mode=0o700)
        (tmp_path / "target.sqlite").write_bytes(b"")
        (directory / refcache.FILE_NAME).symlink_to(tmp_path / "target.sqlite")
    monkeypatch.setenv(refcache.DIR_ENV, str(directory))
    expected = _dry_rm_json(root, "img-000003", no_cache=True)
    result = subprocess.run(cli_command("rm", "--dry-run", "--format", "json", root, "img-000003"),
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, refcache.DEBUG_ENV: "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
    assert "debug: reference cache:" in result.stderr
    assert run_cli_process("ls", root).returncode == 0
    if where != "symlinked-file":
        assert not (directory / refcache.FILE_NAME).exists()
    else:
        assert (tmp_path / "target.sqlite").read_bytes() == b""


# -- bounds ----------------------------------------------------------------------------------------


def test_the_cache_is_bounded(generate_module, tmp_path, monkeypatch) -> None:
    roots = [_bench(generate_module, tmp_path / f"lay{i}", images=20, seed=i) for i in range(5)]
    Layout.open(roots[0]).list()
    one = os.path.getsize(_cache_file())
    con = sqlite3.connect(_cache_file())
    per_layout = con.execute("SELECT SUM(bytes) FROM chunks").fetchone()[0]
    con.close()
    monkeypatch.setenv(refcache.MAX_BYTES_ENV, str(int(per_layout * 2.5)))
    for root in roots[1:]:
        Layout.open(root).list()
    con = sqlite3.connect(_cache_file())
    total, layouts = con.execute("SELECT SUM(bytes), COUNT(DISTINCT layout) FROM chunks").fetchone()
    kept = {row[0] for row in con.execute("SELECT DISTINCT layout FROM chunks")}
    con.close()
    assert total <= per_layout * 2.5 and layouts == 2
    assert kept == {os.path.realpath(roots[3]), os.path.realpath(roots[4])}, "the least recently used went first"
    assert os.path.getsize(_cache_file()) < one * 6
    con = sqlite3.connect(_cache_file())
    marked = {row[0] for row in con.execute("SELECT DISTINCT layout FROM marks")}
    con.close()
    assert marked == kept, "an evicted layout's marks go with it"


def test_the_lender_is_the_layout_that_holds_most_of_the_copy(generate_module, tmp_path) -> None:
    """A copy of `a` borrows from `a`, not from `b` (more recently used, sharing only its base
    layers), nor from `a2`, a layout holding a few of a's images, used after `a`."""
    a = _bench(generate_module, tmp_path / "a", images=80, seed=21)
    b = _bench(generate_module, tmp_path / "b", images=80, seed=22)
    a2 = _copy(a, tmp_path / "a2")
    index = json.loads((a2 / "index.json").read_text())
    index["manifests"] = index["manifests"][:8]
    (a2 / "index.json").write_text(json.dumps(index))
    for root in (a, a2, b):
        _warm(root)
        refcache.finish()
    copy = _copy(a, tmp_path / "copy")
    refcache.notes.clear()
    Layout.open(copy).list()
    assert f"{os.path.realpath(copy)}: borrowed" in " ".join(refcache.notes)
    assert any(n.endswith(f"records of {os.path.realpath(a)}") for n in refcache.notes), refcache.notes


def test_chunks_are_merged_and_records_of_deleted_images_dropped(tmp_path) -> None:
    root = tmp_path / "lay"
    _new_layout(root)
    entries: list[tuple[str | None, dict]] = []
    for i in range(refcache.MAX_CHUNKS_PER_LAYOUT + 3):
        entries.append((f"img{i}", _image(root, f"img{i}")))
        _write_index(root, entries)
        Layout.open(root).list()  # learns the new image: one more chunk
    con = sqlite3.connect(_cache_file())
    chunks = con.execute("SELECT COUNT(*) FROM chunks WHERE kind = 'M'").fetchone()[0]
    con.close()
    assert chunks <= refcache.MAX_CHUNKS_PER_LAYOUT + 1
    assert {"M" + d["digest"] for _, d in entries} <= set(_records("M"))
    gone = entries[0][1]["digest"]
    Layout.open(root).delete(["img0"])
    for _ in range(refcache.MAX_CHUNKS_PER_LAYOUT + 2):  # more chunks until a merge
        entries.append((f"more{_}", _image(root, f"more{_}")))
        _write_index(root, entries[1:])
        Layout.open(root).list()
    assert "M" + gone not in _records("M")
    assert "M" + entries[-1][1]["digest"] in _records("M")


# -- the fork --------------------------------------------------------------------------------------


def _count_forks(monkeypatch) -> list[int]:
    """The pids of the children os.fork makes from now on."""
    forks: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting_fork)
    return forks


def test_records_learnt_by_the_forked_child_are_written_by_the_parent(generate_module, tmp_path, monkeypatch) -> None:
    root = _bench(generate_module, tmp_path / "lay", images=60, seed=4)
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
    forks = _count_forks(monkeypatch)
    store = LayoutStore(root)
    roots = [e.descriptor for e in store.read_index().entries]
    cold = live_set(Graph(store), roots)
    assert forks
    refcache.finish()
    records = _records("M")
    assert all("M" + r.digest in records for r in roots), "both halves' manifests were recorded"
    reads = _count_reads(monkeypatch)
    warm = live_set(Graph(LayoutStore(root)), roots)
    assert len(forks) == 2 and reads == []
    assert warm.reached == cold.reached and warm.doubt == cold.doubt and warm.missing == cold.missing


def test_a_warm_live_set_forks_only_when_big(generate_module, tmp_path, monkeypatch) -> None:
    """Recorded roots cost a stat each: a fork pays off only from WARM_FORK_FACTOR times as many
    roots as a cold walk needs; the answer is the same either way."""
    root = _bench(generate_module, tmp_path / "lay", images=30, seed=4)
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
    forks = _count_forks(monkeypatch)
    roots = [e.descriptor for e in LayoutStore(root).read_index().entries]
    cold = live_set(Graph(LayoutStore(root)), roots)
    refcache.finish()
    assert len(forks) == 1, "a cold walk of 30 roots forks"
    warm = live_set(Graph(LayoutStore(root)), roots)
    assert len(forks) == 1, "30 recorded roots are walked here"
    monkeypatch.setattr(graph_module, "WARM_FORK_FACTOR", 10)
    again = live_set(Graph(LayoutStore(root)), roots)
    assert len(forks) == 2, "20 or more recorded roots fork"
    assert warm.reached == cold.reached == again.reached


@pytest.mark.parametrize("command", ["list", "du"])
def test_what_a_forked_ls_or_du_child_reads_is_cached_too(generate_module, tmp_path, monkeypatch, command) -> None:
    """ls and du summarise half the images in a forked child: its records come back to the
    parent, so the next command runs warm on both halves."""
    root = _bench(generate_module, tmp_path / "lay", images=60, seed=5)
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2)
    getattr(Layout.open(root), command)()
    refcache.finish()
    records = _records("M")
    roots = [e.descriptor for e in LayoutStore(root).read_index().entries]
    assert all("M" + r.digest in records for r in roots), "both halves' manifests were recorded"


# -- a layout at a new path borrows ---------------------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=os.link)  # like `cp -al`
    shutil.copy2(src / "index.json", dst / "index.json.new")
    os.replace(dst / "index.json.new", dst / "index.json")
    return dst


def _layouts_filed() -> set[str]:
    con = sqlite3.connect(_cache_file())
    try:
        return {layout for (layout,) in con.execute("SELECT DISTINCT layout FROM chunks")}
    finally:
        con.close()


@pytest.mark.parametrize("fork", [False, True])
def test_a_copy_at_a_new_path_borrows_the_records_and_files_them(generate_module, tmp_path, monkeypatch, fork):
    """A `cp -al` copy reads nothing its original's commands read; the records it used are
    filed under it, so it stays warm once the original's are evicted."""
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2 if fork else 10**9)
    first = _bench(generate_module, tmp_path / "first", images=40, seed=6)
    _warm(first)
    refcache.finish()
    copy = _copy(first, tmp_path / "copy")
    reads = _count_reads(monkeypatch)
    warm = Layout.open(copy).list()
    refcache.finish()
    assert reads == [], "manifests and configs came from the original's records"
    assert warm.rows == Layout.open(copy, cache=False).list().rows
    assert os.path.realpath(copy) in _layouts_filed()
    con = sqlite3.connect(_cache_file())
    filed: dict[str, str] = {}
    for (data,) in con.execute("SELECT data FROM chunks WHERE layout = ?", (os.path.realpath(copy),)):
        filed.update(_chunk_records(data))
    con.execute("DELETE FROM chunks WHERE layout = ?", (os.path.realpath(first),))
    con.commit()
    con.close()
    roots = [e.descriptor for e in LayoutStore(copy).read_index().entries]
    assert all("M" + r.digest in filed for r in roots), "both halves' borrowed records were filed"
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 10**9)  # a child's reads would not be counted
    reads.clear()
    report = Layout.open(copy).delete(["img-000007"], dry_run=True)
    assert reads == [] and report.images


@pytest.mark.parametrize("command", ["rm", "gc", "du", "ls", "prune"])
def test_any_first_command_on_a_copy_borrows(generate_module, tmp_path, monkeypatch, command) -> None:
    """Whichever command comes first on a copy (some look a blob up before walking the
    entries), it reads no manifest the original's commands read."""
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 10**9)  # reads counted in this process
    first = _bench(generate_module, tmp_path / "first", images=60, seed=11)
    _warm(first)
    refcache.finish()
    copy = _copy(first, tmp_path / "copy")
    manifests = {str(e.descriptor.digest) for e in LayoutStore(copy).read_index().entries}
    reads = _count_reads(monkeypatch)
    layout = Layout.open(copy)
    if command == "rm":
        layout.delete(["img-000009"])
    elif command == "gc":
        layout.gc(grace=0)
    elif command == "du":
        layout.du()
    elif command == "ls":
        layout.list()
    else:
        layout.prune(keep_last=1)
    assert not manifests & set(reads), f"{command} read manifests the original's records describe"


def test_a_lender_whose_chunk_fails_its_checksum_lends_nothing(tmp_path, monkeypatch) -> None:
    first = tmp_path / "first"
    a, b = _two_images(first)
    _warm(first)
    refcache.finish()

    def edit(layout: str, kind: str, data: bytes):
        return (_remove_claim(data, a["digest"], a["shared"]), None) if kind == "M" else (data, None)

    _rewrite_chunks(edit)
    copy = _copy(first, tmp_path / "copy")
    reads = _count_reads(monkeypatch)
    report = Layout.open(copy).delete(["b"])
    assert a["digest"] in reads, "a's manifest was read: the forged record was not believed"
    assert a["shared"][7:] in _blob_names(copy), "the layer a still uses survives"
    assert report.blobs_deleted == 3


def test_a_borrowed_record_is_stat_checked_in_the_borrower(tmp_path) -> None:
    """The copy's manifest of a is truncated (a real file, not a link): the record the original
    lends does not fit it, the blob is read, and the doubt keeps every blob, as uncached."""
    first = tmp_path / "first"
    a, b = _two_images(first)
    _warm(first)
    refcache.finish()
    copy = _copy(first, tmp_path / "copy")
    path = copy / "blobs" / "sha256" / a["digest"][7:]
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])
    before = _blob_names(copy)
    Layout.open(copy).delete(["b"])
    assert _blob_names(copy) == before, "an unreadable survivor keeps every blob"


def test_a_layout_with_records_of_its_own_does_not_borrow(tmp_path, monkeypatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    a, b = _two_images(first)
    _warm(first)
    _new_layout(second)
    c = _image(second, "c")
    _write_index(second, [("c", c)])
    _warm(second)
    refcache.finish()
    for name in os.listdir(first / "blobs" / "sha256"):  # second now also holds a and b
        if not (second / "blobs" / "sha256" / name).exists():
            os.link(first / "blobs" / "sha256" / name, second / "blobs" / "sha256" / name)
    _write_index(second, [("c", c), ("a", a), ("b", b)])
    reads = _count_reads(monkeypatch)
    refcache.notes.clear()
    Layout.open(second).list()
    assert a["digest"] in reads and b["digest"] in reads, "learnt, not borrowed"
    assert not any("borrowed" in n for n in refcache.notes)


# -- the warm fast paths -----------------------------------------------------------------------


def _roughen(root: Path) -> dict[str, str]:
    """Make a bench layout less regular: a truncated image manifest, a missing one, a missing
    layer, a layer also listed as an entry typed as a manifest, a name for a nested manifest.
    Returns what was done to which digest."""
    store = LayoutStore(root)
    index = json.loads((root / "index.json").read_text())
    images = [m for m in index["manifests"] if m["mediaType"] == OCI_MANIFEST]
    blobs = root / "blobs" / "sha256"
    done = {}
    victim = images[1]["digest"]
    data = (blobs / victim[7:]).read_bytes()
    (blobs / victim[7:]).write_bytes(data[:-7])
    done["truncated"] = victim
    gone = images[2]["digest"]
    os.unlink(blobs / gone[7:])
    done["missing-manifest"] = gone
    manifest = json.loads((blobs / images[3]["digest"][7:]).read_text())
    layer = manifest["layers"][-1]["digest"]
    os.unlink(blobs / layer[7:])
    done["missing-layer"] = layer
    other = json.loads((blobs / images[4]["digest"][7:]).read_text())["layers"][-1]
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": other["digest"], "size": other["size"]})
    done["layer-as-entry"] = other["digest"]
    nested = [m for m in index["manifests"] if m["mediaType"] == OCI_INDEX][0]
    child = json.loads((blobs / nested["digest"][7:]).read_text())["manifests"][0]
    index["manifests"].append({**child, "annotations": {REF_NAME: "nested-child"}})
    (root / "index.json").write_text(json.dumps(index))
    assert store.read_index()
    return done


@pytest.mark.parametrize("allow_sparse", [False, True])
def test_the_warm_live_set_fast_path_agrees_with_the_walk(generate_module, tmp_path, monkeypatch, allow_sparse):
    """Image-manifest entries with leaf-only records skip the walk (`_take_recorded_images`):
    most of them do, and the live set, doubt and missing blobs are the walk's, rough edges
    included."""
    root = _bench(generate_module, tmp_path / "lay", images=50, seed=7)
    _roughen(root)
    roots = [e.descriptor for e in LayoutStore(root).read_index().entries]
    _warm(root)
    refcache.finish()
    walked: list[int] = []
    real_walk = Graph.walk

    def counting_walk(self, roots_, **kwargs):
        roots_ = list(roots_)
        walked.append(len(roots_))
        return real_walk(self, roots_, **kwargs)

    monkeypatch.setattr(Graph, "walk", counting_walk)
    cold = graph_module._walk_live(Graph(LayoutStore(root), cache=False), roots, allow_sparse)
    walked.clear()
    warm = graph_module._walk_live(Graph(LayoutStore(root)), roots, allow_sparse)
    assert walked and walked[0] < len(roots) // 2, "most entries took the fast path"
    assert warm.reached == cold.reached
    assert warm.doubt == cold.doubt and warm.missing == cold.missing
    assert not warm.certain


def test_the_warm_listing_fast_path_agrees_with_the_walk(generate_module, tmp_path, monkeypatch):
    from ocilayout import listing

    root = _bench(generate_module, tmp_path / "lay", images=50, seed=8)
    _roughen(root)
    cold = Layout.open(root, cache=False).list()
    _warm(root)
    refcache.finish()
    taken = []
    real = listing._summarise_recorded

    def counting(descriptor, graph, present):
        summary = real(descriptor, graph, present)
        taken.append(summary is not None)
        return summary

    monkeypatch.setattr(listing, "_summarise_recorded", counting)
    warm = Layout.open(root).list()
    assert sum(taken) > len(taken) // 2, "most rows came from the records"
    assert warm.rows == cold.rows
    assert warm.warnings == cold.warnings


@pytest.mark.parametrize("created", [True, False])
def test_the_warm_du_fast_path_agrees_with_the_walk(generate_module, tmp_path, monkeypatch, created):
    root = _bench(generate_module, tmp_path / "lay", images=50, seed=9)
    _roughen(root)
    cold = Layout.open(root, cache=False).du(created=created)
    _warm(root)
    refcache.finish()
    taken = []
    real = Graph.recorded_image

    def counting(self, descriptor):
        image = real(self, descriptor)
        taken.append(image is not None)
        return image

    monkeypatch.setattr(Graph, "recorded_image", counting)
    warm = Layout.open(root).du(created=created)
    assert sum(taken) > len(taken) // 2, "most images came from the records"
    assert warm.images == cold.images
    assert warm.totals == cold.totals and warm.warnings == cold.warnings


_FORGED_LEAVES = ["{a},{b},sha256:../../../../etc/passwd", "{a},{b},{c},", ",{a},{b},{c}", "{a},,{c}", "{A},{b},{c}",
                  "{a}x,{b},{c}"]


# "{a}" (digests of the grammar, only fewer) is refused where the body is decoded (ls, du); a live
# set takes the leaf list without its body: a consistent forgery, believed by design
# (test_a_consistent_forgery_is_believed_which_is_why_only_this_user_may_write_the_cache).
@pytest.mark.parametrize(("leaves", "command"), [(leaves, command) for leaves in _FORGED_LEAVES
                                                 for command in ("du", "gc", "ls", "rm")]
                         + [("{a}", "du"), ("{a}", "ls")])
def test_a_forged_leaf_list_is_never_believed(tmp_path, leaves, command) -> None:
    """A checksummed record whose leaf list is no list of grammar digests, or not the body's
    children: every fast path (`recorded_image` for ls and du, the walk's leaf sink, the live
    set's `_take_recorded_images`) refuses it and the manifest is read, so each command, run
    first on the forged cache, answers as a cold run: gc and rm delete nothing a keeps."""
    root = tmp_path / "lay"
    a, _ = _two_images(root)

    def run(cache: bool):
        layout = Layout.open(root, cache=cache)
        if command == "du":
            report = layout.du(grace=0)
            return report.images, report.totals
        if command == "gc":
            report = layout.gc(grace=0, dry_run=True)
            return report.blobs_removed, report.bytes_freed
        if command == "rm":
            report = layout.delete(["b"], dry_run=True)
            return report.blobs_deleted, report.bytes_freed
        return layout.list().rows

    cold = run(False)
    _warm(root)
    refcache.finish()
    manifest = json.loads((root / "blobs" / "sha256" / a["digest"][7:]).read_text())
    real = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    text = leaves.format(a=real[0], b=real[1], c=real[2], A=real[0].upper())

    def edit(layout: str, kind: str, data: bytes):
        records = _chunk_records(data)
        if kind != "M" or "M" + a["digest"] not in records:
            return data, None
        size, content_kind, _, body = records["M" + a["digest"]].split("\t")
        records["M" + a["digest"]] = "\t".join([size, content_kind, text, body])
        forged = _chunk_data(records)
        return forged, refcache._checksum(layout, kind, forged)

    _rewrite_chunks(edit)
    store = LayoutStore(root)
    entry = next(e for e in store.read_index().entries if e.name == "a")
    assert Graph(store).recorded_image(entry.descriptor) is None
    assert run(True) == cold


_NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search"]


def _run_bound_by_file_modes():
    """A CLI runner for which a chmod 000 file is unreadable: as is when not root, else root
    without the capabilities that override file modes (util-linux `setpriv`). Skips when
    neither can be had."""
    if os.geteuid() != 0:
        return run_cli_process
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and util-linux setpriv is missing: cannot drop CAP_DAC_OVERRIDE")
    probe = subprocess.run([*_NO_OVERRIDE, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and setpriv cannot drop CAP_DAC_OVERRIDE: {probe.stderr.strip()!r}")

    def run(*args):
        return subprocess.run([*_NO_OVERRIDE, *cli_command(*args)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return run


@pytest.mark.parametrize("which", ["survivor-manifest", "config"])
def test_a_blob_this_process_may_not_read_is_not_believed_from_its_record(which, tmp_path) -> None:
    """A manifest or config that is there with its recorded size but that this process may not
    read (chmod 000) is unreadable, warm as cold: rm and gc keep every blob (doubt), ls and
    prune answer as without the cache (prune keeps the image it cannot date)."""
    root = tmp_path / "lay"
    a, b = _two_images(root)
    run = _run_bound_by_file_modes()
    assert run("ls", root).returncode == 0  # fills the cache: both manifests and configs
    assert any(k.startswith("C") for k in _records()), "the configs were recorded"
    if which == "survivor-manifest":
        target = b["digest"]
    else:
        target = json.loads((root / "blobs" / "sha256" / a["digest"][7:]).read_text())["config"]["digest"]
    (root / "blobs" / "sha256" / target[7:]).chmod(0)
    for command in (["ls", "--format", "json", root], ["rm", "--dry-run", "--format", "json", root, "a"],
                    ["gc", "--dry-run", "--grace", "0", "--format", "json", root], ["du", "--format", "json", root],
                    ["prune", "--dry-run", "--keep-last", "0", "--format", "json", root]):
        warm = run(*command)
        cold = run("--no-cache", *command)
        assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), command
    if which == "survivor-manifest":
        removal = json.loads(run("rm", "--dry-run", "--format", "json", root, "a").stdout)
        assert removal["blobs_deleted"] == 0 and removal["warnings"], "doubt: nothing goes"
    else:
        pruned = json.loads(run("prune", "--dry-run", "--keep-last", "0", "--format", "json", root).stdout)
        assert "a" in json.dumps(pruned["undated"]), pruned


# -- cold and warm agree ---------------------------------------------------------------------------

TYPES = [OCI_MANIFEST, OCI_INDEX, None, "application/x-unknown", OCI_LAYER, OCI_CONFIG,
         "application/vnd.docker.image.rootfs.diff.tar"]
DOC_KINDS = ["layers", "manifests", "blobs", "none", "lenient", "broken", "binary", "config"]


@st.composite
def worlds(draw):
    docs = []
    for i in range(draw(st.integers(2, 9))):
        kids = []
        for _ in range(draw(st.integers(0, 3))):
            kids.append((draw(st.sampled_from(TYPES)), draw(st.integers(-1, i - 1))))
        docs.append((draw(st.sampled_from(DOC_KINDS)), kids, draw(st.booleans()), draw(st.booleans())))
    entries = draw(st.lists(st.tuples(st.integers(0, len(docs) - 1), st.sampled_from(TYPES[:4])),
                            min_size=1, max_size=5))
    victim = draw(st.integers(0, len(entries) - 1))
    return docs, entries, victim, draw(st.booleans()), draw(st.sampled_from(["list", "rm", "gc", "du", "prune"]))


def _build_world(root: Path, spec) -> None:
    docs, entries, _, _, _ = spec
    _new_layout(root)
    made = []
    for i, (kind, kids, subject, missing) in enumerate(docs):
        refs = []
        for k, (media_type, target) in enumerate(kids):
            child = _write_blob(root, b"\x1f\x8b leaf %d %d" % (i, k)) if target < 0 else made[target]
            refs.append({**({"mediaType": media_type} if media_type else {}), "digest": child["digest"],
                         "size": child["size"], "platform": {"os": "linux", "architecture": f"a{k}"}})
        document: dict = {"schemaVersion": 2, "annotations": {"n": str(i)}}
        if kind == "config":
            document = {"created": f"2024-01-0{1 + i % 9}T00:00:00Z", "os": "linux", "architecture": "amd64",
                        "config": {"Labels": {"i": str(i)}}}
        elif kind in ("layers", "manifests", "blobs"):
            document[kind] = refs
        elif kind == "lenient":
            document["layers"] = refs + [{"mediaType": OCI_LAYER, "digest": "sha256:" + "4" * 64, "size": -1}]
        if subject and made:
            document["subject"] = {"mediaType": OCI_MANIFEST, **made[0]}
        if kind == "broken":
            data = json.dumps(document).encode()[:-1]
        elif kind == "binary":
            data = b"\x00\x01 binary %d" % i
        else:
            data = json.dumps(document).encode()
        desc = _write_blob(root, data)
        if missing and i % 3 == 2:
            os.unlink(root / "blobs" / "sha256" / desc["digest"][7:])
        made.append(desc)
    index = []
    for n, (doc, media_type) in enumerate(entries):
        item = {**made[doc], **({"mediaType": media_type} if media_type else {})}
        if n % 2 == 0:
            item["annotations"] = {REF_NAME: f"e{n}", "org.opencontainers.image.created": "2024-02-01T00:00:00Z"}
        index.append(item)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": index}))
    for path in (root / "blobs" / "sha256").iterdir():
        os.utime(path, (1, 1))


def _outcome(root: Path, op: str, victim: int, cache: bool):
    layout = Layout.open(root, cache=cache)
    roots = [e.descriptor for e in layout.index.entries]
    store = LayoutStore(root)
    store.cache = cache
    live = live_set(Graph(store), roots)
    refcache.finish()
    out: dict = {"live": (live.reached, [(d.digest, d.reason, d.detail) for d in live.doubt], live.missing)}
    if op == "list":
        listing = Layout.open(root, cache=cache).list()
        tree = Layout.open(root, cache=cache).tree()
        out["op"] = (listing.rows, listing.warnings, tree.roots, tree.warnings)
    elif op == "rm":
        entry = layout.index.entries[victim]
        out["op"] = Layout.open(root, cache=cache).delete([str(entry.digest)], force=True)
    elif op == "gc":
        out["op"] = Layout.open(root, cache=cache).gc(grace=0)
        out["op"].path = None
    elif op == "du":
        out["op"] = Layout.open(root, cache=cache).du()
    else:
        out["op"] = Layout.open(root, cache=cache).prune(keep_last=0, dangling=True, now=None)
    refcache.finish()
    out["files"] = _blob_names(root)
    out["index"] = (root / "index.json").read_bytes()
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(spec=worlds())
def test_cold_and_warm_agree(tmp_path_factory, spec) -> None:
    """Live set, ls/tree, rm, gc, du and prune reports and the files left: identical without the
    cache, filling it, and on a warm one (forked or not)."""
    _, _, victim, fork, op = spec
    base = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2 if fork else 10**9)
        outcomes = []
        for mode in ("off", "filling", "warm", "borrowing"):
            root = base / mode
            _build_world(root, spec)
            if mode == "warm":
                _outcome(root, "list", victim, True)  # fill it (reads and lists only)
            # "borrowing": a layout with the same digests at a new path, whose records are the
            # warm one's (written by its listing and its operation).
            outcomes.append(_outcome(root, op, victim, mode != "off"))
    off, filling, warm, borrowing = outcomes
    for outcome in (filling, warm, borrowing):
        assert outcome["live"] == off["live"]
        assert outcome["files"] == off["files"]
        assert outcome["index"] == off["index"]
        assert _normalised(outcome["op"], base) == _normalised(off["op"], base)


def _normalised(value, base: Path):
    """A report with the copies' directory names made equal."""
    text = repr(value)
    for mode in ("off", "filling", "warm", "borrowing"):
        text = text.replace(str(base / mode), "ROOT")
    return text


# -- records are only ever decoded, never trusted blindly -----------------------------------------


@settings(max_examples=300, deadline=None)
@given(line=st.one_of(st.text(max_size=200), st.builds(
    lambda size, kind, leaves, body: f"{size}\t{kind}\t{leaves}\t{body}",
    st.text("0123456789", max_size=20), st.sampled_from(["0", "1", "2", "3", "9", ""]),
    st.sampled_from(["*", "", "sha256:" + "b" * 64, "x,y"]),
    st.recursive(st.none() | st.integers(-3, 10**20) | st.text(max_size=10),
                 lambda inner: st.lists(inner, max_size=8), max_leaves=30).map(json.dumps))))
def test_malformed_records_decode_to_nothing(line) -> None:
    split = refcache.split_manifest(line)
    if split is not None:
        _, _, leaves, body = split
        try:
            children, config, _, subject, annotations, _ = refcache.decode_manifest(body, leaves)
        except ValueError:
            pass
        else:
            for child in (*children, *([subject] if subject else [])):
                assert refcache.FAST_DIGEST.fullmatch(child.digest)
    refcache.decode_config(line)


def test_records_learnt_by_threads_keep_their_own_rest(tmp_path) -> None:
    """Threads sharing one layout's records: no key is ever written with another record's rest."""
    import threading

    facts = refcache.attach(tmp_path, lambda digest: None)
    assert facts is not None
    facts.load("M")

    def learn(first: int) -> None:
        for i in range(first, first + 5000):
            facts.add(f"Msha256:{hashlib.sha256(b'%d' % i).hexdigest()}", f"{i}\t0\t\t[[],-1,0,0,null,null,null]")

    threads = [threading.Thread(target=learn, args=(k * 5000,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refcache.finish()
    records = _records("M")
    assert len(records) == 40000
    for i in range(40000):
        assert records[f"Msha256:{hashlib.sha256(b'%d' % i).hexdigest()}"].startswith(f"{i}\t")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_a_record_body_decodes_as_json_loads_does(value) -> None:
    body = refcache._ENCODE(value)
    assert refcache._decode(body) == json.loads(body)


@given(st.text(max_size=30))
def test_a_record_body_that_json_loads_refuses_is_refused(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            refcache._decode(text)
        return
    try:
        assert refcache._decode(text) == expected or expected != expected
    except ValueError:
        assert text != text.strip()  # only what our encoder never writes: surrounding whitespace


@given(
    st.one_of(st.none(), st.text(max_size=8)),
    st.one_of(st.none(), st.text(max_size=8)),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
)
def test_a_config_record_round_trips(created, os_, labels) -> None:
    rest = refcache.encode_config(402, created, os_, "amd64", None, labels)
    assert refcache.decode_config(rest) == (402, created, os_, "amd64", None, labels)


_CONFIG_PIECES = st.sampled_from(
    ['"2024-01-01T00:00:00Z"', "null", '""', '"a\\"b"', '"\x01"', '"\u00e9"', '"\\u00e9"', "1", "{}", '{"a":"b"}',
     '{"a":"b","a":"c"}', '{"a":1}', '{"a":null}', "[]", ' "x"', '"x" ', "{ }", '{"\x7f":""}']
)


@settings(max_examples=500, deadline=None)
@given(
    size=st.sampled_from(["402", "0", "", "-1", "1" * 18, "1" * 19, "4 "]),  # records load as ASCII
    pieces=st.lists(_CONFIG_PIECES, min_size=3, max_size=6),
    encoded=st.one_of(st.none(), st.tuples(st.one_of(st.none(), st.text(max_size=8)),
                                           st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3))),
)
def test_a_config_records_created_time_is_what_its_decode_gives(size, pieces, encoded) -> None:
    """`config_created` matches the usual record with a pattern: it must answer exactly as
    `decode_config` does, refusing what that refuses."""
    if encoded is not None:
        rest = refcache.encode_config(402, encoded[0], "linux", "amd64", None, encoded[1])
    else:
        rest = f"{size}\t[{','.join(pieces)}]"
    record = refcache.decode_config(rest)
    assert refcache.config_created(rest) == (None if record is None else record[:2])


def test_the_usual_config_record_takes_the_pattern() -> None:
    rest = refcache.encode_config(402, "2024-01-01T00:00:02Z", "linux", "amd64", None, {"a": "b", "c": "d"})
    assert refcache._CONFIG_SHAPE.fullmatch(rest) is not None
    assert refcache.config_created(rest) == (402, "2024-01-01T00:00:02Z")


@pytest.mark.parametrize(
    "body",
    ['[1,"linux","amd64",null,null]', '["t","linux","amd64",null,{"a":1}]', '["t","linux"]', '["t",null,null,null,[]]'],
)
def test_a_malformed_config_record_is_refused(body: str) -> None:
    assert refcache.decode_config("402\t" + body) is None
