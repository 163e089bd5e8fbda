"""Shared by the reliability trials (bench/*_trials.py, bench/fuzz_long.py) and their CI tests.

Everything here checks a layout *independently* of ocilayout: its own JSON walk, its own
digest check, its own idea of what a temporary file is. Only `ocilayout.schemas.validate`
is borrowed (the project's schema files are the spec of a valid index.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "fixtures") not in sys.path:
    sys.path.insert(0, str(REPO / "fixtures"))

import generate  # noqa: E402  (fixtures/generate.py)

REF_NAME = "org.opencontainers.image.ref.name"
TEMP_PREFIX = ".ocilayout-tmp-"
LOCK_FILE = ".ocilayout.lock"
ROOT_FILES = {"oci-layout", "index.json", "blobs", LOCK_FILE}
_DIGEST = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")


def ocilayout_argv(*args: object) -> list[str]:
    """argv of the real CLI as a separate Python process."""
    return [sys.executable, "-m", "ocilayout", *map(str, args)]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(extra or {})}


def run_cli(*args: object, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ocilayout_argv(*args), capture_output=True, text=True, timeout=timeout, env=cli_env(env))


def scratch_root() -> Path:
    """Where trials copy layouts: /dev/shm (tmpfs) when usable, else the system temp dir.

    A SIGKILL is a process crash, not a power cut: written pages survive it on any file
    system, so tmpfs changes nothing the trials check, and copying is many times faster.
    OCILAYOUT_SCRATCH overrides the choice.
    """
    chosen = os.environ.get("OCILAYOUT_SCRATCH")
    if chosen:
        return Path(chosen)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(tempfile.gettempdir())


def copy_layout(source: Path, dest: Path) -> None:
    """A private copy (cp -a: no hard links shared with the source, mtimes kept)."""
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["cp", "-a", str(source), str(dest)], check=True)


def is_digest(text: object) -> bool:
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def blob_path(root: Path, digest: str) -> Path:
    alg, _, hexpart = digest.partition(":")
    return root / "blobs" / alg / hexpart


def entry_name(entry: Any) -> str | None:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


def read_index(root: Path) -> dict[str, Any]:
    return json.loads((root / "index.json").read_bytes())


def names_of(root: Path) -> dict[str, list[str]]:
    """ref name -> digests of the entries carrying it."""
    out: dict[str, list[str]] = {}
    for entry in read_index(root)["manifests"]:
        name = entry_name(entry)
        if name is not None:
            out.setdefault(name, []).append(entry["digest"])
    return out


@dataclass
class Walk:
    """What index.json reaches, by the content of each blob (never by media type alone)."""

    reachable: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    bad: list[str] = field(default_factory=list)


def independent_walk(root: Path, index: dict[str, Any] | None = None) -> Walk:
    """Follow manifests[], config, layers[], blobs[] of every JSON blob (subject is weak)."""
    walk = Walk()
    if index is None:
        index = read_index(root)
    stack = [m.get("digest") for m in index.get("manifests", [])]
    while stack:
        digest = stack.pop()
        if not is_digest(digest):
            walk.bad.append(f"invalid digest {digest!r}")
            continue
        if digest in walk.reachable:
            continue
        walk.reachable.add(digest)
        path = blob_path(root, digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            walk.missing.add(digest)
            continue
        if not data.lstrip().startswith(b"{"):
            continue
        try:
            document = json.loads(data)
        except ValueError:
            continue
        if not isinstance(document, dict):
            continue
        children: list[Any] = []
        for key in ("manifests", "layers", "blobs"):
            if isinstance(document.get(key), list):
                children.extend(document[key])
        if isinstance(document.get("config"), dict) and "digest" in document["config"]:
            children.append(document["config"])  # an image config's own "config" is no descriptor
        stack.extend(c.get("digest") for c in children if isinstance(c, dict))
    return walk


def blob_files(root: Path) -> tuple[set[str], list[str]]:
    """(digests of the regular files under blobs/<alg>/, every other entry under blobs/)."""
    digests: set[str] = set()
    others: list[str] = []
    blobs = root / "blobs"
    for alg_dir in sorted(blobs.iterdir()):
        if not alg_dir.is_dir() or alg_dir.is_symlink():
            others.append(str(alg_dir))
            continue
        for path in alg_dir.iterdir():
            digest = f"{alg_dir.name}:{path.name}"
            if is_digest(digest) and path.is_file() and not path.is_symlink():
                digests.add(digest)
            else:
                others.append(str(path))
    return digests, others


def check_blob_content(root: Path, digests: Iterable[str]) -> list[str]:
    """Each named blob hashes to its name (a half-written or temp file under a blob name fails)."""
    problems = []
    for digest in digests:
        alg, _, hexpart = digest.partition(":")
        data = blob_path(root, digest).read_bytes()
        if hashlib.new(alg, data).hexdigest() != hexpart:
            problems.append(f"blob {digest} does not hash to its name ({len(data)} bytes)")
    return problems


_VALID_INDEXES: dict[str, list[str]] = {}  # sha256 of index.json bytes -> schema problems


def index_schema_problems(raw: bytes, index: Any) -> list[str]:
    """ocilayout.schemas.validate(index, "index"), remembered per distinct index.json."""
    from ocilayout.schemas import validate

    key = hashlib.sha256(raw).hexdigest()
    if key not in _VALID_INDEXES:
        _VALID_INDEXES[key] = validate(index, "index")
    return _VALID_INDEXES[key]


def layout_problems(root: Path, *, check_hashes: bool = True) -> tuple[list[str], Walk, set[str]]:
    """The post-crash invariants: (problems, the walk, the blob set)."""
    problems: list[str] = []
    raw = (root / "index.json").read_bytes()
    try:
        index = json.loads(raw)
    except ValueError as exc:
        return [f"index.json does not parse: {exc}"], Walk(), set()
    schema_errors = index_schema_problems(raw, index)
    if schema_errors:
        problems.append(f"index.json invalid: {schema_errors[:3]}")
    walk = independent_walk(root, index)
    problems.extend(walk.bad)
    if walk.missing:
        problems.append(f"{len(walk.missing)} reachable blobs missing, e.g. {sorted(walk.missing)[:3]}")
    digests, others = blob_files(root)
    if others:
        problems.append(f"files under blobs/ that are not blobs: {others[:5]}")
    if check_hashes:
        problems.extend(check_blob_content(root, digests)[:5])
    for path in root.iterdir():
        if path.name not in ROOT_FILES and not path.name.startswith(TEMP_PREFIX):
            problems.append(f"unexpected file in layout root: {path.name}")
    return problems, walk, digests


def temp_files(root: Path) -> list[Path]:
    """Our temporary files anywhere in the layout."""
    return [p for p in root.rglob(f"{TEMP_PREFIX}*")]


def minimal_problems(root: Path) -> list[str]:
    """After `gc --grace 0`: blob set == reachable set, no temp files, invariants hold."""
    problems, walk, digests = layout_problems(root, check_hashes=False)
    extra = digests - walk.reachable
    if extra:
        problems.append(f"not minimal: {len(extra)} unreachable blobs remain, e.g. {sorted(extra)[:3]}")
    leftovers = temp_files(root)
    if leftovers:
        problems.append(f"temporary files remain after gc: {[p.name for p in leftovers]}")
    return problems


def make_orphans(root: Path, keep_every: int = 10) -> list[str]:
    """Drop every `keep_every`-th entry from index.json (written directly), leaving its blobs
    as orphans for gc. Returns the dropped names."""
    index = read_index(root)
    dropped = []
    kept = []
    for position, entry in enumerate(index["manifests"]):
        if position % keep_every == 3:
            dropped.append(entry_name(entry))
        else:
            kept.append(entry)
    index["manifests"] = kept
    (root / "index.json").write_text(json.dumps(index, separators=(",", ":")))
    return dropped
