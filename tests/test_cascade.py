"""Complete cascades (DESIGN 3.7, issue 12 part 3): what a deletion takes along.

- dangling referrers whose subject is *any* manifest or index the deletion frees (a platform
  manifest inside a deleted index included), recursively;
- unnamed top-level entries held in a deleted index's manifests (oras-go writes them), when
  no survivor other than such entries reaches them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHARED_DIR

from ocilayout import Layout
from ocilayout.cli import cli


def blobs(root: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()}


def entries(root: Path) -> list[tuple[str | None, str]]:
    index = json.loads((root / "index.json").read_text())
    return [
        ((m.get("annotations") or {}).get("org.opencontainers.image.ref.name"), m["digest"]) for m in index["manifests"]
    ]


def reached(root: Path) -> set[str]:
    """Every digest index.json reaches (strong edges), read independently of the library."""
    seen: set[str] = set()
    todo = [d for _, d in entries(root)]
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        path = root / "blobs" / "sha256" / digest[7:]
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or "schemaVersion" not in doc:  # configs are no manifests
            continue
        children = [c for key in ("manifests", "layers", "blobs") for c in doc.get(key) or []]
        children += [doc["config"]] if isinstance(doc.get("config"), dict) else []
        todo += [c["digest"] for c in children if isinstance(c, dict) and isinstance(c.get("digest"), str)]
    return seen


def oras_layout(tmp_path: Path, generate_module):
    """app: an index of two platforms, each also an unnamed top-level entry (as oras-go
    writes); a signature of the arm64 manifest; other: an unrelated image."""
    w = generate_module.LayoutWriter(tmp_path / "lay")
    amd = w.image([b"amd layer"], platform=True)
    arm = w.image([b"arm layer"], architecture="arm64", platform=True)
    app = w.index([amd, arm], annotations={"org.opencontainers.image.created": "2020-01-01T00:00:00Z"})
    sig = w.image([b"sig of arm"], artifact_type="application/vnd.example.signature", subject=arm)
    other = w.image([b"other"])
    w.add_entry(app, name="app")
    w.add_entry(amd)
    w.add_entry(arm)
    w.add_entry(sig)
    w.add_entry(other, name="other")
    w.finish()
    return w, {"amd": amd, "arm": arm, "app": app, "sig": sig, "other": other}


def test_child_entries_and_a_platform_signature_go_with_the_index(tmp_path, generate_module) -> None:
    w, d = oras_layout(tmp_path, generate_module)
    root = tmp_path / "lay"
    before = blobs(root)
    sizes = {b: (root / "blobs" / "sha256" / b[7:]).stat().st_size for b in before}
    report = Layout.open(root).delete(["app"])
    assert entries(root) == [("other", d["other"]["digest"])]
    reasons = {i.id: i.reason for i in report.images}
    assert reasons[d["amd"]["digest"]] == f"child of {d['app']['digest']}"
    assert reasons[d["arm"]["digest"]] == f"child of {d['app']['digest']}"
    assert reasons[d["sig"]["digest"]] == f"referrer of {d['arm']['digest']}"
    # every blob nothing reaches any more is gone, every reached one stays
    assert blobs(root) == reached(root)
    assert report.blobs_deleted == len(before - blobs(root))
    assert report.bytes_freed == sum(sizes[b] for b in before - blobs(root))
    # each cascaded image owns the blobs only it used (the signature's layer)
    by_id = {i.id: i for i in report.images}
    assert by_id[d["sig"]["digest"]].blobs_deleted >= 2


def test_keep_referrers_keeps_the_signature_but_not_the_children(tmp_path, generate_module) -> None:
    _, d = oras_layout(tmp_path, generate_module)
    root = tmp_path / "lay"
    Layout.open(root).delete(["app"], keep_referrers=True)
    expected = [("other", d["other"]["digest"]), (None, d["sig"]["digest"])]
    assert sorted(entries(root), key=str) == sorted(expected, key=str)
    # the signature's own blobs stay; its subject (no longer reached) is gone
    assert blobs(root) == reached(root)
    assert d["sig"]["digest"] in blobs(root) and d["arm"]["digest"] not in blobs(root)


def test_a_child_another_survivor_reaches_stays(tmp_path, generate_module) -> None:
    w, d = oras_layout(tmp_path, generate_module)
    root = tmp_path / "lay"
    w.add_entry(w.index([d["amd"]]), name="keeper")  # another named index holds amd64
    w.finish()
    report = Layout.open(root).delete(["app"])
    left = entries(root)
    assert (None, d["amd"]["digest"]) in left and (None, d["arm"]["digest"]) not in left
    assert d["amd"]["digest"] in blobs(root)
    assert not any(i.id == d["amd"]["digest"] for i in report.images)
    assert blobs(root) == reached(root)


def test_a_named_child_and_a_named_referrer_stay(tmp_path, generate_module) -> None:
    w = generate_module.LayoutWriter(tmp_path / "lay")
    amd = w.image([b"amd"], platform=True)
    arm = w.image([b"arm"], architecture="arm64", platform=True)
    app = w.index([amd, arm])
    sig = w.image([b"sig"], artifact_type="x/sig", subject=amd)
    w.add_entry(app, name="app")
    w.add_entry(arm, name="arm-only")
    w.add_entry(sig, name="amd-sig")
    w.finish()
    root = tmp_path / "lay"
    Layout.open(root).delete(["app"])
    assert sorted(n for n, _ in entries(root)) == ["amd-sig", "arm-only"]
    assert blobs(root) == reached(root)


def test_nested_children_and_a_chain_of_referrers(tmp_path, generate_module) -> None:
    """app → inner → leaf, inner and leaf also unnamed entries; sbom of leaf, signature of the
    sbom: everything goes, with the right reasons."""
    w = generate_module.LayoutWriter(tmp_path / "lay")
    leaf = w.image([b"leaf"], platform=True)
    inner = w.index([leaf])
    app = w.index([inner])
    sbom = w.image([b"sbom"], artifact_type="x/sbom", subject=leaf)
    sig = w.image([b"sig"], artifact_type="x/sig", subject=sbom)
    keep = w.image([b"keep"])
    for desc, name in ((app, "app"), (inner, None), (leaf, None), (sig, None), (sbom, None), (keep, "keep")):
        w.add_entry(desc, name=name)
    w.finish()
    root = tmp_path / "lay"
    report = Layout.open(root).delete(["app"])
    assert entries(root) == [("keep", keep["digest"])]
    reasons = {i.id: i.reason for i in report.images}
    assert reasons[inner["digest"]] == f"child of {app['digest']}"
    assert reasons[leaf["digest"]] == f"child of {inner['digest']}"
    assert reasons[sbom["digest"]] == f"referrer of {leaf['digest']}"
    assert reasons[sig["digest"]] == f"referrer of {sbom['digest']}"
    assert blobs(root) == reached(root)


def test_a_referrer_of_a_subject_still_reached_elsewhere_stays(tmp_path, generate_module) -> None:
    w = generate_module.LayoutWriter(tmp_path / "lay")
    image = w.image([b"img"])
    sig = w.image([b"sig"], artifact_type="x/sig", subject=image)
    w.add_entry(image, name="app")
    w.add_entry(w.index([image]), name="bundle")  # the image lives on inside this index
    w.add_entry(sig)
    w.finish()
    root = tmp_path / "lay"
    Layout.open(root).delete(["app"])
    assert (None, sig["digest"]) in entries(root)
    assert blobs(root) == reached(root)


def test_a_referrer_listed_in_a_deleted_referrers_index_follows_its_subject(tmp_path, generate_module) -> None:
    """notation's layouts: the signature is an unnamed entry and also a child of the
    `sha256-<digest>` referrers index; deleting that index must not take the signature of
    an image that stays."""
    w = generate_module.LayoutWriter(tmp_path / "lay")
    image = w.image([b"img"])
    sig = w.image([b"sig"], artifact_type="x/sig", subject=image)
    w.add_entry(image, name="v1")
    w.add_entry(sig)
    w.add_entry(w.index([sig]), name="sha256-" + image["digest"][7:])
    w.finish()
    root = tmp_path / "lay"
    Layout.open(root).delete(["sha256-" + image["digest"][7:]])
    assert (None, sig["digest"]) in entries(root)
    assert sig["digest"] in blobs(root)


def test_dry_run_reports_the_same_and_changes_nothing(tmp_path, generate_module) -> None:
    oras_layout(tmp_path, generate_module)
    root = tmp_path / "lay"
    index_before, blobs_before = (root / "index.json").read_bytes(), blobs(root)
    dry = Layout.open(root).delete(["app"], dry_run=True)
    assert (root / "index.json").read_bytes() == index_before and blobs(root) == blobs_before
    real = Layout.open(root).delete(["app"])
    assert [(i.id, i.reason) for i in dry.images] == [(i.id, i.reason) for i in real.images]
    assert (dry.bytes_freed, dry.blobs_deleted) == (real.bytes_freed, real.blobs_deleted)


def test_under_doubt_nothing_is_deleted_and_children_stay(tmp_path, generate_module) -> None:
    w, d = oras_layout(tmp_path, generate_module)
    broken = w.index([w.image([b"x"])])
    w.add_entry(broken, name="broken")
    w.finish()
    w.remove_blob(json.loads(w.blob_path(broken).read_bytes())["manifests"][0])  # a missing manifest
    root = tmp_path / "lay"
    before = blobs(root)
    report = Layout.open(root).delete(["app"])
    assert blobs(root) == before
    assert any("nothing deleted" in warning for warning in report.warnings)
    assert (None, d["amd"]["digest"]) in entries(root)


def test_cli_shows_the_reason(tmp_path, generate_module) -> None:
    _, d = oras_layout(tmp_path, generate_module)
    result = CliRunner().invoke(cli, ["rm", str(tmp_path / "lay"), "app"])
    assert result.exit_code == 0, result.output
    assert f"[child of {d['app']['digest']}]" in result.stdout
    assert f"[referrer of {d['arm']['digest']}]" in result.stdout


def test_prune_cascades_too(tmp_path, generate_module) -> None:
    _, d = oras_layout(tmp_path, generate_module)
    root = tmp_path / "lay"
    report = Layout.open(root).prune(keep_last=0, references=["app"])
    assert report.bytes_freed > 0
    assert entries(root) == [("other", d["other"]["digest"])]
    assert blobs(root) == reached(root)


@pytest.mark.skipif(not (SHARED_DIR / "conformance").is_dir(), reason="../shared/conformance is absent")
@pytest.mark.parametrize(
    "layout", sorted(p for p in (SHARED_DIR / "conformance").glob("*/*") if (p / "oci-layout").is_file()), ids=str
)
def test_conformance_every_name_leaves_no_orphaned_child(tmp_path: Path, layout: Path) -> None:
    """On real layouts: after `rm NAME`, no unnamed entry is left that only the deleted image
    held, and no blob nothing reaches is left behind (unless the layout is in doubt)."""
    import shutil

    try:
        names = sorted({n for n, _ in entries(layout) if n})[:4]
    except (OSError, ValueError, KeyError, TypeError):
        pytest.skip("index.json unreadable by design")
    for name in names:
        root = tmp_path / name.replace("/", "_").replace(":", "_")
        shutil.copytree(layout, root)
        reached_before, blobs_before = reached(root), blobs(root)
        report = Layout.open(root).delete([name], force=True)
        if any("nothing deleted" in w for w in report.warnings):
            assert blobs(root) == blobs_before
            continue
        made_unreachable = reached_before - reached(root)
        assert blobs_before - blobs(root) == made_unreachable & blobs_before
        gone_children = {i.id for i in report.images if i.reason.startswith("child of")}
        assert not gone_children & {d for _, d in entries(root)}


def test_unrelated_doubt_does_not_take_a_referrer_whose_subject_stays(tmp_path, generate_module) -> None:
    """Review repro: x is also in the surviving index `bundle`; an unrelated sparse index puts
    the layout in doubt. x's signature must stay, as it does without the doubt."""
    for sparse in (False, True):
        w = generate_module.LayoutWriter(tmp_path / str(sparse))
        x = w.image([b"x layer"], platform=True)
        bundle = w.index([x, w.image([b"arm"], architecture="arm64", platform=True)])
        sig = w.image([b"signature of x"], artifact_type="x/sig", subject=x)
        other_arm = w.image([b"other arm"], architecture="arm64", platform=True)
        other = w.index([w.image([b"other amd"], platform=True), other_arm])
        for desc, name in ((x, "x"), (bundle, "bundle"), (sig, None), (other, "other")):
            w.add_entry(desc, name=name)
        w.finish()
        if sparse:
            w.remove_blob(other_arm)
        root = tmp_path / str(sparse)
        report = Layout.open(root).delete(["x"])
        assert (None, sig["digest"]) in entries(root), sparse
        assert [i.reason for i in report.images] == ["requested"]


def test_prune_counts_what_went_along_under_the_repository(tmp_path, generate_module) -> None:
    """Bytes of a cascaded signature and of oras child entries count under the repository of
    the image they went with; the total equals the sum over repositories."""
    _, d = oras_layout(tmp_path, generate_module)
    root = tmp_path / "lay"
    report = Layout.open(root).prune(keep_last=0, references=["app"])
    by_repo = {r.repository: r for r in report.repositories}
    assert by_repo["app"].images_deleted == 1
    assert by_repo["app"].bytes_freed == report.bytes_freed > 0
    cascaded = [i for i in report.removal.images if i.reason != "requested"]
    assert cascaded and sum(i.bytes_freed for i in cascaded) > 0
