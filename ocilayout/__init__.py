"""ocilayout: list, tag, delete, garbage-collect and verify OCI image-layout directories in place."""

from .delete import ImageRemoval, ReferenceFailure, RemovalReport
from .descriptor import Descriptor, Platform
from .digest import Digest, parse_digest
from .errors import (
    AmbiguousReferenceError,
    ConflictError,
    CorruptLayoutError,
    InvalidDigestError,
    LockTimeoutError,
    NotFoundError,
    OcilayoutError,
    OperationFailed,
    UsageError,
)
from .layout import Layout, Listing, Tree
from .listing import ImageRow, InspectReport, TreeNode
from .resolve import Resolved
from .tagging import TagReport, UntagReport

__version__ = "0.1.0"

__all__ = [
    "AmbiguousReferenceError",
    "ConflictError",
    "CorruptLayoutError",
    "Descriptor",
    "Digest",
    "ImageRemoval",
    "ImageRow",
    "InspectReport",
    "InvalidDigestError",
    "Layout",
    "Listing",
    "LockTimeoutError",
    "NotFoundError",
    "OcilayoutError",
    "OperationFailed",
    "Platform",
    "ReferenceFailure",
    "RemovalReport",
    "Resolved",
    "TagReport",
    "Tree",
    "TreeNode",
    "UntagReport",
    "UsageError",
    "__version__",
    "parse_digest",
]
