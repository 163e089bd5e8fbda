"""The `ocilayout` command: argument parsing and printing over the library, nothing more."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, TypeVar

import click

from . import render
from .errors import OcilayoutError
from .lock import DEFAULT_LOCK_TIMEOUT

if TYPE_CHECKING:  # imported by the commands that use it: `--help` needs none of the library
    from .layout import Layout

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class Options:
    """Options shared by every command (given before or after the command name)."""

    debug: bool = False
    shared_blobs: Path | None = None
    strict: bool = False


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        options = ctx.ensure_object(Options)
        if value not in (None, False):
            setattr(options, name, value)
        return value

    return callback


def common_options(func: F) -> F:
    """--shared-blobs, --strict, --debug and --no-cache, accepted by the group and by every command."""
    func = click.option(
        "--shared-blobs",
        type=click.Path(path_type=Path, file_okay=False),
        expose_value=False,
        callback=_remember("shared_blobs"),
        help="Also read blobs from this shared blob directory (never deleted from, except by"
        " `gc --shared-blobs DIR --layout A --layout B ...`).",
    )(func)
    func = click.option(
        "--strict",
        is_flag=True,
        expose_value=False,
        callback=_remember("strict"),
        help="Treat missing children of indexes (sparse layouts) as errors.",
    )(func)
    func = click.option(
        "--debug", is_flag=True, expose_value=False, callback=_remember("debug"), help="Show tracebacks on errors."
    )(func)
    func = click.option(
        "--no-cache",
        is_flag=True,
        expose_value=False,
        callback=_no_cache,
        help="Read every manifest again instead of using the reference cache (also OCILAYOUT_NO_CACHE=1).",
    )(func)
    return func


def _no_cache(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        from . import refcache

        refcache.set_enabled(False)
    return value


format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output for people (table) or machines (json).",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print only digests or names; no warnings.")
def _finite_seconds(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    if not (0 <= value < float("inf")):
        raise click.BadParameter(f"{value!r} is not a finite number of seconds >= 0")
    return value


lock_option = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    callback=_finite_seconds,
    default=DEFAULT_LOCK_TIMEOUT,
    show_default=True,
    help="Seconds to wait for another ocilayout process to release the layout.",
)
allow_sparse_option = click.option(
    "--allow-sparse",
    is_flag=True,
    help="Missing manifests or indexes below an entry are absent on purpose (a partial copy): "
    "delete anyway. Without it, a missing one keeps every blob (it may live in a shared blob "
    "directory not named with --shared-blobs).",
)
dry_run_option = click.option("--dry-run", is_flag=True, help="Report what would happen; change nothing.")
layout_argument = click.argument("layout", type=click.Path(path_type=Path))


def _open(layout: Path) -> Layout:
    from .layout import Layout

    options = click.get_current_context().ensure_object(Options)
    return Layout.open(layout, options.shared_blobs, strict=options.strict)


def handle_errors(func: F) -> F:
    """Turn library errors into one `error:` line and the category's exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OcilayoutError as exc:
            _fail(str(exc), exc.exit_code)
        except OSError as exc:
            _fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", 1)

    return wrapper  # type: ignore[return-value]


def _fail(message: str, code: int) -> NoReturn:
    options = click.get_current_context().ensure_object(Options)
    if options.debug:
        import traceback

        traceback.print_exc()
    render.print_error(message, code=code, as_json=_wants_json())
    sys.exit(code)


def _wants_json() -> bool:
    """Whether the command line asked for `--format json` (also when parsing it failed)."""
    from .entry import wants_json

    context = click.get_current_context(silent=True)
    if context is not None and "output_format" in context.params:
        return bool(context.params["output_format"] == "json")  # parsed: trust it
    return wants_json(sys.argv[1:])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ocilayout")
@common_options
def cli() -> None:
    """Manipulate OCI image-layout directories in place: list, inspect, referrers, tag, delete, prune, du,
    gc, verify.

    Exit codes: 0 success; 1 some work failed or problems found; 2 usage error;
    3 not found; 4 conflict; 5 invalid or corrupt layout; 6 lock not acquired;
    130/143 interrupted by SIGINT/SIGTERM.
    """


# -- reading ------------------------------------------------------------------------------


@cli.command("ls")
@layout_argument
@format_option
@quiet_option
@common_options
@handle_errors
def ls_command(layout: Path, output_format: str, quiet: bool) -> None:
    """List the entries of LAYOUT's index.json: name, digest, kind, platforms, size, created."""
    render.print_listing(_open(layout).list(), output_format, quiet)


@cli.command("inspect")
@layout_argument
@click.argument("reference", required=False)
@click.option("--platform", help="Pick os/arch[/variant] inside an index.")
@format_option
@common_options
@handle_errors
def inspect_command(layout: Path, reference: str | None, platform: str | None, output_format: str) -> None:
    """Show the descriptor, manifest (or index) and config of REFERENCE.

    REFERENCE is a name, a digest, or a unique digest prefix (at least 4 hex
    characters); it may be left out when the layout holds one image.
    """
    render.print_json(_open(layout).inspect(reference, platform))


@cli.command("tree")
@layout_argument
@click.argument("reference", required=False)
@format_option
@quiet_option
@common_options
@handle_errors
def tree_command(layout: Path, reference: str | None, output_format: str, quiet: bool) -> None:
    """Show the nested structure of REFERENCE, or of every entry."""
    render.print_tree(_open(layout).tree(reference), output_format, quiet)


@cli.command("referrers")
@layout_argument
@click.argument("reference", required=False)
@click.option("-r", "--recursive", is_flag=True, help="Also the referrers of referrers.")
@click.option("--artifact-type", metavar="TYPE", help="Only referrers of this artifact type.")
@format_option
@quiet_option
@common_options
@handle_errors
def referrers_command(
    layout: Path, reference: str | None, recursive: bool, artifact_type: str | None, output_format: str, quiet: bool
) -> None:
    """List the manifests whose subject is REFERENCE (signatures, SBOMs), like `oras discover`."""
    report = _open(layout).referrers(reference, recursive=recursive, artifact_type=artifact_type)
    render.print_referrers(report, output_format, quiet)


# -- changing -----------------------------------------------------------------------------


@cli.command("rm")
@layout_argument
@click.argument("references", nargs=-1)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Select images: dangling=, label=k[=v], reference=GLOB, before=, since=, id=, intermediate=.",
)
@click.option("-f", "--force", is_flag=True, help="Delete by digest even when the image has several names.")
@click.option("--prune", is_flag=True, help="Also delete dangling parents (layer-prefix) of deleted images.")
@click.option("--keep-referrers", is_flag=True, help="Do not delete dangling referrers (signatures, SBOMs).")
@click.option(
    "-a", "--all", "remove_all", is_flag=True, help="Remove every image, with all its names (no --force needed)."
)
@click.option("-i", "--ignore", "ignore_missing", is_flag=True, help="A reference that matches nothing is no error.")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    help="Trim this platform out of each named multi-platform index instead (repeatable); names move to the new index.",
)
@allow_sparse_option
@dry_run_option
@lock_option
@format_option
@quiet_option
@common_options
@handle_errors
def rm_command(
    layout: Path,
    references: tuple[str, ...],
    filters: tuple[str, ...],
    force: bool,
    prune: bool,
    keep_referrers: bool,
    remove_all: bool,
    ignore_missing: bool,
    platforms: tuple[str, ...],
    allow_sparse: bool,
    dry_run: bool,
    lock_timeout: float,
    output_format: str,
    quiet: bool,
) -> None:
    """Remove images by name, digest or digest prefix, and delete blobs nothing else uses.

    By name, when other names point at the same image, only the name goes
    (untag). The last name removes the image. By digest, an image with several
    names is a conflict (exit 4) unless --force. Blobs in a --shared-blobs
    directory are never deleted. Dangling referrers of what is freed, and
    unnamed entries held only by a deleted index, go too.

    With --platform, each REF must be a multi-platform index: a new index
    without those platforms is written (all else kept), every name of REF
    moves to it, and the blobs only the removed platforms used are deleted.
    """
    if not references and not filters and not remove_all:
        raise click.UsageError("name at least one reference, --filter or --all")
    if remove_all and (references or filters):
        raise click.UsageError("--all removes every image: give no reference and no --filter with it")
    report = _open(layout).delete(
        references,
        filters=filters,
        force=force,
        prune=prune,
        keep_referrers=keep_referrers,
        allow_sparse=allow_sparse,
        remove_all=remove_all,
        ignore_missing=ignore_missing,
        platforms=platforms,
        dry_run=dry_run,
        lock_timeout=lock_timeout,
    )
    render.print_removal(report, output_format, quiet)
    if report.exit_code:
        sys.exit(report.exit_code)


@cli.command("tag")
@layout_argument
@click.argument("source")
@click.argument("name")
@click.option("--platform", help="Name the os/arch[/variant] instance inside SOURCE's index.")
@dry_run_option
@lock_option
@format_option
@common_options
@handle_errors
def tag_command(
    layout: Path, source: str, name: str, platform: str | None, dry_run: bool, lock_timeout: float, output_format: str
) -> None:
    """Give the image SOURCE resolves to the name NAME (moving NAME if it was elsewhere)."""
    report = _open(layout).tag(source, name, platform=platform, dry_run=dry_run, lock_timeout=lock_timeout)
    render.print_tag(report, name, output_format)


@cli.command("untag")
@layout_argument
@click.argument("names", nargs=-1, required=True)
@dry_run_option
@lock_option
@format_option
@common_options
@handle_errors
def untag_command(layout: Path, names: tuple[str, ...], dry_run: bool, lock_timeout: float, output_format: str) -> None:
    """Remove NAMES; content is kept (as a dangling entry when it loses its last name)."""
    report = _open(layout).untag(names, dry_run=dry_run, lock_timeout=lock_timeout)
    render.print_untag(report, output_format)
    if report.not_found:
        sys.exit(3 if not report.untagged else 1)


@cli.command("prune")
@layout_argument
@click.option("--keep-last", type=click.IntRange(min=0), metavar="N", help="Keep the N newest images per repository.")
@click.option("--keep-within", metavar="DURATION", help="Also keep every image created within this (36h, 7d, 2w).")
@click.option("--reference", "references", multiple=True, metavar="GLOB", help="Apply the policy to these names only.")
@click.option("--keep", "keep", multiple=True, metavar="GLOB", help="Never remove these names.")
@click.option("--dangling", is_flag=True, help="Also remove unnamed entries older than --keep-within (all without it).")
@allow_sparse_option
@dry_run_option
@lock_option
@format_option
@quiet_option
@common_options
@handle_errors
def prune_command(
    layout: Path,
    keep_last: int | None,
    keep_within: str | None,
    references: tuple[str, ...],
    keep: tuple[str, ...],
    dangling: bool,
    allow_sparse: bool,
    dry_run: bool,
    lock_timeout: float,
    output_format: str,
    quiet: bool,
) -> None:
    """Retention: per repository keep the newest images, remove the other names.

    The repository of a name is the text before its last ':' (when that ':' comes
    after the last '/'): app:1 -> app, reg:5000/app:v2 -> reg:5000/app. Age comes
    from org.opencontainers.image.created (manifest or entry), else the config's
    created; undated images are kept. Names go with rm's rules: an image that keeps
    another name is only untagged; one left without names is deleted with the blobs
    nothing else uses. One index.json rewrite.
    """
    report = _open(layout).prune(
        keep_last=keep_last,
        keep_within=keep_within,
        references=references,
        keep=keep,
        dangling=dangling,
        allow_sparse=allow_sparse,
        dry_run=dry_run,
        lock_timeout=lock_timeout,
    )
    render.print_prune(report, output_format, quiet)
    if report.exit_code:
        sys.exit(report.exit_code)


# -- gc and verify --------------------------------------------------------------------------


def _grace_value(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    from .gc import parse_duration

    try:
        return parse_duration(value)
    except OcilayoutError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("gc")
@click.argument("layout", required=False, type=click.Path(path_type=Path))
@click.option(
    "--layout",
    "layouts",
    multiple=True,
    metavar="LAYOUT",
    type=click.Path(path_type=Path),
    help="With --shared-blobs DIR: one layout that uses DIR. Repeat it for EVERY such layout.",
)
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    metavar="DURATION",
    callback=_grace_value,
    help="Keep unreferenced blobs modified less than this long ago: seconds, or 30m, 1h, 2d (0 allowed).",
)
@allow_sparse_option
@dry_run_option
@lock_option
@format_option
@quiet_option
@common_options
@handle_errors
def gc_command(
    layout: Path | None,
    layouts: tuple[Path, ...],
    grace: float,
    allow_sparse: bool,
    dry_run: bool,
    lock_timeout: float,
    output_format: str,
    quiet: bool,
) -> None:
    """Delete blobs that no entry of index.json reaches.

    \b
    ocilayout gc LAYOUT
        Collects LAYOUT's own blobs/ directory. A --shared-blobs directory is
        only read, never collected.
    ocilayout gc --shared-blobs DIR --layout A --layout B ...
        Collects DIR itself: every blob in DIR that none of the NAMED layouts
        reaches is deleted. WARNING: a layout that uses DIR but is not named
        here loses the blobs that only it uses. Name every layout sharing DIR.

    Unreferenced blobs modified less than --grace ago are kept (another tool may
    be writing an image whose index.json entry is not there yet). Files under
    blobs/ that are not blobs are reported, never deleted; ocilayout's own
    leftover temporary files older than --grace are removed. If what an entry
    reaches cannot be known (an unreadable blob, or a missing manifest or index
    without --allow-sparse), nothing is deleted (a warning says which).
    Holds the layout lock (every named layout's, for the shared form).
    """
    from .layout import Layout

    options = click.get_current_context().ensure_object(Options)
    if layouts:
        if layout is not None:
            raise click.UsageError(
                "give either LAYOUT, or --shared-blobs DIR with a --layout for every layout sharing DIR; not both"
            )
        if options.shared_blobs is None:
            raise click.UsageError("--layout collects a shared blob directory: name it with --shared-blobs DIR")
        report = Layout.gc_shared(
            options.shared_blobs,
            layouts,
            grace=grace,
            dry_run=dry_run,
            allow_sparse=allow_sparse,
            lock_timeout=lock_timeout,
            strict=options.strict,
        )
    elif layout is None:
        raise click.UsageError(
            "missing LAYOUT (or, to collect a shared blob directory: --shared-blobs DIR --layout A --layout B ...)"
        )
    else:
        report = _open(layout).gc(grace=grace, dry_run=dry_run, allow_sparse=allow_sparse, lock_timeout=lock_timeout)
        if options.shared_blobs is not None and not quiet and output_format != "json":
            render.print_note(
                f"{options.shared_blobs} was only read; to collect it, name every layout that uses it: "
                f"ocilayout gc --shared-blobs {options.shared_blobs} --layout A --layout B ..."
            )
    render.print_gc(report, output_format, quiet)
    if report.exit_code:
        sys.exit(report.exit_code)


@cli.command("du")
@layout_argument
@click.argument("references", nargs=-1)
@click.option(
    "--sort",
    type=click.Choice(["size", "exclusive", "shared", "name", "created"]),
    default="size",
    show_default=True,
    help="Order of the images.",
)
@click.option("--grace", default="1h", show_default=True, metavar="DURATION", callback=_grace_value,
              help="Unreachable blobs younger than this are counted apart (gc keeps them).")
@allow_sparse_option
@format_option
@quiet_option
@common_options
@handle_errors
def du_command(
    layout: Path,
    references: tuple[str, ...],
    sort: str,
    grace: float,
    allow_sparse: bool,
    output_format: str,
    quiet: bool,
) -> None:
    """Space per image and for the layout, like `docker system df -v`.

    SIZE counts every blob the image reaches once; EXCLUSIVE is exactly what
    `rm` of that image alone (by digest) would free; SHARED is what other images
    use too. Totals: reachable, unreachable (what gc would free, and what it keeps
    for being younger than --grace), blobs and bytes on disk. Changes nothing.
    """
    shown = output_format == "json" or not quiet  # -q prints digests only: no config to read
    report = _open(layout).du(references, sort=sort, grace=grace, allow_sparse=allow_sparse, created=shown)
    render.print_du(report, output_format, quiet)


@cli.command("verify", short_help="Check every reachable blob (presence, size, digest, schema).")
@layout_argument
@click.option("--allow-sparse", is_flag=True, help="Report missing blobs (partial copies) as warnings, not problems.")
@format_option
@quiet_option
@common_options
@handle_errors
def verify_command(layout: Path, allow_sparse: bool, output_format: str, quiet: bool) -> None:
    """Check LAYOUT: every blob index.json reaches is present, of its declared size,
    and hashes to its digest; manifests, indexes and configs are valid; oci-layout
    and index.json are valid. Also lists unreachable blobs and stray files.

    Prints each problem on one line (--format json: an object with ok, problems,
    counts and warnings). Exit 0 when
    clean, 1 when problems were found. Shows a progress bar on stderr when stderr
    is a terminal. Changes nothing and takes no lock. `fsck` is the same command.
    """
    from .layout import Layout
    from .progress import byte_progress

    options = click.get_current_context().ensure_object(Options)
    with byte_progress("verifying", enabled=False if quiet else None) as progress:
        report = Layout.open(layout, options.shared_blobs, check=False).verify(
            allow_sparse=allow_sparse, progress=progress
        )
    render.print_verify(report, output_format, quiet)
    if report.exit_code:
        sys.exit(report.exit_code)


cli.add_command(verify_command, "fsck")


def main() -> None:
    """Console-script entry point: click errors become one `error:` line too."""
    try:
        code = cli.main(standalone_mode=False, prog_name="ocilayout")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `ocilayout`: the help, not a one-line blob of it
            exc.show()
            sys.exit(exc.exit_code)
        render.print_error(exc.format_message(), code=exc.exit_code, as_json=_wants_json())
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        render.print_error("interrupted", code=130, as_json=_wants_json())
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
