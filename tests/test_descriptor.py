"""Descriptors, platforms and media-type kinds parsed from untrusted JSON."""

from __future__ import annotations

import pytest

from ocilayout.descriptor import (
    MAX_SIZE,
    Descriptor,
    Platform,
    parse_descriptor,
    parse_platform_spec,
    platform_from_json,
)
from ocilayout.digest import parse_digest
from ocilayout.errors import CorruptLayoutError, InvalidDigestError, UsageError
from ocilayout.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_ARTIFACT_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Kind,
    kind_of_media_type,
)

DIGEST = "sha256:" + "ab" * 32


def raw(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": DIGEST, "size": 42}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_minimal_descriptor() -> None:
    d = parse_descriptor(raw(), "here")
    assert d == Descriptor(OCI_MANIFEST, parse_digest(DIGEST), 42)
    assert d.name is None
    assert d.platform is None
    assert d.artifact_type is None


def test_full_descriptor() -> None:
    d = parse_descriptor(
        raw(
            annotations={REF_NAME: "v1", "x": "y"},
            platform={"os": "linux", "architecture": "arm64", "variant": "v8", "os.version": "10.0"},
            artifactType="application/vnd.example",
            urls=["https://example.invalid"],
            data="e30=",
        ),
        "here",
    )
    assert d.name == "v1"
    assert d.annotations == {REF_NAME: "v1", "x": "y"}
    assert d.platform == Platform("linux", "arm64", "v8", "10.0")
    assert str(d.platform) == "linux/arm64/v8"
    assert d.artifact_type == "application/vnd.example"


def test_missing_media_type_is_allowed() -> None:
    assert parse_descriptor(raw(mediaType=...), "here").media_type is None


@pytest.mark.parametrize("size", [0, 1, MAX_SIZE])
def test_size_in_range(size: int) -> None:
    assert parse_descriptor(raw(size=size), "here").size == size


@pytest.mark.parametrize("size", [-1, -(2**70), MAX_SIZE + 1, 2**200, 10**400])
def test_size_out_of_range(size: int) -> None:
    with pytest.raises(CorruptLayoutError, match="out of range"):
        parse_descriptor(raw(size=size), "index.json: manifests[0]")


@pytest.mark.parametrize("size", [True, False, 1.0, 42.5, "42", None, [42], ...])
def test_size_must_be_integer(size: object) -> None:
    with pytest.raises(CorruptLayoutError, match="size must be an integer"):
        parse_descriptor(raw(size=size), "here")


@pytest.mark.parametrize("annotations", [[], "x", 3, [["k", "v"]], True])
def test_annotations_must_be_object(annotations: object) -> None:
    with pytest.raises(CorruptLayoutError, match="annotations"):
        parse_descriptor(raw(annotations=annotations), "here")


def test_non_string_annotation_values_are_dropped_from_view() -> None:
    d = parse_descriptor(raw(annotations={REF_NAME: 7, "a": None, "b": {"c": 1}, "ok": "yes"}), "here")
    assert d.annotations == {"ok": "yes"}
    assert d.name is None  # a number is never a name


def test_null_annotations_mean_none() -> None:
    assert parse_descriptor(raw(annotations=None), "here").annotations == {}


@pytest.mark.parametrize("media_type", [7, ["x"], {"a": 1}, True])
def test_media_type_must_be_string(media_type: object) -> None:
    with pytest.raises(CorruptLayoutError, match="mediaType"):
        parse_descriptor(raw(mediaType=media_type), "here")


@pytest.mark.parametrize("value", [None, [], "sha256:x", 3, ["a"]])
def test_descriptor_must_be_object(value: object) -> None:
    with pytest.raises(CorruptLayoutError, match="^here: "):
        parse_descriptor(value, "here")


@pytest.mark.parametrize("digest", ["sha256:../../x", None, 5, "sha256:" + "AB" * 32, ...])
def test_bad_digest_names_where(digest: object) -> None:
    with pytest.raises(InvalidDigestError, match=r"^index.json: manifests\[3\]: "):
        parse_descriptor(raw(digest=digest), "index.json: manifests[3]")


def test_non_string_artifact_type_ignored() -> None:
    assert parse_descriptor(raw(artifactType=5), "here").artifact_type is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"os": "linux", "architecture": "amd64"}, Platform("linux", "amd64")),
        ({"os": "linux", "architecture": "arm", "variant": "v7"}, Platform("linux", "arm", "v7")),
        ({"os": "linux", "architecture": "arm", "variant": ""}, Platform("linux", "arm")),
        ({"os": "windows", "architecture": "amd64", "os.version": "10.0.1"}, Platform("windows", "amd64", None, "10.0.1")),
        ({"os": "linux"}, None),
        ({"architecture": "amd64"}, None),
        ({"os": 1, "architecture": "amd64"}, None),
        ("linux/amd64", None),
        (None, None),
        ([], None),
    ],
)
def test_platform_from_json(value: object, expected: Platform | None) -> None:
    assert platform_from_json(value) == expected


def test_malformed_platform_does_not_reject_descriptor() -> None:
    assert parse_descriptor(raw(platform="linux/amd64"), "here").platform is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("windows/amd64", Platform("windows", "amd64")),
    ],
)
def test_platform_spec(text: str, expected: Platform) -> None:
    assert parse_platform_spec(text) == expected


@pytest.mark.parametrize("text", ["", "linux", "linux/", "/amd64", "linux//v8", "a/b/c/d", "linux/amd64/"])
def test_bad_platform_spec(text: str) -> None:
    with pytest.raises(UsageError, match="os/arch"):
        parse_platform_spec(text)


def test_platform_matching() -> None:
    arm = Platform("linux", "arm64", "v8")
    assert arm.matches(Platform("linux", "arm64"))
    assert arm.matches(Platform("linux", "arm64", "v8"))
    assert not arm.matches(Platform("linux", "arm64", "v7"))
    assert not arm.matches(Platform("linux", "amd64"))
    assert not arm.matches(Platform("windows", "arm64"))
    assert Platform("linux", "arm64").matches(Platform("linux", "arm64", "v8"))  # arm64 means v8, as in containerd


@pytest.mark.parametrize(
    "media_type, kind",
    [
        (OCI_INDEX, Kind.INDEX),
        (DOCKER_MANIFEST_LIST, Kind.INDEX),
        (OCI_MANIFEST, Kind.IMAGE),
        (DOCKER_MANIFEST, Kind.IMAGE),
        (OCI_ARTIFACT_MANIFEST, Kind.ARTIFACT),
        (OCI_CONFIG, Kind.LEAF),
        (DOCKER_CONFIG, Kind.LEAF),
        (OCI_EMPTY, Kind.LEAF),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Kind.LEAF),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Kind.LEAF),
        (None, Kind.UNKNOWN),
        ("application/vnd.oci.descriptor.v1+json", Kind.UNKNOWN),
        ("x-completely-unknown", Kind.UNKNOWN),
        ("", Kind.UNKNOWN),
    ],
)
def test_kind_of_media_type(media_type: str | None, kind: Kind) -> None:
    assert kind_of_media_type(media_type) is kind
