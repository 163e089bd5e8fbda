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
from .gc import GcReport, RemovedBlob, StrayFile, gc_shared
from .layout import Layout, Listing, Tree
from .listing import ImageRow, InspectReport, TreeNode
from .resolve import Resolved
from .tagging import TagReport, UntagReport
from .verify import Problem, VerifyReport, verify_layout

__version__ = "0.1.0"

__all__ = [
    "AmbiguousReferenceError",
    "ConflictError",
    "CorruptLayoutError",
    "Descriptor",
    "Digest",
    "GcReport",
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
    "Problem",
    "ReferenceFailure",
    "RemovalReport",
    "RemovedBlob",
    "Resolved",
    "StrayFile",
    "TagReport",
    "Tree",
    "TreeNode",
    "UntagReport",
    "UsageError",
    "VerifyReport",
    "__version__",
    "gc_shared",
    "parse_digest",
    "verify_layout",
]
