"""verify: every kind of damage is detected and named; a clean layout passes."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import cli_command
from hypothesis import given, settings
from hypothesis import strategies as st

from ocilayout import Layout, Problem, schemas, verify_layout
from ocilayout.errors import CorruptLayoutError, NotFoundError
from ocilayout.schemas import _fast_validator

HELLO_MANIFEST = "sha256:33ac2360630538dd7ee271e0c327b679eb5dc61045e22b81cbc7edea01c6511e"
HELLO_CONFIG = "sha256:e257e5049aa4e3e72b054c6e9f3cafb1c5984c9f422997db3cdddb62a3904988"
HELLO_LAYER = "sha256:f45bf6a44394b0dcc372d10e4ba749d5dfe7b76c4e9284a16ebfb9633c5db7bb"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def blob_path(root: Path, digest: str) -> Path:
    alg, _, hexd = digest.partition(":")
    return root / "blobs" / alg / hexd


def kinds(report) -> list[tuple[str, str]]:
    return [(p.kind, p.subject) for p in report.problems]


def invoke(*args: str | Path):
    """The CLI in-process; a traceback fails the test."""
    from click.testing import CliRunner

    from ocilayout.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"ocilayout {' '.join(map(str, args))}: traceback") from result.exception
    return result


# -- clean layouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    ["single", "three-names", "multiarch", "nested3", "docker", "referrer-dangling", "referrer-named", "sha512", "multi"],
)
def test_clean_fixture_passes(fixture_layout, fixture):
    root = fixture_layout(fixture)
    files = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    report = verify_layout(root)
    assert report.problems == [], report.problems
    assert report.ok and report.exit_code == 0
    assert report.blobs_checked == report.reachable == len(files)
    assert report.bytes_hashed == sum(p.stat().st_size for p in files)


def test_layout_method_and_shared_blobs(fixture_layout):
    top = fixture_layout("shared")
    for name in ("a", "b"):
        report = Layout.open(top / name, shared_blobs=top / "blobs").verify()
        assert [p.kind for p in report.problems] in ([], ["stray"])  # b/blobs/.gitkeep
        assert report.blobs_checked == 5
    # without the shared directory, the blobs living there are missing
    report = verify_layout(top / "a")
    assert {p.kind for p in report.problems} == {"missing"}


# -- damage ----------------------------------------------------------------------------------------


def test_missing_blob(fixture_layout):
    report = verify_layout(fixture_layout("broken/missing-blob"))
    assert kinds(report) == [("missing", HELLO_LAYER)]
    assert HELLO_MANIFEST in report.problems[0].message  # who references it
    assert report.exit_code == 1


def test_missing_blob_allowed_when_sparse(fixture_layout):
    root = fixture_layout("sparse")
    report = verify_layout(root)
    absent = "sha256:496c0634db44777cfa200e6ed65aa010245cb59853b1f6d348f532d473ac1cb6"
    assert kinds(report) == [("missing", absent)]
    relaxed = verify_layout(root, allow_sparse=True)
    assert relaxed.ok
    assert any(absent in w for w in relaxed.warnings)


def test_truncated_blob(fixture_layout):
    root = fixture_layout("single")
    path = blob_path(root, HELLO_LAYER)
    path.write_bytes(path.read_bytes()[:1000])
    report = verify_layout(root)
    assert sorted(kinds(report)) == [("digest", HELLO_LAYER), ("size", HELLO_LAYER)]
    size = next(p for p in report.problems if p.kind == "size")
    assert "is 1000 bytes" in size.message and "declares 2071" in size.message


def test_flipped_byte(fixture_layout):
    root = fixture_layout("single")
    path = blob_path(root, HELLO_LAYER)
    data = bytearray(path.read_bytes())
    data[1035] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify_layout(root)
    assert kinds(report) == [("digest", HELLO_LAYER)]
    assert hashlib.sha256(data).hexdigest() in report.problems[0].message


def test_flipped_byte_fixture_and_sha512(fixture_layout):
    assert kinds(verify_layout(fixture_layout("broken/digest-mismatch"))) == [("digest", HELLO_LAYER)]
    root = fixture_layout("sha512")
    index = json.loads((root / "index.json").read_bytes())
    manifest = json.loads(blob_path(root, index["manifests"][0]["digest"]).read_bytes())
    layer = manifest["layers"][0]["digest"]
    path = blob_path(root, layer)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    report = verify_layout(root)
    assert kinds(report) == [("digest", layer)]
    assert f"sha512:{hashlib.sha512(data).hexdigest()}" in report.problems[0].message


def test_wrong_size_in_a_manifest_descriptor(tmp_path, generate_module):
    w = generate_module.LayoutWriter(tmp_path / "lay")
    layer = w.layer(b"some layer bytes")
    wrong = {**layer, "size": layer["size"] + 7}
    image = w.image([wrong])
    w.add_entry(image, "latest")
    w.finish()
    report = verify_layout(tmp_path / "lay")
    assert kinds(report) == [("size", layer["digest"])]
    message = report.problems[0].message
    assert f"is {layer['size']} bytes" in message
    assert image["digest"] in message and f"declares {layer['size'] + 7}" in message


def test_wrong_size_in_index_json(fixture_layout):
    root = fixture_layout("single")
    index = json.loads((root / "index.json").read_bytes())
    index["manifests"][0]["size"] += 1
    (root / "index.json").write_text(json.dumps(index))
    report = verify_layout(root)
    assert kinds(report) == [("size", HELLO_MANIFEST)]
    assert "index.json manifests[0]" in report.problems[0].message


def test_two_references_with_two_sizes(tmp_path, generate_module):
    w = generate_module.LayoutWriter(tmp_path / "lay")
    layer = w.layer(b"shared layer")
    ok = w.image([layer])
    bad = w.image([{**layer, "size": 1}, b"other"])
    w.add_entry(ok, "ok")
    w.add_entry(bad, "bad")
    w.finish()
    report = verify_layout(tmp_path / "lay")
    assert kinds(report) == [("size", layer["digest"])]
    assert bad["digest"] in report.problems[0].message


def test_schema_invalid_manifest(tmp_path, generate_module):
    w = generate_module.LayoutWriter(tmp_path / "lay")
    layer = w.layer(b"layer")
    config = w.json_blob(w.config_object([layer["digest"]]), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [{**layer, "size": str(layer["size"])}],  # size must be an integer
    }
    desc = w.json_blob(manifest, OCI_MANIFEST)
    w.add_entry(desc, "latest")
    w.finish()
    report = verify_layout(tmp_path / "lay")
    assert kinds(report) == [("schema", desc["digest"])]
    assert "$.layers[0].size" in report.problems[0].message
    assert report.problems[0].message.startswith("manifest:")


def test_schema_invalid_index_blob_and_config(tmp_path, generate_module):
    w = generate_module.LayoutWriter(tmp_path / "lay")
    bad_config = w.json_blob({"architecture": "amd64", "os": "linux"}, OCI_CONFIG)  # no rootfs
    image = w.image([b"layer"], bad_config)
    index = w.json_blob(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": image["digest"], "size": image["size"]}]},
        OCI_INDEX,
    )  # a descriptor without mediaType
    w.add_entry(index, "multi")
    w.finish()
    report = verify_layout(tmp_path / "lay")
    assert sorted(kinds(report)) == sorted([("schema", index["digest"]), ("schema", bad_config["digest"])])
    messages = {p.subject: p.message for p in report.problems}
    assert messages[index["digest"]].startswith("index: $.manifests[0]") and "mediaType" in messages[index["digest"]]
    assert messages[bad_config["digest"]].startswith("config:") and "rootfs" in messages[bad_config["digest"]]


def test_manifest_that_is_not_json(fixture_layout):
    root = fixture_layout("single")
    blob_path(root, HELLO_MANIFEST).write_bytes(b"garbage")
    report = verify_layout(root)
    got = kinds(report)
    assert ("unreadable", HELLO_MANIFEST) in got and ("digest", HELLO_MANIFEST) in got
    # what the manifest referenced is now unreachable, and listed
    assert ("unreachable", HELLO_CONFIG) in got and ("unreachable", HELLO_LAYER) in got


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "missing oci-layout"),
        (b'{"imageLayoutVersion":"9.9.9"}', "9.9.9"),
        (b"{not json", "invalid JSON"),
        (b'{"imageLayoutVersion":1}', "imageLayoutVersion"),
        (b"[]", "imageLayoutVersion"),
    ],
)
def test_bad_oci_layout(fixture_layout, content, needle):
    root = fixture_layout("single")
    if content is None:
        (root / "oci-layout").unlink()
    else:
        (root / "oci-layout").write_bytes(content)
    report = verify_layout(root)
    assert kinds(report) == [("layout", "oci-layout")]
    assert needle in report.problems[0].message
    assert report.blobs_checked == 3  # the rest is still checked


def test_bad_oci_layout_fixtures(fixture_layout):
    assert kinds(verify_layout(fixture_layout("broken/bad-version"))) == [("layout", "oci-layout")]
    assert kinds(verify_layout(fixture_layout("broken/missing-oci-layout"))) == [("layout", "oci-layout")]


def test_bad_index_json(fixture_layout):
    report = verify_layout(fixture_layout("broken/bad-json"))
    assert kinds(report) == [("index", "index.json")]
    assert "invalid JSON" in report.problems[0].message

    root = fixture_layout("broken/traversal-digest")
    report = verify_layout(root)
    assert ("index", "index.json") in kinds(report)
    assert any("$.manifests[0].digest" in p.message for p in report.problems)
    assert not (root.parent / "x").exists()

    root = fixture_layout("single")
    index = json.loads((root / "index.json").read_bytes())
    index["schemaVersion"] = 1
    (root / "index.json").write_text(json.dumps(index))
    assert ("index", "index.json") in kinds(verify_layout(root))

    (root / "index.json").unlink()
    report = verify_layout(root)
    assert kinds(report) == [("index", "index.json")]
    assert "missing index.json" in report.problems[0].message


def test_blob_that_is_a_fifo_or_symlink(fixture_layout):
    root = fixture_layout("single")
    layer = blob_path(root, HELLO_LAYER)
    layer.unlink()
    os.mkfifo(layer)
    config = blob_path(root, HELLO_CONFIG)
    config.unlink()
    config.symlink_to(root / "oci-layout")
    report = verify_layout(root)  # must not hang on the FIFO
    assert sorted(kinds(report)) == sorted([("unreadable", HELLO_LAYER), ("unreadable", HELLO_CONFIG)])
    messages = " ".join(p.message for p in report.problems)
    assert "FIFO" in messages and "symlink" in messages


def test_unreachable_and_stray_are_listed(fixture_layout):
    root = fixture_layout("orphans")
    (root / "blobs" / "sha256" / ".ocilayout-tmp-upload").write_bytes(b"x")
    (root / "blobs" / "md5").mkdir()
    (root / "blobs" / "md5" / "abc").write_bytes(b"x")
    report = verify_layout(root)
    assert sorted(report.unreachable) == sorted(
        [
            "sha256:f3f7604eae5dee2df16fbe0739ce39bc33fb48a37ce52e5316cc95ce41d89f73",
            "sha256:38571213e34cd2360e20962f620375a030336174f7ebc4e8e395f7c4971b631c",
            "sha256:934b499d4786ac43197cab15a1a7a2574857536db601b7bbcf8324662fb40ee3",
        ]
    )
    assert sorted(report.strays) == sorted(
        ["blobs/sha256/.ocilayout-tmp-upload", "blobs/sha256/not-a-digest.txt", "blobs/md5"]
    )
    assert [p.kind for p in report.problems].count("unreachable") == 3
    assert [p.kind for p in report.problems].count("stray") == 3
    assert report.blobs_checked == 3 and not report.ok


def test_cycle_is_reported_not_followed_forever(tmp_path, generate_module):
    w = generate_module.LayoutWriter(tmp_path / "lay")
    image = w.image([b"layer"])
    # Content addressing makes a real cycle impossible; a corrupt blob can still claim one:
    # the file named X holds an index that lists X itself.
    fake = "sha256:" + "ab" * 32
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_INDEX, "digest": fake, "size": 0}, image]}
    ).encode()
    path = blob_path(tmp_path / "lay", fake)
    path.write_bytes(body)
    w.add_entry({"mediaType": OCI_INDEX, "digest": fake, "size": len(body)}, "loop")
    w.finish()
    report = verify_layout(tmp_path / "lay")
    got = kinds(report)
    assert ("cycle", fake) in got
    assert ("digest", fake) in got
    assert report.blobs_checked == 4  # the fake index, the image's manifest, config and layer


def test_absurd_depth_is_reported(tmp_path, generate_module):
    w = generate_module.LayoutWriter(tmp_path / "lay")
    desc = w.image([b"deep layer"])
    for _ in range(8):
        desc = w.index([desc])
    w.add_entry(desc, "deep")
    w.finish()
    assert verify_layout(tmp_path / "lay").ok
    report = verify_layout(tmp_path / "lay", max_depth=4)
    assert [p.kind for p in report.problems][0] == "depth"
    assert {p.kind for p in report.problems} <= {"depth", "unreachable"}


def test_one_worker_and_two_agree(fixture_layout):
    root = fixture_layout("multi")
    path = blob_path(root, "sha256:d80c429e8d8d873662dda759cd1655001103e13b291b96b02e234513398600d5")
    data = bytearray(path.read_bytes())
    data[5] ^= 1
    path.write_bytes(bytes(data))
    one = verify_layout(root, workers=1)
    two = verify_layout(root, workers=2)
    assert one.problems == two.problems and one.problems
    assert one.bytes_hashed == two.bytes_hashed


def test_verify_missing_path(tmp_path):
    with pytest.raises(NotFoundError):
        verify_layout(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CorruptLayoutError):
        verify_layout(tmp_path / "file")


def test_problem_line_is_one_line():
    problem = Problem("stray", "blobs/sha256/evil\nname", "bad\rthing")
    assert "\n" not in str(problem) and "\r" not in str(problem)
    assert str(problem) == "stray: blobs/sha256/evil\\nname: bad\\rthing"


# -- progress ---------------------------------------------------------------------------------------


def _big_layout(generate_module, root: Path, layers: int = 4, size: int = 8 * 1024 * 1024) -> int:
    w = generate_module.LayoutWriter(root)
    rng = generate_module.Prng("verify-progress")
    block = rng.randbytes(1024 * 1024)
    image = w.image([block * (size // len(block)) + b"%d" % i for i in range(layers)])
    w.add_entry(image, "big")
    w.finish()
    return sum(p.stat().st_size for p in (root / "blobs").rglob("*") if p.is_file())


def test_progress_callback(tmp_path, generate_module):
    total = _big_layout(generate_module, tmp_path / "lay")
    calls: list[tuple[int, int]] = []
    report = verify_layout(tmp_path / "lay", progress=lambda done, of: calls.append((done, of)))
    assert report.ok
    assert calls and calls[-1] == (total, total)
    assert all(of == total for _, of in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def _run_in_pty(argv: list[str], timeout: float = 120) -> tuple[int, bytes]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "30"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError as exc:  # EIO: the child closed its side
                    if exc.errno != errno.EIO:
                        raise
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, bytes(output)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminal test written for Linux")
@pytest.mark.parametrize("shape", ["big-layers", "many-images"])
def test_progress_bar_under_a_pseudo_terminal(tmp_path, generate_module, shape):
    root = tmp_path / "lay"
    if shape == "big-layers":
        _big_layout(generate_module, root, layers=6)
        blobs = 8
    else:
        blobs = generate_module.make_bench_layout(root, 2000, seed=1).blobs
    code, output = _run_in_pty(cli_command("verify", root))
    text = output.decode("utf-8", "replace")
    assert code == 0, text
    assert "verifying" in text
    assert "━" in text  # rich's bar
    assert re.search(r"[0-9.]+/[0-9.]+ [kM]B", text)  # bytes hashed of the total
    assert f"ok: {blobs} of {blobs} reachable blobs checked" in text


def test_no_progress_bar_without_a_terminal(tmp_path, generate_module, run_cli):
    _big_layout(generate_module, tmp_path / "lay", layers=2)
    result = run_cli("verify", tmp_path / "lay")
    assert result.returncode == 0
    assert result.stdout == ""
    assert "━" not in result.stderr and "\x1b[" not in result.stderr
    assert result.stderr.startswith("ok: 4 of 4 reachable blobs checked")


# -- the command line ----------------------------------------------------------------------------------


def test_cli_clean_and_damaged(fixture_layout, run_cli):
    result = run_cli("verify", fixture_layout("single"))
    assert result.returncode == 0 and result.stdout == ""

    root = fixture_layout("orphans")
    result = run_cli("verify", root)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines == [str(p) for p in verify_layout(root).problems]
    assert len(lines) == 4
    assert result.stderr.startswith("4 problems:")


def test_cli_json_and_fsck_alias(fixture_layout):
    root = fixture_layout("broken/missing-blob")
    result = invoke("verify", "--format", "json", root)
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["problems"] == [
        {"kind": "missing", "subject": HELLO_LAYER, "message": verify_layout(root).problems[0].message}
    ]
    assert document["ok"] is False and document["counts"]["problems"] == 1
    assert document["counts"]["reachable"] == verify_layout(root).reachable
    fsck = invoke("fsck", "--format", "json", root)
    assert fsck.exit_code == 1 and fsck.stdout == result.stdout
    assert invoke("fsck", "--allow-sparse", root).exit_code == 0
    assert invoke("verify", "-q", root).stderr == ""


def test_cli_strange_file_name_stays_one_line(fixture_layout):
    root = fixture_layout("single")
    (root / "blobs" / "sha256" / "evil\nname").write_bytes(b"x")
    result = invoke("verify", root)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["stray: blobs/sha256/evil\\nname: name is not a valid sha256 digest"]


def test_cli_exit_codes_for_paths(tmp_path, run_cli):
    result = run_cli("verify", tmp_path / "absent")
    assert result.returncode == 3 and result.stderr.startswith("error:")
    (tmp_path / "empty").mkdir()
    result = run_cli("fsck", tmp_path / "empty")
    assert result.returncode == 1  # no oci-layout, no index.json: two problems
    assert result.stdout.splitlines()[0].startswith("layout: oci-layout:")


def test_cli_help(run_cli):
    for name in ("verify", "fsck"):
        result = run_cli(name, "--help")
        assert result.returncode == 0 and "Exit 0 when" in result.stdout


# -- the conformance corpus ---------------------------------------------------------------------------


def test_verify_over_the_conformance_corpus(shared_dir, tmp_path):
    corpus = shared_dir / "conformance"
    layouts = sorted(p.parent for p in corpus.rglob("index.json"))
    assert layouts
    results = {}
    for source in layouts:
        dest = tmp_path / source.relative_to(corpus)
        shutil.copytree(source, dest, symlinks=True)
        result = invoke("verify", "--format", "json", dest)
        assert result.exit_code in (0, 1), (source, result.stderr)
        document = json.loads(result.stdout)
        problems = document["problems"]
        assert (result.exit_code == 0) == (problems == []) == document["ok"], source
        results[str(source.relative_to(corpus))] = problems
    # a few known facts of the corpus (see its SOURCES.md)
    if "containers-image/delete_image_only_one_image" in results:
        sizes = [p for p in results["containers-image/delete_image_only_one_image"] if p["kind"] == "size"]
        assert sizes and "declares 585" in sizes[0]["message"]
    if "go-containerregistry/test_gc_index" in results:
        assert [(p["kind"], p["subject"][:15]) for p in results["go-containerregistry/test_gc_index"]] == [
            ("unreachable", "sha256:492b89b9")
        ]
    for clean in ("stereoscope/valid_oci_dir", "imgutil/busybox", "notation/e2e"):
        if clean in results:
            assert results[clean] == [], clean


# -- the fast schema path never accepts what jsonschema rejects ------------------------------------


REPO = Path(__file__).resolve().parents[1]


def _sample_documents() -> list[object]:
    docs: list[object] = []
    roots = [REPO / "fixtures" / "layouts", Path(__file__).resolve().parents[2] / "shared" / "conformance"]
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.stat().st_size < 64 * 1024:
                try:
                    docs.append(json.loads(path.read_bytes()))
                except (ValueError, UnicodeDecodeError):
                    continue
    return docs


SAMPLES = _sample_documents()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**64) | st.floats(allow_nan=False) | st.sampled_from(
        ["", "sha256:" + "a" * 64, "sha256:" + "A" * 64, "sha512:" + "b" * 128, "a/b", "a/b\n", "x", "2024-01-01T00:00:00Z",
         "application/vnd.oci.image.manifest.v1+json", "layers", "amd64"]
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["mediaType", "digest", "size", "config", "layers", "manifests", "schemaVersion", "annotations",
                         "platform", "os", "architecture", "rootfs", "diff_ids", "type", "urls", "data", "created"]),
        children, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("kind", schemas.SCHEMA_KINDS)
def test_fast_schema_path_agrees_on_real_documents(kind):
    fast = _fast_validator(kind)
    assert fast is not None, f"no fast path for {kind}: verify of big layouts would be slow"
    accepted = 0
    for doc in SAMPLES:
        valid = schemas.validate(doc, kind) == []
        if fast(doc):
            assert valid, (kind, doc)
            accepted += 1
        elif valid and isinstance(doc, dict) and kind in ("manifest", "index", "config"):
            # only floats such as 2.0 may take the slow path
            assert "2.0" in json.dumps(doc) or ".0" in json.dumps(doc), (kind, doc)
    if kind in ("layout", "index", "manifest", "config"):
        assert accepted, kind  # the fast path is really taken


def test_fast_schema_path_on_descriptor_and_artifact():
    descriptor = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "0" * 64, "size": 3}
    artifact = {
        "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "blobs": [descriptor],
    }
    for kind, doc in (("descriptor", descriptor), ("artifact-manifest", artifact)):
        assert schemas.validate(doc, kind) == [] and _fast_validator(kind)(doc)
    for bad in ({**descriptor, "size": -1}, {**descriptor, "digest": "sha256:" + "0" * 63}, {**descriptor, "urls": [""]},
                {**descriptor, "mediaType": "a/b\n"}, {**descriptor, "data": "abc"}, {**descriptor, "size": True}):
        assert schemas.validate(bad, "descriptor") and not _fast_validator("descriptor")(bad), bad


def _mutate(doc: object, path: list[int], value: object) -> object:
    if not path or not isinstance(doc, (dict, list)) or not doc:
        return value
    keys = list(doc.keys()) if isinstance(doc, dict) else list(range(len(doc)))
    key = keys[path[0] % len(keys)]
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[key] = _mutate(copy[key], path[1:], value)  # type: ignore[index]
    return copy


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(min_value=0),
    path=st.lists(st.integers(min_value=0, max_value=50), max_size=4),
    value=json_values,
    kind=st.sampled_from(schemas.SCHEMA_KINDS),
)
def test_fast_schema_path_never_accepts_an_invalid_mutation(index, path, value, kind):
    docs = [d for d in SAMPLES if isinstance(d, dict)]
    assume_docs = docs or [{}]
    doc = _mutate(assume_docs[index % len(assume_docs)], path, value)
    fast = _fast_validator(kind)
    if fast is not None and fast(doc):
        assert schemas.validate(doc, kind) == [], (kind, doc)


@settings(max_examples=300, deadline=None)
@given(doc=json_values, kind=st.sampled_from(schemas.SCHEMA_KINDS))
def test_fast_schema_path_never_accepts_an_invalid_value(doc, kind):
    fast = _fast_validator(kind)
    if fast is not None and fast(doc):
        assert schemas.validate(doc, kind) == [], (kind, doc)
