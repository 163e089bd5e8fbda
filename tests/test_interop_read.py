"""Layouts written by umoci and skopeo: we list and inspect them as those tools do."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURE_LAYOUTS, run_cli_process

pytestmark = pytest.mark.interop

UMOCI = shutil.which("umoci")
SKOPEO = shutil.which("skopeo")
needs_umoci = pytest.mark.skipif(UMOCI is None, reason="umoci not installed (Debian package 'umoci')")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed (Debian package 'skopeo')")


def tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed: {proc.stderr}"
    return proc


def skopeo(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # --insecure-policy: no /etc/containers/policy.json is needed for local oci: copies
    return tool(SKOPEO, "--insecure-policy", *args)


def ours_ls(layout: Path) -> list[dict]:
    proc = run_cli_process("ls", layout, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["images"]


def ours_inspect(layout: Path, *ref: str) -> dict:
    proc = run_cli_process("inspect", layout, *ref)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def index_entries(layout: Path) -> list[tuple[str | None, str]]:
    manifests = json.loads((layout / "index.json").read_bytes())["manifests"]
    return [((m.get("annotations") or {}).get("org.opencontainers.image.ref.name"), m["digest"]) for m in manifests]


def skopeo_digest(layout: Path, name: str) -> str:
    # bytes, not text: universal-newline decoding would change what is hashed
    proc = subprocess.run([str(SKOPEO), "--insecure-policy", "inspect", "--raw", f"oci:{layout}:{name}"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()


@pytest.fixture
def umoci_layout(tmp_path: Path) -> Path:
    if UMOCI is None:
        pytest.skip("umoci not installed (Debian package 'umoci')")
    layout = tmp_path / "umoci"
    tool(UMOCI, "init", "--layout", layout)
    tool(UMOCI, "new", "--image", f"{layout}:a")
    tool(UMOCI, "tag", "--image", f"{layout}:a", "b")
    return layout


@needs_umoci
def test_umoci_layout_lists_names_and_digests(umoci_layout: Path) -> None:
    entries = index_entries(umoci_layout)
    assert sorted(n for n, _ in entries) == ["a", "b"]
    rows = ours_ls(umoci_layout)
    assert [(r["name"], r["digest"]) for r in rows] == entries
    assert {r["kind"] for r in rows} == {"image"}
    assert len({r["digest"] for r in rows}) == 1
    # umoci's own view agrees on the names
    assert sorted(tool(UMOCI, "ls", "--layout", umoci_layout).stdout.split()) == ["a", "b"]


@needs_umoci
def test_umoci_layout_tree_and_inspect(umoci_layout: Path) -> None:
    report = ours_inspect(umoci_layout, "b")
    assert sorted(report["names"]) == ["a", "b"]
    assert report["manifest"]["layers"] == []  # `umoci new` makes an image with no layers
    assert report["config"]["os"] == "linux"
    tree = run_cli_process("tree", umoci_layout, "a")
    assert tree.returncode == 0 and "config" in tree.stdout


@needs_umoci
@needs_skopeo
@pytest.mark.parametrize("name", ["a", "b"])
def test_skopeo_and_we_agree_on_umoci_manifest_digest(umoci_layout: Path, name: str) -> None:
    ours = ours_inspect(umoci_layout, name)["descriptor"]["digest"]
    assert skopeo_digest(umoci_layout, name) == ours
    assert json.loads(skopeo("inspect", f"oci:{umoci_layout}:{name}").stdout)["Digest"] == ours


@needs_skopeo
def test_skopeo_copied_layout(tmp_path: Path) -> None:
    source = FIXTURE_LAYOUTS / "single"
    dest = tmp_path / "copied"
    skopeo("copy", f"oci:{source}:latest", f"oci:{dest}:x")
    rows = ours_ls(dest)
    assert [(r["name"], r["digest"]) for r in rows] == index_entries(dest)
    assert rows[0]["name"] == "x" and rows[0]["platforms"] == ["linux/amd64"]
    ours = ours_inspect(dest, "x")["descriptor"]["digest"]
    assert ours == skopeo_digest(dest, "x")
    assert json.loads(skopeo("inspect", f"oci:{dest}:x").stdout)["Digest"] == ours
    # and on the source fixture itself
    assert ours_inspect(source, "latest")["descriptor"]["digest"] == skopeo_digest(source, "latest")


@needs_skopeo
def test_skopeo_multi_arch_and_single_platform_copies(tmp_path: Path) -> None:
    source = FIXTURE_LAYOUTS / "multiarch"
    dest = tmp_path / "copied"
    skopeo("copy", "--all", f"oci:{source}:multi", f"oci:{dest}:all")
    skopeo("copy", "--override-arch", "arm64", "--override-variant", "v8", f"oci:{source}:multi", f"oci:{dest}:arm")
    rows = {r["name"]: r for r in ours_ls(dest)}
    assert rows["all"]["kind"] == "index"
    assert rows["all"]["platforms"] == ["linux/amd64", "linux/arm64/v8", "linux/s390x"]
    assert rows["arm"]["kind"] == "image" and rows["arm"]["platforms"] == ["linux/arm64/v8"]
    for name in ("all", "arm"):
        assert ours_inspect(dest, name)["descriptor"]["digest"] == skopeo_digest(dest, name)
    # --platform inside the copied index finds the same manifest skopeo picks
    picked = ours_inspect(dest, "all", "--platform", "linux/s390x")["descriptor"]["digest"]
    raw = skopeo("inspect", "--override-arch", "s390x", "--raw", f"oci:{dest}:all").stdout
    listed = {m["platform"]["architecture"]: m["digest"] for m in json.loads(raw)["manifests"]}
    assert picked == listed["s390x"]


@needs_skopeo
def test_skopeo_reads_what_we_list_in_fixtures() -> None:
    # names we list in each valid fixture with OCI media types resolve in skopeo to the same digest
    for name in ("three-names", "multi", "referrer-named"):
        layout = FIXTURE_LAYOUTS / name
        for row in ours_ls(layout):
            if row["name"] is not None:
                assert skopeo_digest(layout, row["name"]) == row["digest"], (name, row["name"])
