"""Bad input: each broken fixture (and a few hostile layouts) gives its exit code and one
`error:` line naming the file or digest at fault; reading never changes the layout."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import run_cli_process
from ocilayout.cli import cli

HELLO = "sha256:33ac2360630538dd7ee271e0c327b679eb5dc61045e22b81cbc7edea01c6511e"
HELLO_LAYER = "sha256:f45bf6a44394b0dcc372d10e4ba749d5dfe7b76c4e9284a16ebfb9633c5db7bb"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def snapshot(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes()
        else:
            out[rel] = "dir"
    return out


def cli_run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if not line.startswith("warning: ")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith("error: ")
    return errors[0]


# -- the committed broken fixtures ------------------------------------------------------------

BROKEN = {
    # fixture: (exit code of ls/tree/inspect, text the error line must contain)
    "bad-json": (5, "index.json"),
    "missing-oci-layout": (5, "oci-layout"),
    "traversal-digest": (5, "sha256:../../x"),
    "bad-version": (5, "oci-layout"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("command", ["ls", "tree", "inspect"])
def test_broken_fixture_fails(fixture_layout, name: str, command: str) -> None:
    root = fixture_layout(f"broken/{name}")
    before = snapshot(root)
    code, needle = BROKEN[name]
    result = cli_run(command, str(root))
    assert result.exit_code == code, (result.stdout, result.stderr)
    line = one_error(result.stderr)
    assert needle in line and str(root) in line, line
    assert result.stdout == ""
    assert snapshot(root) == before


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_fixture_subprocess(fixture_layout, name: str) -> None:
    root = fixture_layout(f"broken/{name}")
    proc = run_cli_process("ls", root, "--format", "json")
    assert proc.returncode == BROKEN[name][0]
    assert BROKEN[name][1] in one_error(proc.stderr)
    assert "Traceback" not in proc.stderr
    # Machines get the error as a JSON document on stdout (README "Errors for machines").
    error = json.loads(proc.stdout)["error"]
    assert error["exit_code"] == proc.returncode and BROKEN[name][1] in error["message"]
    assert error["kind"] == {3: "not-found", 5: "corrupt"}.get(proc.returncode, error["kind"])


def test_missing_blob_lists_with_warning(fixture_layout) -> None:
    # `ls` is not `verify`: a missing layer is reported but the listing still works (exit 0)
    root = fixture_layout("broken/missing-blob")
    before = snapshot(root)
    result = cli_run("ls", str(root))
    assert result.exit_code == 0
    [warning] = result.stderr.splitlines()
    assert warning.startswith("warning: ") and HELLO_LAYER in warning
    assert "(1 missing)" in result.stdout
    tree = cli_run("tree", str(root))
    assert tree.exit_code == 0
    assert HELLO_LAYER in tree.stderr
    assert [line for line in tree.stdout.splitlines() if HELLO_LAYER in line][0].endswith("missing)")
    inspect = cli_run("inspect", str(root), "latest")
    assert inspect.exit_code == 0
    assert json.loads(inspect.stdout)["manifest"]["layers"][0]["digest"] == HELLO_LAYER
    assert snapshot(root) == before


def test_missing_blob_strict_still_lists(fixture_layout) -> None:
    # --strict is about missing children of indexes (sparse); a missing layer stays a warning
    result = cli_run("--strict", "ls", str(fixture_layout("broken/missing-blob")))
    assert result.exit_code == 0


def test_digest_mismatch_is_verify_business(fixture_layout) -> None:
    root = fixture_layout("broken/digest-mismatch")
    for command in ("ls", "tree"):
        result = cli_run(command, str(root))
        assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(cli_run("inspect", str(root)).stdout)["descriptor"]["digest"] == HELLO


# -- hostile layouts built on a real file system ----------------------------------------------


@pytest.fixture
def single(fixture_layout) -> Path:
    return fixture_layout("single")


def set_index(root: Path, document: object) -> None:
    (root / "index.json").write_text(json.dumps(document))


def hello_entry(**changes: object) -> dict[str, object]:
    entry: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": HELLO, "size": 402,
                                "annotations": {"org.opencontainers.image.ref.name": "latest"}}
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "index.json"),
        (b"\xff\xfe\x00", "index.json"),
        (b"[" * 100_000 + b"]" * 100_000, "index.json"),
        (b'{"schemaVersion":2,"manifests":[],"manifests":[]}', "duplicate key"),
        (b'{"schemaVersion":2}', "index.json"),
        (b'{"schemaVersion":2,"manifests":[{"digest":"SHA256:AB","size":1}]}', "SHA256:AB"),
        (json.dumps({"schemaVersion": 2, "manifests": [hello_entry(size=-1)]}).encode(), "size"),
        (json.dumps({"schemaVersion": 2, "manifests": [hello_entry(digest="sha256:" + "A" * 64)]}).encode(),
         "sha256:" + "A" * 64),
        (json.dumps({"schemaVersion": 2, "manifests": [hello_entry(digest="/etc/passwd")]}).encode(), "/etc/passwd"),
    ],
)
def test_bad_index_json(single: Path, content: bytes, needle: str) -> None:
    (single / "index.json").write_bytes(content)
    for command in ("ls", "tree"):
        result = cli_run(command, str(single))
        assert result.exit_code == 5, result.stderr
        line = one_error(result.stderr)
        assert needle in line and str(single / "index.json") in line


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo", "absent"])
def test_index_json_not_a_regular_file(single: Path, tmp_path: Path, kind: str) -> None:
    index = single / "index.json"
    data = index.read_bytes()
    index.unlink()
    if kind == "symlink":
        (tmp_path / "real-index.json").write_bytes(data)
        index.symlink_to(tmp_path / "real-index.json")
    elif kind == "directory":
        index.mkdir()
    elif kind == "fifo":
        os.mkfifo(index)
    proc = run_cli_process("ls", single, timeout=30)  # a FIFO must not block the reader
    assert proc.returncode == 5, proc.stderr
    assert str(index) in one_error(proc.stderr)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "garbage", "directory"])
def test_manifest_blob_unusable(single: Path, tmp_path: Path, kind: str) -> None:
    blob = single / "blobs" / "sha256" / HELLO[7:]
    data = blob.read_bytes()
    blob.unlink()
    if kind == "symlink":
        (tmp_path / "manifest").write_bytes(data)
        blob.symlink_to(tmp_path / "manifest")
    elif kind == "fifo":
        os.mkfifo(blob)
    elif kind == "garbage":
        blob.write_bytes(b"{ not json")
    else:
        blob.mkdir()
    proc = run_cli_process("ls", single, timeout=30)
    # the listing works; the unusable manifest is a warning naming its digest
    assert proc.returncode == 0, proc.stderr
    assert HELLO in proc.stderr and proc.stderr.startswith("warning: ")
    assert "Traceback" not in proc.stderr
    tree = run_cli_process("tree", single, timeout=30)
    assert tree.returncode == 0 and HELLO in tree.stdout


def test_symlinked_blobs_directory(single: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (single / "blobs").rename(outside)
    (single / "blobs").symlink_to(outside)
    proc = run_cli_process("ls", single, timeout=30)
    assert "Traceback" not in proc.stderr
    assert proc.returncode in (0, 5)
    assert "symlink" in proc.stderr


def test_empty_directory(tmp_path: Path) -> None:
    result = cli_run("ls", str(tmp_path))
    assert result.exit_code == 5
    assert str(tmp_path / "oci-layout") in one_error(result.stderr)


def test_oci_layout_is_not_json_object(single: Path) -> None:
    (single / "oci-layout").write_text('"1.0.0"')
    result = cli_run("ls", str(single))
    assert result.exit_code == 5
    assert "oci-layout" in one_error(result.stderr)


def test_huge_error_text_stays_one_short_line(single: Path) -> None:
    set_index(single, {"schemaVersion": 2, "manifests": [hello_entry(digest="sha256:" + "x\n" * 5000)]})
    result = cli_run("ls", str(single))
    assert result.exit_code == 5
    line = one_error(result.stderr)
    assert len(line) < 400


def test_corrupt_blob_cycle_terminates(single: Path) -> None:
    # two index blobs that (lying about their digests) list each other
    a_hex, b_hex = hashlib.sha256(b"A").hexdigest(), hashlib.sha256(b"B").hexdigest()
    idx = "application/vnd.oci.image.index.v1+json"
    blobs = single / "blobs" / "sha256"
    (blobs / a_hex).write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": idx, "digest": "sha256:" + b_hex, "size": 10}]}))
    (blobs / b_hex).write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": idx, "digest": "sha256:" + a_hex, "size": 10}]}))
    set_index(single, {"schemaVersion": 2, "manifests": [{"mediaType": idx, "digest": "sha256:" + a_hex, "size": 10}]})
    for command in ("ls", "tree"):
        proc = run_cli_process(command, single, timeout=30)
        assert proc.returncode == 0, proc.stderr
    assert "cycle" in run_cli_process("tree", single, timeout=30).stdout


def test_absurd_depth_terminates(tmp_path: Path, generate_module) -> None:
    w = generate_module.LayoutWriter(tmp_path / "deep")
    top = w.image([b"layer"])
    for _ in range(200):
        top = w.index([top])
    w.add_entry(top, "deep")
    w.finish()
    ls = run_cli_process("ls", tmp_path / "deep", timeout=60)
    assert ls.returncode == 0 and "deeper than" in ls.stderr
    strict = run_cli_process("--strict", "ls", tmp_path / "deep", timeout=60)
    assert strict.returncode == 5 and "deeper than" in one_error(strict.stderr)
    tree = run_cli_process("tree", tmp_path / "deep", timeout=60)
    assert tree.returncode == 0 and "deeper than" in tree.stdout
