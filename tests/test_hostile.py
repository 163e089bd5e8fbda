"""Hostile and malformed layouts: a corpus of cases, each run through ls, tree, inspect,
verify, gc --dry-run, rm and gc --grace 0.

For every case and command: the expected exit code; no traceback; a failure is an `error:`
line (verify reports problems on stdout with exit 1 instead); no line of output is huge; and
nothing outside the layout is read, changed or deleted. "Outside" is a sibling directory with
sentinel files and decoys (a copy of the layout's blobs, so following a symlink would *work*,
and files named like our temporary files, so a gc that followed a symlink would delete them).
"Read" is checked in-process: every file descriptor opened during a command (os.open,
io.open) and every directory listed (os.scandir, os.listdir) is compared by inode with the
outside tree. "Changed" is checked by a snapshot (bytes, mtime, symlink targets) before and
after. index.json must be byte-for-byte intact unless the case says rm may succeed.

Cases that could hang (FIFOs) run the CLI in a separate process with a timeout instead.
The read-only and disk-full cases use real mounts (a read-only bind mount, a small tmpfs)
when the test runs as root with mount permission, and otherwise skip; the in-process
EACCES/EROFS/ENOSPC simulations beside them always run.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from ocilayout import Layout
from ocilayout.cli import cli

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "fixtures"))
import generate  # noqa: E402

REF_NAME = "org.opencontainers.image.ref.name"
SENTINEL = b"SENTINEL: outside the layout; never read, changed or deleted\n"
COMMANDS = ("ls", "tree", "inspect", "verify", "gc-dry", "rm", "gc")
MAX_LINE = 1000


# -- building layouts ---------------------------------------------------------------------------


@dataclass
class Env:
    """A case's playground: the layout, the outside tree and handy digests."""

    root: Path
    outside: Path
    manifest: str  # digest of `latest`'s manifest
    config: str
    layers: list[str]
    other: str  # digest of `other`'s manifest (shares layers[0] with latest)
    orphan: str  # an unreferenced blob (old mtime) that gc --grace 0 would delete

    def blob(self, digest: str) -> Path:
        alg, _, hexpart = digest.partition(":")
        return self.root / "blobs" / alg / hexpart

    def index(self) -> dict[str, Any]:
        return json.loads((self.root / "index.json").read_bytes())

    def write_index(self, document: Any) -> None:
        (self.root / "index.json").write_text(json.dumps(document))

    def set_entry(self, position: int, **changes: Any) -> None:
        index = self.index()
        index["manifests"][position].update(changes)
        self.write_index(index)

    def add_blob(self, data: bytes) -> str:
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob(digest).write_bytes(data)
        return digest

    def rewrite_manifest(self, edit: Callable[[dict[str, Any]], Any]) -> str:
        """Change latest's manifest, store it under its new digest and point index.json at it."""
        document = json.loads(self.blob(self.manifest).read_bytes())
        edit(document)
        data = json.dumps(document).encode()
        digest = self.add_blob(data)
        self.set_entry(0, digest=digest, size=len(data))
        return digest


def make_env(tmp_path: Path) -> Env:
    root = tmp_path / "layout"
    w = generate.LayoutWriter(root)
    shared = w.layer(b"shared layer bytes " * 8)
    latest = w.image([shared, b"latest's own layer " * 6], labels={"case": "hostile"})
    other = w.image([shared, b"other's own layer " * 6])
    orphan = w.layer(b"orphan bytes, referenced by nothing")
    w.add_entry(latest, "latest")
    w.add_entry(other, "other")
    w.finish()
    old = time.time() - 7200
    for path in (root / "blobs" / "sha256").iterdir():
        os.utime(path, (old, old))
    manifest = json.loads((root / "blobs" / "sha256" / latest["digest"][7:]).read_bytes())

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(SENTINEL)
    (outside / "secret2").write_bytes(SENTINEL)
    # A decoy copy of the blobs (following a symlink into it would "work") with files gc
    # would delete if it collected there: an orphan and temporary-looking files.
    shutil.copytree(root / "blobs", outside / "blobs-copy")
    (outside / "blobs-copy" / "sha256" / ".ocilayout-tmp-decoy").write_bytes(SENTINEL)
    (outside / "blobs-copy" / ".ocilayout-tmp-decoy").write_bytes(SENTINEL)
    shutil.copy(root / "index.json", outside / "index.json")
    shutil.copy(root / "oci-layout", outside / "oci-layout")
    for path in (outside / "blobs-copy" / "sha256").iterdir():
        os.utime(path, (old, old))
    return Env(
        root,
        outside,
        latest["digest"],
        manifest["config"]["digest"],
        [layer["digest"] for layer in manifest["layers"]],
        other["digest"],
        orphan["digest"],
    )


# -- the cases ------------------------------------------------------------------------------------

HEX = "0123456789abcdef" * 4


@dataclass
class Case:
    id: str
    build: Callable[[Env], None]
    expect: dict[str, int | set[int]]  # command -> exit code(s); missing commands use `default`
    default: int | set[int] = 5
    index_may_change: bool = False  # rm is allowed to succeed (the damage is elsewhere)
    subprocess: bool = False  # could hang if wrong: run the real CLI with a timeout
    inspect_ref: str = "latest"
    rm_ref: str = "latest"
    check: Callable[[Env], None] | None = None  # extra assertions at the end


def _check_strict_json(env: Env) -> None:
    """index.json parses with a strict parser (no NaN/Infinity, valid UTF-8) after any command."""
    from decimal import Decimal

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} written to index.json")

    json.loads((env.root / "index.json").read_bytes().decode("utf-8"), parse_float=Decimal, parse_constant=refuse)


def _digest(value: Any) -> Callable[[Env], None]:
    return lambda env: env.set_entry(0, digest=value)


def _index_bytes(data: bytes) -> Callable[[Env], None]:
    return lambda env: (env.root / "index.json").write_bytes(data)


def _index_edit(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Env], None]:
    def build(env: Env) -> None:
        index = env.index()
        edit(index)
        env.write_index(index)

    return build


def _raw_index(text: str) -> Callable[[Env], None]:
    """index.json from a template: {M} is the latest entry's digest, {S} its size."""

    def build(env: Env) -> None:
        entry = env.index()["manifests"][0]
        (env.root / "index.json").write_text(text.replace("{M}", entry["digest"]).replace("{S}", str(entry["size"])))

    return build


def _symlink_blob(which: str, target: str) -> Callable[[Env], None]:
    def build(env: Env) -> None:
        digest = {"manifest": env.manifest, "layer": env.layers[1], "orphan": env.orphan}[which]
        path = env.blob(digest)
        if target == "copy":  # a symlink to an identical copy outside: following it would "work"
            dest = env.outside / "blobs-copy" / "sha256" / path.name
        else:
            dest = env.outside / "secret"
        path.unlink()
        path.symlink_to(dest)

    return build


def _replace_blob(which: str, kind: str) -> Callable[[Env], None]:
    def build(env: Env) -> None:
        digest = {"manifest": env.manifest, "layer": env.layers[1]}[which]
        path = env.blob(digest)
        path.unlink()
        if kind == "dir":
            path.mkdir()
            (path / "inside").write_bytes(b"a file inside a directory named like a blob")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "sparse":  # over the 16 MiB document cap; verify still hashes it all
            with open(path, "wb") as handle:
                handle.truncate(64 << 20)

    return build


def _dir_symlink(which: str) -> Callable[[Env], None]:
    def build(env: Env) -> None:
        if which == "blobs":
            shutil.rmtree(env.root / "blobs")
            (env.root / "blobs").symlink_to(env.outside / "blobs-copy")
        else:
            shutil.rmtree(env.root / "blobs" / "sha256")
            (env.root / "blobs" / "sha256").symlink_to(env.outside / "blobs-copy" / "sha256")

    return build


def _file_symlink(name: str) -> Callable[[Env], None]:
    def build(env: Env) -> None:
        (env.root / name).unlink()
        (env.root / name).symlink_to(env.outside / name)

    return build


def _lock_symlink(env: Env) -> None:
    (env.root / ".ocilayout.lock").symlink_to(env.outside / "secret")


def _temp_symlinks(env: Env) -> None:
    (env.root / ".ocilayout-tmp-index.json.evil").symlink_to(env.outside / "secret")
    (env.root / "blobs" / "sha256" / ".ocilayout-tmp-evil").symlink_to(env.outside / "secret2")
    (env.root / "blobs" / ".ocilayout-tmp-evil").symlink_to(env.outside / "blobs-copy")


def _layer_digest(value: str) -> Callable[[Env], None]:
    def build(env: Env) -> None:
        def edit(document: dict[str, Any]) -> None:
            document["layers"][1]["digest"] = value

        env.rewrite_manifest(edit)

    return build


def _deep_manifest(env: Env) -> None:
    env.rewrite_manifest(lambda d: d.update(annotations=None))
    document = json.loads(env.blob(env.index()["manifests"][0]["digest"]).read_bytes())
    text = json.dumps(document)[:-1] + ', "x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    digest = env.add_blob(text.encode())
    env.set_entry(0, digest=digest, size=len(text))


def _cycle(length: int) -> Callable[[Env], None]:
    """Indexes that reference each other: only possible when blob contents lie about their digest."""

    def build(env: Env) -> None:
        names = [f"sha256:{i:064x}" for i in range(1, length + 1)]
        for position, digest in enumerate(names):
            child = names[(position + 1) % length]
            document = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": child, "size": 200},
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": env.manifest, "size": 1},
                ],
            }
            env.blob(digest).write_text(json.dumps(document))
        index = env.index()
        index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": names[0],
                                   "size": 200, "annotations": {REF_NAME: "cycle"}})
        env.write_index(index)

    return build


def _non_utf8_names(env: Env) -> None:
    blobs = os.fsencode(env.root / "blobs")
    with open(os.path.join(blobs, b"sha256", b"\xff\xfe-not-utf8"), "wb") as handle:
        handle.write(b"stray")
    os.mkdir(os.path.join(blobs, b"\xe9"))
    with open(os.path.join(blobs, b"\xe9", b"\xff"), "wb") as handle:
        handle.write(b"stray in a non-UTF-8 algorithm directory")


def _sparse_index(env: Env) -> None:
    with open(env.root / "index.json", "r+b") as handle:
        handle.truncate(1 << 30)


def _control_names(env: Env) -> None:
    env.set_entry(1, annotations={REF_NAME: "evil\nname\x1b[31m\r\x00"})


def _orphan_dir_and_fifo(env: Env) -> None:
    os.mkfifo(env.root / "blobs" / "sha256" / ("f" * 64))
    os.mkdir(env.root / "blobs" / "sha256" / ("d" * 64))
    os.mkfifo(env.root / "blobs" / "fifo-in-blobs")


def _check_outside_decoys_kept(env: Env) -> None:
    assert (env.outside / "blobs-copy" / "sha256" / ".ocilayout-tmp-decoy").read_bytes() == SENTINEL
    assert (env.outside / "blobs-copy" / ".ocilayout-tmp-decoy").read_bytes() == SENTINEL
    assert (env.outside / "blobs-copy" / "sha256" / env.orphan[7:]).exists()


def _check_symlinks_kept(env: Env) -> None:
    for path in (env.root / ".ocilayout-tmp-index.json.evil", env.root / "blobs" / "sha256" / ".ocilayout-tmp-evil",
                 env.root / "blobs" / ".ocilayout-tmp-evil"):
        assert path.is_symlink()


def _check_non_blobs_kept(env: Env) -> None:
    assert stat.S_ISFIFO(os.lstat(env.root / "blobs" / "sha256" / ("f" * 64)).st_mode)
    assert (env.root / "blobs" / "sha256" / ("d" * 64)).is_dir()


def _check_orphan_kept(env: Env) -> None:
    assert env.blob(env.orphan).exists(), "gc deleted a blob while the reach was in doubt"


READ_OK = {"ls": 0, "tree": 0, "inspect": 0, "gc-dry": 0, "rm": 0, "gc": 0}

CASES: list[Case] = [
    # -- digests in index.json that must never become paths --
    Case("digest-dotdot", _digest("sha256:../../outside/secret"), {"verify": 1}),
    Case("digest-slash", _digest("sha256:" + HEX[:30] + "/" + HEX[:33]), {"verify": 1}),
    Case("digest-absolute-path", _digest("/etc/passwd"), {"verify": 1}),
    Case("digest-alg-absolute", _digest("sha256:/etc/passwd"), {"verify": 1}),
    Case("digest-nul", _digest("sha256:" + HEX[:63] + "\x00"), {"verify": 1}),
    Case("digest-uppercase-hex", _digest("sha256:" + HEX.upper()), {"verify": 1}),
    Case("digest-too-short", _digest("sha256:" + HEX[:63]), {"verify": 1}),
    Case("digest-too-long", _digest("sha256:" + HEX + "0"), {"verify": 1}),
    Case("digest-unknown-algorithm", _digest("md5:" + HEX[:32]), {"verify": 1}),
    Case("digest-unregistered-algorithm-right-length", _digest("blake3:" + HEX), {"verify": 1}),
    Case("digest-not-a-string", _digest(12345), {"verify": 1}),
    Case("digest-trailing-newline", _digest("sha256:" + HEX + "\n"), {"verify": 1}),
    # -- a bad digest deeper down: the child is skipped (warned), never turned into a path --
    Case("layer-digest-dotdot", _layer_digest("sha256:../../../outside/secret"), {**READ_OK, "verify": 1},
         index_may_change=True),
    Case("layer-digest-absolute", _layer_digest("/etc/passwd"), {**READ_OK, "verify": 1}, index_may_change=True),
    # -- symlinks --
    Case("layer-symlink-to-outside-file", _symlink_blob("layer", "secret"),
         {**READ_OK, "verify": 1}, index_may_change=True),
    Case("manifest-symlink-to-identical-outside-copy", _symlink_blob("manifest", "copy"),
         {"ls": 0, "tree": 0, "inspect": 5, "verify": 1, "gc-dry": 0, "rm": 0, "gc": 0}, index_may_change=True,
         rm_ref="other", check=_check_orphan_kept),
    Case("orphan-symlink-to-outside-file", _symlink_blob("orphan", "secret"), {**READ_OK, "verify": 1},
         index_may_change=True),
    # rm may drop the entry, but deletes no blob: what the other entry reaches is unknown
    Case("blobs-sha256-dir-is-symlink", _dir_symlink("sha256"), {"ls": 0, "tree": 0, "verify": 1, "rm": 0},
         index_may_change=True, check=_check_outside_decoys_kept),
    Case("blobs-dir-is-symlink", _dir_symlink("blobs"), {"ls": 0, "tree": 0, "verify": 1, "rm": 0},
         index_may_change=True, check=_check_outside_decoys_kept),
    # Found by this corpus: gc listed the directory a symlinked blobs/ points to and deleted the
    # `.ocilayout-tmp-*` files there (fixed in LayoutStore.scan_blobs).
    Case("blobs-dir-is-symlink-and-index-empty", lambda env: (_dir_symlink("blobs")(env), env.write_index(
        {"schemaVersion": 2, "manifests": []})), {"ls": 0, "tree": 0, "inspect": 3, "rm": 3, "verify": 1},
        check=_check_outside_decoys_kept),
    Case("index-json-is-symlink", _file_symlink("index.json"), {"verify": 1}),
    Case("oci-layout-is-symlink", _file_symlink("oci-layout"), {"verify": 1}),
    Case("lock-file-is-symlink-to-outside", _lock_symlink, {**READ_OK, "verify": 1, "rm": 1, "gc": 1}),
    # a symlink directly under blobs/ could be a symlinked algorithm directory: gc refuses (5)
    Case("temp-named-symlinks-to-outside", _temp_symlinks, {**READ_OK, "verify": 1, "gc-dry": 5, "gc": 5},
         index_may_change=True, check=_check_symlinks_kept),
    # -- things in blobs/ that are not regular files --
    Case("manifest-is-directory", _replace_blob("manifest", "dir"), {"ls": 0, "tree": 0, "verify": 1, "gc-dry": 0,
         "rm": 0, "gc": 0}, index_may_change=True, rm_ref="other", check=_check_orphan_kept),
    Case("layer-is-directory", _replace_blob("layer", "dir"), {**READ_OK, "verify": 1}, index_may_change=True),
    Case("manifest-is-fifo", _replace_blob("manifest", "fifo"), {"ls": 0, "tree": 0, "verify": 1, "gc-dry": 0,
         "rm": 0, "gc": 0}, index_may_change=True, subprocess=True, rm_ref="other", check=_check_orphan_kept),
    Case("layer-is-fifo", _replace_blob("layer", "fifo"), {**READ_OK, "verify": 1}, index_may_change=True,
         subprocess=True),
    Case("index-json-is-fifo", lambda env: ((env.root / "index.json").unlink(), os.mkfifo(env.root / "index.json")),
         {"verify": 1}, subprocess=True),
    Case("unreferenced-fifo-and-directory-in-blobs", _orphan_dir_and_fifo, {**READ_OK, "verify": 1},
         index_may_change=True, subprocess=True, check=_check_non_blobs_kept),
    # -- index.json that is not a valid index --
    Case("index-not-json", _index_bytes(b'{"schemaVersion": 2, "manifests": ['), {"verify": 1}),
    Case("index-empty-file", _index_bytes(b""), {"verify": 1}),
    Case("index-json-array", _index_bytes(b"[]"), {"verify": 1}),
    Case("index-json-string", _index_bytes(b'"index"'), {"verify": 1}),
    Case("index-json-null", _index_bytes(b"null"), {"verify": 1}),
    Case("index-not-utf8", _index_bytes(b'{"schemaVersion": 2, "manifests": [], "x": "\xff\xfe"}'), {"verify": 1}),
    # RFC 8259 8.1: a parser MAY ignore a byte order mark; we do (a rewrite drops it)
    Case("index-utf8-bom", _raw_index('\ufeff{"schemaVersion": 2, "manifests": [{"digest": "{M}", "size": {S},'
                                      ' "annotations": {"' + REF_NAME + '": "latest"}}]}'),
         {**READ_OK, "verify": 1}, index_may_change=True),
    # -- numbers and strings that must survive a rewrite, or be refused (issue 10) --
    Case("index-nan-token", _raw_index('{"schemaVersion": 2, "x": NaN, "manifests": [{"digest": "{M}", "size": {S}}]}'),
         {"verify": 1}),
    Case("index-infinity-token", _raw_index(
        '{"schemaVersion": 2, "manifests": [{"digest": "{M}", "size": {S}, "x": -Infinity}]}'), {"verify": 1}),
    Case("index-number-overflows-float", _raw_index(
        '{"schemaVersion": 2, "x": 1e309, "manifests": [{"digest": "{M}", "size": {S}}]}'), {"verify": 1}),
    Case("index-lone-surrogate-and-odd-numbers", _raw_index(
        '{"schemaVersion": 2, "x": ["\\ud800", -0.0, 1E5, 123456789012345678901234567890, 0.10000000000000000555],'
        ' "manifests": [{"digest": "{M}", "size": {S}, "y": "\\udfff", "z": 2.50,'
        ' "annotations": {"' + REF_NAME + '": "latest"}}]}'),
         {**READ_OK, "verify": {0, 1}}, index_may_change=True, check=lambda env: _check_strict_json(env)),
    Case("index-duplicate-top-level-key", _raw_index(
        '{"schemaVersion": 2, "manifests": [], "manifests": [{"digest": "{M}", "size": {S}}]}'), {"verify": 1}),
    Case("index-duplicate-key-in-entry", _raw_index(
        '{"schemaVersion": 2, "manifests": [{"digest": "{M}", "size": {S}, "digest": "sha256:' + HEX + '",'
        ' "annotations": {"' + REF_NAME + '": "latest"}}]}'), {"verify": 1}),
    Case("index-manifests-is-object", _index_edit(lambda d: d.update(manifests={"0": d["manifests"][0]})),
         {"verify": 1}),
    Case("index-schema-version-string", _index_edit(lambda d: d.update(schemaVersion="2")), {"verify": 1}),
    Case("index-schema-version-float", _raw_index('{"schemaVersion": 2.0, "manifests": []}'), {"verify": 1}),
    Case("index-entry-not-object", _index_edit(lambda d: d["manifests"].append("latest")), {"verify": 1}),
    Case("index-annotations-is-list", _index_edit(lambda d: d["manifests"][0].update(annotations=["latest"])),
         {"verify": 1}),
    Case("index-10000-deep-arrays", _raw_index('{"schemaVersion": 2, "manifests": [], "x": '
                                               + "[" * 10_000 + "]" * 10_000 + "}"), {"verify": 1}),
    Case("index-10000-deep-objects", _raw_index('{"schemaVersion": 2, "manifests": [], "x": '
                                                + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}"), {"verify": 1}),
    Case("index-1GiB-sparse", _sparse_index, {"verify": 1}),
    Case("index-5000-digit-number", _raw_index('{"schemaVersion": 2, "manifests": [{"digest": "{M}", "size": '
                                               + "9" * 5000 + "}]}"), {"verify": 1}),
    # -- descriptor sizes --
    Case("size-negative", _index_edit(lambda d: d["manifests"][0].update(size=-1)), {"verify": 1}),
    Case("size-2-to-the-64", _index_edit(lambda d: d["manifests"][0].update(size=2**64)), {"verify": 1}),
    Case("size-string", _index_edit(lambda d: d["manifests"][0].update(size="402")), {"verify": 1}),
    Case("size-infinite-float", _raw_index('{"schemaVersion": 2, "manifests": [{"digest": "{M}", "size": 1e400}]}'),
         {"verify": 1}),
    Case("size-wrong-but-plausible", _index_edit(lambda d: d["manifests"][0].update(size=2**62)),
         {**READ_OK, "verify": 1}, index_may_change=True),
    # -- corrupt blobs the walk must survive --
    Case("manifest-10000-deep", _deep_manifest, {**READ_OK, "inspect": 5, "verify": 1}, index_may_change=True),
    Case("manifest-64MiB-sparse", _replace_blob("manifest", "sparse"), {"ls": 0, "tree": 0, "inspect": 5,
         "verify": 1, "gc-dry": 0, "rm": 0, "gc": 0}, index_may_change=True, rm_ref="other", check=_check_orphan_kept),
    Case("index-cycle-self", _cycle(1), {**READ_OK, "verify": 1}, index_may_change=True, rm_ref="other",
         inspect_ref="cycle"),
    Case("index-cycle-three", _cycle(3), {**READ_OK, "verify": 1}, index_may_change=True, rm_ref="cycle",
         inspect_ref="cycle"),
    # -- names --
    Case("non-utf8-file-names-in-blobs", _non_utf8_names, {**READ_OK, "verify": 1}, index_may_change=True),
    Case("control-characters-in-ref-name", _control_names, {**READ_OK, "verify": 1}, index_may_change=True),
    # -- the layout marker --
    Case("oci-layout-missing", lambda env: (env.root / "oci-layout").unlink(), {"verify": 1}),
    Case("oci-layout-not-json", lambda env: (env.root / "oci-layout").write_bytes(b"\x00\x01"), {"verify": 1}),
]


# -- watching the outside -------------------------------------------------------------------------


@dataclass
class Spy:
    """Records every opened file and listed directory that is (by inode) part of `outside`."""

    outside: Path
    watched: set[tuple[int, int]] = field(default_factory=set)
    touched: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path in [self.outside, *self.outside.rglob("*")]:
            st = os.lstat(path)
            self.watched.add((st.st_dev, st.st_ino))

    def _fd(self, fd: int, what: object) -> None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in self.watched:
            self.touched.append(f"opened {what!r}")

    def _dir(self, path: object) -> None:
        try:
            st = os.stat(path if path is not None else ".")  # type: ignore[arg-type]
        except (OSError, TypeError, ValueError):
            return
        if (st.st_dev, st.st_ino) in self.watched:
            self.touched.append(f"listed {path!r}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_open, real_io_open = os.open, io.open
        real_scandir, real_listdir = os.scandir, os.listdir

        def spy_open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            self._fd(fd, path)
            return fd

        def spy_io_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
            handle = real_io_open(file, *args, **kwargs)
            try:
                self._fd(handle.fileno(), file)
            except (OSError, ValueError):
                pass
            return handle

        def spy_scandir(path="."):  # type: ignore[no-untyped-def]
            self._dir(path)
            return real_scandir(path)

        def spy_listdir(path="."):  # type: ignore[no-untyped-def]
            self._dir(path)
            return real_listdir(path)

        monkeypatch.setattr(os, "open", spy_open)
        monkeypatch.setattr(io, "open", spy_io_open)
        monkeypatch.setattr(builtins, "open", spy_io_open)
        monkeypatch.setattr(os, "scandir", spy_scandir)
        monkeypatch.setattr(os, "listdir", spy_listdir)


def snapshot(root: Path) -> dict[str, object]:
    """Everything observable about a tree without following symlinks (FIFOs are not opened)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, os.fsencode(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with real_open_file(path) as handle:
                    out[rel] = ("file", st.st_size, st.st_mtime_ns, handle.read(1 << 20))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


_REAL_OPEN = io.open


def real_open_file(path: bytes):  # type: ignore[no-untyped-def]
    return _REAL_OPEN(path, "rb")


# -- running the commands -------------------------------------------------------------------------


def argv(command: str, case: Case, root: Path) -> list[str]:
    layout = str(root)
    return {
        "ls": ["ls", layout],
        "tree": ["tree", layout],
        "inspect": ["inspect", layout, case.inspect_ref],
        "verify": ["verify", layout],
        "gc-dry": ["gc", layout, "--dry-run", "--grace", "0"],
        "rm": ["rm", layout, case.rm_ref, "--lock-timeout", "5"],
        "gc": ["gc", layout, "--grace", "0", "--lock-timeout", "5"],
    }[command]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def run_in_process(args: list[str], spy: Spy, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    with monkeypatch.context() as patch:
        spy.install(patch)
        result = CliRunner().invoke(cli, args)
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stdout, result.stderr, exception)


# Runs each argv through the CLI in one separate process and prints the outcomes as JSON.
_MANY = """
import json, sys, traceback
from click.testing import CliRunner
from ocilayout.cli import cli
out = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(cli, args)
    exc = result.exception
    bad = None if exc is None or isinstance(exc, SystemExit) else "".join(traceback.format_exception(exc))
    out.append([result.exit_code, result.stdout, result.stderr, bad])
print(json.dumps(out))
"""


def run_subprocesses(argvs: list[list[str]], timeout: float = 60) -> list[Outcome]:
    """Every command in one separate process with a timeout: a hang fails the test, not CI."""
    result = subprocess.run(
        [sys.executable, "-c", _MANY, json.dumps(argvs)],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    outcomes = []
    for code, stdout, stderr, bad in json.loads(result.stdout):
        outcomes.append(Outcome(code, stdout, stderr, RuntimeError(bad) if bad else None))
    return outcomes


def expected_codes(case: Case, command: str) -> set[int]:
    value = case.expect.get(command, case.default)
    return {value} if isinstance(value, int) else set(value)


def check_outcome(case: Case, command: str, outcome: Outcome) -> None:
    where = f"{case.id}: {command}"
    assert outcome.exception is None, f"{where}: uncaught {outcome.exception!r}"
    assert "Traceback" not in outcome.stderr + outcome.stdout, f"{where}: traceback\n{outcome.stderr}"
    assert outcome.code in expected_codes(case, command), (
        f"{where}: exit {outcome.code}, expected {expected_codes(case, command)}\n{outcome.stderr}{outcome.stdout[:500]}"
    )
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    if outcome.code != 0 and not (command == "verify" and outcome.code == 1):
        assert errors, f"{where}: exit {outcome.code} without an error: line\n{outcome.stderr}"
    if command == "verify" and outcome.code == 1:
        assert outcome.stdout.strip(), f"{where}: verify failed without naming a problem"
    for line in (outcome.stderr + outcome.stdout).splitlines():
        assert len(line) <= MAX_LINE, f"{where}: a {len(line)}-character output line"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_layout(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(tmp_path)
    case.build(env)
    index_before = os.lstat(env.root / "index.json")
    index_bytes = _read_index_safely(env.root)
    outside_before = snapshot(env.outside)
    spy = Spy(env.outside)
    started = time.monotonic()
    if case.subprocess:  # all commands at once, in a separate process with a timeout
        batch = iter(run_subprocesses([argv(command, case, env.root) for command in COMMANDS]))
    for command in COMMANDS:
        args = argv(command, case, env.root)
        outcome = next(batch) if case.subprocess else run_in_process(args, spy, monkeypatch)
        check_outcome(case, command, outcome)
        if case.subprocess:  # ran before these checks: only the end state can be compared
            if case.index_may_change and command == "rm" and outcome.code == 0:
                index_bytes = _read_index_safely(env.root)
            continue
        if not (case.index_may_change and command == "rm" and outcome.code == 0):
            assert _read_index_safely(env.root) == index_bytes, f"{case.id}: {command} changed index.json"
            index_bytes = _read_index_safely(env.root)
        else:
            index_bytes = _read_index_safely(env.root)
    assert _read_index_safely(env.root) == index_bytes, f"{case.id}: index.json changed"
    assert spy.touched == [], f"{case.id}: touched the outside: {spy.touched}"
    assert snapshot(env.outside) == outside_before, f"{case.id}: something outside the layout changed"
    if not case.index_may_change:
        assert os.lstat(env.root / "index.json").st_ino == index_before.st_ino, "index.json was replaced"
    if case.check is not None:
        case.check(env)
    assert time.monotonic() - started < 60, f"{case.id}: took too long"


def _read_index_safely(root: Path) -> object:
    st = os.lstat(root / "index.json")
    if not stat.S_ISREG(st.st_mode):
        return ("not a regular file", stat.S_IFMT(st.st_mode), os.readlink(root / "index.json")
                if stat.S_ISLNK(st.st_mode) else None)
    if st.st_size > 1 << 20:
        return ("big", st.st_size, st.st_mtime_ns, st.st_ino)
    return (root / "index.json").read_bytes()


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


# -- resource use on huge declared sizes --------------------------------------------------------


def test_sparse_1gib_index_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A 1 GiB (sparse) index.json is refused from its size, in well under the time and memory
    it would take to read the 512 MiB cap. Peak RSS is the child's VmHWM (ru_maxrss would
    include the parent's, which a child inherits across fork and exec)."""
    env = make_env(tmp_path)
    _sparse_index(env)
    code = (
        "import sys\n"
        "from ocilayout.cli import main\n"
        "sys.argv = ['ocilayout', 'ls', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print(code, [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stdout)\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, str(env.root)], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 20
    assert result.stdout, result.stderr
    exit_code, peak_kib = result.stdout.split()[-2:]
    assert exit_code == "5"
    assert result.stderr.startswith("error:") and "larger than" in result.stderr
    assert int(peak_kib) < 100 * 1024, f"peak RSS {int(peak_kib) // 1024} MiB"


# -- read-only layouts and a full disk ----------------------------------------------------------
#
# Tests run as root, where permission bits do not stop writes, so a read-only layout is a real
# read-only bind mount and a full disk a real small tmpfs, when mounting is permitted (else
# those tests skip). The in-process simulations after them (EROFS/EACCES/ENOSPC raised from
# os.open, os.replace, os.write and os.unlink by monkeypatching) always run.


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="session")
def can_mount(tmp_path_factory: pytest.TempPathFactory) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = tmp_path_factory.mktemp("mount-probe")
    if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)):
        return False
    _umount(probe)
    return True


@pytest.fixture
def readonly_env(tmp_path: Path, can_mount: bool):  # type: ignore[no-untyped-def]
    if not can_mount:
        pytest.skip("cannot mount here (not root, or no mount permission); see the simulated tests below")
    env = make_env(tmp_path)
    mountpoint = tmp_path / "ro"
    mountpoint.mkdir()
    if not (_mount("--bind", str(env.root), str(mountpoint)) and _mount("-o", "remount,bind,ro", str(mountpoint))):
        _umount(mountpoint)
        pytest.skip("read-only bind mount refused")
    try:
        yield env, mountpoint
    finally:
        _umount(mountpoint)


def cli_run(*args: str) -> Outcome:
    result = CliRunner().invoke(cli, list(args))
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stdout, result.stderr, exception)


def assert_one_error(outcome: Outcome, code: int, needle: str) -> None:
    assert outcome.exception is None, repr(outcome.exception)
    assert outcome.code == code, outcome.stderr
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], outcome.stderr
    assert "Traceback" not in outcome.stderr


@pytest.mark.parametrize(
    "args",
    [["rm", "latest"], ["tag", "latest", "again"], ["untag", "other"], ["gc", "--grace", "0"]],
    ids=["rm", "tag", "untag", "gc"],
)
def test_read_only_mount_changing_commands_fail_cleanly(readonly_env, args: list[str]) -> None:
    env, ro = readonly_env
    before = snapshot(env.root)
    outcome = cli_run(args[0], str(ro), *args[1:])
    assert_one_error(outcome, 1, "Read-only file system")
    assert snapshot(env.root) == before


def test_read_only_mount_reading_commands_work(readonly_env) -> None:
    env, ro = readonly_env
    for args in (["ls"], ["tree"], ["inspect", "latest"], ["gc", "--dry-run", "--grace", "0"]):
        outcome = cli_run(args[0], str(ro), *args[1:])
        assert outcome.code == 0 and outcome.exception is None, (args, outcome.stderr)
    verify = cli_run("verify", str(ro))
    assert verify.code == 1 and "unreachable" in verify.stdout  # only the deliberate orphan


@pytest.fixture
def full_disk_env(tmp_path: Path, can_mount: bool):  # type: ignore[no-untyped-def]
    if not can_mount:
        pytest.skip("cannot mount here (not root, or no mount permission); see the simulated tests below")
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)):
        pytest.skip("tmpfs mount refused")
    try:
        env = make_env(mountpoint)
        (env.root / ".ocilayout.lock").touch()
        filler = mountpoint / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield env, filler
    finally:
        _umount(mountpoint)


@pytest.mark.parametrize(
    "args", [["rm", "latest"], ["tag", "latest", "a-much-longer-new-name"], ["untag", "other"]],
    ids=["rm", "tag", "untag"],
)
def test_disk_full_during_index_write(full_disk_env, args: list[str]) -> None:
    env, filler = full_disk_env
    original = (env.root / "index.json").read_bytes()
    blobs = sorted(p.name for p in (env.root / "blobs" / "sha256").iterdir())
    outcome = cli_run(args[0], str(env.root), *args[1:])
    assert_one_error(outcome, 1, "No space left on device")
    assert "index.json left unchanged" in outcome.stderr
    assert (env.root / "index.json").read_bytes() == original
    assert sorted(p.name for p in (env.root / "blobs" / "sha256").iterdir()) == blobs
    assert not [p for p in env.root.iterdir() if p.name.startswith(".ocilayout-tmp-")]
    filler.unlink()  # space again: the same command now works
    again = cli_run(args[0], str(env.root), *args[1:])
    assert again.code == 0, again.stderr


def _raise_for(monkeypatch: pytest.MonkeyPatch, name: str, err: int, when: Callable[[str], bool]) -> None:
    real = getattr(os, name)

    def failing(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if when(os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""):
            raise OSError(err, os.strerror(err), path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, name, failing)


@pytest.mark.parametrize(
    "name, err, when",
    [
        ("open", errno.EACCES, lambda p: ".ocilayout-tmp-" in p),  # directory not writable
        ("open", errno.EROFS, lambda p: ".ocilayout-tmp-" in p),
        ("replace", errno.EACCES, lambda p: True),
        ("replace", errno.EROFS, lambda p: True),
        ("write", errno.ENOSPC, None),
        ("fsync", errno.EIO, None),
    ],
    ids=["create-EACCES", "create-EROFS", "rename-EACCES", "rename-EROFS", "write-ENOSPC", "fsync-EIO"],
)
@pytest.mark.parametrize("command", [["rm", "latest"], ["tag", "latest", "fresh"], ["untag", "other"]],
                         ids=["rm", "tag", "untag"])
def test_simulated_index_write_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, err: int,
                                        when, command: list[str]) -> None:
    env = make_env(tmp_path)
    (env.root / ".ocilayout.lock").touch()
    before = snapshot(env.root)
    if when is None:  # os.write / os.fsync take a descriptor: fail them for the temp file only
        real = getattr(os, name)

        def failing(fd, *args):  # type: ignore[no-untyped-def]
            if os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith(".ocilayout-tmp-"):
                raise OSError(err, os.strerror(err))
            return real(fd, *args)

        monkeypatch.setattr(os, name, failing)
    else:
        _raise_for(monkeypatch, name, err, when)
    outcome = cli_run(command[0], str(env.root), *command[1:])
    monkeypatch.undo()
    assert_one_error(outcome, 1, os.strerror(err))
    assert snapshot(env.root) == before, "a failed index write changed the layout"


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES, errno.EBUSY])
def test_simulated_blob_delete_failures_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     err: int) -> None:
    """index.json is already rewritten when a blob refuses to go: rm exits 1 with an error line
    per blob (a bug fixed in cli._print_removal: they were silent), and the blobs stay as
    orphans that a later gc removes."""
    env = make_env(tmp_path)
    _raise_for(monkeypatch, "unlink", err, lambda p: "/blobs/" in p)
    outcome = cli_run("rm", str(env.root), "latest")
    gc = cli_run("gc", str(env.root), "--grace", "0")
    monkeypatch.undo()
    assert outcome.code == 1 and outcome.exception is None
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and all(os.strerror(err) in line for line in errors), outcome.stderr
    assert "latest" not in json.dumps(env.index())
    assert gc.code == 1 and os.strerror(err) in gc.stderr
    assert cli_run("gc", str(env.root), "--grace", "0").code == 0
    assert sorted(p.name for p in (env.root / "blobs" / "sha256").iterdir()) == sorted(
        d[7:] for d in [env.other, env.layers[0], *_config_of(env, env.other)]
    )


def _config_of(env: Env, manifest: str) -> list[str]:
    document = json.loads(env.blob(manifest).read_bytes())
    return [document["config"]["digest"], *[layer["digest"] for layer in document["layers"][1:]]]
