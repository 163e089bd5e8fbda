"""Tests for the JSON Schemas in schemas/ and their loader, ocilayout.schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from ocilayout import schemas
from ocilayout.schemas import SCHEMA_KINDS, schema_dir, validate, validator_for

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "conformance"

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64
SHA_C = "sha256:" + "c" * 64
SHA_D = "sha256:" + "d" * 64

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
CONFIG_TYPES = {OCI_CONFIG, DOCKER_CONFIG}

# --------------------------------------------------------------------------- valid documents

LAYOUT: dict[str, Any] = {"imageLayoutVersion": "1.0.0"}

DESCRIPTOR: dict[str, Any] = {
    "mediaType": OCI_MANIFEST,
    "digest": SHA_A,
    "size": 7682,
    "urls": ["https://example.com/example-manifest"],
    "annotations": {"org.opencontainers.image.ref.name": "v1.0"},
    "data": "e30=",
    "artifactType": "application/vnd.example.sbom.v1+json",
    "platform": {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.14393.1066",
        "os.features": ["win32k"],
        "variant": "v1",
        "features": ["sse4"],
    },
    "x-unknown-field": {"kept": True},
}

OCI_INDEX_DOC: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": OCI_INDEX,
    "artifactType": "application/vnd.example.bundle",
    "manifests": [
        {
            "mediaType": OCI_MANIFEST,
            "digest": SHA_A,
            "size": 7143,
            "platform": {"architecture": "ppc64le", "os": "linux"},
        },
        {
            "mediaType": OCI_MANIFEST,
            "digest": SHA_B,
            "size": 7682,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        },
        {"mediaType": OCI_INDEX, "digest": SHA_C, "size": 100},
    ],
    "subject": {"mediaType": OCI_MANIFEST, "digest": SHA_D, "size": 1},
    "annotations": {"com.example.key1": "value1"},
}

# A layout's index.json as skopeo/umoci write it: no mediaType, one tagged image.
MINIMAL_INDEX: dict[str, Any] = {
    "schemaVersion": 2,
    "manifests": [
        {
            "mediaType": OCI_MANIFEST,
            "digest": SHA_A,
            "size": 500,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }
    ],
}

DOCKER_MANIFEST_LIST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": DOCKER_LIST,
    "manifests": [
        {
            "mediaType": DOCKER_MANIFEST,
            "size": 7143,
            "digest": SHA_A,
            "platform": {"architecture": "ppc64le", "os": "linux"},
        },
        {
            "mediaType": DOCKER_MANIFEST,
            "size": 7682,
            "digest": SHA_B,
            "platform": {"architecture": "amd64", "os": "linux", "features": ["sse4"]},
        },
    ],
}

OCI_MANIFEST_DOC: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": OCI_MANIFEST,
    "config": {"mediaType": OCI_CONFIG, "digest": SHA_A, "size": 7023},
    "layers": [
        {"mediaType": OCI_LAYER, "digest": SHA_B, "size": 32654},
        {"mediaType": OCI_LAYER, "digest": SHA_C, "size": 16724},
    ],
    "subject": {"mediaType": OCI_MANIFEST, "digest": SHA_D, "size": 7682},
    "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"},
}

# Image-spec v1.1 artifact: empty config with inline data, no mediaType, no layers.
OCI_ARTIFACT_AS_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "artifactType": "application/vnd.example+type",
    "config": {
        "mediaType": OCI_EMPTY,
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
        "data": "e30=",
    },
    "layers": [],
}

DOCKER_SCHEMA2_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": DOCKER_MANIFEST,
    "config": {"mediaType": DOCKER_CONFIG, "size": 7023, "digest": SHA_A},
    "layers": [
        {"mediaType": DOCKER_LAYER, "size": 32654, "digest": SHA_B},
        {
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "size": 16724,
            "digest": SHA_C,
            "urls": ["https://mcr.microsoft.com/v2/windows/blobs/x"],
        },
    ],
}

ARTIFACT_MANIFEST: dict[str, Any] = {
    "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
    "artifactType": "application/vnd.example.sbom.v1",
    "blobs": [{"mediaType": "application/gzip", "size": 123, "digest": SHA_A}],
    "subject": {"mediaType": OCI_MANIFEST, "size": 1234, "digest": SHA_B},
    "annotations": {"org.opencontainers.artifact.created": "2022-01-01T14:42:55Z"},
}

OCI_CONFIG_DOC: dict[str, Any] = {
    "created": "2015-10-31T22:22:56.015925234Z",
    "author": "Alyssa P. Hacker <alyspdev@example.com>",
    "architecture": "amd64",
    "os": "linux",
    "variant": "v3",
    "config": {
        "User": "alice",
        "ExposedPorts": {"8080/tcp": {}},
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "FOO=oci_is_a"],
        "Entrypoint": ["/bin/my-app-binary"],
        "Cmd": ["--foreground", "--config", "/etc/my-app.d/default.cfg"],
        "Volumes": {"/var/job-result-data": {}, "/var/log/my-app-logs": {}},
        "WorkingDir": "/home/alice",
        "Labels": {"com.example.project.git.url": "https://example.com/project.git"},
        "StopSignal": "SIGKILL",
    },
    "rootfs": {"diff_ids": [SHA_A, SHA_B], "type": "layers"},
    "history": [
        {
            "created": "2015-10-31T22:22:54.690851953+01:00",
            "created_by": "/bin/sh -c #(nop) ADD file:a3bc1e842b69636f9df5256c49c5374fb4eef1e281fe3f282c65fb853ee171c5 in /",
        },
        {"created": "2015-10-31T22:22:55.613815829Z", "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]", "empty_layer": True},
        {"created": "2015-10-31T22:22:56Z", "author": "alice", "comment": "built by hand"},
    ],
}

# Docker writes null for empty slices/maps and adds its own members.
DOCKER_CONFIG_DOC: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "created": "0001-01-01T00:00:00Z",
    "docker_version": "20.10.7",
    "container": "3c8e5a0ad6c6",
    "container_config": {"Hostname": "3c8e5a0ad6c6", "Cmd": None},
    "config": {
        "Hostname": "",
        "AttachStdin": False,
        "Env": ["PATH=/bin"],
        "Cmd": ["sh"],
        "Entrypoint": None,
        "Volumes": None,
        "OnBuild": None,
        "Labels": None,
        "Image": SHA_A,
        "ArgsEscaped": True,
    },
    "rootfs": {"type": "layers", "diff_ids": [SHA_B]},
    "history": [{"created": "2021-09-23T23:47:57.442225064Z", "created_by": "/bin/sh"}],
}

# An image that has no filesystem at all still has rootfs with an empty diff_ids.
MINIMAL_CONFIG: dict[str, Any] = {"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}

VALID = [
    pytest.param("layout", LAYOUT, id="layout"),
    pytest.param("descriptor", DESCRIPTOR, id="descriptor-full"),
    pytest.param("descriptor", {"mediaType": "application/octet-stream", "digest": SHA_A, "size": 0}, id="descriptor-min"),
    pytest.param(
        "descriptor",
        {
            "mediaType": "application/vnd.example",
            "digest": "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
            "size": 1,
        },
        id="descriptor-unregistered-algorithm",
    ),
    pytest.param(
        "descriptor",
        {"mediaType": "application/vnd.example", "digest": "sha512:" + "0f" * 64, "size": 1},
        id="descriptor-sha512",
    ),
    pytest.param("index", OCI_INDEX_DOC, id="oci-index"),
    pytest.param("index", MINIMAL_INDEX, id="layout-index"),
    pytest.param("index", {"schemaVersion": 2, "manifests": []}, id="empty-index"),
    pytest.param("index", DOCKER_MANIFEST_LIST, id="docker-manifest-list"),
    pytest.param("manifest", OCI_MANIFEST_DOC, id="oci-manifest"),
    pytest.param("manifest", OCI_ARTIFACT_AS_MANIFEST, id="oci-artifact-image-manifest"),
    pytest.param("manifest", DOCKER_SCHEMA2_MANIFEST, id="docker-schema2-manifest"),
    pytest.param("artifact-manifest", ARTIFACT_MANIFEST, id="artifact-manifest"),
    pytest.param(
        "artifact-manifest",
        {"mediaType": "application/vnd.oci.artifact.manifest.v1+json", "artifactType": "application/x-thing"},
        id="artifact-manifest-min",
    ),
    pytest.param("config", OCI_CONFIG_DOC, id="oci-config"),
    pytest.param("config", DOCKER_CONFIG_DOC, id="docker-config"),
    pytest.param("config", MINIMAL_CONFIG, id="config-min"),
]


@pytest.mark.parametrize(("kind", "document"), VALID)
def test_valid_documents_pass(kind: str, document: dict[str, Any]) -> None:
    assert validate(document, kind) == []


# --------------------------------------------------------------------------- invalid documents


def _with(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Deep copy of `document` with the member at dotted `path` set (or deleted when value is _DEL)."""
    result = copy.deepcopy(document)
    *parents, last = path.split("/")
    target: Any = result
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is _DEL:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return result


_DEL = object()

INVALID = [
    # (kind, document, expected line prefix after "<kind>: ", fragment of the message)
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "layers/0/digest", "sha256:XYZ"),
        "$.layers[0].digest", "'sha256:XYZ' does not match", id="bad-digest",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config/digest", "sha256:" + "A" * 64),
        "$.config.digest", "does not match", id="uppercase-sha256",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config/digest", "sha512:" + "a" * 64),
        "$.config.digest", "does not match", id="short-sha512",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config/digest", "sha256"),
        "$.config.digest", "does not match", id="digest-without-colon",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config/digest", "SHA256:" + "a" * 64),
        "$.config.digest", "does not match", id="uppercase-algorithm",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config/digest", SHA_A + "\n"),
        "$.config.digest", "should not be valid", id="digest-trailing-newline",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config/digest", "sha256:../../etc/passwd"),
        "$.config.digest", "does not match", id="digest-path-traversal",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config/size", -1),
        "$.config.size", "-1 is less than the minimum of 0", id="negative-size",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "layers/1/size", 1.5),
        "$.layers[1].size", "is not of type 'integer'", id="fractional-size",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "layers/1/size", "12"),
        "$.layers[1].size", "is not of type 'integer'", id="string-size",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "schemaVersion", 1),
        "$.schemaVersion", "2 was expected", id="schema-version-1",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "schemaVersion", _DEL),
        "$", "'schemaVersion' is a required property", id="no-schema-version",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config", _DEL),
        "$", "'config' is a required property", id="missing-config",
    ),
    pytest.param(
        "manifest", _with(DOCKER_SCHEMA2_MANIFEST, "layers", _DEL),
        "$", "'layers' is a required property", id="missing-layers",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "annotations/com.example.key1", 1),
        '$.annotations["com.example.key1"]', "1 is not of type 'string'", id="annotation-not-string",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "layers/0/annotations", {"k": None}),
        "$.layers[0].annotations.k", "None is not of type 'string'", id="descriptor-annotation-null",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "config/mediaType", "not a type"),
        "$.config.mediaType", "'not a type' does not match", id="bad-media-type",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "layers/0/mediaType", "application/vnd.example; charset=utf-8"),
        "$.layers[0].mediaType", "does not match", id="media-type-with-parameter",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "mediaType", OCI_INDEX),
        "$.mediaType", "is not one of", id="manifest-with-index-media-type",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "subject/digest", _DEL),
        "$.subject", "'digest' is a required property", id="subject-without-digest",
    ),
    pytest.param(
        "manifest", _with(OCI_MANIFEST_DOC, "artifactType", "sbom"),
        "$.artifactType", "does not match", id="bad-artifact-type",
    ),
    pytest.param(
        "manifest", _with(OCI_ARTIFACT_AS_MANIFEST, "config/data", "not base64!"),
        "$.config.data", "does not match", id="data-not-base64",
    ),
    pytest.param(
        "manifest", ["not", "an", "object"],
        "$", "is not of type 'object'", id="manifest-not-object",
    ),
    pytest.param(
        "index", _with(MINIMAL_INDEX, "manifests/0/size", _DEL),
        "$.manifests[0]", "'size' is a required property", id="index-entry-without-size",
    ),
    pytest.param(
        "index", _with(MINIMAL_INDEX, "manifests", None),
        "$.manifests", "None is not of type 'array'", id="index-null-manifests",
    ),
    pytest.param(
        "index", _with(MINIMAL_INDEX, "schemaVersion", 1),
        "$.schemaVersion", "2 was expected", id="index-schema-version-1",
    ),
    pytest.param(
        "index", _with(OCI_INDEX_DOC, "manifests/1/platform/os", _DEL),
        "$.manifests[1].platform", "'os' is a required property", id="platform-without-os",
    ),
    pytest.param(
        "index", _with(DOCKER_MANIFEST_LIST, "manifests/1/platform/features", "sse4"),
        "$.manifests[1].platform.features", "is not of type 'array'", id="platform-features-not-array",
    ),
    pytest.param(
        "index", _with(OCI_INDEX_DOC, "annotations", {"org.example": ["x"]}),
        '$.annotations["org.example"]', "is not of type 'string'", id="index-annotation-not-string",
    ),
    pytest.param(
        "index", _with(MINIMAL_INDEX, "mediaType", OCI_MANIFEST),
        "$.mediaType", "is not one of", id="index-with-manifest-media-type",
    ),
    pytest.param(
        "descriptor", _with(DESCRIPTOR, "urls", "https://example.com"),
        "$.urls", "is not of type 'array'", id="urls-not-array",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "architecture", _DEL),
        "$", "'architecture' is a required property", id="config-missing-architecture",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "os", 7),
        "$.os", "7 is not of type 'string'", id="config-os-not-string",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "created", "yesterday"),
        "$.created", "does not match", id="config-created-not-rfc3339",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "created", "2015-13-31T22:22:56Z"),
        "$.created", "does not match", id="config-created-month-13",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "history/0/created", "2015-10-31 22:22:54"),
        "$.history[0].created", "does not match", id="history-created-without-zone",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "history/1/empty_layer", "true"),
        "$.history[1].empty_layer", "is not of type 'boolean'", id="history-empty-layer-string",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "rootfs/type", "layer"),
        "$.rootfs.type", "'layers' was expected", id="rootfs-type",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "rootfs/diff_ids", _DEL),
        "$.rootfs", "'diff_ids' is a required property", id="rootfs-without-diff-ids",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "rootfs/diff_ids/1", "sha256:XYZ"),
        "$.rootfs.diff_ids[1]", "does not match", id="diff-id-bad-digest",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "config/Labels", {"a": 1}),
        "$.config.Labels.a", "1 is not of type 'string'", id="label-not-string",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "config/Env", "FOO=bar"),
        "$.config.Env", "is not of type 'array', 'null'", id="env-not-array",
    ),
    pytest.param(
        "config", _with(OCI_CONFIG_DOC, "config/Env", ["A=1", 2]),
        "$.config.Env[1]", "2 is not of type 'string'", id="env-entry-not-string",
    ),
    pytest.param(
        "artifact-manifest", _with(ARTIFACT_MANIFEST, "artifactType", _DEL),
        "$", "'artifactType' is a required property", id="artifact-without-artifact-type",
    ),
    pytest.param(
        "artifact-manifest", _with(ARTIFACT_MANIFEST, "mediaType", OCI_MANIFEST),
        "$.mediaType", "was expected", id="artifact-wrong-media-type",
    ),
    pytest.param(
        "artifact-manifest", _with(ARTIFACT_MANIFEST, "blobs/0/digest", "sha256:XYZ"),
        "$.blobs[0].digest", "does not match", id="artifact-blob-bad-digest",
    ),
    pytest.param("layout", {}, "$", "'imageLayoutVersion' is a required property", id="layout-empty"),
    pytest.param(
        "layout", {"imageLayoutVersion": 1}, "$.imageLayoutVersion", "1 is not of type 'string'", id="layout-version-int"
    ),
]


@pytest.mark.parametrize(("kind", "document", "location", "fragment"), INVALID)
def test_invalid_documents_name_the_location(kind: str, document: Any, location: str, fragment: str) -> None:
    problems = validate(document, kind)
    prefix = f"{kind}: {location}: "
    matching = [line for line in problems if line.startswith(prefix) and fragment in line]
    assert matching, f"no problem at {location!r} containing {fragment!r}; got {problems}"


def test_every_problem_is_reported_in_location_order() -> None:
    document = _with(OCI_MANIFEST_DOC, "schemaVersion", 1)
    document["layers"][1]["digest"] = "sha256:XYZ"
    document["layers"][0]["size"] = -5
    document["config"]["mediaType"] = "nope"
    document["annotations"]["z"] = 3
    problems = validate(document, "manifest")
    locations = [line.split(": ")[1] for line in problems]
    assert locations == [
        '$.annotations.z',
        "$.config.mediaType",
        "$.layers[0].size",
        "$.layers[1].digest",
        "$.schemaVersion",
    ]
    # Deterministic: same input, same output.
    assert validate(document, "manifest") == problems


def test_list_indexes_sort_numerically() -> None:
    document = copy.deepcopy(MINIMAL_INDEX)
    document["manifests"] = [dict(MINIMAL_INDEX["manifests"][0]) for _ in range(12)]
    document["manifests"][2]["size"] = -1
    document["manifests"][10]["size"] = -1
    locations = [line.split(": ")[1] for line in validate(document, "index")]
    assert locations == ["$.manifests[2].size", "$.manifests[10].size"]


def test_problem_lines_are_short_and_single_line() -> None:
    hostile_key = "evil\nkey" + "k" * 500
    document = _with(OCI_MANIFEST_DOC, "layers/0/mediaType", "x" * 10_000)
    document["annotations"] = {hostile_key: {"nested": "x" * 10_000}}
    problems = validate(document, "manifest")
    assert len(problems) == 2
    for line in problems:
        assert len(line) <= schemas.MAX_LINE
        assert "\n" not in line and "\r" not in line
        assert line.startswith("manifest: $.")


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=20,
    ),
    st.sampled_from(SCHEMA_KINDS),
)
def test_arbitrary_json_never_crashes(document: Any, kind: str) -> None:
    problems = validate(document, kind)
    assert isinstance(problems, list)
    for line in problems:
        assert line.startswith(f"{kind}: $")
        assert len(line) <= schemas.MAX_LINE
        assert line.isprintable()


# --------------------------------------------------------------------------- API


def test_unknown_kind_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown schema kind"):
        validate({}, "manifests")
    with pytest.raises(ValueError, match="unknown schema kind"):
        validator_for("Manifest")


def test_validators_are_cached_and_of_draft_2020_12() -> None:
    for kind in SCHEMA_KINDS:
        validator = validator_for(kind)
        assert validator is validator_for(kind)
        assert isinstance(validator, Draft202012Validator)
        assert validator.schema["$id"] == schemas.schema_id(kind)


def test_schema_dir_finds_every_kind() -> None:
    directory = schema_dir()
    assert directory.is_dir()
    for kind in SCHEMA_KINDS:
        assert (directory / f"{kind}.json").is_file()


def test_schema_dir_is_the_checkout_copy_in_a_source_tree() -> None:
    # Tests run from the repository (editable install): the files under test are ours.
    assert schema_dir().resolve() == (REPO / "schemas").resolve()


def test_schema_dir_prefers_packaged_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "ocilayout"
    (package / "schemas").mkdir(parents=True)
    (package / "schemas" / "descriptor.json").write_text("{}")
    monkeypatch.setattr(schemas.importlib.resources, "files", lambda name: package)
    assert schema_dir() == package / "schemas"


def test_schema_dir_missing_is_a_clear_runtime_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas.importlib.resources, "files", lambda name: tmp_path / "pkg")
    monkeypatch.setattr(schemas, "__file__", str(tmp_path / "src" / "ocilayout" / "schemas.py"))
    with pytest.raises(RuntimeError, match="schema files not found"):
        schema_dir()


# --------------------------------------------------------------------------- the schema files


SCHEMA_FILES = sorted((REPO / "schemas").glob("*.json"))


def test_schema_files_are_exactly_the_kinds() -> None:
    assert sorted(path.stem for path in SCHEMA_FILES) == sorted(SCHEMA_KINDS)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_schema_file_is_valid_json_schema(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://ocilayout.invalid/schemas/{path.name}"
    # Unknown members must stay allowed (the image-spec says to ignore them).
    assert "additionalProperties" not in schema or schema["additionalProperties"] is not False
    assert '"additionalProperties": false' not in path.read_text(encoding="utf-8")


def test_all_refs_resolve() -> None:
    # Exercises every $ref: a document that goes through every referenced definition.
    assert validate(OCI_CONFIG_DOC, "config") == []
    assert validate(OCI_INDEX_DOC, "index") == []
    assert validate(ARTIFACT_MANIFEST, "artifact-manifest") == []


# --------------------------------------------------------------------------- conformance corpus

# Broken by design upstream (negative tests), per shared/conformance/SOURCES.md: an empty
# index.json, a Docker manifest as index.json, and a manifest list whose only blob is empty.
BROKEN_BY_DESIGN = {"stereoscope/invalid_file", "stereoscope/no_manifests", "stereoscope/valid_manifest"}

# index.json files our schema rejects on purpose, with where; each really violates the spec.
EXPECTED_INDEX_FAILURES = {
    # containers/image lookup test: entry with mediaType "x-completely-unknown", which has no
    # "/subtype" and so is not an RFC 6838 media type (descriptor mediaType MUST comply).
    "containers-image/name_lookups": ["$.manifests[4].mediaType"],
}

# Config blobs our schema rejects on purpose. oras's zot e2e data uses hand-written
# "application/vnd.oci.image.config.v1+json" configs holding only architecture/os(/variant);
# the image-spec makes rootfs REQUIRED, so these are really invalid image configs.
EXPECTED_CONFIG_FAILURES = {
    "sha256:fe9dbc99451d0517d65e048c309f0b5afb2cc513b7a3d456b6cc29fe641386c5": ["$"],
    "sha256:a5dfce5d28768e985f91f610591f0203bb6e07f11e2fb0ce1b8508e9aac4ebe2": ["$"],
    "sha256:1fd9a5fc54b634130102861815e2881f1eec22958d604301904c5353041794c1": ["$"],
}


def _fixtures() -> list[Any]:
    if not CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no conformance corpus at {CORPUS}"), id="no-corpus")]
    return [
        pytest.param(path.parent, id=path.parent.relative_to(CORPUS).as_posix())
        for path in sorted(CORPUS.rglob("index.json"))
        if "blobs" not in path.relative_to(CORPUS).parts
    ]


def _name(fixture: Path) -> str:
    return fixture.relative_to(CORPUS).as_posix()


def _load_index(fixture: Path) -> dict[str, Any] | None:
    """The fixture's index.json when it is an object with a `manifests` list, else None."""
    try:
        document = json.loads((fixture / "index.json").read_bytes())
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("manifests"), list):
        return None  # e.g. "manifests": null (hello-world-v25-tar, zot-blobs)
    return document


def _locations(problems: list[str]) -> list[str]:
    return sorted({line.split(": ", 2)[1] for line in problems})


@pytest.mark.parametrize("fixture", _fixtures())
def test_corpus_index_json(fixture: Path) -> None:
    name = _name(fixture)
    if name in BROKEN_BY_DESIGN:
        pytest.skip("broken by design upstream")
    document = _load_index(fixture)
    if document is None:
        pytest.skip("index.json has no top-level manifests list")
    problems = validate(document, "index")
    if name in EXPECTED_INDEX_FAILURES:
        assert _locations(problems) == EXPECTED_INDEX_FAILURES[name], problems
    else:
        assert problems == []
    if (fixture / "oci-layout").is_file():
        assert validate(json.loads((fixture / "oci-layout").read_bytes()), "layout") == []


def test_corpus_null_manifests_are_rejected() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"no conformance corpus at {CORPUS}")
    for name in ("go-containerregistry/hello-world-v25-tar", "oras/zot-blobs"):
        path = CORPUS / name / "index.json"
        if not path.is_file():
            continue
        problems = validate(json.loads(path.read_bytes()), "index")
        assert any(line.startswith("index: $.manifests: None is not of type 'array'") for line in problems), problems


def _walk(fixture: Path, document: dict[str, Any]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Walk index -> (nested indexes) -> manifests -> config, validating every blob present.

    Returns how many blobs of each kind were checked and the problems per failing digest.
    """
    checked: dict[str, int] = {"manifest": 0, "index": 0, "config": 0}
    failures: dict[str, list[str]] = {}
    seen: set[str] = set()
    pending: list[Any] = list(document["manifests"])
    while pending:
        descriptor = pending.pop()
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
            continue
        digest, media_type = descriptor["digest"], descriptor.get("mediaType")
        if digest in seen:
            continue
        seen.add(digest)
        if media_type in MANIFEST_TYPES:
            kind = "manifest"
        elif media_type in INDEX_TYPES:
            kind = "index"
        elif media_type in CONFIG_TYPES:
            kind = "config"
        else:
            continue
        algorithm, _, encoded = digest.partition(":")
        blob = fixture / "blobs" / algorithm / encoded
        if not blob.is_file():
            continue  # sparse layouts: missing blobs are legitimate
        content = json.loads(blob.read_bytes())
        checked[kind] += 1
        problems = validate(content, kind)
        if problems:
            failures[digest] = problems
        if kind == "index":
            pending.extend(content.get("manifests") or [])
        elif kind == "manifest":
            pending.append(content.get("config"))
    return checked, failures


@pytest.mark.parametrize("fixture", _fixtures())
def test_corpus_manifest_blobs(fixture: Path) -> None:
    name = _name(fixture)
    if name in BROKEN_BY_DESIGN:
        pytest.skip("broken by design upstream")
    document = _load_index(fixture)
    if document is None:
        pytest.skip("index.json has no top-level manifests list")
    _, failures = _walk(fixture, document)
    expected = {digest: where for digest, where in EXPECTED_CONFIG_FAILURES.items() if digest in failures}
    assert {digest: _locations(problems) for digest, problems in failures.items()} == expected, failures


def test_corpus_walk_checks_something() -> None:
    """Guard against a walk that silently validates nothing (e.g. a wrong blob path)."""
    if not CORPUS.is_dir():
        pytest.skip(f"no conformance corpus at {CORPUS}")
    totals = {"manifest": 0, "index": 0, "config": 0}
    for param in _fixtures():
        fixture = param.values[0]
        document = _load_index(fixture)
        if _name(fixture) in BROKEN_BY_DESIGN or document is None:
            continue
        checked, _ = _walk(fixture, document)
        for kind, count in checked.items():
            totals[kind] += count
    # The corpus (SOURCES.md) holds over a hundred manifests, dozens of indexes and configs.
    assert totals["manifest"] >= 50 and totals["index"] >= 10 and totals["config"] >= 20, totals


def test_corpus_expected_failures_still_fail() -> None:
    """The expected-failure lists must not go stale: each entry is still present and rejected."""
    if not CORPUS.is_dir():
        pytest.skip(f"no conformance corpus at {CORPUS}")
    for name, where in EXPECTED_INDEX_FAILURES.items():
        problems = validate(json.loads((CORPUS / name / "index.json").read_bytes()), "index")
        assert _locations(problems) == where
    for digest, where in EXPECTED_CONFIG_FAILURES.items():
        algorithm, _, encoded = digest.partition(":")
        blobs = sorted(CORPUS.glob(f"*/*/blobs/{algorithm}/{encoded}"))
        assert blobs, f"{digest} no longer in the corpus"
        for blob in blobs:
            assert _locations(validate(json.loads(blob.read_bytes()), "config")) == where
