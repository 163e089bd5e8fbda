"""`referrers REF`: manifests whose subject is REF, found among the entries and everything they
reach (issue 12, part 2)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ocilayout import Layout
from ocilayout.cli import cli


def test_recursive_chain_and_artifact_type(fixture_layout) -> None:
    root = fixture_layout("referrer-dangling")
    flat = Layout.open(root).referrers("app")
    assert [r.artifact_type for r in flat.referrers] == ["application/vnd.example.sbom"]
    assert flat.referrers[0].referrers == []
    deep = Layout.open(root).referrers("app", recursive=True)
    assert [r.artifact_type for r in deep.referrers[0].referrers] == ["application/vnd.example.signature"]
    none = Layout.open(root).referrers("app", artifact_type="application/vnd.example.signature")
    assert none.referrers == []


def test_named_referrer_shows_its_names_and_json(fixture_layout) -> None:
    root = fixture_layout("referrer-named")
    result = CliRunner().invoke(cli, ["referrers", str(root), "app", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["referrers"][0]["names"] == ["app-sbom"]
    assert set(document["referrers"][0]) >= {"digest", "artifact_type", "names", "size", "created", "subject"}


def test_a_referrer_reached_only_through_an_index_is_found(tmp_path, generate_module) -> None:
    w = generate_module.LayoutWriter(tmp_path / "lay")
    image = w.image([b"app layer"])
    w.add_entry(image, name="app")
    sig = w.image([b"signature"], artifact_type="application/vnd.example.signature", subject=image)
    w.add_entry(w.index([sig]), name="bundle")  # the signature is no entry of its own
    w.finish()
    report = Layout.open(tmp_path / "lay").referrers("app")
    assert [r.digest for r in report.referrers] == [sig["digest"]]


def test_a_chain_of_subjects_through_unnamed_entries(tmp_path, generate_module) -> None:
    """base ← a ← b (digests make a cycle of subjects impossible); the tree nests them."""
    w = generate_module.LayoutWriter(tmp_path / "lay")
    base = w.image([b"base"])
    w.add_entry(base, name="base")
    a = w.image([b"a"], artifact_type="x/a", subject=base)
    b = w.image([b"b"], artifact_type="x/b", subject=a)
    w.add_entry(a)
    w.add_entry(b)
    w.finish()
    report = Layout.open(tmp_path / "lay").referrers("base", recursive=True)
    assert report.referrers[0].referrers[0].digest == b["digest"]
    result = CliRunner().invoke(cli, ["referrers", str(tmp_path / "lay"), "base", "-r"])
    assert result.exit_code == 0 and b["digest"] in result.stdout


def test_inspect_counts_direct_referrers(tmp_path, generate_module) -> None:
    w = generate_module.LayoutWriter(tmp_path / "lay")
    amd = w.image([b"amd"], platform=True)
    arm = w.image([b"arm"], architecture="arm64", platform=True)
    app = w.index([amd, arm])
    w.add_entry(app, name="app")
    sbom = w.image([b"sbom"], artifact_type="x/sbom", subject=arm)
    w.add_entry(sbom)
    w.add_entry(w.image([b"sig"], artifact_type="x/sig", subject=sbom))  # a referrer of the referrer
    w.add_entry(w.image([b"sig2"], artifact_type="x/sig", subject=arm), name="arm-sig")
    w.finish()
    layout = Layout.open(tmp_path / "lay")
    assert layout.inspect("app").referrers == 0
    assert layout.inspect("app", platform="linux/arm64").referrers == 2
    assert layout.inspect("app", platform="linux/amd64").referrers == 0
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "lay"), sbom["digest"]])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["referrers"] == 1
