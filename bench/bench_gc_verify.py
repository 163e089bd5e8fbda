#!/usr/bin/env python3
"""Benchmark `ocilayout gc` against `umoci gc`, and `ocilayout verify` against OpenSSL (issue 4).

gc, for each N in --images (default 10000 and 100000):
  * one layout is generated with `fixtures/generate.py bench --images N` (3 layers per image,
    20 shared base layers, 10% two-platform indexes); then every 5th index.json entry
    (i % 5 == 4) is dropped, so 20% of the images become garbage;
  * per repeat, two `cp -a` copies (not timed): `ocilayout gc --grace 0` runs on one,
    `umoci gc --layout` on the other, in alternating order; both must leave the same blobs;
  * wall time is `time.perf_counter()` around the run, peak RSS is `/usr/bin/time -f %M` of
    that one command (see `run` for why not `os.wait4` here);
  * reads: an in-process `gc --dry-run` with the store's one blob-opening method wrapped
    counts how often each blob is opened (every read of a blob goes through it).

verify, on a layout of at least --verify-gib GiB (16 MiB random layers, 4 per image):
  * the page cache is warmed first (every blob read once), so both sides hash from memory;
  * `ocilayout verify LAYOUT` (console script) against
    `find blobs -type f -print0 | xargs -0 -P2 -n K openssl dgst -sha256 >/dev/null`, with K
    half the file count so xargs runs two openssl processes at once (both cores), and
    `-P1` for one core; --repeat runs each, alternating; median wall time; MB/s = bytes / wall.

Writes Markdown to --out (default bench/RESULTS-gc-verify.md) and prints it.
Run with the venv interpreter:  .venv/bin/python bench/bench_gc_verify.py
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "ocilayout"
GENERATOR = REPO / "fixtures" / "generate.py"
MIB = 1024 * 1024


@dataclass
class Run:
    wall: float
    rss_kib: int
    code: int
    stdout: bytes
    stderr: bytes


TIME = "/usr/bin/time"
RSS_MARK = "BENCH-MAXRSS-KIB"


def run(argv: list[str], *, shell: bool = False) -> Run:
    """Run one child under /usr/bin/time: its own wall time and peak RSS.

    Not `os.wait4` on our own child: Linux carries the RSS high-water mark across fork and
    exec, so a child of this (large) benchmark process would report our size, not its own.
    /usr/bin/time is small, and the command it forks reports its own peak.
    """
    command = argv if not shell else ["/bin/sh", "-c", argv[0]]
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-gc-verify-{os.getpid()}.out"
    err_path = out_path.with_suffix(".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-f", f"{RSS_MARK} %M", *command], stdout=out, stderr=err)
        wall = time.perf_counter() - start
    stderr = err_path.read_bytes()
    lines = stderr.decode(errors="replace").splitlines()
    marks = [line for line in lines if line.startswith(RSS_MARK)]
    rss = int(marks[-1].split()[1]) if marks else 0
    rest = "\n".join(line for line in lines if not line.startswith(RSS_MARK)).encode()
    result = Run(wall, rss, proc.returncode, out_path.read_bytes(), rest)
    out_path.unlink()
    err_path.unlink()
    return result


def blob_names(root: Path) -> set[str]:
    return {f"{a.name}:{f.name}" for a in (root / "blobs").iterdir() if a.is_dir() for f in os.scandir(a)}


def copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# -- gc ---------------------------------------------------------------------------------------------


def prepare_gc_layout(work: Path, images: int) -> tuple[Path, float, int]:
    base = work / f"gc-n{images}"
    if base.exists():
        shutil.rmtree(base)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(GENERATOR), "bench", "--images", str(images), "--out", str(base)], check=True)
    generated = time.perf_counter() - start
    index_path = base / "index.json"
    index = json.loads(index_path.read_bytes())
    kept = [m for i, m in enumerate(index["manifests"]) if i % 5 != 4]
    dropped = len(index["manifests"]) - len(kept)
    index["manifests"] = kept
    index_path.write_text(json.dumps(index, separators=(",", ":")))
    return base, generated, dropped


def count_reads(base: Path) -> dict[str, float]:
    """Opens per blob during `gc --dry-run`, in-process."""
    sys.path.insert(0, str(REPO))
    from ocilayout import Layout
    from ocilayout.storage import LayoutStore

    opens: collections.Counter[str] = collections.Counter()
    # Every read of a blob opens it through this one method (open_blob in older versions).
    name = "_open_blob_fd_size" if hasattr(LayoutStore, "_open_blob_fd_size") else "_open_blob_fd"
    original = getattr(LayoutStore, name)

    def counting(self, digest, *args, **kwargs):  # type: ignore[no-untyped-def]
        opens[str(digest)] += 1
        return original(self, digest, *args, **kwargs)

    setattr(LayoutStore, name, counting)
    try:
        report = Layout.open(base).gc(grace=0, dry_run=True)
    finally:
        setattr(LayoutStore, name, original)
    return {
        "blobs_opened": len(opens),
        "opens": sum(opens.values()),
        "max_per_blob": max(opens.values()) if opens else 0,
        "would_remove": report.blobs_removed,
    }


def bench_gc(work: Path, images: int, repeat: int) -> dict[str, object]:
    base, generated, dropped = prepare_gc_layout(work, images)
    files = sum(1 for _ in (base / "blobs" / "sha256").iterdir())
    reads = count_reads(base)
    ours_runs: list[Run] = []
    theirs_runs: list[Run] = []
    removed = None
    same = True
    for r in range(repeat):
        ours, theirs = work / "gc-ours", work / "gc-theirs"
        copy(base, ours)
        copy(base, theirs)
        jobs = [("ours", [str(CLI), "gc", "--grace", "0", "--format", "json", str(ours)]),
                ("theirs", ["umoci", "gc", "--layout", str(theirs)])]
        if r % 2:
            jobs.reverse()
        for who, argv in jobs:
            result = run(argv)
            if result.code != 0:
                raise SystemExit(f"{who} failed: {result.stderr.decode(errors='replace')}")
            (ours_runs if who == "ours" else theirs_runs).append(result)
            if who == "ours":
                removed = json.loads(result.stdout)["blobs_removed"]
        same = same and blob_names(ours) == blob_names(theirs)
        shutil.rmtree(ours)
        shutil.rmtree(theirs)
    shutil.rmtree(base)
    ours_wall = statistics.median(r.wall for r in ours_runs)
    theirs_wall = statistics.median(r.wall for r in theirs_runs)
    return {
        "images": images,
        "blob_files": files,
        "entries_dropped": dropped,
        "generated_s": generated,
        "removed": removed,
        "same_result": same,
        "ours_wall": ours_wall,
        "ours_walls": [r.wall for r in ours_runs],
        "ours_rss_mib": max(r.rss_kib for r in ours_runs) / 1024,
        "umoci_wall": theirs_wall,
        "umoci_walls": [r.wall for r in theirs_runs],
        "umoci_rss_mib": max(r.rss_kib for r in theirs_runs) / 1024,
        "ratio": ours_wall / theirs_wall,
        "reads": reads,
        "load": load(),
    }


# -- verify -------------------------------------------------------------------------------------------


def prepare_verify_layout(work: Path, gib: float) -> tuple[Path, int, int]:
    sys.path.insert(0, str(REPO / "fixtures"))
    import generate  # type: ignore[import-not-found]

    root = work / "verify"
    if root.exists():
        shutil.rmtree(root)
    writer = generate.LayoutWriter(root)
    layer_size = 16 * MIB
    layers = int(-(-gib * 1024 * MIB // layer_size))
    for image in range(-(-layers // 4)):
        count = min(4, layers - image * 4)
        data = [os.urandom(layer_size) for _ in range(count)]
        writer.add_entry(writer.image(data), f"big{image}")
    writer.finish()
    files = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    for path in files:  # warm the page cache: both sides hash from memory
        with open(path, "rb") as handle:
            while handle.read(8 * MIB):
                pass
    return root, len(files), sum(p.stat().st_size for p in files)


def bench_verify(work: Path, gib: float, repeat: int) -> dict[str, object]:
    root, files, total = prepare_verify_layout(work, gib)
    half = -(-files // 2)
    blobs = root / "blobs"
    commands = {
        "ocilayout": [str(CLI), "verify", "--format", "json", str(root)],
        "openssl -P2": [f"find {blobs} -type f -print0 | xargs -0 -P2 -n {half} openssl dgst -sha256 >/dev/null"],
        "openssl -P1": [f"find {blobs} -type f -print0 | xargs -0 -P1 -n {files} openssl dgst -sha256 >/dev/null"],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, int] = {name: 0 for name in commands}
    names = list(commands)
    for r in range(repeat):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            result = run(commands[name], shell=name != "ocilayout")
            if result.code != 0:
                raise SystemExit(f"{name} failed ({result.code}): {result.stderr.decode(errors='replace')}")
            walls[name].append(result.wall)
            rss[name] = max(rss[name], result.rss_kib)
    # the library with one worker, in-process, for reference
    sys.path.insert(0, str(REPO))
    from ocilayout.verify import verify_layout

    one = []
    for _ in range(repeat):
        start = time.perf_counter()
        report = verify_layout(root, workers=1)
        one.append(time.perf_counter() - start)
        assert report.ok and report.bytes_hashed == total
    shutil.rmtree(root)
    medians = {name: statistics.median(w) for name, w in walls.items()}
    medians["library, 1 worker"] = statistics.median(one)
    walls["library, 1 worker"] = one
    return {
        "files": files,
        "bytes": total,
        "medians": medians,
        "walls": walls,
        "mbps": {name: total / wall / 1e6 for name, wall in medians.items()},
        "ratio": medians["openssl -P2"] / medians["ocilayout"],
        "ours_rss_mib": rss["ocilayout"] / 1024,
        "load": load(),
    }


# -- report --------------------------------------------------------------------------------------------


def machine() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    umoci = subprocess.run(["umoci", "--version"], capture_output=True, text=True).stdout.strip()
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; {umoci}; {openssl}",
        f"- file system of the work directory: {fs_type(Path('/tmp'))}",
    ]


def fs_type(path: Path) -> str:
    result = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return result.stdout.strip() or "?"


def render(gc_results: list[dict], verify_result: dict | None, argv: list[str]) -> str:
    out = ["## gc and verify (issue 4)", "", f"Produced by `{' '.join(argv)}` on {time.strftime('%Y-%m-%d')}.", ""]
    out += machine()
    out += ["", "### gc: `ocilayout gc --grace 0` vs `umoci gc` on copies of the same layout", ""]
    out += [
        "Layout: `python3 fixtures/generate.py bench --images N --out DIR`, then every 5th index.json entry",
        "dropped (20% of the images become garbage). Each run on a fresh `cp -a` copy, the two tools",
        "alternating; wall = median. Commands: `.venv/bin/ocilayout gc --grace 0 --format json COPY1` and",
        "`umoci gc --layout COPY2`. Same result = both leave exactly the same blob files.",
        "",
        "| images | blob files | removed | same result | ocilayout wall | ocilayout peak RSS | umoci wall | umoci peak RSS | ratio ocilayout/umoci | opens per blob (max) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in gc_results:
        reads = r["reads"]
        out.append(
            f"| {r['images']:,} | {r['blob_files']:,} | {r['removed']:,} | {'yes' if r['same_result'] else '**no**'} "
            f"| {r['ours_wall']:.2f} s | {r['ours_rss_mib']:.0f} MiB | {r['umoci_wall']:.2f} s | {r['umoci_rss_mib']:.0f} MiB "
            f"| {r['ratio']:.2f} | {reads['max_per_blob']} ({reads['opens']:,} opens of {reads['blobs_opened']:,} blobs) "
            f"| {r['load']} |"
        )
    out.append("")
    for r in gc_results:
        out.append(
            f"- N={r['images']:,}: runs ocilayout {', '.join(f'{w:.2f}' for w in r['ours_walls'])} s; "
            f"umoci {', '.join(f'{w:.2f}' for w in r['umoci_walls'])} s; generator {r['generated_s']:.1f} s."
        )
    if verify_result is not None:
        v = verify_result
        out += ["", "### verify throughput", ""]
        out += [
            f"Layout: {v['files']} blobs, {v['bytes'] / 2**30:.2f} GiB (16 MiB random layers, 4 per image), page cache",
            "warm. `ocilayout verify --format json LAYOUT` (walk, size and digest of every blob, schemas,",
            "unreachable/stray scan) against `find blobs -type f -print0 | xargs -0 -P2 -n K openssl dgst -sha256`",
            "(K = half the files: two openssl processes, both cores) and `-P1` (one core).",
            "",
            "| command | median wall | MB/s |",
            "|---|---|---|",
        ]
        for name, wall in v["medians"].items():
            out.append(f"| {name} | {wall:.2f} s | {v['mbps'][name]:.0f} |")
        out += [
            "",
            f"ocilayout / openssl -P2 = **{v['ratio']:.2f}x** (target at least 0.8x); ocilayout peak RSS "
            f"{v['ours_rss_mib']:.0f} MiB; load average at the end {v['load']}.",
            "Runs (s): " + "; ".join(f"{n}: {', '.join(f'{w:.2f}' for w in ws)}" for n, ws in v["walls"].items()),
        ]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool for N <= 10,000 and for verify")
    parser.add_argument("--repeat-large", type=int, default=1, help="runs per tool for N > 10,000")
    parser.add_argument("--verify-gib", type=float, default=1.0)
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ocilayout-bench-gc-verify"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-gc-verify.md")
    args = parser.parse_args()
    if shutil.which("umoci") is None:
        raise SystemExit("umoci is not installed (apt-get install umoci)")
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        gc_results = []
        for images in args.images:
            print(f"gc: {images} images ...", file=sys.stderr, flush=True)
            gc_results.append(bench_gc(args.work, images, args.repeat if images <= 10_000 else args.repeat_large))
        verify_result = None
        if not args.skip_verify:
            print(f"verify: {args.verify_gib} GiB ...", file=sys.stderr, flush=True)
            verify_result = bench_verify(args.work, args.verify_gib, args.repeat)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    text = render(gc_results, verify_result, ["bench/bench_gc_verify.py", *sys.argv[1:]])
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
