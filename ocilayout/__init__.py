"""ocilayout: list, tag, delete, garbage-collect and verify OCI image-layout directories in place.

Names are imported on first use (PEP 562), so the command line loads only the modules the
command at hand needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "ImageRemoval": "delete",
    "ReferenceFailure": "delete",
    "RemovalReport": "delete",
    "Descriptor": "descriptor",
    "Platform": "descriptor",
    "Digest": "digest",
    "parse_digest": "digest",
    "AmbiguousReferenceError": "errors",
    "ConflictError": "errors",
    "CorruptLayoutError": "errors",
    "InvalidDigestError": "errors",
    "LockTimeoutError": "errors",
    "NotFoundError": "errors",
    "OcilayoutError": "errors",
    "OperationFailed": "errors",
    "UsageError": "errors",
    "DuReport": "du",
    "ImageUsage": "du",
    "PruneReport": "prune",
    "GcReport": "gc",
    "RemovedBlob": "gc",
    "gc_shared": "gc",
    "StrayFile": "storage",
    "Layout": "layout",
    "Listing": "layout",
    "Tree": "layout",
    "ImageRow": "listing",
    "InspectReport": "listing",
    "TreeNode": "listing",
    "Referrer": "referrers",
    "ReferrersReport": "referrers",
    "Resolved": "resolve",
    "TagReport": "tagging",
    "UntagReport": "tagging",
    "Problem": "verify",
    "VerifyReport": "verify",
    "verify_layout": "verify",
}

__all__ = [
    "AmbiguousReferenceError",
    "ConflictError",
    "CorruptLayoutError",
    "Descriptor",
    "Digest",
    "DuReport",
    "GcReport",
    "ImageRemoval",
    "ImageRow",
    "ImageUsage",
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
    "PruneReport",
    "ReferenceFailure",
    "RemovalReport",
    "RemovedBlob",
    "Referrer",
    "ReferrersReport",
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ocilayout' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from .delete import ImageRemoval, ReferenceFailure, RemovalReport
    from .descriptor import Descriptor, Platform
    from .digest import Digest, parse_digest
    from .du import DuReport, ImageUsage
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
    from .gc import GcReport, RemovedBlob, gc_shared
    from .layout import Layout, Listing, Tree
    from .listing import ImageRow, InspectReport, TreeNode
    from .prune import PruneReport
    from .referrers import Referrer, ReferrersReport
    from .resolve import Resolved
    from .storage import StrayFile
    from .tagging import TagReport, UntagReport
    from .verify import Problem, VerifyReport, verify_layout
