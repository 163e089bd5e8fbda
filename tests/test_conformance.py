"""Every layout of the shared conformance corpus (`../shared/conformance/<source>/<fixture>/`).

`ls` and `tree` (real subprocesses, with a timeout) either succeed, or fail with exit 5 and
one `error:` line naming the file at fault: never a traceback, never a hang. The
broken-by-design fixtures (no `oci-layout` file, unusable `index.json`) must give exit 5.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import SHARED_DIR, run_cli_process
from ocilayout import Layout
from ocilayout.cli import cli
from ocilayout.errors import AmbiguousReferenceError

CORPUS = SHARED_DIR / "conformance"
LAYOUTS = sorted(p for p in CORPUS.glob("*/*") if p.is_dir()) if CORPUS.is_dir() else []
IDS = [f"{p.parent.name}/{p.name}" for p in LAYOUTS]

# Broken by design upstream (SOURCES.md): these must be refused as invalid layouts.
BROKEN_BY_DESIGN = {
    "stereoscope/invalid_file",  # index.json is empty
    "stereoscope/no_manifests",  # index.json is a Docker manifest
    "stereoscope/valid_manifest",  # index.json is a manifest list; no oci-layout
    "containers-image/manifest",  # index.json only
    "containers-image/name_lookups",
    "containers-image/two_images_manifest",
}
TIMEOUT = 60

pytestmark = pytest.mark.skipif(not LAYOUTS, reason=f"conformance corpus absent ({CORPUS})")


def expect_failure(path: Path) -> bool:
    key = f"{path.parent.name}/{path.name}"
    return key in BROKEN_BY_DESIGN or not (path / "oci-layout").exists()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """A real subprocess (catches hangs and interpreter-level crashes)."""
    try:
        return run_cli_process(*args, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ocilayout {' '.join(args)} did not finish within {TIMEOUT}s")


def run_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """CliRunner, shaped like a CompletedProcess: cheaper for the many JSON checks."""
    result = CliRunner().invoke(cli, list(args))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def check(proc: subprocess.CompletedProcess[str], path: Path) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    if expect_failure(path):
        assert proc.returncode == 5, (proc.returncode, proc.stdout, proc.stderr)
    else:
        assert proc.returncode == 0, (proc.returncode, proc.stderr)
    if proc.returncode == 0:
        for line in proc.stderr.splitlines():
            assert line.startswith("warning: "), proc.stderr
        return
    assert proc.returncode == 5, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(errors) == 1 and errors[0].startswith("error: "), proc.stderr
    assert str(path) in errors[0], "the error names the file at fault"
    if "--format" in proc.args and "json" in proc.args:
        assert json.loads(proc.stdout)["error"]["exit_code"] == 5  # the error document
    else:
        assert proc.stdout == ""


@pytest.mark.parametrize("path", LAYOUTS, ids=IDS)
@pytest.mark.parametrize("command", ["ls", "tree"])
def test_read_commands(path: Path, command: str) -> None:
    check(run(command, str(path)), path)


@pytest.mark.parametrize("path", LAYOUTS, ids=IDS)
def test_ls_json_matches_index(path: Path) -> None:
    proc = run_in_process("ls", str(path), "--format", "json")
    check(proc, path)
    if proc.returncode:
        return
    rows = json.loads(proc.stdout)["images"]
    manifests = json.loads((path / "index.json").read_bytes()).get("manifests") or []
    assert [r["digest"] for r in rows] == [m["digest"] for m in manifests]
    names = [(m.get("annotations") or {}).get("org.opencontainers.image.ref.name") for m in manifests]
    assert [r["name"] for r in rows] == names


@pytest.mark.parametrize("path", LAYOUTS, ids=IDS)
def test_tree_json_and_strict(path: Path) -> None:
    proc = run_in_process("tree", str(path), "--format", "json")
    check(proc, path)
    if proc.returncode == 0:
        assert len(json.loads(proc.stdout)["roots"]) == len(
            json.loads((path / "index.json").read_bytes()).get("manifests") or [])
    strict = run_in_process("--strict", "ls", str(path))
    assert "Traceback" not in strict.stderr
    assert strict.returncode in (0, 5), strict.stderr


@pytest.mark.parametrize("path", [p for p in LAYOUTS if not expect_failure(p)],
                         ids=[i for p, i in zip(LAYOUTS, IDS) if not expect_failure(p)])
def test_inspect_every_entry(path: Path) -> None:
    layout = Layout.open(path)
    for entry in layout.index.entries:
        try:
            report = layout.inspect(entry.name or str(entry.digest))
        except AmbiguousReferenceError:
            assert entry.name is not None and len({e.digest for e in layout.index.names()[entry.name]}) > 1
            report = layout.inspect(str(entry.digest))
        assert report.descriptor["digest"] == str(entry.digest)


# -- specific expectations from SOURCES.md -------------------------------------------------


def corpus(name: str) -> Path:
    path = CORPUS / name
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    return path


@pytest.mark.parametrize("name", ["go-containerregistry/hello-world-v25-tar", "oras/zot-blobs"])
def test_manifests_null(name: str) -> None:
    listing = Layout.open(corpus(name)).list()
    assert listing.rows == []
    assert any("null" in w for w in listing.warnings)


def test_regclient_testrepo_with_referrer_loop() -> None:
    layout = Layout.open(corpus("regclient/testrepo"))
    listing = layout.list()
    assert len(listing.rows) == 26 and listing.warnings == []
    tree = layout.tree()
    assert len(tree.roots) == 26


def test_identical_references_are_ambiguous() -> None:
    path = corpus("containers-image/delete_image_two_identical_references")
    proc = run("inspect", str(path), "1.0.0")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("sha256:") == 2


def test_descriptor_media_type_entry_is_sniffed() -> None:
    # go-containerregistry/test_index: an entry typed application/vnd.oci.descriptor.v1+json
    # whose blob is a Docker schema2 manifest: the walk looks at the content.
    rows = Layout.open(corpus("go-containerregistry/test_index")).list().rows
    odd = [r for r in rows if r.media_type == "application/vnd.oci.descriptor.v1+json"]
    assert odd and all(r.kind == "image" for r in odd)


def test_unknown_entry_without_blobs_dir() -> None:
    listing = Layout.open(corpus("go-containerregistry/test_gc_image_unknown_mediatype")).list()
    [row] = listing.rows
    assert row.kind == "missing"
    assert any(row.digest in w for w in listing.warnings)


def test_full_name_as_ref_name() -> None:
    path = corpus("stereoscope/valid-oci-tar")
    proc = run("inspect", str(path), "sample:latest")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["names"] == ["sample:latest"]


def test_two_tags_one_manifest() -> None:
    rows = Layout.open(corpus("stereoscope/valid_oci_dir")).list().rows
    assert sorted(r.name for r in rows) == ["1.0", "latest"]
    assert len({r.digest for r in rows}) == 1


@pytest.mark.parametrize("name", ["imgutil/busybox-sparse", "imgutil/my-previous-sparse-image"])
def test_omitted_layers_are_reported(name: str) -> None:
    listing = Layout.open(corpus(name)).list()
    [row] = listing.rows
    assert row.missing == 1 and len(listing.warnings) == 1


def test_model_artifact_kind() -> None:
    [row] = Layout.open(corpus("olot/sample-model-oci")).list().rows
    assert row.kind == "artifact"


def test_shared_blobs_dir_fixture() -> None:
    path = corpus("containers-image/delete_image_shared_blobs_dir")
    alone = Layout.open(path).list()
    assert alone.rows[0].kind == "missing"
    shared = Layout.open(path, shared_blobs=path / "shared_blobs").list()
    assert shared.warnings == [] and shared.rows[0].kind == "image" and shared.rows[0].missing == 0


def sources_table() -> dict[str, list[str]]:
    """The check_corpus table of SOURCES.md: fixture -> its cells (an independent checker's view)."""
    text = (CORPUS / "SOURCES.md").read_text() if (CORPUS / "SOURCES.md").is_file() else ""
    start, end = text.find("<!-- check_corpus:begin -->"), text.find("<!-- check_corpus:end -->")
    rows = {}
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 6 and "/" in cells[0]:
            rows[cells[0]] = cells
    return rows


TABLE = sources_table() if CORPUS.is_dir() else {}
# The independent checker also follows `subject`, a weak edge for us (DESIGN 1): a subject that
# lives in another repository is not missing from this layout's point of view.
SUBJECT_ONLY_MISSING = {"regclient/external": 1}


@pytest.mark.parametrize("key", sorted(k for k in TABLE if not expect_failure(CORPUS / k)))
def test_missing_blobs_agree_with_independent_checker(key: str) -> None:
    listing = Layout.open(CORPUS / key).list()
    reported = {w.split()[2] for w in listing.warnings if w.startswith("missing ")}
    expected = int(TABLE[key][6]) - SUBJECT_ONLY_MISSING.get(key, 0)
    assert len(reported) == expected, listing.warnings
    assert len(listing.rows) == int(TABLE[key][1].split()[0])
