"""Media types we know, and what each means for the graph walk."""

from __future__ import annotations

from enum import Enum

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"


class Kind(str, Enum):
    """What a blob is, decided by its media type and, when in doubt, by its content."""

    INDEX = "index"
    IMAGE = "image"
    ARTIFACT = "artifact"
    LEAF = "leaf"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})  # config and layers: what caches record leafy
ARTIFACT_TYPES = frozenset({OCI_ARTIFACT_MANIFEST})

# Types that are never manifests: the walk neither opens nor parses them.
LEAF_TYPES = frozenset(
    {
        OCI_CONFIG,
        OCI_EMPTY,
        DOCKER_CONFIG,
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        DOCKER_LAYER,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.docker.plugin.v1+json",
    }
)


def kind_of_media_type(media_type: str | None) -> Kind:
    """Kind promised by a media type; UNKNOWN means the content must be looked at."""
    if media_type in INDEX_TYPES:
        return Kind.INDEX
    if media_type in MANIFEST_TYPES:
        return Kind.IMAGE
    if media_type in ARTIFACT_TYPES:
        return Kind.ARTIFACT
    if media_type in LEAF_TYPES:
        return Kind.LEAF
    return Kind.UNKNOWN


# Prefixes of layer types: a *missing* blob of such a type is a leaf for certain (it holds
# no references), so it never puts a deletion in doubt. Other unknown types might be a
# manifest we cannot see.
_LEAF_PREFIXES = (
    "application/vnd.oci.image.layer.",
    "application/vnd.docker.image.rootfs.",
)


def is_leaf_type(media_type: str | None) -> bool:
    """True when a media type says, on its own, that the blob references nothing."""
    if media_type is None:
        return False
    return media_type in LEAF_TYPES or media_type.startswith(_LEAF_PREFIXES)
