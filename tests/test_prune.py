"""Retention (`prune`): per repository keep the newest images, remove the other names with
`rm`'s rules (issue 11). Checked against a model written here from the issue's words."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocilayout import Layout, UsageError
from ocilayout.cli import cli
from ocilayout.prune import parse_age, repository_of

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
REF = "org.opencontainers.image.ref.name"


def created(days_ago: float | None) -> str | None:
    return None if days_ago is None else (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(root: Path, generate, images: list[tuple[list[str], float | None]], shared_layer: bool = True) -> list[str]:
    """One image per item (names, age in days or None for undated); returns their digests."""
    w = generate.LayoutWriter(root)
    base = b"shared base layer" if shared_layer else None
    digests = []
    for i, (names, days) in enumerate(images):
        layers = ([base] if base else []) + [b"own layer %d" % i]
        config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "n": i}
        if days is not None:
            config["created"] = created(days)
        desc = w.image(layers, config)
        digests.append(desc["digest"])
        if not names:
            w.add_entry(desc)
        for name in names:
            w.add_entry(desc, name=name)
    w.finish()
    return digests


def names_of(root: Path) -> set[str]:
    index = json.loads((root / "index.json").read_bytes())
    return {m["annotations"][REF] for m in index["manifests"] if REF in (m.get("annotations") or {})}


def blobs(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs" / "sha256").iterdir()}


def test_repository_of() -> None:
    assert repository_of("app:1") == "app"
    assert repository_of("reg:5000/app:v2") == "reg:5000/app"
    assert repository_of("reg:5000/app") == "reg:5000/app"
    assert repository_of("plain") == "plain"
    assert repository_of("a/b/c:latest") == "a/b/c"


@pytest.mark.parametrize("text, seconds", [("36h", 129600), ("7d", 604800), ("2w", 1209600), ("1d12h", 129600)])
def test_parse_age(text, seconds) -> None:
    assert parse_age(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "7", "7y", "d", "-1d", "1e400d"])
def test_parse_age_refuses(text) -> None:
    with pytest.raises(UsageError):
        parse_age(text)


def test_keep_last_per_repository(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:1"], 5), (["app:2"], 4), (["app:3"], 3), (["tool:1"], 9), (["tool:2"], 1)])
    report = Layout.open(root).prune(keep_last=2, now=NOW)
    assert names_of(root) == {"app:2", "app:3", "tool:1", "tool:2"}
    by_repo = {r.repository: r for r in report.repositories}
    assert [n.name for n in by_repo["app"].removed] == ["app:1"]
    assert by_repo["app"].images_deleted == 1 and by_repo["app"].bytes_freed > 0
    assert report.bytes_freed == by_repo["app"].bytes_freed


def test_keep_within_and_undated(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:old"], 30), (["app:new"], 1), (["app:nodate"], None), (["app:week"], 6.5)])
    report = Layout.open(root).prune(keep_within="7d", now=NOW)
    assert names_of(root) == {"app:new", "app:nodate", "app:week"}
    assert "app:nodate" in report.undated


def test_keep_last_and_keep_within_union(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:1"], 30), (["app:2"], 20), (["app:3"], 2), (["app:4"], 1)])
    Layout.open(root).prune(keep_last=1, keep_within="3d", now=NOW)
    assert names_of(root) == {"app:3", "app:4"}


def test_keep_glob_protects_and_uses_no_slot(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:release"], 100), (["app:1"], 10), (["app:2"], 5)])
    Layout.open(root).prune(keep_last=1, keep=["*:release"], now=NOW)
    assert names_of(root) == {"app:release", "app:2"}


def test_reference_glob_limits_the_policy(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:1"], 10), (["app:2"], 5), (["tool:1"], 10), (["tool:2"], 5)])
    Layout.open(root).prune(keep_last=1, references=["tool:*"], now=NOW)
    assert names_of(root) == {"app:1", "app:2", "tool:2"}


def test_an_image_with_a_kept_name_elsewhere_is_only_untagged(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    digests = build(root, generate_module, [(["app:1", "stable:1"], 10), (["app:2"], 5)])
    before = blobs(root)
    report = Layout.open(root).prune(keep_last=1, references=["app:*"], now=NOW)
    assert names_of(root) == {"stable:1", "app:2"}
    assert blobs(root) == before, "app:1's image keeps the name stable:1: nothing deleted"
    assert not any(i.deleted for i in report.removal.images) and digests


def test_ties_are_broken_by_name_and_counted_per_image(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:b"], 3), (["app:a"], 3), (["app:latest", "app:v9"], 1)])
    Layout.open(root).prune(keep_last=2, now=NOW)
    # the newest image keeps both its names; of the two tied, the first by name stays
    assert names_of(root) == {"app:latest", "app:v9", "app:a"}


def test_dangling(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [([], 30), ([], 1), (["app:1"], 2)])
    Layout.open(root).prune(dangling=True, keep_within="7d", now=NOW)
    index = json.loads((root / "index.json").read_bytes())["manifests"]
    assert len(index) == 2 and names_of(root) == {"app:1"}, "the old dangling entry went, names untouched"
    Layout.open(root).prune(dangling=True, now=NOW)
    assert len(json.loads((root / "index.json").read_bytes())["manifests"]) == 1


def test_prune_needs_a_policy(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:1"], 10)])
    with pytest.raises(UsageError):
        Layout.open(root).prune(now=NOW)
    result = CliRunner().invoke(cli, ["prune", str(root)])
    assert result.exit_code == 2


def test_cli_dry_run_and_json(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:1"], 10), (["app:2"], 5)])
    before = (root / "index.json").read_bytes(), blobs(root)
    result = CliRunner().invoke(cli, ["prune", str(root), "--keep-last", "1", "--dry-run", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [n["name"] for n in document["repositories"][0]["removed"]] == ["app:1"]
    assert document["dry_run"] is True and document["bytes_freed"] > 0
    assert ((root / "index.json").read_bytes(), blobs(root)) == before
    result = CliRunner().invoke(cli, ["prune", str(root), "--keep-last", "1"])
    assert result.exit_code == 0 and "app: kept 1, removed 1" in result.stdout
    assert names_of(root) == {"app:2"}


# -- property: the model ---------------------------------------------------------------------------


@st.composite
def layouts(draw):
    n = draw(st.integers(1, 7))
    pool = ["app:1", "app:2", "app:3", "app:4", "tool:1", "tool:2", "reg:5000/x:1", "reg:5000/x:2"]
    images = []
    for _ in range(n):
        names = draw(st.lists(st.sampled_from(pool), max_size=2, unique=True))
        images.append((names, draw(st.one_of(st.none(), st.integers(0, 40)))))
    # each name on one image only
    seen: set[str] = set()
    cleaned = []
    for names, days in images:
        names = [x for x in names if x not in seen]
        seen.update(names)
        cleaned.append((names, days))
    policy = {
        "keep_last": draw(st.one_of(st.none(), st.integers(0, 3))),
        "keep_within": draw(st.one_of(st.none(), st.sampled_from(["2d", "10d", "3w"]))),
        "keep": draw(st.lists(st.sampled_from(["*:1", "tool:*"]), max_size=1)),
    }
    if policy["keep_last"] is None and policy["keep_within"] is None:
        policy["keep_last"] = 1
    return cleaned, policy, draw(st.booleans())


def model(images, policy) -> set[str]:
    """Names kept, from the issue's words."""
    import fnmatch

    within = parse_age(policy["keep_within"]) if policy["keep_within"] else None
    kept: set[str] = set()
    repos: dict[str, list[tuple[int, str]]] = {}
    for i, (names, days) in enumerate(images):
        for name in names:
            repos.setdefault(repository_of(name), []).append((i, name))
    for items in repos.values():
        by_image: dict[int, list[str]] = {}
        for i, name in items:
            by_image.setdefault(i, []).append(name)
        order = sorted(by_image, key=lambda i: min(by_image[i]))
        order.sort(key=lambda i: -1 if images[i][1] is None else -images[i][1], reverse=True)  # newest first
        slots = 0
        for i in order:
            names, days = by_image[i], images[i][1]
            protected = {n for n in names if any(fnmatch.fnmatchcase(n, g) for g in policy["keep"])}
            newest = policy["keep_last"] is not None and days is not None and slots < policy["keep_last"] and (
                len(protected) < len(names))
            slots += newest
            for name in names:
                young = within is not None and days is not None and timedelta(days=days) <= within
                if name in protected or days is None or newest or young:
                    kept.add(name)
    return kept


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=layouts())
def test_prune_matches_the_model_and_keeps_what_kept_images_reach(generate_module, spec) -> None:
    images, policy, dry = spec
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lay"
        build(root, generate_module, images)
        before_names, before_blobs = names_of(root), blobs(root)
        layout = Layout.open(root)
        report = layout.prune(now=NOW, dry_run=dry, **policy)
        expected = model(images, policy)
        if dry:
            assert (names_of(root), blobs(root)) == (before_names, before_blobs)
            removed = {n.name for r in report.repositories for n in r.removed}
            assert before_names - removed == expected
            return
        assert names_of(root) == expected
        # every blob a remaining entry reaches is still there; nothing else was lost but orphans
        remaining = Layout.open(root)
        for row in remaining.list().rows:
            assert row.missing == 0, row
        gone = before_blobs - blobs(root)
        assert report.removal.blobs_deleted == len(gone)


def test_dangling_keeps_referrers_of_kept_images_and_removes_all_without_a_cutoff(tmp_path, generate_module) -> None:
    """Review: `--dangling` must not strip signatures of images the policy keeps; alone, it
    removes every unnamed image, undated too."""
    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    kept = w.image([b"kept layer"], {"architecture": "amd64", "os": "linux", "created": created(1)})
    w.add_entry(kept, name="app:1")
    sbom = w.image([b"sbom"], {"architecture": "amd64", "os": "linux", "created": created(30)}, subject=kept)
    w.add_entry(sbom)
    undated = w.image([b"leftover"], {"architecture": "amd64", "os": "linux"})
    w.add_entry(undated)
    w.finish()
    report = Layout.open(root).prune(keep_last=1, dangling=True, keep_within="7d", dry_run=True, now=NOW)
    assert [d.digest for d in report.dangling_removed] == []
    Layout.open(root).prune(dangling=True, now=NOW)
    left = {m["digest"] for m in json.loads((root / "index.json").read_bytes())["manifests"]}
    assert left == {kept["digest"], sbom["digest"]}, "the undated leftover went; the signature stayed"


def test_a_name_on_two_images_is_kept_with_a_warning(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:x"], 30), (["app:x"], 20), (["app:new"], 1)])
    report = Layout.open(root).prune(keep_last=1, now=NOW)
    assert report.exit_code == 0 and any("app:x" in w for w in report.warnings)
    assert names_of(root) == {"app:x", "app:new"}


def test_an_absurd_keep_within_is_a_usage_error(tmp_path, generate_module) -> None:
    root = tmp_path / "lay"
    build(root, generate_module, [(["app:1"], 3)])
    for value in ("3000000d", "99999999999999w"):
        with pytest.raises(UsageError):
            Layout.open(root).prune(keep_within=value, now=NOW)


def test_a_digest_pinned_name_belongs_to_its_repository() -> None:
    assert repository_of("app@sha256:" + "a" * 64) == "app"
    assert repository_of("reg:5000/app@sha256:" + "a" * 64) == "reg:5000/app"
