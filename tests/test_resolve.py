"""Reference resolution (DESIGN 3.1): name, full digest, unique prefix, only entry, --platform."""

from __future__ import annotations

import json

import pytest

from ocilayout import Layout
from ocilayout.descriptor import Platform
from ocilayout.errors import AmbiguousReferenceError, NotFoundError, UsageError
from ocilayout.indexfile import parse_index
from ocilayout.mediatypes import OCI_INDEX, OCI_MANIFEST, REF_NAME
from ocilayout.resolve import MIN_PREFIX, ResolvedBy, resolve

# Digests chosen so that prefixes collide on purpose.
A = "sha256:abcd1111" + "0" * 56
B = "sha256:abcd2222" + "0" * 56
C = "sha256:ffff0000" + "0" * 56
E = "sha512:abcd3333" + "0" * 120


def entry(digest: str, name: str | None = None) -> dict[str, object]:
    e: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1}
    if name is not None:
        e["annotations"] = {REF_NAME: name}
    return e


def index(*entries: dict[str, object]):
    return parse_index(json.dumps({"schemaVersion": 2, "manifests": list(entries)}).encode())


INDEX = index(entry(A, "latest"), entry(A, "v1"), entry(B, "other"), entry(C), entry(E, "big"))


def test_by_name() -> None:
    r = resolve(INDEX, "latest")
    assert r.by is ResolvedBy.NAME and not r.by_id
    assert str(r.digest) == A
    assert r.names == ["latest", "v1"]  # every name on that digest
    assert [e.position for e in r.entries] == [0, 1]


def test_name_wins_over_digest_prefix() -> None:
    idx = index(entry(A), entry(B, "abcd1"))  # a name that looks like a prefix of A
    r = resolve(idx, "abcd1")
    assert r.by is ResolvedBy.NAME and str(r.digest) == B


def test_by_full_digest() -> None:
    r = resolve(INDEX, A)
    assert r.by is ResolvedBy.DIGEST and r.by_id
    assert r.names == ["latest", "v1"]
    r = resolve(INDEX, C)
    assert r.names == [] and str(r.digest) == C


def test_by_full_sha512_digest() -> None:
    assert str(resolve(INDEX, E).digest) == E


def test_full_digest_not_in_index() -> None:
    with pytest.raises(NotFoundError, match="sha256:" + "9" * 64):
        resolve(INDEX, "sha256:" + "9" * 64)


@pytest.mark.parametrize("ref", ["ffff", "ffff0", "sha256:ffff", "ffff0000" + "0" * 20])
def test_unique_prefix(ref: str) -> None:
    r = resolve(INDEX, ref)
    assert r.by is ResolvedBy.PREFIX and str(r.digest) == C


def test_prefix_with_algorithm_restricts() -> None:
    # "abcd" alone matches A, B and E; "sha512:abcd" only E
    assert str(resolve(INDEX, "sha512:abcd").digest) == E
    with pytest.raises(AmbiguousReferenceError) as info:
        resolve(INDEX, "sha256:abcd")
    assert sorted(info.value.candidates) == sorted([A, B])


def test_ambiguous_prefix_lists_candidates() -> None:
    with pytest.raises(AmbiguousReferenceError) as info:
        resolve(INDEX, "abcd")
    assert sorted(info.value.candidates) == sorted([A, B, E])
    for candidate in (A, B, E):
        assert candidate in str(info.value)
    assert info.value.exit_code == 2


def test_ambiguous_prefix_is_unique_when_longer() -> None:
    assert str(resolve(INDEX, "abcd1").digest) == A


@pytest.mark.parametrize("ref", ["f", "ff", "fff", "sha256:fff"])
def test_prefix_too_short(ref: str) -> None:
    assert MIN_PREFIX == 4
    with pytest.raises(NotFoundError):
        resolve(INDEX, ref)


@pytest.mark.parametrize("ref", ["FFFF", "nope", "latest2", "sha256:zzzz", "md5:ffff", "ffff/../x", "9999"])
def test_not_found(ref: str) -> None:
    with pytest.raises(NotFoundError) as info:
        resolve(INDEX, ref)
    assert info.value.exit_code == 3
    assert ref in str(info.value)


def test_empty_reference_is_usage_error() -> None:
    with pytest.raises(UsageError):
        resolve(INDEX, "")


def test_only_entry_fallback() -> None:
    idx = index(entry(A, "x"), entry(A, "y"))  # one image under two names still counts as one
    r = resolve(idx, None)
    assert r.by is ResolvedBy.ONLY and str(r.digest) == A and r.names == ["x", "y"]
    assert r.by_id


def test_no_reference_with_several_images() -> None:
    with pytest.raises(UsageError, match="4 images"):
        resolve(INDEX, None)


def test_no_reference_on_empty_layout() -> None:
    with pytest.raises(NotFoundError):
        resolve(index(), None)


def test_name_on_two_images_is_ambiguous() -> None:
    # containers-image/delete_image_two_identical_references has exactly this
    idx = index(entry(A, "1.0.0"), entry(B, "1.0.0"))
    with pytest.raises(AmbiguousReferenceError) as info:
        resolve(idx, "1.0.0")
    assert sorted(info.value.candidates) == sorted([A, B])


# -- --platform on real fixtures -------------------------------------------------------

MULTI_AMD64 = "sha256:19a11e1230f1"
MULTI_ARM64 = "sha256:74a6b983ae15"
MULTI_S390X = "sha256:c4fd2241b715"


@pytest.fixture
def multiarch(fixture_layout) -> Layout:
    return Layout.open(fixture_layout("multiarch"))


@pytest.mark.parametrize(
    "platform, prefix",
    [("linux/amd64", MULTI_AMD64), ("linux/arm64", MULTI_ARM64), ("linux/arm64/v8", MULTI_ARM64),
     ("linux/s390x", MULTI_S390X)],
)
def test_platform_in_index(multiarch: Layout, platform: str, prefix: str) -> None:
    r = multiarch.resolve("multi", platform)
    assert str(r.digest).startswith(prefix)
    assert r.descriptor.digest == r.digest
    assert r.names == ["multi"]  # the top-level entry it was found under
    assert r.platform is not None and r.platform.matches(Platform(*platform.split("/")[:2]))


def test_platform_object_accepted(multiarch: Layout) -> None:
    assert str(multiarch.resolve("multi", Platform("linux", "s390x")).digest).startswith(MULTI_S390X)


@pytest.mark.parametrize("platform", ["linux/arm64/v7", "windows/amd64", "linux/riscv64"])
def test_platform_absent_lists_available(multiarch: Layout, platform: str) -> None:
    with pytest.raises(NotFoundError) as info:
        multiarch.resolve("multi", platform)
    message = str(info.value)
    assert platform in message
    assert "linux/amd64" in message and "linux/arm64/v8" in message and "linux/s390x" in message


def test_bad_platform_spec(multiarch: Layout) -> None:
    with pytest.raises(UsageError):
        multiarch.resolve("multi", "linux")


def test_platform_of_plain_image_from_config(fixture_layout) -> None:
    layout = Layout.open(fixture_layout("single"))
    r = layout.resolve("latest", "linux/amd64")
    assert str(r.digest).startswith("sha256:33ac2360")
    assert str(r.platform) == "linux/amd64"
    with pytest.raises(NotFoundError, match="linux/amd64"):
        layout.resolve("latest", "linux/arm64")


def test_platform_in_docker_manifest_list(fixture_layout) -> None:
    layout = Layout.open(fixture_layout("docker"))
    assert str(layout.resolve("dlist", "linux/arm64").digest).startswith("sha256:c79265ad51dd")
    assert str(layout.resolve("dlist", "linux/amd64").digest).startswith("sha256:542366db25c7")


def test_platform_missing_in_sparse_is_still_resolved(fixture_layout) -> None:
    # the arm64 child is absent from disk, but its descriptor (with platform) is in the index
    layout = Layout.open(fixture_layout("sparse"))
    r = layout.resolve("multi", "linux/arm64")
    assert str(r.digest) == "sha256:496c0634db44777cfa200e6ed65aa010245cb59853b1f6d348f532d473ac1cb6"


def test_resolve_via_layout(fixture_layout) -> None:
    layout = Layout.open(fixture_layout("three-names"))
    digest = "sha256:6d127146daadea1e1368ae264929c1a47494ebfde61df1080a417f4b8d643800"
    for ref in ("v1", "v2", "latest", digest, "6d12", "sha256:6d127146", None):
        r = layout.resolve(ref)
        assert str(r.digest) == digest
        assert sorted(r.names) == ["latest", "v1", "v2"]
