"""Our rm on layouts written by umoci and skopeo: the peers still read what remains, and
the blobs left equal what containers/image's DeleteImage (seed 004) would leave."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ocilayout import Layout

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "fixtures"))
import generate  # noqa: E402

needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed (apt-get install umoci)")
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed (apt-get install skopeo)")


def run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def blob_set(root: Path) -> set[str]:
    return {f"{p.parent.name}:{p.name}" for p in (root / "blobs").glob("*/*")}


def umoci_layout(tmp_path: Path) -> Path:
    """a: one layer; b: a's layer + its own (two names b, c); d: empty image."""
    root = tmp_path / "um"
    (tmp_path / "f1").write_text("one\n")
    (tmp_path / "f2").write_text("two\n")
    run("umoci", "init", "--layout", root)
    run("umoci", "new", "--image", f"{root}:a")
    run("umoci", "insert", "--image", f"{root}:a", tmp_path / "f1", "/f1")
    run("umoci", "config", "--image", f"{root}:a", "--tag", "b", "--config.label", "x=y")
    run("umoci", "insert", "--image", f"{root}:b", tmp_path / "f2", "/f2")
    run("umoci", "tag", "--image", f"{root}:b", "c")
    run("umoci", "new", "--image", f"{root}:d")
    run("umoci", "gc", "--layout", root)  # start from a minimal layout
    return root


@needs_umoci
def test_rm_on_umoci_layout_keeps_the_rest_readable(tmp_path: Path) -> None:
    root = umoci_layout(tmp_path)
    report = Layout.open(root).delete(["a", "c"])
    assert [i.deleted for i in report.images] == [True, False]
    assert run("umoci", "ls", "--layout", root).split() == ["b", "d"]
    run("umoci", "stat", "--image", f"{root}:b")
    run("umoci", "unpack", "--rootless", "--image", f"{root}:b", tmp_path / "bundle")
    assert (tmp_path / "bundle" / "rootfs" / "f1").read_text() == "one\n", "a's shared layer must survive"
    before = blob_set(root)
    run("umoci", "gc", "--layout", root)
    assert blob_set(root) == before, "umoci gc found something our rm left behind"


@needs_skopeo
def test_rm_on_skopeo_copied_layout_keeps_the_rest_readable(tmp_path: Path) -> None:
    src = generate.build_fixture("multi", tmp_path / "src")
    dest = tmp_path / "sk"
    for name in ("base", "app1", "app2"):
        run("skopeo", "copy", "--quiet", f"oci:{src}:{name}", f"oci:{dest}:{name}")
    Layout.open(dest).delete(["app1"])
    for name in ("base", "app2"):
        inspected = json.loads(run("skopeo", "inspect", f"oci:{dest}:{name}"))
        assert inspected["Digest"].startswith("sha256:")
        run("skopeo", "copy", "--quiet", f"oci:{dest}:{name}", f"oci:{tmp_path / 'again'}:{name}")  # reads every blob
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in json.loads((dest / "index.json").read_text())["manifests"]]
    assert sorted(names) == ["app2", "base"]


@needs_skopeo
@needs_umoci
def test_multiarch_copy_then_rm_platform_name(tmp_path: Path) -> None:
    src = generate.build_fixture("multiarch", tmp_path / "src")
    dest = tmp_path / "sk"
    run("skopeo", "copy", "--quiet", "--all", f"oci:{src}:multi", f"oci:{dest}:multi")
    layout = Layout.open(dest)
    layout.tag("multi", "arm", platform="linux/arm64")
    layout.delete(["multi"])
    assert run("umoci", "ls", "--layout", dest).split() == ["arm"]
    run("skopeo", "inspect", f"oci:{dest}:arm")
    run("umoci", "stat", "--image", f"{dest}:arm")


# -- containers/image's algorithm, written from its documented behaviour (seed 004) ------------


class Unsupported(Exception):
    pass


def _count(root: Path, descriptor: dict, dest: dict[str, int]) -> None:
    digest = descriptor["digest"]
    dest[digest] = dest.get(digest, 0) + 1
    path = root / "blobs" / digest.replace(":", "/", 1)
    media_type = descriptor.get("mediaType")
    if media_type == "application/vnd.oci.image.manifest.v1+json":
        try:
            manifest = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise Unsupported(str(exc)) from exc
        for child in [manifest["config"], *manifest.get("layers", [])]:
            dest[child["digest"]] = dest.get(child["digest"], 0) + 1
    elif media_type == "application/vnd.oci.image.index.v1+json":
        try:
            index = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise Unsupported(str(exc)) from exc
        for child in index.get("manifests") or []:
            _count(root, child, dest)
    else:
        raise Unsupported(f"unsupported mediaType {media_type!r}")


def cimage_remaining(root: Path, name: str) -> set[str]:
    """Blobs left after containers/image deletes the entry named `name` (its exact rule)."""
    index = json.loads((root / "index.json").read_text())
    entries = [m for m in index["manifests"] if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == name]
    if len(entries) != 1:
        raise Unsupported("ambiguous or missing name")
    used_by_image: dict[str, int] = {}
    _count(root, entries[0], used_by_image)
    used_in_root: dict[str, int] = {}
    for entry in index["manifests"]:
        _count(root, entry, used_in_root)
    doomed = {d for d, n in used_in_root.items() if n - used_by_image.get(d, 0) == 0}
    return {b for b in blob_set(root) if b not in doomed}


def _cases() -> list[tuple[str, Path, str, set[str]]]:
    """(id, layout, name, expected blobs) wherever containers/image's algorithm succeeds."""
    layouts = [REPO / "fixtures" / "layouts" / f for f in ("multi", "multiarch", "nested3", "three-names", "single", "sparse")]
    if SHARED.is_dir():
        layouts += [p for p in sorted((SHARED / "conformance").glob("*/*")) if (p / "oci-layout").is_file()]
    cases = []
    for layout in layouts:
        for name in _names(layout):
            try:
                expected = cimage_remaining(layout, name)  # read-only: computed on the source
            except Unsupported:
                continue  # e.g. Docker manifest lists, unknown types, missing blobs: it errors out
            cases.append((f"{layout.parent.name}/{layout.name}:{name}", layout, name, expected))
    return cases


def _names(layout: Path) -> list[str]:
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError):
        return []
    names = [(m.get("annotations") or {}).get("org.opencontainers.image.ref.name") for m in index.get("manifests") or []]
    return sorted({n for n in names if n})[:6]


CASES = _cases()


def test_the_comparison_covers_enough_cases() -> None:
    assert len(CASES) >= 15 if SHARED.is_dir() else len(CASES) >= 10


@pytest.mark.parametrize(("case", "source", "name", "expected"), CASES, ids=[c[0] for c in CASES])
def test_same_blobs_as_containers_image_delete(
    tmp_path: Path, case: str, source: Path, name: str, expected: set[str]
) -> None:
    root = tmp_path / "layout"
    shutil.copytree(source, root)
    # containers/image neither cascades to referrers nor prunes: compare like with like
    report = Layout.open(root).delete([name], keep_referrers=True)
    children = [i for i in report.images if i.reason.startswith("child of ")]
    if not children:
        assert blob_set(root) == expected
        return
    # Unnamed child entries of the deleted index (oras-go's extra entries) go too, which
    # containers/image leaves: we free exactly what those entries alone kept in addition.
    assert blob_set(root) <= expected
    check = tmp_path / "check"
    shutil.copytree(source, check)
    Layout.open(check).delete([name, *(i.id for i in children)], keep_referrers=True)
    assert blob_set(check) == blob_set(root)
    index = json.loads((root / "index.json").read_text())
    assert not {m["digest"] for m in index["manifests"]} & {i.id for i in children}
