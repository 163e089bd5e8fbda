"""The one engine for bytes on disk: `oci-layout`, `index.json` and `blobs/<alg>/<hex>`.

Everything that opens, reads, writes or removes a file of a layout goes through
`LayoutStore`, so the path rules (validated digests only, no symlinks followed, no
FIFOs opened, own `blobs/` first and the shared directory second) live in one place.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Container, Iterable

from .atomicwrite import TEMP_PREFIX, fsync_directory, write_atomic
from .digest import ALGORITHMS, Digest, parse_digest
from .errors import (
    CorruptLayoutError,
    InvalidDigestError,
    NotFoundError,
    OperationFailed,
)
from .indexfile import IndexFile, loads_strict, parse_index

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
SUPPORTED_LAYOUT_VERSIONS = ("1.0.0",)

# Caps on what we parse as JSON. Registries refuse manifests over 4 MiB; an index.json of
# 1,000,000 named images is about 220 MB (128 MiB refused it). Past these, the file is
# treated as hostile.
MAX_INDEX_BYTES = 512 * 1024 * 1024
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobFile:
    """A directory entry under a blobs directory, as gc and verify see it."""

    path: Path
    algorithm: str
    name: str
    digest: Digest | None  # None: the name is not a valid digest for its algorithm directory
    size: int
    mtime: float
    is_file: bool


@dataclass(frozen=True, slots=True)
class StrayFile:
    """Something under a blobs directory that is not a blob; reported, never deleted."""

    path: Path
    reason: str


@dataclass(slots=True)
class Inventory:
    """A blobs directory sorted into unreached blobs, our temporary files, and strays."""

    blobs: list[BlobFile] = field(default_factory=list)  # valid names, regular files, not reached
    temp_files: list[BlobFile] = field(default_factory=list)
    strays: list[StrayFile] = field(default_factory=list)
    reached: int = 0  # regular files whose digest is in `reached` (counted, not kept)


class LayoutStore:
    """Files of one layout (and, for reads, of an optional shared blob directory)."""

    def __init__(self, root: Path, shared_blobs: Path | None = None) -> None:
        self.root = root
        self.shared_blobs = shared_blobs
        self.cache = True  # graphs over this store may use the reference cache (`refcache`)
        self._checked_dirs: set[Path] = set()
        self._alg_dirs: dict[str, list[str]] = {}
        self._names: dict[str, set[str]] = {}

    @property
    def blobs_dir(self) -> Path:
        """The layout's own blobs directory."""
        return self.root / BLOBS_DIR

    # -- layout files ---------------------------------------------------------------

    def check_layout_file(self) -> None:
        """Validate `oci-layout`; raise CorruptLayoutError naming the file when it is wrong."""
        path = self.root / LAYOUT_FILE
        data = self._read_file(path, MAX_DOCUMENT_BYTES, missing=f"{path}: missing oci-layout file")
        document = loads_strict(data, str(path))
        if not isinstance(document, dict) or not isinstance(document.get("imageLayoutVersion"), str):
            raise CorruptLayoutError(f"{path}: imageLayoutVersion missing")
        version = document["imageLayoutVersion"]
        if version not in SUPPORTED_LAYOUT_VERSIONS:
            raise CorruptLayoutError(f"{path}: unsupported imageLayoutVersion {version!r}")

    def read_index_bytes(self) -> bytes:
        """The raw bytes of `index.json`."""
        path = self.root / INDEX_FILE
        return self._read_file(path, MAX_INDEX_BYTES, missing=f"{path}: missing index.json")

    def read_index(self) -> IndexFile:
        """Read and parse `index.json`."""
        return parse_index(self.read_index_bytes(), str(self.root / INDEX_FILE))

    def write_index(self, data: bytes) -> None:
        """Atomically replace `index.json` (durable when this returns)."""
        path = self.root / INDEX_FILE
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise OperationFailed(f"cannot write {path}: {exc.strerror or exc}; index.json left unchanged") from None

    # -- blobs ---------------------------------------------------------------------

    def local_path(self, digest: Digest) -> Path:
        """Where `digest` lives in the layout's own blobs directory (it may not exist)."""
        return self.root / BLOBS_DIR / digest.algorithm / digest.encoded

    def candidate_paths(self, digest: Digest) -> list[Path]:
        """Own blobs first, then the shared directory: the read order."""
        paths = [self.local_path(digest)]
        if self.shared_blobs is not None:
            paths.append(self.shared_blobs / digest.algorithm / digest.encoded)
        return paths

    def locate(self, digest: Digest) -> Path | None:
        """The first existing regular file for `digest`, or None. Never follows a symlink."""
        for path in self.candidate_paths(digest):
            self._check_parent_dirs(path)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CorruptLayoutError(f"{path}: {exc.strerror}") from None
            if stat.S_ISREG(st.st_mode):
                return path
            raise CorruptLayoutError(f"{path}: blob is not a regular file ({file_kind(st.st_mode)})")
        return None

    def locate_quiet(self, digest: Digest) -> Path | None:
        """Like `locate`, but a blob that is not a regular file counts as absent."""
        try:
            return self.locate(digest)
        except CorruptLayoutError:
            return None

    def is_local(self, digest: Digest) -> bool:
        """True when the blob is in the layout's own blobs directory."""
        try:
            return stat.S_ISREG(os.lstat(self.local_path(digest)).st_mode)
        except OSError:
            return False

    def read_blob(self, digest: Digest, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
        """A whole blob, refusing anything over `limit` bytes (checked before reading)."""
        fd, size = self._open_blob_fd_size(digest)
        try:
            if size > limit:
                raise CorruptLayoutError(f"blob {digest} is larger than {limit} bytes; refusing to parse it")
            # One read of size + 1 sees the whole file and its end in the common case.
            data = os.read(fd, size + 1)
            if len(data) > size:  # the file grew while we read it
                chunks = [data]
                total = len(data)
                while total <= limit:
                    chunk = os.read(fd, min(65536, limit + 1 - total))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                data = b"".join(chunks)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise CorruptLayoutError(f"blob {digest} is larger than {limit} bytes; refusing to parse it")
        return data

    def blob_size(self, digest: Digest) -> int | None:
        """The size of the file `read_blob` would read for `digest` (a stat and an access check,
        no open), or None when there is none, it is not a plain regular file or this process
        may not read it (then `read_blob` says why). A reference-cache record is believed only
        after this: a blob the cold walk cannot read must stay unreadable, hence doubt."""
        algorithm, _, encoded = digest.partition(":")
        directories = self._alg_dirs.get(algorithm)
        if directories is None:
            try:
                directories = self._alg_dirs[algorithm] = self._checked_alg_dirs(digest)
            except CorruptLayoutError:
                return None
        for directory in directories:
            try:
                st = os.stat(f"{directory}/{encoded}", follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError:
                return None
            if not stat.S_ISREG(st.st_mode) or not _readable(f"{directory}/{encoded}"):
                return None
            return st.st_size
        return None

    def _open_blob_fd(self, digest: Digest) -> int:
        return self._open_blob_fd_size(digest)[0]

    def _open_blob_fd_size(self, digest: Digest) -> tuple[int, int]:
        # Open directly instead of stat-then-open (one system call less per blob, no window
        # between check and open), with plain strings: pathlib costs more than the I/O here.
        algorithm, _, encoded = digest.partition(":")
        directories = self._alg_dirs.get(algorithm)
        if directories is None:
            directories = self._alg_dirs[algorithm] = self._checked_alg_dirs(digest)
        for directory in directories:
            try:
                return _open_regular_fd_size(f"{directory}/{encoded}")
            except FileNotFoundError:
                continue
        raise NotFoundError(f"blob {digest} not found")

    def prefetch(self, digests: list[str]) -> Prefetch:
        """A context in which a background thread asks the kernel to read these blobs ahead
        (`posix_fadvise` WILLNEED), in order, while the caller reads and parses the ones before:
        on a cold page cache the disk then works on many small files at once instead of one
        per round trip. Only files the reads would take (regular, in a checked blob directory)."""
        return Prefetch(self, digests)

    def _checked_alg_dirs(self, digest: Digest) -> list[str]:
        paths = self.candidate_paths(digest)
        for path in paths:
            self._check_parent_dirs(path)
        return [os.fspath(path.parent) for path in paths]

    def read_blob_head(self, digest: Digest, length: int) -> bytes:
        """The first `length` bytes of a blob (to sniff whether it could be JSON)."""
        fd = self._open_blob_fd(digest)
        try:
            return os.read(fd, length)
        finally:
            os.close(fd)

    def write_blob(self, digest: Digest, data: bytes) -> None:
        """Put a new blob in our own `blobs/` (atomically, durable when this returns); a file
        already there with exactly that content stays, anything else there is replaced."""
        path = self.local_path(digest)
        try:
            if self.is_local(digest) and self._read_file(path, len(data) + 1, missing="") == data:
                return
        except (OSError, CorruptLayoutError):
            pass  # unreadable or gone: written anew below
        try:
            self._check_parent_dirs(path)
            for directory in (path.parent.parent, path.parent):
                if not directory.is_dir():
                    directory.mkdir()
                    fsync_directory(directory.parent)  # the new directory survives a power loss
            write_atomic(path, data)
        except (OSError, CorruptLayoutError) as exc:
            what = getattr(exc, "strerror", None) or exc
            raise OperationFailed(f"cannot write blob {digest}: {what}; index.json left unchanged") from None

    def remove_blob_file(self, path: Path) -> int:
        """Unlink a blob file (own blobs/, or a shared directory being collected); bytes freed
        (0 if absent). Its directories are checked first: never unlink through a symlink."""
        self._check_parent_dirs(path)
        try:
            size = os.lstat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    def remove_file(self, path: Path) -> int:
        """Unlink a file found by a scan of our own blobs directory; bytes freed."""
        try:
            size = os.lstat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    def inventory(
        self,
        directory: Path | None = None,
        *,
        reached: Container[str] | None = None,
        ignore: Iterable[str] = (),
    ) -> Inventory:
        """Sort every entry under `directory/<alg>/` (default: own blobs/) by what it is.

        Names come first: a blob whose digest is in `reached` is only counted (no stat, no
        object), which at 100,000 images is most of 450,000 entries. Only the rest are
        stat'ed, for gc's grace period and for the reports. `ignore` names top-level entries
        to skip (the lock file of a shared directory).
        """
        base = self.blobs_dir if directory is None else directory
        if os.path.islink(base):  # scandir would list (and gc then clean) a directory outside the layout
            raise CorruptLayoutError(f"{base}: is a symlink; refusing to follow it")
        result = Inventory()
        try:
            top = sorted(os.scandir(base), key=lambda e: e.name)
        except FileNotFoundError:
            return result
        except NotADirectoryError:
            raise CorruptLayoutError(f"{base}: not a directory") from None
        skipped = set(ignore)
        for alg_entry in top:
            alg_path = Path(alg_entry.path)
            if alg_entry.is_symlink():
                raise CorruptLayoutError(f"{alg_path}: is a symlink; refusing to follow it")
            if not alg_entry.is_dir(follow_symlinks=False):
                if alg_entry.name in skipped:
                    continue
                if alg_entry.name.startswith(TEMP_PREFIX) and alg_entry.is_file(follow_symlinks=False):
                    result.temp_files.append(_blob_file(alg_entry, "", None))
                else:
                    result.strays.append(StrayFile(alg_path, f"not an algorithm directory ({_kind_of(alg_path)})"))
                continue
            algorithm = alg_entry.name
            if algorithm not in ALGORITHMS:
                try:
                    with os.scandir(alg_path) as scanned:
                        count = sum(1 for _ in scanned)
                except OSError as exc:
                    result.strays.append(StrayFile(alg_path, f"unreadable directory ({exc.strerror or exc})"))
                    continue
                if count:
                    entries_word = "entry" if count == 1 else "entries"
                    result.strays.append(
                        StrayFile(alg_path, f"unknown digest algorithm directory ({count} {entries_word})")
                    )
                continue
            prefix = algorithm + ":"
            # Streamed: a list of 450,000 directory entries would cost 150 MB at 100,000 images.
            with os.scandir(alg_path) as scanned:
                for entry in scanned:
                    name = entry.name
                    if reached is not None and prefix + name in reached and entry.is_file(follow_symlinks=False):
                        result.reached += 1
                        continue
                    self._sort_entry(result, entry, algorithm, prefix + name)
        result.blobs.sort(key=lambda b: b.digest or "")
        result.temp_files.sort(key=lambda b: b.path)
        result.strays.sort(key=lambda s: s.path)
        return result

    @staticmethod
    def _sort_entry(result: Inventory, entry: os.DirEntry[str], algorithm: str, text: str) -> None:
        """File one entry of `blobs/<algorithm>/` that is not a reached blob."""
        try:
            digest: Digest | None = parse_digest(text)
        except InvalidDigestError:
            digest = None
        is_file = entry.is_file(follow_symlinks=False)
        path = Path(entry.path)
        try:
            if digest is not None and is_file:
                result.blobs.append(_blob_file(entry, algorithm, digest))
                return
            if digest is None and entry.name.startswith(TEMP_PREFIX) and is_file:
                result.temp_files.append(_blob_file(entry, algorithm, None))
                return
        except FileNotFoundError:
            return  # removed since the listing (by another gc, or its writer): nothing to sort
        if digest is None:
            kind = "" if is_file else f", {_kind_of(path)}"
            result.strays.append(StrayFile(path, f"name is not a valid {algorithm} digest{kind}"))
        else:
            result.strays.append(StrayFile(path, f"not a regular file ({_kind_of(path)})"))

    def present(self, digest: Digest) -> bool:
        """Whether a regular file for `digest` exists (own or shared), from one listing per
        directory and algorithm: a stat per blob would cost as much as a whole walk."""
        algorithm, _, encoded = digest.partition(":")
        names = self._names.get(algorithm)
        if names is None:
            names = self._names[algorithm] = self._list_names(algorithm)
        return encoded in names

    def present_digests(self) -> set[str]:
        """Every digest `present` finds, as one set of `alg:hex` texts: for passes that ask
        about hundreds of thousands of blobs (membership in one set, no parsing per question)."""
        found: set[str] = set()
        for algorithm in ALGORITHMS:
            names = self._names.get(algorithm)
            prefix = algorithm + ":"
            found.update(prefix + name for name in (names if names is not None else self._list_names(algorithm)))
        return found

    def _list_names(self, algorithm: str) -> set[str]:
        found: set[str] = set()
        for base in (self.blobs_dir, self.shared_blobs):
            if base is None or os.path.islink(base) or os.path.islink(base / algorithm):
                continue  # never look through a symlinked directory (as `locate`)
            try:
                with os.scandir(base / algorithm) as entries:
                    found.update(e.name for e in entries if e.is_file(follow_symlinks=False))
            except OSError:
                continue
        return found

    # -- internals -------------------------------------------------------------------

    def _check_parent_dirs(self, path: Path) -> None:
        # A symlinked blobs/ or blobs/<alg>/ would let a digest name a file outside the layout.
        for directory in (path.parent.parent, path.parent):
            if directory in self._checked_dirs:
                continue
            try:
                st = os.lstat(directory)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CorruptLayoutError(f"{directory}: {exc.strerror}") from None
            if stat.S_ISLNK(st.st_mode):
                raise CorruptLayoutError(f"{directory}: is a symlink; refusing to follow it")
            if not stat.S_ISDIR(st.st_mode):
                raise CorruptLayoutError(f"{directory}: not a directory")
            self._checked_dirs.add(directory)

    def _read_file(self, path: Path, limit: int, missing: str) -> bytes:
        try:
            handle = _open_regular(path)
        except FileNotFoundError:
            raise CorruptLayoutError(missing) from None
        with handle:
            if os.fstat(handle.fileno()).st_size > limit:  # refuse before reading (a sparse 1 GiB file)
                raise CorruptLayoutError(f"{path}: larger than {limit} bytes; refusing to parse it")
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise CorruptLayoutError(f"{path}: larger than {limit} bytes; refusing to parse it")
        return data


def open_store(path: Path, shared_blobs: Path | None = None) -> LayoutStore:
    """A store for an existing layout directory (and shared blob directory, if named)."""
    if not path.exists():
        raise NotFoundError(f"{path}: no such layout directory")
    if not path.is_dir():
        raise CorruptLayoutError(f"{path}: not a directory")
    if shared_blobs is not None and not shared_blobs.is_dir():
        raise NotFoundError(f"{shared_blobs}: no such shared blob directory")
    return LayoutStore(path, shared_blobs)


def _readable(path: str) -> bool:
    """Whether this process may open `path` for reading: the kernel's own check (modes, ACLs,
    security modules) with the effective ids, as `open` would use them."""
    try:
        return os.access(path, os.R_OK, effective_ids=_EFFECTIVE_ACCESS)
    except OSError:
        return False


# The effective ids only when they differ from the real ones (a setuid program): glibc then
# needs faccessat2, which some container seccomp profiles refuse with EPERM.
_EFFECTIVE_ACCESS = os.access in os.supports_effective_ids and (os.geteuid(), os.getegid()) != (
    os.getuid(),
    os.getgid(),
)


def _open_regular(path: Path) -> BinaryIO:
    """Open a regular file without following a final symlink and without blocking on a FIFO."""
    return os.fdopen(_open_regular_fd(path), "rb")


def _open_regular_fd(path: Path | str) -> int:
    return _open_regular_fd_size(path)[0]


class Prefetch:
    """See `LayoutStore.prefetch`. Joined on exit: no thread outlives the walk (a fork after
    it must find this process single-threaded). No thread at all when a sample of the blobs
    is in the page cache already."""

    MIN_BLOBS = 256  # fewer: the thread costs more than the reads it would overlap
    SAMPLES = 8  # blobs looked at to tell whether the page cache already holds them

    def __init__(self, store: LayoutStore, digests: list[str]) -> None:
        self.store = store
        self.digests = digests
        self.thread: Any = None
        self.stop = False

    def __enter__(self) -> Prefetch:
        if len(self.digests) >= self.MIN_BLOBS and hasattr(os, "posix_fadvise") and not self._cached():
            import threading

            self.thread = threading.Thread(target=self._run, name="ocilayout-prefetch", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:
            self.stop = True
            self.thread.join()
            self.thread = None

    def _cached(self) -> bool:
        """Whether a few blobs spread over the list are all in the page cache already (a read
        with RWF_NOWAIT fails rather than wait for the disk): then the thread would only cost
        (its system calls contend with the walk for the interpreter). False when unsure."""
        flag = getattr(os, "RWF_NOWAIT", None)
        if flag is None or not hasattr(os, "preadv"):
            return False
        step = max(1, len(self.digests) // self.SAMPLES)
        looked = 0
        byte = bytearray(1)
        directories: dict[str, list[str]] = {}
        for digest in self.digests[::step][: self.SAMPLES]:
            fd = self._open(digest, directories)
            if fd is None:
                continue
            try:
                os.preadv(fd, [byte], 0, flag)
            except OSError:  # EAGAIN: on disk only; anything else: unsure
                return False
            finally:
                os.close(fd)
            looked += 1
        return looked > 0

    def _open(self, digest: str, directories: dict[str, list[str]]) -> int | None:
        """A descriptor of the regular file a read of `digest` would open (no symlink followed,
        no FIFO waited on), or None; `directories` caches each algorithm's."""
        algorithm, _, encoded = digest.partition(":")
        found = directories.get(algorithm)
        if found is None:
            try:
                found = directories[algorithm] = self.store._checked_alg_dirs(Digest(digest))
            except Exception:  # the reads will say what is wrong; nothing to look at
                found = directories[algorithm] = []
        for directory in found:
            try:
                return _open_regular_fd_size(f"{directory}/{encoded}")[0]
            except (OSError, CorruptLayoutError):
                continue
        return None

    def _run(self) -> None:
        directories: dict[str, list[str]] = {}
        for digest in self.digests:
            if self.stop:
                return
            fd = self._open(digest, directories)
            if fd is None:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)


def _open_regular_fd_size(path: Path | str) -> tuple[int, int]:
    """An open descriptor of a regular file and its size (from the one fstat that checks it)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptLayoutError(f"{path}: is a symlink; refusing to follow it") from None
        if exc.errno == errno.ENXIO:
            raise CorruptLayoutError(f"{path}: is not a regular file") from None
        if exc.errno == errno.ENOTDIR:
            raise FileNotFoundError(exc.errno, exc.strerror, str(path)) from None
        raise CorruptLayoutError(f"{path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptLayoutError(f"{path}: is not a regular file ({file_kind(st.st_mode)})")
        # O_NONBLOCK only guarded the open against FIFOs; regular files ignore it.
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def _blob_file(entry: os.DirEntry[str], algorithm: str, digest: Digest | None) -> BlobFile:
    st = entry.stat(follow_symlinks=False)
    return BlobFile(Path(entry.path), algorithm, entry.name, digest, st.st_size, st.st_mtime, stat.S_ISREG(st.st_mode))


def _kind_of(path: Path) -> str:
    try:
        return file_kind(os.lstat(path).st_mode)
    except OSError:
        return "vanished"


def file_kind(mode: int) -> str:
    """A file type in words, for error messages and stray-file reports."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


__all__ = ["BlobFile", "Inventory", "StrayFile", "LayoutStore", "TEMP_PREFIX", "INDEX_FILE", "LAYOUT_FILE", "BLOBS_DIR"]
