"""`Layout`: the library's front door. Each method is one command; the CLI only calls these."""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from . import refcache
from .descriptor import Platform, parse_platform_spec
from .digest import Digest
from .errors import UsageError
from .graph import Graph
from .indexfile import IndexFile
from .lock import DEFAULT_LOCK_TIMEOUT
from .resolve import Resolved, resolve
from .storage import LayoutStore, open_store

if TYPE_CHECKING:  # each command imports only what it uses (start-up time is per command)
    from datetime import datetime, timedelta

    from .delete import RemovalPlan, RemovalReport
    from .du import DuReport
    from .gc import GcReport
    from .listing import ImageRow, InspectReport, TreeNode
    from .prune import PruneReport
    from .referrers import ReferrersReport
    from .tagging import TagReport, UntagReport
    from .transaction import Transaction
    from .verify import ProgressCallback, VerifyReport

PathLike = str | os.PathLike[str]
F = TypeVar("F", bound=Callable[..., Any])


def _several(value: Any, what: str) -> list[Any]:
    """A list from a parameter that takes several values; a bare string is refused before
    anything changes (`delete("ab")` must not delete `a` and `b`)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of strings, not a single {type(value).__name__}: use [{value!r}]")
    return list(value)


def _command(method: F) -> F:
    """Run a command with Python's cyclic garbage collector paused.

    A command allocates hundreds of thousands of acyclic objects (parsed manifests,
    descriptors); the collector's generational passes over them cost a third of `rm` at
    100,000 images and free nothing (reference counting does). Nested calls leave it alone.
    """

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        outermost = not _running.depth
        enabled = gc.isenabled()
        gc.disable()
        _running.depth += 1
        try:
            if outermost and os.environ.get(refcache.PREWARM_ENV) and args and isinstance(args[0], Layout):
                _prewarm(args[0])
            return method(*args, **kwargs)
        finally:
            _running.depth -= 1
            try:
                if outermost:
                    refcache.finish()  # one write of what the command learnt (collector still paused)
            finally:
                if enabled:
                    gc.enable()

    return run  # type: ignore[return-value]


class _Depth(threading.local):
    depth = 0


_running = _Depth()


def _prewarm(layout: Layout) -> None:
    """Test hook (`OCILAYOUT_TEST_PREWARM=1`): walk the whole layout once with a fresh graph,
    configs included, and write the cache, so that the command itself runs warm."""
    try:
        store = layout.store
        if not store.cache:
            return
        graph = Graph(store)
        entries = store.read_index().entries
        graph.prepare(e.descriptor for e in entries)
        reach = graph.reach(e.descriptor for e in entries)
        for digest in reach.reached:
            node = graph._nodes.get(Digest(digest))
            if node is not None and node.config is not None:
                graph.config_info(node.config)
    except Exception:  # noqa: BLE001 - a test hook; the command itself will say what is wrong
        pass
    refcache.finish()


@dataclass(frozen=True, slots=True)
class Listing:
    """`ls` rows plus the warnings met while reading (sparse children, unreadable blobs)."""

    rows: list[ImageRow]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Tree:
    """`tree` roots plus warnings."""

    roots: list[TreeNode]
    warnings: list[str] = field(default_factory=list)


class Layout:
    """An OCI image-layout directory, optionally reading from a shared blob directory."""

    def __init__(self, store: LayoutStore, index: IndexFile | None, *, strict: bool = False) -> None:
        self.store = store
        self._index: IndexFile | None = index
        self.strict = strict

    @property
    def index(self) -> IndexFile:
        """The parsed `index.json` (re-read lazily after this object changed the layout)."""
        if self._index is None:
            self._index = self.store.read_index()
        return self._index

    @classmethod
    def open(
        cls,
        path: PathLike,
        shared_blobs: PathLike | None = None,
        *,
        strict: bool = False,
        check: bool = True,
        cache: bool = True,
    ) -> Layout:
        """Open and validate a layout (its `oci-layout` and `index.json`).

        `check=False` only requires the directory: for `verify`, which reports a bad
        `oci-layout` or `index.json` as problems of its own. `cache=False` never uses the
        reference cache for this layout (it is also off with `OCILAYOUT_NO_CACHE=1` or
        `ocilayout.refcache.set_enabled(False)`).
        """
        store = open_store(Path(path), Path(shared_blobs) if shared_blobs is not None else None)
        store.cache = cache
        if not check:
            return cls(store, None, strict=strict)
        store.check_layout_file()
        return cls(store, store.read_index(), strict=strict)

    @property
    def path(self) -> Path:
        """The layout's directory."""
        return self.store.root

    def graph(self) -> Graph:
        """A fresh walker (its cache lives as long as one command)."""
        graph = Graph(self.store, strict=self.strict)
        if self._index is not None:
            graph.expect([entry.descriptor for entry in self._index.entries])
        return graph

    def reload(self) -> None:
        """Forget the parsed `index.json`; the next use re-reads it."""
        self._index = None

    # -- reading ------------------------------------------------------------------------

    def resolve(self, reference: str | None, platform: str | Platform | None = None) -> Resolved:
        """Resolve a name, digest, unique digest prefix, or (None) the only image."""
        wanted = parse_platform_spec(platform) if isinstance(platform, str) else platform
        return resolve(self.index, reference, self.graph(), wanted)

    @_command
    def list(self) -> Listing:
        """A row per `index.json` entry."""
        from .listing import list_images

        graph = self.graph()
        rows = list_images(self.index, graph)
        return Listing(rows, [*self.index.warnings, *graph.warnings])

    @_command
    def inspect(self, reference: str | None = None, platform: str | Platform | None = None) -> InspectReport:
        """Descriptor, manifest or index, and config of one image."""
        from .listing import inspect_image
        from .referrers import find_referrers

        wanted = parse_platform_spec(platform) if isinstance(platform, str) else platform
        graph = self.graph()
        resolved = resolve(self.index, reference, graph, wanted)
        report = inspect_image(self.store, graph, resolved)  # first: the walk reuses what it read
        count = len(find_referrers(self.index, graph, resolved.digest).referrers)
        return dataclasses.replace(report, referrers=count)

    @_command
    def tree(self, reference: str | None = None) -> Tree:
        """The nested structure of one image, or of every entry when `reference` is None."""
        from .listing import build_tree

        graph = self.graph()
        if reference is None:
            roots = [build_tree(graph, e.descriptor, e.name) for e in self.index.entries]
        else:
            resolved = resolve(self.index, reference, graph)
            roots = [build_tree(graph, resolved.descriptor, resolved.entries[0].name)]
        return Tree(roots, [*self.index.warnings, *graph.warnings])

    # -- changing -----------------------------------------------------------------------

    @_command
    def delete(
        self,
        references: Sequence[str] = (),
        *,
        filters: Sequence[str] = (),
        force: bool = False,
        prune: bool = False,
        keep_referrers: bool = False,
        allow_sparse: bool = False,
        remove_all: bool = False,
        ignore_missing: bool = False,
        platforms: Sequence[str | Platform] = (),
        dry_run: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> RemovalReport:
        """Remove images by reference and/or filter; one index rewrite, one blob pass.

        `remove_all` removes every image (all names; podman's `rm --all`); `ignore_missing`
        makes references that match nothing no failure (`--ignore`).
        `allow_sparse` declares missing manifests below the entries absent on purpose;
        otherwise a missing one among what stays keeps every blob (it may live in a shared
        blob directory not named).
        `platforms` (`os/arch[/variant]`) trims those platforms out of each referenced index
        instead: a new index, every name of it moved there, the old platforms' blobs freed
        (`report.trims` has old and new digests).
        """
        from .delete import plan_platform_removal, plan_removal

        references = _several(references, "references")
        filters = _several(filters, "filters")
        if platforms:
            wanted = [parse_platform_spec(p) if isinstance(p, str) else p for p in _several(platforms, "platform")]
            if filters or remove_all or prune or not references:
                raise UsageError("--platform trims named images: give references, and no --filter, --all or --prune")
            with self._transaction(lock_timeout, dry_run=dry_run, allow_sparse=allow_sparse) as txn:
                plan = plan_platform_removal(
                    txn.store,
                    txn.index,
                    txn.graph,
                    references,
                    wanted,
                    keep_referrers=keep_referrers,
                    allow_sparse=allow_sparse,
                    ignore_missing=ignore_missing,
                )
                report = self._commit_removal(txn, plan)
            self.reload()
            return report
        parsed_filters = None
        if filters:
            from .filters import parse_filters

            parsed_filters = parse_filters(list(filters))
        with self._transaction(lock_timeout, dry_run=dry_run, allow_sparse=allow_sparse) as txn:
            plan = plan_removal(
                txn.store,
                txn.index,
                txn.graph,
                references,
                filters=parsed_filters,
                force=force,
                prune=prune,
                keep_referrers=keep_referrers,
                allow_sparse=allow_sparse,
                remove_all=remove_all,
                ignore_missing=ignore_missing,
            )
            report = self._commit_removal(txn, plan)
        self.reload()
        return report

    def _commit_removal(self, txn: Transaction, plan: RemovalPlan) -> RemovalReport:
        """Write a removal plan (rm, prune) through the transaction and report what it freed."""
        from .delete import finish_report

        result = txn.commit(
            plan.new_entries, [(d, self.store.local_path(d)) for d in plan.doomed], new_blobs=plan.new_blobs
        )
        report = finish_report(plan, result.freed, result.errors, dry_run=txn.dry_run)
        if result.kept_for_foreign_writer:
            report.warnings.append(
                f"kept {len(result.kept_for_foreign_writer)} blobs that another writer made reachable meanwhile"
            )
        return report

    @_command
    def tag(
        self,
        source: str,
        name: str,
        *,
        platform: str | Platform | None = None,
        dry_run: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> TagReport:
        """Point `name` at the image `source` resolves to, moving it if it was elsewhere."""
        from .tagging import plan_tag

        wanted = parse_platform_spec(platform) if isinstance(platform, str) else platform
        with self._transaction(lock_timeout, dry_run=dry_run) as txn:
            resolved = resolve(txn.index, source, txn.graph, wanted)
            entries, report = plan_tag(txn.index, resolved, name)
            report.dry_run = dry_run
            if entries is not None:
                txn.commit(entries)
        self.reload()
        return report

    @_command
    def untag(
        self, names: Sequence[str], *, dry_run: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> UntagReport:
        """Remove names; content stays (as a dangling entry if it loses its last name)."""
        from .tagging import plan_untag, require_names_found

        names = _several(names, "names")
        with self._transaction(lock_timeout, dry_run=dry_run) as txn:
            entries, report = plan_untag(txn.index, list(names))
            report.dry_run = dry_run
            require_names_found(report)
            if entries is not None:
                txn.commit(entries)
        self.reload()
        return report

    @_command
    def prune(
        self,
        *,
        keep_last: int | None = None,
        keep_within: str | timedelta | None = None,
        references: Sequence[str] = (),
        keep: Sequence[str] = (),
        dangling: bool = False,
        allow_sparse: bool = False,
        dry_run: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        now: datetime | None = None,
    ) -> PruneReport:
        """Retention: per repository keep the `keep_last` newest images and all created within
        `keep_within` (`36h`, `7d`, `2w`); remove the other names of the policy with `rm`'s
        rules, in one transaction. `references` globs choose the names the policy applies to,
        `keep` globs protect names; undated images are kept. `dangling` also removes unnamed
        entries older than `keep_within` (all of them without it)."""
        from .delete import plan_removal
        from .prune import Policy, choose, fill, now_utc, parse_age

        within = parse_age(keep_within) if isinstance(keep_within, str) else keep_within
        policy = Policy(
            keep_last, within, tuple(_several(references, "references")), tuple(_several(keep, "keep")), dangling
        )
        with self._transaction(lock_timeout, dry_run=dry_run, allow_sparse=allow_sparse) as txn:
            choice = choose(txn.index, txn.graph, policy, now or now_utc())
            targets = choice.names + [str(d) for d in choice.dangling]
            plan = plan_removal(txn.store, txn.index, txn.graph, targets, allow_sparse=allow_sparse)
            removal = self._commit_removal(txn, plan)
        self.reload()
        return fill(choice.report, removal)

    @_command
    def du(
        self,
        references: Sequence[str] = (),
        *,
        sort: str = "size",
        grace: float | str = "1h",
        allow_sparse: bool = False,
        created: bool = True,
    ) -> DuReport:
        """Space per image (size, exclusive: what `rm` of it alone frees, shared) and layout
        totals (reachable, unreachable split by `grace`, on disk). Reads only. `created=False`
        leaves the images' created times out (None; no config is read), unless sorting by them."""
        from .du import SORT_KEYS, usage
        from .gc import parse_duration

        if sort not in SORT_KEYS:
            raise UsageError(f"invalid sort key {sort!r}: one of {', '.join(SORT_KEYS)}")
        graph = self.graph()
        selected = None
        if references:
            selected = list(dict.fromkeys(resolve(self.index, r).digest for r in _several(references, "references")))
        return usage(
            self.store,
            self.index,
            graph,
            selected,
            allow_sparse=allow_sparse,
            grace=parse_duration(grace),
            sort=sort,
            created=created or sort == "created",
        )

    @_command
    def referrers(
        self, reference: str | None = None, *, recursive: bool = False, artifact_type: str | None = None
    ) -> ReferrersReport:
        """The manifests whose `subject` is REF (signatures, SBOMs...), like `oras discover`;
        `recursive` adds their referrers in turn."""
        from .referrers import find_referrers

        graph = self.graph()
        subject = resolve(self.index, reference, graph).digest
        return find_referrers(self.index, graph, subject, recursive=recursive, artifact_type=artifact_type)

    def _transaction(
        self, lock_timeout: float, *, dry_run: bool, allow_sparse: bool = False
    ) -> AbstractContextManager[Transaction]:
        from .transaction import transaction

        return transaction(
            [self.store],
            lock_timeout,
            dry_run=dry_run,
            allow_sparse=allow_sparse,
            strict=self.strict,
            known=self._index,
        )

    # -- gc and verify ------------------------------------------------------------------

    @_command
    def gc(
        self,
        *,
        grace: float | str = "1h",
        dry_run: bool = False,
        allow_sparse: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> GcReport:
        """Delete blobs of the own blobs/ that no entry reaches and older than `grace` seconds.

        `grace` may also be text such as "1h" or "30m". A shared blob directory is read but
        never collected here (see `Layout.gc_shared`).
        """
        from .gc import collect, parse_duration

        report = collect(
            [self.store],
            grace=parse_duration(grace),
            dry_run=dry_run,
            lock_timeout=lock_timeout,
            strict=self.strict,
            allow_sparse=allow_sparse,
            known=self._index,
        )
        self.reload()
        return report

    @staticmethod
    @_command
    def gc_shared(
        shared_blobs: PathLike,
        layouts: Sequence[PathLike],
        *,
        grace: float | str = "1h",
        dry_run: bool = False,
        allow_sparse: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        strict: bool = False,
    ) -> GcReport:
        """Collect a shared blob directory over the *complete* list of layouts that use it."""
        from .gc import gc_shared, parse_duration

        layouts = _several(layouts, "layouts")
        return gc_shared(
            shared_blobs,
            layouts,
            grace=parse_duration(grace),
            dry_run=dry_run,
            allow_sparse=allow_sparse,
            lock_timeout=lock_timeout,
            strict=strict,
        )

    @_command
    def verify(self, *, allow_sparse: bool = False, progress: ProgressCallback | None = None) -> VerifyReport:
        """Check every reachable blob (presence, size, digest, schema); list unreachable and stray files."""
        from .verify import verify_layout

        return verify_layout(self.path, self.store.shared_blobs, allow_sparse=allow_sparse, progress=progress)
