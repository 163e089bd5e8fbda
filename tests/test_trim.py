"""`rm REF --platform P` (issue 12 part 1, DESIGN 3.11): a new index without P, every name moved
to it in the same index.json write, and the blobs only P (and the old index blobs) used freed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocilayout import Layout, UsageError
from ocilayout.cli import cli
from ocilayout.transaction import CRASH_ENV

REF_NAME = "org.opencontainers.image.ref.name"
REPO = Path(__file__).resolve().parents[1]


def refused(report, code: int, match: str = "") -> bool:
    """A reference's failure in the report (the library reports, the CLI exits)."""
    assert not report.trims and report.exit_code == code, report
    assert match in report.failures[0].message, report.failures
    return True


def blobs(root: Path) -> set[str]:
    return {f"{p.parent.name}:{p.name}" for p in (root / "blobs").glob("*/*")}


def doc(root: Path, digest: str) -> dict:
    return json.loads((root / "blobs" / digest.replace(":", "/")).read_bytes())


def entries(root: Path) -> list[dict]:
    return json.loads((root / "index.json").read_text())["manifests"]


def reached(root: Path) -> set[str]:
    """What index.json reaches, read independently of the library (missing blobs included)."""
    seen: set[str] = set()
    todo = [m["digest"] for m in entries(root)]
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        try:
            document = doc(root, digest)
        except (OSError, ValueError):
            continue
        if not isinstance(document, dict) or "schemaVersion" not in document:
            continue
        children = [c for key in ("manifests", "layers", "blobs") for c in document.get(key) or []]
        children += [document["config"]] if isinstance(document.get("config"), dict) else []
        todo += [c["digest"] for c in children]
    return seen


def three_platforms(tmp_path: Path, generate_module, *, docker: bool = False):
    w = generate_module.LayoutWriter(tmp_path / "lay")
    kind = generate_module.DOCKER_MANIFEST if docker else generate_module.OCI_MANIFEST
    shared = b"shared base layer"
    amd = w.image([shared, b"amd"], media_type=kind, platform=True)
    arm = w.image([shared, b"arm"], media_type=kind, architecture="arm64", variant="v8", platform=True)
    s390 = w.image([shared, b"s390"], media_type=kind, architecture="s390x", platform=True)
    index_type = generate_module.DOCKER_MANIFEST_LIST if docker else generate_module.OCI_INDEX
    app = w.index([amd, arm, s390], index_type, annotations={"keep.me": "yes"})
    w.add_entry(app, name="app:1")
    w.add_entry(app, name="app:latest", annotations={"extra": "entry annotation"})
    w.add_entry(w.image([b"other"]), name="other")
    w.finish()
    return w, {"amd": amd, "arm": arm, "s390": s390, "app": app}


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_trim_one_platform(tmp_path, generate_module, docker) -> None:
    w, d = three_platforms(tmp_path, generate_module, docker=docker)
    root = tmp_path / "lay"
    old_text = w.blob_path(d["app"]).read_bytes()
    before = blobs(root)
    report = Layout.open(root).delete(["app:1"], platforms=["linux/arm64"])
    (trim,) = report.trims
    assert trim.old_digest == d["app"]["digest"] and trim.names == ["app:1", "app:latest"]
    assert [(m.digest, m.platform) for m in trim.removed] == [(d["arm"]["digest"], "linux/arm64/v8")]
    # every name moved, entry annotations and order kept
    listed = entries(root)
    assert [m["digest"] for m in listed[:2]] == [trim.new_digest] * 2
    assert listed[1]["annotations"] == {"extra": "entry annotation", REF_NAME: "app:latest"}
    assert listed[0]["mediaType"] == d["app"]["mediaType"]
    new_text = (root / "blobs" / trim.new_digest.replace(":", "/")).read_bytes()
    assert listed[0]["size"] == len(new_text)
    assert "sha256:" + hashlib.sha256(new_text).hexdigest() == trim.new_digest
    new = json.loads(new_text)
    old = json.loads(old_text)
    assert new["manifests"] == [old["manifests"][0], old["manifests"][2]]
    assert {k: v for k, v in new.items() if k != "manifests"} == {k: v for k, v in old.items() if k != "manifests"}
    # the arm64 manifest, its config and own layer, and the old index are gone; shared layer stays
    gone = before - blobs(root)
    assert d["arm"]["digest"] in gone and d["app"]["digest"] in gone and len(gone) == 4
    assert blobs(root) == reached(root)
    assert report.bytes_freed == trim.bytes_freed > 0 and trim.blobs_deleted == 4


def test_trimmed_text_is_the_old_text_without_the_descriptor(tmp_path, generate_module) -> None:
    """Pretty-printed, with a float and unknown fields: every other byte is kept."""
    w = generate_module.LayoutWriter(tmp_path / "lay")
    amd = w.image([b"amd"], platform=True)
    arm = w.image([b"arm"], architecture="arm64", platform=True)
    text = (
        '{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.index.v1+json",\n'
        '  "x-ratio": 1.50,\n  "manifests": [\n    ' + json.dumps(amd) + ",\n    " + json.dumps(arm) + "\n  ]\n}\n"
    )
    data = text.encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (tmp_path / "lay" / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    w.add_entry({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": len(data)}, "app")
    w.finish()
    root = tmp_path / "lay"
    (trim,) = Layout.open(root).delete(["app"], platforms=["linux/arm64"]).trims
    new_text = (root / "blobs" / trim.new_digest.replace(":", "/")).read_text()
    assert new_text == text.replace(",\n    " + json.dumps(arm), "")


def test_nested_index_is_rewritten_and_parents_repointed(tmp_path, generate_module) -> None:
    w = generate_module.LayoutWriter(tmp_path / "lay")
    amd = w.image([b"amd"], platform=True)
    arm = w.image([b"arm"], architecture="arm64", platform=True)
    ppc = w.image([b"ppc"], architecture="ppc64le", platform=True)
    inner = w.index([amd, arm])
    outer = w.index([inner, ppc])
    w.add_entry(outer, name="app")
    w.finish()
    root = tmp_path / "lay"
    (trim,) = Layout.open(root).delete(["app"], platforms=["linux/arm64"]).trims
    new_outer = doc(root, trim.new_digest)
    new_inner_digest = new_outer["manifests"][0]["digest"]
    assert trim.rewritten == {outer["digest"]: trim.new_digest, inner["digest"]: new_inner_digest}
    assert doc(root, new_inner_digest)["manifests"] == [amd]
    assert new_outer["manifests"][1] == ppc
    assert not {outer["digest"], inner["digest"], arm["digest"]} & blobs(root)
    assert blobs(root) == reached(root)


def test_an_emptied_nested_index_goes_and_the_last_platform_is_refused(tmp_path, generate_module) -> None:
    w = generate_module.LayoutWriter(tmp_path / "lay")
    amd = w.image([b"amd"], platform=True)
    arm = w.image([b"arm"], architecture="arm64", platform=True)
    inner = w.index([arm])
    outer = w.index([amd, inner])
    w.add_entry(outer, name="app")
    w.finish()
    root = tmp_path / "lay"
    before_index, before_blobs = (root / "index.json").read_bytes(), blobs(root)
    refused(Layout.open(root).delete(["app"], platforms=["linux/arm64", "linux/amd64"]), 2, "no platform: use rm app")
    assert (root / "index.json").read_bytes() == before_index and blobs(root) == before_blobs
    (trim,) = Layout.open(root).delete(["app"], platforms=["linux/arm64"]).trims
    assert doc(root, trim.new_digest)["manifests"] == [amd]
    assert {m.digest for m in trim.removed} == {arm["digest"], inner["digest"]}
    assert blobs(root) == reached(root)


def test_errors_change_nothing(tmp_path, generate_module) -> None:
    _, d = three_platforms(tmp_path, generate_module)
    root = tmp_path / "lay"
    before_index, before_blobs = (root / "index.json").read_bytes(), blobs(root)
    refused(Layout.open(root).delete(["app:1"], platforms=["linux/arm64", "windows/amd64"]), 3, "no windows/amd64")
    refused(Layout.open(root).delete(["other"], platforms=["linux/amd64"]), 2, "not a multi-platform index")
    with pytest.raises(UsageError, match="invalid platform"):
        Layout.open(root).delete(["app:1"], platforms=["linux"])
    with pytest.raises(UsageError, match="no --filter, --all or --prune"):
        Layout.open(root).delete(["app:1"], platforms=["linux/amd64"], prune=True)
    refused(Layout.open(root).delete(["nope"], platforms=["linux/amd64"]), 3)
    assert Layout.open(root).delete(["nope"], platforms=["linux/amd64"], ignore_missing=True).exit_code == 0
    assert (root / "index.json").read_bytes() == before_index and blobs(root) == before_blobs
    runner = CliRunner()
    for args, code in (
        (["app:1", "--platform", "windows/amd64"], 3),
        (["other", "--platform", "linux/amd64"], 2),
        (["app:1", "--platform", "linux/amd64", "--platform", "linux/arm64", "--platform", "linux/s390x"], 2),
    ):
        result = runner.invoke(cli, ["rm", str(root), *args])
        assert result.exit_code == code, result.output
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert (root / "index.json").read_bytes() == before_index and blobs(root) == before_blobs


def test_dry_run_reports_the_same_and_changes_nothing(tmp_path, generate_module) -> None:
    three_platforms(tmp_path, generate_module)
    root = tmp_path / "lay"
    before_index, before_blobs = (root / "index.json").read_bytes(), blobs(root)
    dry = Layout.open(root).delete(["app:1"], platforms=["linux/arm64"], dry_run=True)
    assert (root / "index.json").read_bytes() == before_index and blobs(root) == before_blobs
    real = Layout.open(root).delete(["app:1"], platforms=["linux/arm64"])
    assert dry.trims[0].new_digest == real.trims[0].new_digest
    assert (dry.bytes_freed, dry.blobs_deleted) == (real.bytes_freed, real.blobs_deleted)


def test_a_platform_manifest_another_image_uses_stays(tmp_path, generate_module) -> None:
    w, d = three_platforms(tmp_path, generate_module)
    w.add_entry(d["arm"], name="arm-only")
    w.finish()
    root = tmp_path / "lay"
    Layout.open(root).delete(["app:1"], platforms=["linux/arm64"])
    assert d["arm"]["digest"] in blobs(root) and d["app"]["digest"] not in blobs(root)
    assert blobs(root) == reached(root)


def test_attestations_of_a_removed_platform_go_with_it(tmp_path, generate_module) -> None:
    """docker buildx: an `unknown/unknown` attestation manifest per platform, pointing at it."""
    w = generate_module.LayoutWriter(tmp_path / "lay")
    amd = w.image([b"amd"], platform=True)
    arm = w.image([b"arm"], architecture="arm64", platform=True)
    attestations = []
    for target in (amd, arm):
        att = w.image([b"in-toto " + target["digest"].encode()], layer_media_type="application/vnd.in-toto+json")
        att["platform"] = {"architecture": "unknown", "os": "unknown"}
        att["annotations"] = {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": target["digest"],
        }
        attestations.append(att)
    w.add_entry(w.index([amd, arm, *attestations]), name="app")
    w.finish()
    root = tmp_path / "lay"
    (trim,) = Layout.open(root).delete(["app"], platforms=["linux/arm64"]).trims
    assert doc(root, trim.new_digest)["manifests"] == [amd, attestations[0]]
    assert [m.attestation_of for m in trim.removed] == [None, arm["digest"]]
    assert attestations[1]["digest"] not in blobs(root)
    assert blobs(root) == reached(root)
    # the last real platform with only its attestation left: refused
    refused(Layout.open(root).delete(["app"], platforms=["linux/amd64"]), 2, "no platform")


def test_referrers_and_oras_child_entries_of_a_removed_platform_cascade(tmp_path, generate_module) -> None:
    w, d = three_platforms(tmp_path, generate_module)
    sig_arm = w.image([b"sig arm"], artifact_type="x/sig", subject=d["arm"])
    sig_amd = w.image([b"sig amd"], artifact_type="x/sig", subject=d["amd"])
    sig_index = w.image([b"sig index"], artifact_type="x/sig", subject=d["app"])
    for desc in (d["arm"], d["amd"], sig_arm, sig_amd, sig_index):
        w.add_entry(desc)  # unnamed, as oras-go writes children and referrers
    w.finish()
    root = tmp_path / "lay"
    report = Layout.open(root).delete(["app:1"], platforms=["linux/arm64"])
    reasons = {i.id: i.reason for i in report.images}
    assert reasons == {
        d["arm"]["digest"]: f"child of {d['app']['digest']}",
        sig_arm["digest"]: f"referrer of {d['arm']['digest']}",
        sig_index["digest"]: f"referrer of {d['app']['digest']}",
    }
    left = {m["digest"] for m in entries(root)}
    assert d["amd"]["digest"] in left and sig_amd["digest"] in left
    assert blobs(root) == reached(root)


def test_keep_referrers_keeps_the_signature_of_a_removed_platform(tmp_path, generate_module) -> None:
    w, d = three_platforms(tmp_path, generate_module)
    sig_arm = w.image([b"sig arm"], artifact_type="x/sig", subject=d["arm"])
    w.add_entry(sig_arm)
    w.finish()
    root = tmp_path / "lay"
    Layout.open(root).delete(["app:1"], platforms=["linux/arm64"], keep_referrers=True)
    assert sig_arm["digest"] in {m["digest"] for m in entries(root)}
    assert sig_arm["digest"] in blobs(root) and d["arm"]["digest"] not in blobs(root)


def test_sparse_index(tmp_path, generate_module) -> None:
    """skopeo --multi-arch index-only: platform manifests absent. Trimming works; what is
    freed is deleted only with --allow-sparse (else a missing manifest among what stays is
    doubt: the new index is written and nothing deleted)."""
    for allow in (False, True):
        w, d = three_platforms(tmp_path / str(allow), generate_module)
        w.remove_blob(d["amd"])
        w.remove_blob(d["arm"])
        root = tmp_path / str(allow) / "lay"
        before = blobs(root)
        report = Layout.open(root).delete(["app:1"], platforms=["linux/arm64"], allow_sparse=allow)
        trim = report.trims[0]
        assert [m["digest"] for m in entries(root)][:2] == [trim.new_digest] * 2
        assert reached(root) - {d["amd"]["digest"]} <= blobs(root)
        if allow:
            assert d["app"]["digest"] not in blobs(root)
        else:
            assert blobs(root) == before | {trim.new_digest}
            assert any("nothing deleted" in warning for warning in report.warnings)


def test_cli_table_json_and_quiet(tmp_path, generate_module) -> None:
    _, d = three_platforms(tmp_path, generate_module)
    root = tmp_path / "lay"
    runner = CliRunner()
    args = ["rm", str(root), "app:1", "--platform", "linux/arm64", "--dry-run", "--format", "json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    trim = document["trims"][0]
    assert trim["old_digest"] == d["app"]["digest"] and trim["removed"][0]["platform"] == "linux/arm64/v8"
    result = runner.invoke(cli, ["rm", str(root), "app:1", "--platform", "linux/arm64"])
    assert result.exit_code == 0, result.output
    assert f"Trimmed: app:1, app:latest {d['app']['digest']} -> {trim['new_digest']}" in result.stdout
    assert f"removed linux/arm64/v8 {d['arm']['digest']}" in result.stdout
    result = runner.invoke(cli, ["rm", str(root), "app:1", "--platform", "linux/s390x", "-q"])
    assert result.exit_code == 0 and result.stdout.strip() == entries(root)[0]["digest"]


@pytest.mark.parametrize("point", ["after-new-blob", "after-index-write", "after-first-blob-delete"])
def test_crash_at_any_point_keeps_every_reachable_blob(tmp_path, generate_module, point) -> None:
    _, d = three_platforms(tmp_path, generate_module)
    root = tmp_path / "lay"
    result = subprocess.run(
        [sys.executable, "-m", "ocilayout", "rm", str(root), "app:1", "--platform", "linux/arm64"],
        capture_output=True,
        text=True,
        env={**os.environ, CRASH_ENV: point},
        timeout=120,
    )
    assert result.returncode == -9, result.stderr
    assert reached(root) <= blobs(root)
    names = {(m.get("annotations") or {}).get(REF_NAME): m["digest"] for m in entries(root)}
    if point == "after-new-blob":
        assert names["app:1"] == names["app:latest"] == d["app"]["digest"]
    else:
        assert names["app:1"] == names["app:latest"] != d["app"]["digest"]
    assert not [p for p in (root / "blobs" / "sha256").iterdir() if p.name.startswith(".ocilayout-tmp-")]


PEERS = {tool: shutil.which(tool) for tool in ("skopeo", "umoci")}


@pytest.mark.skipif(PEERS["skopeo"] is None, reason="skopeo is not installed (.ci/run installs it)")
def test_skopeo_reads_and_copies_the_trimmed_index(tmp_path, generate_module) -> None:
    three_platforms(tmp_path, generate_module)
    root = tmp_path / "lay"
    (trim,) = Layout.open(root).delete(["app:1"], platforms=["linux/arm64"]).trims
    raw = subprocess.run([PEERS["skopeo"], "inspect", "--raw", f"oci:{root}:app:latest"], capture_output=True)
    assert raw.returncode == 0, raw.stderr
    assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == trim.new_digest
    copy_to = tmp_path / "copy"
    copy = subprocess.run(
        [PEERS["skopeo"], "copy", "--preserve-digests", "--multi-arch", "all"]
        + [f"oci:{root}:app:1", f"oci:{copy_to}:app"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert copy.returncode == 0, copy.stderr
    copied = json.loads((tmp_path / "copy" / "index.json").read_text())["manifests"]
    assert copied[0]["digest"] == trim.new_digest


@pytest.mark.skipif(PEERS["umoci"] is None, reason="umoci is not installed (.ci/run installs it)")
def test_umoci_lists_the_trimmed_layout(tmp_path, generate_module) -> None:
    three_platforms(tmp_path, generate_module)
    root = tmp_path / "lay"
    Layout.open(root).delete(["app:1"], platforms=["linux/arm64"])
    result = subprocess.run([PEERS["umoci"], "ls", "--layout", str(root)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"app:1", "app:latest", "other"}


# -- a model: random multi-platform layouts, random platforms removed ------------------------

ARCHES = ["amd64", "arm64", "s390x", "ppc64le"]


@st.composite
def trim_cases(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 4))
    remove = draw(st.lists(st.sampled_from(ARCHES[:n]), min_size=1, max_size=n, unique=True))
    if n < len(ARCHES) and draw(st.integers(0, 9)) == 0:  # now and then a platform REF lacks
        remove.append(ARCHES[n])
    return {
        "arches": ARCHES[:n],
        "shared_layer": draw(st.booleans()),
        "nested": draw(st.booleans()),
        "also_named": draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True)),  # arch images also entries
        "child_entries": draw(st.booleans()),
        "remove": remove,
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(case=trim_cases())
def test_random_trims_match_the_model(tmp_path_factory, generate_module, case) -> None:
    root = tmp_path_factory.mktemp("trim") / "lay"
    w = generate_module.LayoutWriter(root)
    images = {
        arch: w.image(([b"base"] if case["shared_layer"] else []) + [arch.encode()], architecture=arch, platform=True)
        for arch in case["arches"]
    }
    children = list(images.values())
    if case["nested"] and len(children) > 1:
        children = [w.index(children[: len(children) // 2]), *children[len(children) // 2 :]]
    app = w.index(children)
    w.add_entry(app, name="app")
    for k in case["also_named"]:
        w.add_entry(images[case["arches"][k]], name=f"direct-{k}")
    if case["child_entries"]:
        for image in images.values():
            w.add_entry(image)
    w.finish()
    before_blobs, before_entries = blobs(root), entries(root)
    present_wanted = [a for a in case["remove"] if a in images]
    platforms = [f"linux/{a}" for a in case["remove"]]
    if len(present_wanted) < len(case["remove"]):
        refused(Layout.open(root).delete(["app"], platforms=platforms), 3)
        assert blobs(root) == before_blobs
        return
    if set(present_wanted) == set(images):
        refused(Layout.open(root).delete(["app"], platforms=platforms), 2)
        assert blobs(root) == before_blobs
        return
    report = Layout.open(root).delete(["app"], platforms=platforms)
    # the model: app's platforms are the others; named direct entries stay; unnamed child
    # entries of removed platforms go; every blob no entry reaches (and only those) is gone
    new_app = next(m for m in entries(root) if (m.get("annotations") or {}).get(REF_NAME) == "app")
    kept_arches = set()
    todo = [new_app["digest"]]
    while todo:
        for m in doc(root, todo.pop())["manifests"]:
            if "platform" in m:
                kept_arches.add(m["platform"]["architecture"])
            else:
                todo.append(m["digest"])
    assert kept_arches == set(images) - set(present_wanted)
    removed_digests = {images[a]["digest"] for a in present_wanted}
    direct = {images[case["arches"][k]]["digest"] for k in case["also_named"]}
    expected_entries = [
        m["digest"]
        for m in before_entries
        if m["digest"] != app["digest"] and not (
            "annotations" not in m and m["digest"] in removed_digests and m["digest"] not in direct
        )
    ]
    assert [m["digest"] for m in entries(root) if m["digest"] != new_app["digest"]] == expected_entries
    assert blobs(root) == reached(root)
    assert report.blobs_deleted == len(before_blobs - blobs(root))


def test_repointed_entries_keep_their_text_in_an_inexact_index(tmp_path, generate_module) -> None:
    """index.json with a float (not exactly re-serialisable): the moved entries change only in
    digest and size; every other byte stays."""
    _, d = three_platforms(tmp_path, generate_module)
    root = tmp_path / "lay"
    text = (root / "index.json").read_text()
    old_entry = json.dumps({**d["app"], "annotations": {REF_NAME: "app:1"}}, separators=(",", ":"), sort_keys=True)
    assert old_entry in text
    weighted = old_entry[:-1] + ',"x-weight":1.50}'
    (root / "index.json").write_text(text.replace(old_entry, weighted))
    (trim,) = Layout.open(root).delete(["app:1"], platforms=["linux/arm64"]).trims
    size = (root / "blobs" / trim.new_digest.replace(":", "/")).stat().st_size
    expected = weighted.replace(d["app"]["digest"], trim.new_digest).replace(
        f'"size":{d["app"]["size"]}', f'"size":{size}'
    )
    assert expected in (root / "index.json").read_text()


SHARED = REPO.parent / "shared" / "conformance"


def _multi_platform_names(layout: Path) -> list[tuple[str, str]]:
    """(name, platform) for each named index entry with two or more platforms."""
    found = []
    try:
        listed = list(entries(layout))
    except (OSError, ValueError, KeyError, TypeError):
        return []
    for entry in listed:
        if not isinstance(entry, dict):
            continue
        name = (entry.get("annotations") or {}).get(REF_NAME)
        try:
            children = doc(layout, entry["digest"]).get("manifests") or []
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            continue
        platforms = [
            f"{c['platform']['os']}/{c['platform']['architecture']}"
            for c in children
            if isinstance(c.get("platform"), dict) and c["platform"].get("os") not in (None, "unknown")
        ]
        if name and len(set(platforms)) >= 2:
            found.append((name, platforms[0]))
    return found


CONFORMANCE_TRIMS = [
    (layout, name, platform)
    for layout in (sorted(SHARED.glob("*/*")) if SHARED.is_dir() else [])
    if (layout / "oci-layout").is_file()
    for name, platform in _multi_platform_names(layout)[:2]
]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/conformance is absent")
def test_conformance_has_multi_platform_images_to_trim() -> None:
    assert len(CONFORMANCE_TRIMS) >= 3


@pytest.mark.parametrize(
    ("source", "name", "platform"),
    CONFORMANCE_TRIMS,
    ids=[f"{c[0].parent.name}/{c[0].name}:{c[1]}" for c in CONFORMANCE_TRIMS],
)
def test_conformance_trim(tmp_path, source: Path, name: str, platform: str) -> None:
    root = tmp_path / "lay"
    shutil.copytree(source, root)
    reached_before, blobs_before = reached(root), blobs(root)
    report = Layout.open(root).delete([name], platforms=[platform], allow_sparse=True)
    (trim,) = report.trims
    new_children = doc(root, trim.new_digest)["manifests"]
    assert all(
        f"{c.get('platform', {}).get('os')}/{c.get('platform', {}).get('architecture')}" != platform
        for c in new_children
    )
    # only blobs that became unreachable went; everything still reached that was there is there
    assert blobs_before - blobs(root) <= reached_before - reached(root)
    assert (reached(root) & blobs_before) <= blobs(root)
    assert trim.new_digest in blobs(root)


def test_one_failing_reference_does_not_stop_the_others(tmp_path, generate_module) -> None:
    w, d = three_platforms(tmp_path, generate_module)
    w.add_entry(w.index([d["amd"], d["s390"]]), name="second")
    w.finish()
    root = tmp_path / "lay"
    report = Layout.open(root).delete(["other", "nope", "second", "app:1"], platforms=["linux/s390x"])
    assert [t.reference for t in report.trims] == ["second", "app:1"]
    assert [f.reference for f in report.failures] == ["other", "nope"] and report.exit_code == 1
    assert d["s390"]["digest"] not in blobs(root) and reached(root) <= blobs(root)


def test_review_regressions(tmp_path, generate_module) -> None:
    """An attestation of a manifest still listed under another platform stays; embedded `data`
    is dropped with the old digest; absurd nesting is a corrupt layout (exit 5), not "not
    found"; a damaged file already at the new digest is replaced."""
    w = generate_module.LayoutWriter(tmp_path / "a")
    arm = w.image([b"arm"], architecture="arm", variant="v7", platform=True)
    as_v6 = {**arm, "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}}
    att = w.image([b"in-toto"], layer_media_type="application/vnd.in-toto+json")
    att["platform"] = {"architecture": "unknown", "os": "unknown"}
    att["annotations"] = {
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": arm["digest"],
    }
    app = w.index([w.image([b"amd"], platform=True), arm, as_v6, att])
    w.add_entry({**app, "data": "e30="}, name="app")
    w.finish()
    root = tmp_path / "a"
    (trim,) = Layout.open(root).delete(["app"], platforms=["linux/arm/v6"]).trims
    assert att["digest"] in {m["digest"] for m in doc(root, trim.new_digest)["manifests"]}
    assert att["digest"] in blobs(root)
    assert "data" not in entries(root)[0] and entries(root)[0]["digest"] == trim.new_digest

    w = generate_module.LayoutWriter(tmp_path / "deep")
    node = w.index([w.image([b"amd"], platform=True), w.image([b"arm"], architecture="arm64", platform=True)])
    for _ in range(80):
        node = w.index([node])
    w.add_entry(node, name="deep")
    w.finish()
    report = Layout.open(tmp_path / "deep").delete(["deep"], platforms=["linux/arm64"])
    assert report.exit_code == 5 and "nested deeper" in report.failures[0].message

    _, d = three_platforms(tmp_path / "c", generate_module)
    root = tmp_path / "c" / "lay"
    planned = Layout.open(root).delete(["app:1"], platforms=["linux/arm64"], dry_run=True).trims[0].new_digest
    damaged = root / "blobs" / planned.replace(":", "/")
    damaged.write_bytes(b"{}")  # a stale, wrong file where the new index goes
    Layout.open(root).delete(["app:1"], platforms=["linux/arm64"])
    assert "sha256:" + hashlib.sha256(damaged.read_bytes()).hexdigest() == planned
