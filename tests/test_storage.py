"""LayoutStore: layout files, blob lookup order, refusing non-regular files, size caps.

Most tests run on pyfakefs (`fs`); the FIFO test needs the real kernel (an open() that
could block forever) and uses tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from ocilayout.digest import Digest, parse_digest
from ocilayout.errors import CorruptLayoutError, NotFoundError
from ocilayout.storage import LayoutStore, Prefetch

ROOT = Path("/layout")
SHARED = Path("/shared-blobs")
INDEX = {"schemaVersion": 2, "manifests": []}


def digest_of(data: bytes, alg: str = "sha256") -> Digest:
    return parse_digest(f"{alg}:{hashlib.new(alg, data).hexdigest()}")


def make_layout(fs, root: Path = ROOT, *, layout: bytes | None = b'{"imageLayoutVersion":"1.0.0"}',
                index: bytes | None = None) -> LayoutStore:
    if layout is not None:
        fs.create_file(root / "oci-layout", contents=layout)
    fs.create_file(root / "index.json", contents=index if index is not None else json.dumps(INDEX).encode())
    fs.create_dir(root / "blobs" / "sha256")
    return LayoutStore(root)


def put(fs, base: Path, data: bytes, alg: str = "sha256") -> Digest:
    digest = digest_of(data, alg)
    fs.create_file(base / digest.algorithm / digest.encoded, contents=data)
    return digest


# -- oci-layout and index.json ---------------------------------------------------------


def test_valid_layout_file(fs) -> None:
    make_layout(fs).check_layout_file()


def test_pretty_printed_layout_file(fs) -> None:
    make_layout(fs, layout=b'{\n    "imageLayoutVersion": "1.0.0"\n}\n').check_layout_file()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "missing oci-layout"),
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b"[]", "imageLayoutVersion missing"),
        (b"{}", "imageLayoutVersion missing"),
        (b'{"imageLayoutVersion":1}', "imageLayoutVersion missing"),
        (b'{"imageLayoutVersion":"9.9.9"}', "unsupported imageLayoutVersion '9.9.9'"),
        (b'{"imageLayoutVersion":"1.0.0","imageLayoutVersion":"1.0.0"}', "duplicate key"),
    ],
)
def test_bad_layout_file(fs, content: bytes | None, message: str) -> None:
    store = make_layout(fs, layout=content)
    with pytest.raises(CorruptLayoutError, match=message) as info:
        store.check_layout_file()
    assert str(ROOT / "oci-layout") in str(info.value)


def test_layout_file_that_is_a_directory(fs) -> None:
    store = make_layout(fs, layout=None)
    fs.create_dir(ROOT / "oci-layout")
    with pytest.raises(CorruptLayoutError, match="oci-layout"):
        store.check_layout_file()


def test_layout_file_that_is_a_symlink(fs) -> None:
    store = make_layout(fs, layout=None)
    fs.create_file("/elsewhere", contents=b'{"imageLayoutVersion":"1.0.0"}')
    fs.create_symlink(ROOT / "oci-layout", "/elsewhere")
    with pytest.raises(CorruptLayoutError, match="symlink"):
        store.check_layout_file()


def test_read_index(fs) -> None:
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "m", "digest": "sha256:" + "a" * 64, "size": 3}]}
    store = make_layout(fs, index=json.dumps(index).encode())
    parsed = store.read_index()
    assert [str(e.digest) for e in parsed.entries] == ["sha256:" + "a" * 64]
    assert store.read_index_bytes() == json.dumps(index).encode()


def test_missing_index_names_file(fs) -> None:
    store = make_layout(fs)
    os.unlink(ROOT / "index.json")
    with pytest.raises(CorruptLayoutError, match=f"^{ROOT / 'index.json'}: missing index.json"):
        store.read_index()


def test_corrupt_index_names_file(fs) -> None:
    store = make_layout(fs, index=b"{nope")
    with pytest.raises(CorruptLayoutError, match=f"^{ROOT / 'index.json'}: invalid JSON"):
        store.read_index()


def test_index_size_cap(fs, monkeypatch) -> None:
    monkeypatch.setattr("ocilayout.storage.MAX_INDEX_BYTES", 100)
    store = make_layout(fs, index=json.dumps({**INDEX, "pad": "x" * 200}).encode())
    with pytest.raises(CorruptLayoutError, match="larger than 100 bytes"):
        store.read_index()


# -- blob lookup order --------------------------------------------------------------------


def test_own_blob_found(fs) -> None:
    store = make_layout(fs)
    d = put(fs, ROOT / "blobs", b"hello")
    assert store.locate(d) == ROOT / "blobs" / "sha256" / d.encoded
    assert store.read_blob(d) == b"hello"
    assert store.is_local(d)


def test_shared_blob_found_when_not_own(fs) -> None:
    make_layout(fs)
    store = LayoutStore(ROOT, SHARED)
    d = put(fs, SHARED, b"shared only")
    assert store.locate(d) == SHARED / "sha256" / d.encoded
    assert store.read_blob(d) == b"shared only"
    assert not store.is_local(d)


def test_own_blobs_read_before_shared(fs) -> None:
    make_layout(fs)
    store = LayoutStore(ROOT, SHARED)
    d = put(fs, ROOT / "blobs", b"same")
    # a different (corrupt) copy under the same name in the shared directory must not be read
    fs.create_file(SHARED / "sha256" / d.encoded, contents=b"SHARED COPY")
    assert store.candidate_paths(d) == [ROOT / "blobs" / "sha256" / d.encoded, SHARED / "sha256" / d.encoded]
    assert store.locate(d) == ROOT / "blobs" / "sha256" / d.encoded
    assert store.read_blob(d) == b"same"
    assert store.read_blob_head(d, 2) == b"sa"


def test_shared_not_consulted_without_option(fs) -> None:
    store = make_layout(fs)
    d = put(fs, SHARED, b"x")
    assert store.candidate_paths(d) == [ROOT / "blobs" / "sha256" / d.encoded]
    assert store.locate(d) is None


def test_missing_blob(fs) -> None:
    make_layout(fs)
    store = LayoutStore(ROOT, SHARED)
    d = digest_of(b"nowhere")
    assert store.locate(d) is None
    assert store.locate_quiet(d) is None
    with pytest.raises(NotFoundError, match=str(d)):
        store.read_blob_head(d, 1)
    with pytest.raises(NotFoundError):
        store.read_blob(d)


def test_missing_blobs_directory_is_just_missing(fs) -> None:
    fs.create_file(ROOT / "oci-layout", contents=b'{"imageLayoutVersion":"1.0.0"}')
    fs.create_file(ROOT / "index.json", contents=b'{"schemaVersion":2,"manifests":[]}')
    store = LayoutStore(ROOT)
    assert store.locate(digest_of(b"x")) is None
    inventory = store.inventory()
    assert (inventory.blobs, inventory.strays, inventory.temp_files) == ([], [], [])


def test_sha512_blob(fs) -> None:
    store = make_layout(fs)
    d = put(fs, ROOT / "blobs", b"five-twelve", "sha512")
    assert store.local_path(d) == ROOT / "blobs" / "sha512" / d.encoded
    assert store.read_blob(d) == b"five-twelve"


# -- refusing what is not a regular file ---------------------------------------------------


def test_symlinked_blob_refused(fs) -> None:
    store = make_layout(fs)
    fs.create_file("/etc/secret", contents=b"secret")
    d = digest_of(b"secret")
    fs.create_symlink(ROOT / "blobs" / "sha256" / d.encoded, "/etc/secret")
    with pytest.raises(CorruptLayoutError, match="symlink") as info:
        store.read_blob(d)
    assert d.encoded in str(info.value)
    assert store.locate_quiet(d) is None
    assert not store.is_local(d)


def test_symlinked_algorithm_directory_refused(fs) -> None:
    fs.create_file(ROOT / "oci-layout", contents=b'{"imageLayoutVersion":"1.0.0"}')
    d = put(fs, Path("/outside"), b"outside")
    fs.create_dir(ROOT / "blobs")
    fs.create_symlink(ROOT / "blobs" / "sha256", "/outside/sha256")
    store = LayoutStore(ROOT)
    with pytest.raises(CorruptLayoutError, match="symlink"):
        store.read_blob(d)
    with pytest.raises(CorruptLayoutError, match="symlink"):
        store.inventory()


def test_symlinked_blobs_directory_refused(fs) -> None:
    fs.create_file(ROOT / "oci-layout", contents=b'{"imageLayoutVersion":"1.0.0"}')
    d = put(fs, Path("/outside"), b"outside")
    fs.create_symlink(ROOT / "blobs", "/outside")
    store = LayoutStore(ROOT)
    with pytest.raises(CorruptLayoutError, match="symlink"):
        store.locate(d)


def test_directory_blob_refused(fs) -> None:
    store = make_layout(fs)
    d = digest_of(b"dir")
    fs.create_dir(ROOT / "blobs" / "sha256" / d.encoded)
    with pytest.raises(CorruptLayoutError, match="not a regular file"):
        store.read_blob(d)
    assert store.locate_quiet(d) is None


def test_blobs_path_that_is_a_file(fs) -> None:
    fs.create_file(ROOT / "blobs", contents=b"not a directory")
    store = LayoutStore(ROOT)
    with pytest.raises(CorruptLayoutError, match="not a directory"):
        store.locate(digest_of(b"x"))
    with pytest.raises(CorruptLayoutError, match="not a directory"):
        store.inventory()


def test_fifo_blob_refused_without_blocking(tmp_path: Path) -> None:
    root = tmp_path / "layout"
    (root / "blobs" / "sha256").mkdir(parents=True)
    d = digest_of(b"fifo")
    os.mkfifo(root / "blobs" / "sha256" / d.encoded)
    store = LayoutStore(root)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            store.read_blob(d)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader before failing
        with open(root / "blobs" / "sha256" / d.encoded, "wb"):
            pass
        pytest.fail("reading a FIFO blob blocked")
    assert isinstance(outcome[0], CorruptLayoutError)
    assert "FIFO" in str(outcome[0]) or "not a regular file" in str(outcome[0])


def test_fifo_index_refused(tmp_path: Path) -> None:
    root = tmp_path / "layout"
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    os.mkfifo(root / "index.json")
    with pytest.raises(CorruptLayoutError, match="index.json"):
        LayoutStore(root).read_index()


# -- sizes and partial reads ---------------------------------------------------------------


def test_read_blob_cap(fs) -> None:
    store = make_layout(fs)
    d = put(fs, ROOT / "blobs", b"x" * 101)
    assert len(store.read_blob(d, limit=101)) == 101
    with pytest.raises(CorruptLayoutError, match="larger than 100 bytes") as info:
        store.read_blob(d, limit=100)
    assert str(d) in str(info.value)


def test_read_blob_head(fs) -> None:
    store = make_layout(fs)
    d = put(fs, ROOT / "blobs", b"0123456789")
    assert store.read_blob_head(d, 4) == b"0123"
    assert store.read_blob_head(d, 100) == b"0123456789"


# -- scanning and removing -----------------------------------------------------------------


def test_inventory_sorts_entries(fs) -> None:
    store = make_layout(fs)
    good = put(fs, ROOT / "blobs", b"good")
    reached = put(fs, ROOT / "blobs", b"reached")
    fs.create_file(ROOT / "blobs" / "sha256" / "not-a-digest.txt", contents=b"stray")
    fs.create_file(ROOT / "blobs" / "sha256" / good.encoded.upper(), contents=b"upper")
    fs.create_file(ROOT / "blobs" / "sha256" / ".ocilayout-tmp-x", contents=b"temp")
    fs.create_file(ROOT / "blobs" / "md5" / ("0" * 32), contents=b"other alg")
    fs.create_file(ROOT / "blobs" / "README", contents=b"loose file")
    fs.create_dir(ROOT / "blobs" / "sha256" / digest_of(b"a dir").encoded)
    inventory = store.inventory(reached={str(reached)})
    assert [(b.digest, b.size, b.is_file) for b in inventory.blobs] == [(good, 4, True)]
    assert inventory.reached == 1
    assert [t.name for t in inventory.temp_files] == [".ocilayout-tmp-x"]
    reasons = {str(s.path.relative_to(ROOT / "blobs")): s.reason for s in inventory.strays}
    assert reasons == {
        "README": "not an algorithm directory (a regular file)",
        "md5": "unknown digest algorithm directory (1 entry)",
        "sha256/not-a-digest.txt": "name is not a valid sha256 digest",
        f"sha256/{good.encoded.upper()}": "name is not a valid sha256 digest",
        f"sha256/{digest_of(b'a dir').encoded}": "not a regular file (a directory)",
    }
    # Without `reached`, every valid blob is listed.
    assert {b.digest for b in store.inventory().blobs} == {good, reached}


def test_inventory_of_shared_directory(fs) -> None:
    make_layout(fs)
    store = LayoutStore(ROOT, SHARED)
    d = put(fs, SHARED, b"s")
    assert [b.digest for b in store.inventory(SHARED).blobs] == [d]
    assert store.inventory().blobs == []
    assert store.present(d) and not store.is_local(d)


def test_remove_blob_file_never_touches_shared(fs) -> None:
    make_layout(fs)
    store = LayoutStore(ROOT, SHARED)
    d = put(fs, SHARED, b"keep me")
    assert store.remove_blob_file(store.local_path(d)) == 0
    assert (SHARED / "sha256" / d.encoded).exists()
    put(fs, ROOT / "blobs", b"keep me")
    assert store.remove_blob_file(store.local_path(d)) == 7
    assert not store.local_path(d).exists()
    assert (SHARED / "sha256" / d.encoded).exists()


def test_inventory_skips_an_entry_removed_while_listing(tmp_path: Path, monkeypatch) -> None:
    """Another gc (or the writer itself) may unlink a blob between the listing and its stat."""
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    data = b"vanishing"
    d = digest_of(data)
    (tmp_path / "blobs" / "sha256" / d.encoded).write_bytes(data)
    kept = digest_of(b"kept")
    (tmp_path / "blobs" / "sha256" / kept.encoded).write_bytes(b"kept")
    import ocilayout.storage as storage_module

    real_blob_file = storage_module._blob_file

    def vanish(entry, algorithm, digest):
        if digest == d:
            raise FileNotFoundError(2, "No such file or directory", entry.path)
        return real_blob_file(entry, algorithm, digest)

    monkeypatch.setattr(storage_module, "_blob_file", vanish)
    inventory = LayoutStore(tmp_path).inventory()
    assert [b.digest for b in inventory.blobs] == [kept] and inventory.strays == []


# -- read-ahead (LayoutStore.prefetch) ---------------------------------------------------------------


def _real_layout(root: Path, count: int) -> tuple[LayoutStore, list[str]]:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps(INDEX))
    digests = []
    for i in range(count):
        data = b"blob %d" % i
        digest = digest_of(data)
        (blobs / digest.encoded).write_bytes(data)
        digests.append(str(digest))
    return LayoutStore(root), digests


def test_prefetch_advises_each_regular_blob_and_never_blocks_or_follows(tmp_path, monkeypatch) -> None:
    """The read-ahead thread opens only what a read would (a FIFO never blocks it, a symlink is
    not followed, a directory or a missing blob is skipped), and is gone when the block ends."""
    store, digests = _real_layout(tmp_path / "lay", 300)
    blobs = tmp_path / "lay" / "blobs" / "sha256"
    fifo, link, directory, missing = (digest_of(b"odd %d" % i) for i in range(4))
    os.mkfifo(blobs / fifo.encoded)
    (tmp_path / "outside").write_bytes(b"outside")
    os.symlink(tmp_path / "outside", blobs / link.encoded)
    (blobs / directory.encoded).mkdir()
    odd = [str(fifo), str(link), str(directory), str(missing)]
    advised: list[int] = []
    real_fadvise = os.posix_fadvise

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append(os.fstat(fd).st_ino)
        real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    monkeypatch.setattr(Prefetch, "_cached", lambda self: False)  # the files were just written
    before = threading.active_count()
    with store.prefetch(odd + digests) as ahead:
        assert ahead.thread is not None
        ahead.thread.join(timeout=30)
        assert not ahead.thread.is_alive(), "the thread finished (a FIFO did not block it)"
    assert threading.active_count() == before
    expected = {os.stat(blobs / d.split(":")[1]).st_ino for d in digests}
    assert sorted(advised) == sorted(expected), "each regular blob once, nothing else"
    assert os.stat(tmp_path / "outside").st_ino not in advised


def _evict(paths: list[Path], probe: Path) -> bool:
    """Drop the files from the page cache; False when that cannot be done here (tmpfs). Only
    `probe` is read back to tell (a missed RWF_NOWAIT read may start reading ahead)."""
    os.sync()
    for path in [*paths, probe]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="no preadv2 RWF_NOWAIT on this platform")
def test_prefetch_reads_ahead_only_what_the_page_cache_lacks(tmp_path) -> None:
    """Blobs already in memory: no thread (it would only contend with the walk); the same blobs
    evicted: the thread starts."""
    store, digests = _real_layout(tmp_path / "lay", 300)
    paths = [tmp_path / "lay" / "blobs" / "sha256" / d.split(":")[1] for d in digests]
    for path in paths:
        path.read_bytes()
    with store.prefetch(digests) as ahead:
        assert ahead.thread is None, "all in the page cache"
    probe = tmp_path / "probe"
    probe.write_bytes(b"probe")
    if not _evict(paths, probe):
        pytest.skip("the page cache of this file system cannot be dropped (tmpfs?)")
    with store.prefetch(digests) as ahead:
        assert ahead.thread is not None, "on disk only: read ahead"


def test_prefetch_of_a_few_blobs_starts_no_thread(tmp_path) -> None:
    store, digests = _real_layout(tmp_path / "lay", 10)
    with store.prefetch(digests) as ahead:
        assert ahead.thread is None


def test_a_cold_live_set_reads_ahead_and_leaves_no_thread(tmp_path, monkeypatch) -> None:
    """A walk of many unrecorded entries prefetches them; the answer does not depend on it and
    the process is single-threaded again afterwards (a later fork needs that)."""
    from ocilayout import graph as graph_module
    from ocilayout.descriptor import Descriptor
    from ocilayout.graph import Graph, live_set

    store, digests = _real_layout(tmp_path / "lay", 300)
    roots = [Descriptor("application/vnd.oci.image.manifest.v1+json", Digest(d), 7) for d in digests]
    started: list[int] = []
    real_enter = Prefetch.__enter__

    def enter(self):
        out = real_enter(self)
        started.append(len(self.digests) if self.thread is not None else 0)
        return out

    monkeypatch.setattr(Prefetch, "__enter__", enter)
    monkeypatch.setattr(Prefetch, "_cached", lambda self: False)  # the files were just written
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 10**9)
    with_ahead = live_set(Graph(store, cache=False), roots)
    assert started == [300]
    monkeypatch.setattr(Prefetch, "MIN_BLOBS", 10**9)
    without = live_set(Graph(store, cache=False), roots)
    assert threading.active_count() == 1
    assert with_ahead.reached == without.reached and with_ahead.doubt == without.doubt
