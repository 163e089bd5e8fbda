"""`du`: per-image size, shared and exclusive bytes; exclusive is exactly what `rm` of that image
alone frees (issue 11), checked against the real `rm` on random layouts."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocilayout import Layout, UsageError
from ocilayout import graph as graph_module
from ocilayout.cli import cli


def blob_sizes(root: Path) -> dict[str, int]:
    return {f"sha256:{p.name}": p.stat().st_size for p in (root / "blobs" / "sha256").iterdir()}


@st.composite
def layouts(draw):
    n = draw(st.integers(1, 6))
    images = []
    for i in range(n):
        layers = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True))
        names = draw(st.integers(0, 2))
        referrer = draw(st.one_of(st.none(), st.integers(0, max(i - 1, 0)))) if i else None
        # an earlier image's manifest listed here as a layer (rm walks into it once it read it)
        as_layer = draw(st.one_of(st.none(), st.integers(0, max(i - 1, 0)))) if i else None
        images.append((layers, names, referrer, as_layer))
    index_of = draw(st.one_of(st.none(), st.lists(st.integers(0, n - 1), min_size=1, max_size=2, unique=True)))
    orphan = draw(st.booleans())
    return images, index_of, orphan, draw(st.booleans())


def build(root: Path, generate, spec) -> list[str]:
    images, index_of, orphan, reverse = spec
    w = generate.LayoutWriter(root)
    pool = [b"layer %d" % k * (k + 1) for k in range(6)]
    descs = []
    for i, (layers, names, referrer, as_layer) in enumerate(images):
        subject = descs[referrer] if referrer is not None and referrer < len(descs) else None
        extra = [] if as_layer is None else [{**descs[as_layer], "mediaType": generate.OCI_LAYER}]
        desc = w.image([*(pool[k] for k in layers), *extra], subject=subject, labels={"n": str(i)})
        descs.append(desc)
        if names == 0:
            w.add_entry(desc)
        for k in range(names):
            w.add_entry(desc, name=f"img{i}-{k}")
    if index_of:
        w.add_entry(w.index([{**descs[i], "platform": {"os": "linux", "architecture": f"a{i}"}} for i in index_of]),
                    name="multi")
    if orphan:
        w.image([b"orphan only"])
    if reverse:  # images listing another's manifest come before it too
        w.entries.reverse()
    w.finish()
    return [d["digest"] for d in descs]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=layouts())
def test_exclusive_is_exactly_what_rm_of_the_image_frees(generate_module, spec) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        build(source, generate_module, spec)
        report = Layout.open(source).du()
        assert Layout.open(source).du(created=False).images == [
            replace(image, created=None) for image in report.images
        ], "what du counts does not depend on whether it reads the configs"
        everything = blob_sizes(source)
        assert report.totals.on_disk == sum(everything.values()) and report.totals.blobs == len(everything)
        for image in report.images:
            copy = Path(tmp) / "copy"
            shutil.copytree(source, copy)
            before = blob_sizes(copy)
            removal = Layout.open(copy).delete([image.digest], force=True)
            freed = sum(before[d] for d in set(before) - set(blob_sizes(copy)))
            assert image.exclusive == freed == removal.bytes_freed, (image, removal)
            assert image.shared <= image.size
            shutil.rmtree(copy)


@pytest.mark.parametrize("nested", [False, True])
def test_a_manifest_listed_as_a_layer_is_a_leaf_whatever_was_read(generate_module, tmp_path, nested) -> None:
    """Image b lists manifest A as a layer; A is an entry of its own, or only the child of the
    index `idx`. Removing what holds A frees A's config and layers at once (a layer reference
    is never opened, DESIGN 1), although rm has just read A: rm, a later gc, a warm rm and du's
    exclusive all agree."""
    root = tmp_path / "src"
    w = generate_module.LayoutWriter(root)
    a = w.image([b"layer of a" * 20], labels={"n": "a"})
    b = w.image([b"layer of b" * 5, {**a, "mediaType": generate_module.OCI_LAYER}], labels={"n": "b"})
    holder = w.index([{**a, "platform": {"os": "linux", "architecture": "amd64"}}]) if nested else a
    w.add_entry(holder, name="held")
    w.add_entry(b, name="b")
    w.finish()
    a_manifest = json.loads((root / "blobs" / "sha256" / a["digest"][7:]).read_text())
    a_own = {a_manifest["config"]["digest"], *(layer["digest"] for layer in a_manifest["layers"])}
    exclusive = {i.digest: i.exclusive for i in Layout.open(root, cache=False).du().images}
    for warm in (False, True):
        copy = tmp_path / f"copy-{warm}"
        shutil.copytree(root, copy)
        if warm:
            Layout.open(copy).list()
        before = blob_sizes(copy)
        removal = Layout.open(copy, cache=warm).delete([holder["digest"]], force=True)
        after = blob_sizes(copy)
        assert a["digest"] in after, "A stays: b lists it"
        assert not a_own & set(after), "A's config and layers go with what held A"
        assert removal.bytes_freed == sum(before[d] for d in set(before) - set(after)) == exclusive[holder["digest"]]
        assert Layout.open(copy, cache=False).gc(grace=0, dry_run=True).blobs_removed == 0, "nothing left for gc"


def test_warnings_do_not_depend_on_entry_order_or_the_fork(generate_module, tmp_path, monkeypatch) -> None:
    """A missing manifest met once as an index's child and once through an untyped-ish layer
    reference: one warning, the same in every entry order, forked or not."""

    outcomes = set()
    for order in ([0, 1, 2], [2, 1, 0]):
        for fork in (False, True):
            root = tmp_path / f"lay-{order[0]}-{fork}"
            w = generate_module.LayoutWriter(root)
            missing = w.image([b"never written"], labels={"n": "m"}, write=False)
            index = w.index([{**missing, "platform": {"os": "linux", "architecture": "amd64"}}])
            b = w.image([b"layer of b", {**missing, "mediaType": "application/octet-stream"}], labels={"n": "b"})
            x = w.image([b"layer of x"], labels={"n": "x"})
            for k in order:
                w.add_entry([index, b, x][k], name=["i", "b", "x"][k])
            w.finish()
            monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2 if fork else 10**9)
            report = Layout.open(root, cache=False).du(allow_sparse=True)
            outcomes.add(tuple(sorted(w for w in report.warnings if missing["digest"] in w)))
    assert len(outcomes) == 1 and len(next(iter(outcomes))) == 1, outcomes


def test_an_image_entered_first_as_a_layer_is_walked_by_its_other_entry(generate_module, tmp_path) -> None:
    """Two entries of one index digest, the first typed as a layer: du and ls walk the index (as
    the live set of both entries does), so what it reaches is neither unreachable in du's totals
    nor missing from its exclusive bytes, and ls shows an index."""
    root = tmp_path / "src"
    w = generate_module.LayoutWriter(root)
    child = w.image([b"layer of the child" * 9], labels={"n": "c"})
    index = w.index([{**child, "platform": {"os": "linux", "architecture": "amd64"}}])
    w.add_entry({**index, "mediaType": generate_module.OCI_LAYER})
    w.add_entry(index, name="m1")
    w.add_entry(w.image([b"another layer"], labels={"n": "o"}), name="other")
    w.finish()
    report = Layout.open(root, cache=False).du(grace=0)
    assert report.totals.unreachable == Layout.open(root, cache=False).gc(grace=0, dry_run=True).bytes_freed == 0
    rows = [r for r in Layout.open(root, cache=False).list().rows if r.digest == index["digest"]]
    assert [r.kind for r in rows] == ["index", "index"] and rows[0].platforms == ["linux/amd64"], "ls opens it too"
    exclusive = {i.digest: i.exclusive for i in report.images}
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    before = blob_sizes(copy)
    removal = Layout.open(copy, cache=False).delete([index["digest"]], force=True)
    freed = sum(before[d] for d in set(before) - set(blob_sizes(copy)))
    assert exclusive[index["digest"]] == freed == removal.bytes_freed > 0


def test_a_leaf_typed_entry_is_no_referrer_whatever_was_read(generate_module, tmp_path) -> None:
    """An unnamed entry typed as a config whose blob is a manifest with a subject, held in an
    index being removed: rm does not read it (a leaf type), although it has just read the same
    blob as the index's child, so it is a child of the index that goes with it (rule 2), not a
    referrer of a subject that stays; du's exclusive is what rm frees."""
    root = tmp_path / "src"
    w = generate_module.LayoutWriter(root)
    subject = w.image([b"subject layer" * 7], labels={"n": "s"})
    held = w.image([b"held layer" * 9], labels={"n": "h"}, subject=subject)
    other = w.image([b"other layer" * 5], labels={"n": "o"})
    pairs = ((held, "amd64"), (other, "arm64"))
    index = w.index([{**d, "platform": {"os": "linux", "architecture": a}} for d, a in pairs])
    w.add_entry(index, name="n2")
    w.add_entry({**held, "mediaType": "application/vnd.oci.image.config.v1+json"})
    w.add_entry(subject, name="n0")
    w.finish()
    exclusive = {i.digest: i.exclusive for i in Layout.open(root, cache=False).du().images}
    before = blob_sizes(root)
    removal = Layout.open(root, cache=False).delete([index["digest"]], force=True)
    freed = sum(before[d] for d in set(before) - set(blob_sizes(root)))
    assert held["digest"] not in blob_sizes(root), "the held entry went with its index"
    assert [i.reason for i in removal.images if i.id == held["digest"]] == [f"child of {index['digest']}"]
    assert exclusive[index["digest"]] == freed == removal.bytes_freed


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("typed_first", [True, False])
def test_a_config_is_read_for_a_time_only_where_it_is_typed_as_one(
    generate_module, tmp_path, typed_first, warm
) -> None:
    """One config blob that image a types as a config and image b as a layer: a's time is read
    from it, b is undated (the media type of each reference decides, DESIGN 1), whichever comes
    first, in du, ls and prune alike, warm as cold."""
    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    config = w.json_blob(w.config_object([], created="2024-03-01T00:00:00Z"), generate_module.OCI_CONFIG)
    a = w.image([b"layer of a" * 5], config=config)
    b = w.image([b"layer of b" * 5], config={**config, "mediaType": generate_module.OCI_LAYER})
    for descriptor, name in [(a, "a"), (b, "b")][:: 1 if typed_first else -1]:
        w.add_entry(descriptor, name=name)
    w.finish()
    if warm:
        Layout.open(root).list()  # fills the reference cache, configs included
    expected = {a["digest"]: "2024-03-01T00:00:00+00:00", b["digest"]: None}
    assert {i.digest: i.created for i in Layout.open(root, cache=warm).du().images} == expected
    rows = Layout.open(root, cache=warm).list().rows
    assert {r.digest: r.created for r in rows} == {a["digest"]: "2024-03-01T00:00:00Z", b["digest"]: None}
    pruned = Layout.open(root, cache=warm).prune(keep_last=0, dry_run=True)
    assert pruned.undated == ["b"]


@pytest.mark.parametrize("config_typed_first", [True, False])
def test_a_referrer_listed_under_two_types_is_one_referrer_in_either_order(
    generate_module, tmp_path, config_typed_first
) -> None:
    """A dangling referrer index listed twice, unnamed, once typed as a config (a leaf, never
    opened) and once as an index: what it is comes from the entry it is walked by (the one not
    leaf-typed), whatever the order. rm of what holds its subject takes both entries along, as
    du's exclusive counts; prune --dangling leaves it to its subject."""
    root = tmp_path / "src"
    w = generate_module.LayoutWriter(root)
    subject = w.image([b"subject layer" * 5], labels={"n": "s"})
    holder = w.index([{**subject, "platform": {"os": "linux", "architecture": "amd64"}}])
    inner = w.image([b"x" * 40], labels={"n": "x"})
    referrer = w.index([{**inner, "platform": {"os": "linux", "architecture": "arm64"}}], subject=subject)
    w.add_entry(holder, name="held")
    typed = [{**referrer, "mediaType": generate_module.OCI_CONFIG}, referrer]
    for entry in typed if config_typed_first else typed[::-1]:
        w.add_entry(entry)
    w.finish()
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    dangling = Layout.open(copy, cache=False).prune(dangling=True)
    assert referrer["digest"] in blob_sizes(copy), "a referrer goes with its subject, never alone"
    assert not dangling.dangling_removed
    exclusive = {i.digest: i.exclusive for i in Layout.open(root, cache=False).du().images}
    before = blob_sizes(root)
    removal = Layout.open(root, cache=False).delete([holder["digest"]], force=True)
    freed = sum(before[d] for d in set(before) - set(blob_sizes(root)))
    assert referrer["digest"] not in blob_sizes(root) and inner["digest"] not in blob_sizes(root)
    assert not [e for e in Layout.open(root).index.entries if e.digest == referrer["digest"]]
    assert exclusive[holder["digest"]] == freed == removal.bytes_freed


def test_totals_split_unreachable_by_grace(fixture_layout) -> None:
    root = fixture_layout("orphans")
    report = Layout.open(root).du(grace=0)
    gc = Layout.open(root).gc(grace=0, dry_run=True)
    assert report.totals.unreachable == gc.bytes_freed and report.totals.unreachable_blobs == gc.blobs_removed
    young = Layout.open(root).du(grace="3650d")
    assert young.totals.unreachable == 0 and young.totals.unreachable_young == report.totals.unreachable


@pytest.mark.parametrize("stray", ["upper", "short", "long", "non-ascii", "temp", "directory", "symlink", "none"])
def test_only_blob_files_count_on_disk(fixture_layout, stray) -> None:
    """Totals count the regular files of blobs/<alg>/ named as digests of that algorithm; a
    stray of any other name or kind is neither a blob nor bytes on disk (gc reports strays)."""
    root = fixture_layout("orphans")
    blobs = root / "blobs" / "sha256"
    files = [p for p in blobs.iterdir() if p.is_file() and re.fullmatch("[0-9a-f]{64}", p.name)]
    assert len(files) < len(list(blobs.iterdir())), "the fixture holds a stray already"
    before = Layout.open(root).du(grace=0).totals
    assert before.blobs == len(files) and before.on_disk == sum(p.stat().st_size for p in files)
    name = {"upper": "AB" * 32, "short": "ab" * 31, "long": "ab" * 33, "non-ascii": "\u00e9" * 64,
            "temp": ".ocilayout-tmp-1234", "directory": "cd" * 32, "symlink": "ef" * 32, "none": None}[stray]
    if stray == "directory":
        (blobs / name).mkdir()
    elif stray == "symlink":
        (blobs / name).symlink_to(files[0])
    elif name is not None:
        (blobs / name).write_bytes(b"stray bytes")
    after = Layout.open(root).du(grace=0).totals
    assert (after.blobs, after.on_disk, after.unreachable) == (before.blobs, before.on_disk, before.unreachable)


def test_doubt_makes_exclusive_zero(fixture_layout) -> None:
    root = fixture_layout("multi")
    index = json.loads((root / "index.json").read_bytes())
    victim = index["manifests"][0]["digest"].split(":")[1]
    (root / "blobs" / "sha256" / victim).write_bytes(b'{"layers": [], "layers": []}')  # unreadable
    report = Layout.open(root).du()
    assert not report.totals.certain
    assert all(i.exclusive == 0 for i in report.images if i.digest != f"sha256:{victim}")


def test_references_sort_and_json(fixture_layout) -> None:
    root = fixture_layout("multi")
    report = Layout.open(root).du(["app2"])
    assert [i.names for i in report.images] == [["app2"]]
    result = CliRunner().invoke(cli, ["du", str(root), "--sort", "name", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document["images"][0]) == {"digest", "names", "size", "exclusive", "shared", "created"}
    assert document["totals"]["on_disk"] > 0
    names = [i["names"][0] if i["names"] else "\uffff" for i in document["images"]]
    assert names == sorted(names)
    with pytest.raises(UsageError):
        Layout.open(root).du(sort="colour")


def test_doubt_is_said_in_the_totals_line(fixture_layout) -> None:
    root = fixture_layout("sparse")
    result = CliRunner().invoke(cli, ["du", str(root), "--grace", "0"])
    assert result.exit_code == 0 and "gc frees nothing while in doubt" in result.stdout


def test_sort_by_created_compares_times_not_text() -> None:
    from ocilayout.du import ImageUsage, _sort

    images = [
        ImageUsage("sha256:a", ["old"], 1, 1, 0, "2024-01-01T10:00:00+05:00"),  # 05:00 UTC
        ImageUsage("sha256:b", ["new"], 1, 1, 0, "2024-01-01T06:00:00+00:00"),
    ]
    _sort(images, "created")
    assert [i.names[0] for i in images] == ["new", "old"]


@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from([-1, 0, 5, 7])), max_size=5),
        max_size=8,
    ),
    st.integers(0, 8),
)
def test_merging_the_two_halves_numbers_blobs_as_one_pass(images, split) -> None:
    """The forked walk's halves, merged, give what one pass over all images gives: the same
    blob numbering, each blob's first size that is not -1, each image's reach."""
    from ocilayout.du import _merge, _number

    def walked(part):
        ids: dict[str, int] = {}
        declared: list[int] = []
        reach = [_number([b for b, _ in image], [s for _, s in image], ids, declared) for image in part]
        return ids, declared, reach, [True] * len(part), [None] * len(part)

    one = walked(images)
    merged = _merge(walked(images[:split]), walked(images[split:]))
    assert merged[0] == one[0] and list(merged[0]) == list(one[0])
    assert merged[1:] == one[1:]


@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from([-1, 0, 5, 7])), max_size=5),
        max_size=8,
    )
)
def test_blobs_are_numbered_in_first_seen_order_with_their_first_known_size(images) -> None:
    """`_number` against the rule spelt out blob by blob (its usual case takes a shortcut)."""
    from ocilayout.du import _number

    ids: dict[str, int] = {}
    declared: list[int] = []
    expected_ids: dict[str, int] = {}
    expected_sizes: list[int] = []
    for image in images:
        mine = _number([b for b, _ in image], [s for _, s in image], ids, declared)
        expected = []
        for blob, size in image:
            if blob not in expected_ids:
                expected_ids[blob] = len(expected_sizes)
                expected_sizes.append(size)
            elif expected_sizes[expected_ids[blob]] < 0:
                expected_sizes[expected_ids[blob]] = size
            if expected_ids[blob] not in expected:
                expected.append(expected_ids[blob])
        assert mine == tuple(expected)
        assert ids == expected_ids and declared == expected_sizes


@st.composite
def fanned_layouts(draw):
    """Indexes of image manifests, the shape a warm du takes from the records without a walk,
    and the shapes around it that it must leave to the walk: a child listed twice, untyped or
    typed as an index, an index in an index, a child another image lists as a layer, a child
    missing or replaced after the cache was filled."""
    n = draw(st.integers(1, 4))
    images = [draw(st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True)) for _ in range(n)]
    child = st.tuples(st.integers(0, n - 1), st.sampled_from(["manifest", "manifest", "untyped", "docker-list"]))
    indexes = draw(st.lists(st.lists(child, min_size=1, max_size=3), min_size=1, max_size=3))
    as_layer = draw(st.one_of(st.none(), st.integers(0, n - 1)))
    nested = draw(st.booleans())
    damage = draw(st.sampled_from(["none", "none", "missing", "replaced"]))
    return images, indexes, as_layer, nested, damage, draw(st.integers(0, n - 1)), draw(st.booleans())


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(spec=fanned_layouts(), fork=st.booleans(), allow_sparse=st.booleans())
def test_a_warm_du_of_indexes_is_the_cold_du(generate_module, monkeypatch, spec, fork, allow_sparse) -> None:
    images, indexes, as_layer, nested, damage, victim, named = spec
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_ROOTS", 2 if fork else 10**9)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lay"
        w = generate_module.LayoutWriter(root)
        pool = [b"shared layer %d" % k * (k + 2) for k in range(5)]
        descs = [w.image([pool[k] for k in layers], labels={"n": str(i)}) for i, layers in enumerate(images)]
        types = {"manifest": generate_module.OCI_MANIFEST, "untyped": None, "docker-list": generate_module.OCI_INDEX}
        made = []
        for k, children in enumerate(indexes):
            listed = []
            for i, kind in children:
                entry = {**descs[i], "platform": {"os": "linux", "architecture": f"a{i}"}}
                if types[kind] is None:
                    del entry["mediaType"]
                else:
                    entry["mediaType"] = types[kind]
                listed.append(entry)
            if nested and made:
                listed.append({**made[-1], "platform": {"os": "linux", "architecture": "nested"}})
            made.append(w.index(listed))
            w.add_entry(made[-1], name=f"idx{k}" if named or k else None)
        if as_layer is not None:
            w.add_entry(w.image([pool[0], {**descs[as_layer], "mediaType": generate_module.OCI_LAYER}]), name="holder")
        w.finish()
        Layout.open(root).list()  # fills the reference cache
        path = root / "blobs" / "sha256" / descs[victim]["digest"][7:]
        if damage == "missing":
            path.unlink()
        elif damage == "replaced":  # other content, another size: the record no longer describes it
            path.write_bytes(json.dumps({"schemaVersion": 2, "layers": [], "config": None}).encode())
        cold = Layout.open(root, cache=False).du(allow_sparse=allow_sparse)
        warm = Layout.open(root).du(allow_sparse=allow_sparse)
        assert warm.images == cold.images
        assert warm.totals == cold.totals
        assert sorted(warm.warnings) == sorted(cold.warnings)


@pytest.mark.parametrize("index_type", ["OCI_INDEX", "DOCKER_MANIFEST_LIST"])
def test_an_index_typed_entry_whose_content_is_an_image_is_the_same_warm_and_cold(
    generate_module, tmp_path, index_type
) -> None:
    """A warm du tries an index-typed entry as an index first; one whose content is an image
    manifest (content decides what a blob is) is then walked as one, dated by its config, as
    a cold du does."""
    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    image = w.image([b"layer of the image" * 5], labels={"n": "i"})
    w.add_entry({**image, "mediaType": getattr(generate_module, index_type)}, name="odd")
    w.add_entry(w.image([b"another layer" * 3], labels={"n": "o"}), name="other")
    w.finish()
    Layout.open(root).list()  # fills the reference cache
    cold = Layout.open(root, cache=False).du()
    warm = Layout.open(root).du()
    assert warm.images == cold.images and warm.totals == cold.totals
    manifest = json.loads((root / "blobs" / "sha256" / image["digest"][7:]).read_bytes())
    blobs = [image, manifest["config"], *manifest["layers"]]
    odd = next(i for i in warm.images if i.digest == image["digest"])
    assert odd.size == sum(b["size"] for b in blobs) and odd.created
    assert warm.totals.reachable_blobs == warm.totals.blobs == 6


def test_a_cold_du_reads_the_configs_ahead_and_a_warm_one_reads_none(generate_module, tmp_path, monkeypatch) -> None:
    """The configs that date the images are handed to the read-ahead together (a cold page
    cache then serves them in parallel), and only those the reference cache does not describe."""
    from ocilayout.storage import LayoutStore

    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    configs = set()
    for i in range(4):
        desc = w.image([b"layer %d" % i], labels={"n": str(i)})
        manifest = json.loads((root / "blobs" / "sha256" / desc["digest"][7:]).read_text())
        configs.add(manifest["config"]["digest"])
        w.add_entry(desc, name=f"img{i}")
    w.finish()
    asked: list[str] = []
    original = LayoutStore.prefetch

    def recording(self, digests):
        asked.extend(digests)
        return original(self, digests)

    monkeypatch.setattr(LayoutStore, "prefetch", recording)
    cold = Layout.open(root, cache=False).du()
    assert configs <= set(asked)
    Layout.open(root).du()  # fills the reference cache
    asked.clear()
    warm = Layout.open(root).du()
    assert not configs & set(asked)
    assert warm.images == cold.images and all(image.created for image in warm.images)


@pytest.mark.parametrize("cache", [False, True])
def test_du_keeps_no_index_it_read_for_one_walk(generate_module, tmp_path, cache) -> None:
    """Each image's manifest is kept only for its own walk (100,000 would fill memory): with or
    without created times, warm or cold, no index du read stays in the graph."""
    from ocilayout.du import usage
    from ocilayout.graph import NodeState

    root = tmp_path / "lay"
    w = generate_module.LayoutWriter(root)
    for i in range(3):
        children = [w.image([b"layer %d %d" % (i, k)], labels={"n": f"{i}.{k}"}) for k in range(2)]
        platforms = [{**c, "platform": {"os": "linux", "architecture": f"a{k}"}} for k, c in enumerate(children)]
        w.add_entry(w.index(platforms), name=f"multi{i}")
    w.finish()
    if cache:
        Layout.open(root).list()  # fills the reference cache: indexes are then accounted from records
    indexes = {e.digest for e in Layout.open(root).index.entries}
    for created in (False, True):
        layout = Layout.open(root, cache=cache)
        graph = layout.graph()
        usage(layout.store, layout.index, graph, created=created)
        kept = {d for d, n in graph._nodes.items() if n.state is NodeState.PARSED and n.has_children}
        assert not kept & indexes, (created, kept & indexes)
