#!/usr/bin/env python3
"""Benchmark `ocilayout ls`, `ls --format json`, `tree` (issue 2) and `rm` (issue 3).

For each size N a layout is generated once with `fixtures/generate.py` (3 layers per image,
20 shared base layers, 10% two-platform indexes) and cached in the work directory. Every
command runs as a real process of the installed console script (`.venv/bin/ocilayout`),
`--repeat` times; commands that change the layout get a fresh `cp -a` copy first (not timed).

Measurement method (one, documented in bench/README.md):
  * wall time: `time.perf_counter()` around `subprocess.run([/usr/bin/time, ..., argv])`;
  * peak RSS and CPU: GNU time's `-f "%M %U %S"` for that one command (max RSS in KiB,
    user and system seconds). Not `ru_maxrss` from `os.wait4`/RUSAGE_CHILDREN: Linux carries
    the parent's RSS high-water mark into the child across fork + exec;
  * the 1-minute load average (`os.getloadavg()[0]`) is recorded before each run.

Read counting (`--count-reads`, or the hidden `_count` mode it uses): runs the CLI in-process
with `LayoutStore.read_blob`, `read_blob_head` and `open_blob` wrapped to count calls per
digest, and reports the maximum per digest and the totals against the number of manifests.

Run with the venv interpreter so that `ocilayout` and `fixtures/generate.py` import:
    .venv/bin/python bench/bench_read_delete.py --sizes 1000,10000,100000 --repeat 3
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CLI = REPO / ".venv" / "bin" / "ocilayout"
DEFAULT_WORKDIR = Path("/tmp/ocilayout-bench-read-delete")
GIB_KIB = 1024 * 1024
TIME = "/usr/bin/time"  # GNU time
CHILD_ENV = dict(os.environ)  # PYTHONPATH set to the snapshot by main()

# Targets from issue 3 (seconds, KiB): (N, batch) -> (max wall, max peak RSS or None)
TARGETS = {(10_000, 100): (2.0, None), (100_000, 100): (20.0, GIB_KIB)}


# -- layouts and references ------------------------------------------------------------------


def make_snapshot(workdir: Path, rev: str) -> tuple[str, Path]:
    """Extract `rev`'s ocilayout/ and schemas/ into the workdir; (commit, directory).

    Other people edit the working tree while the benchmark runs; timing a fixed commit keeps
    every figure of one run about the same code. The venv's console script imports the
    snapshot through PYTHONPATH (it comes before the editable install's .pth entry).
    """
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], check=True, capture_output=True,
                            text=True).stdout.strip()
    target = workdir / f"snapshot-{commit[:12]}"
    if not (target / "ocilayout" / "__init__.py").is_file():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "ocilayout", "schemas"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "compileall", "-q", str(tmp)], check=True)
        tmp.rename(target)
    return commit, target


def _generate_module() -> Any:
    sys.path.insert(0, str(REPO / "fixtures"))
    import generate  # type: ignore[import-not-found]

    return generate


def cached_layout(workdir: Path, images: int, seed: int) -> Path:
    """The generated layout for `images`, made once (atomically renamed into place)."""
    final = workdir / "layouts" / f"n{images}-s{seed}"
    if (final / "index.json").is_file():
        return final
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    stats = _generate_module().make_bench_layout(tmp, images, seed)
    print(f"  generated {final}: {stats.line()}", flush=True)
    tmp.rename(final)
    return final


def entry_name(i: int) -> str:
    return f"img-{i:06d}"  # fixtures/generate.py bench_entry_name


def is_multiarch(i: int) -> bool:
    return i % 10 == 0  # fixtures/generate.py bench_is_multiarch


def rm_targets(images: int, batch: int) -> list[str]:
    """`batch` names spread evenly over the layout; index i % 10 == 0 are multi-arch.

    batch 1: the single-arch image just past the middle. batch 100: i = k*(N//100) + k%10,
    so k = 0, 10, 20, … (10 of 100) land on multi-arch indexes and the rest on single images.
    """
    if batch == 1:
        return [entry_name(images // 2 + 1)]
    step = images // batch
    if step < 10:
        raise SystemExit(f"batch {batch} needs at least {batch * 10} images")
    return [entry_name(k * step + k % 10) for k in range(batch)]


# -- running one command ---------------------------------------------------------------------


def run_measured(argv: list[str]) -> dict[str, Any]:
    """Run argv under /usr/bin/time, stdout to /dev/null; wall, CPU, peak RSS, exit code, load.

    Wall time is `time.perf_counter()` around `subprocess.run` in this process. Peak RSS (KiB)
    and user + sys CPU come from GNU time's `%M %U %S`: `os.wait4` on our own child is wrong
    here, because Linux carries the parent's RSS high-water mark into a child across
    fork/vfork + exec, so every child would report at least this script's own peak.
    """
    load = os.getloadavg()[0]
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-read-delete-time.{os.getpid()}"
    with open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-o", str(report), "-f", "%M %U %S", *argv], stdout=devnull,
                              stderr=subprocess.PIPE, env=CHILD_ENV)
        wall = time.perf_counter() - start
    fields = report.read_text().split()[-3:]  # GNU time prefixes "Command exited with non-zero status"
    report.unlink()
    rss, user, system = int(fields[0]), float(fields[1]), float(fields[2])
    return {"wall": wall, "cpu": user + system, "rss_kib": rss, "rc": proc.returncode, "load": load,
            "stderr": proc.stderr.decode(errors="replace")[-2000:]}


def fresh_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def index_entry_count(layout: Path) -> int:
    return len(json.loads((layout / "index.json").read_bytes())["manifests"])


# -- the benchmark ---------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall"] for r in runs]
    cpus = [r["cpu"] for r in runs]
    return {
        "min": min(walls),
        "median": statistics.median(walls),
        "max": max(walls),
        "cpu_min": min(cpus),
        "cpu_median": statistics.median(cpus),
        "rss_kib": max(r["rss_kib"] for r in runs),
        "load": [round(r["load"], 2) for r in runs],
        "runs": [round(w, 4) for w in walls],
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    cli = str(args.cli)
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine_facts(), "cli": cli, "workdir": str(workdir),
                               "repeat": args.repeat, "startup": None, "read": [], "rm": []}

    # Fixed cost of starting the console script (interpreter + imports + click), to subtract.
    startup = [run_measured([cli, "--version"]) for _ in range(max(args.repeat, 5))]
    results["startup"] = summarise(startup)
    print(f"startup `ocilayout --version`: min {results['startup']['min']:.3f} s, "
          f"cpu {results['startup']['cpu_min']:.3f} s", flush=True)

    read_commands = {
        "ls": lambda lay: [cli, "ls", lay],
        "ls --format json": lambda lay: [cli, "ls", lay, "--format", "json"],
        "tree": lambda lay: [cli, "tree", lay],
    }
    for images in args.sizes:
        print(f"N={images}", flush=True)
        layout = cached_layout(workdir, images, args.seed)
        if "read" in args.only:
            # One unrecorded warm-up so every recorded run sees the same (warm) page cache.
            run_measured([cli, "ls", str(layout)])
            for label, make in read_commands.items():
                argv = make(str(layout))
                runs = []
                for _ in range(args.repeat):
                    r = run_measured(argv)
                    if r["rc"] != 0:
                        raise SystemExit(f"{argv} failed ({r['rc']}): {r['stderr']}")
                    runs.append(r)
                row = {"command": label, "images": images, "argv": argv, **summarise(runs)}
                results["read"].append(row)
                print(f"  {label:18} min {row['min']:.3f} s  median {row['median']:.3f} s  "
                      f"cpu {row['cpu_min']:.3f} s  "
                      f"rss {row['rss_kib'] / 1024:.0f} MiB  load {row['load']}", flush=True)
        if "rm" in args.only:
            copy = workdir / "copy"
            for batch in args.batches:
                if batch * 10 > images:
                    continue
                refs = rm_targets(images, batch)
                argv = [cli, "rm", str(copy), *refs, "-q"]
                runs = []
                for _ in range(args.repeat):
                    fresh_copy(layout, copy)  # not timed
                    r = run_measured(argv)
                    if r["rc"] != 0:
                        raise SystemExit(f"rm failed ({r['rc']}): {r['stderr']}")
                    left = index_entry_count(copy)
                    if left != images - batch:
                        raise SystemExit(f"rm left {left} entries, expected {images - batch}")
                    runs.append(r)
                row = {"command": f"rm {batch}", "images": images, "batch": batch,
                       "argv": [cli, "rm", "LAYOUT", *(refs if batch <= 3 else refs[:3] + ["..."]), "-q"],
                       "multiarch_refs": sum(is_multiarch(int(n[4:])) for n in refs), **summarise(runs)}
                results["rm"].append(row)
                print(f"  rm {batch:<15} min {row['min']:.3f} s  median {row['median']:.3f} s  "
                      f"cpu {row['cpu_min']:.3f} s  "
                      f"rss {row['rss_kib'] / 1024:.0f} MiB  load {row['load']}", flush=True)
            if copy.exists():
                shutil.rmtree(copy)
    return results


# -- analysis and output ---------------------------------------------------------------------


def analyse(results: dict[str, Any]) -> list[str]:
    """Tables per command, marginal cost per 1k images, rm(100) - rm(1), targets (markdown lines).

    Linearity: the marginal cost per 1,000 images between consecutive sizes,
    (t(N2) - t(N1)) / ((N2 - N1) / 1000), is compared from one interval to the next; a rise
    over 1.3x is flagged as super-linear. It is computed on both the minimum wall time and the
    minimum CPU time (user + sys of the child), which the other processes on the machine
    disturb much less than wall time.
    """
    lines: list[str] = []
    startup = results["startup"]
    lines.append(f"\nStartup (`ocilayout --version`): wall min {startup['min']:.3f} s / median "
                 f"{startup['median']:.3f} s, CPU min {startup['cpu_min']:.3f} s, peak RSS "
                 f"{startup['rss_kib'] / 1024:.0f} MiB, load {startup['load']}.")
    by_command: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in results["read"] + results["rm"]:
        by_command[row["command"]].append(row)
    for command, group in by_command.items():
        group.sort(key=lambda r: r["images"])
        lines.append(f"\n### `{command}`\n")
        lines.append("| N images | wall min (s) | wall median (s) | CPU min (s) | CPU median (s) | peak RSS (MiB) "
                     "| wall per 1k images, marginal (ms) | CPU per 1k images, marginal (ms) | linear? "
                     "| load avg (1 min) at each run |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        prev = None
        prev_marginal = None
        for row in group:
            wall_k = cpu_k = None
            verdict = "—"
            if prev is not None:
                span = (row["images"] - prev["images"]) / 1000
                wall_k = (row["min"] - prev["min"]) / span * 1000
                cpu_k = (row["cpu_min"] - prev["cpu_min"]) / span * 1000
                if prev_marginal is not None and prev_marginal[1] > 0:
                    ratio_cpu = cpu_k / prev_marginal[1]
                    ratio_wall = wall_k / prev_marginal[0] if prev_marginal[0] > 0 else float("inf")
                    flag = ratio_cpu > 1.3
                    verdict = (f"CPU ×{ratio_cpu:.2f}, wall ×{ratio_wall:.2f} vs previous interval"
                               + (" **super-linear**" if flag else " (linear)"))
                prev_marginal = (wall_k, cpu_k)
            row["marginal_wall_ms_per_1k"], row["marginal_cpu_ms_per_1k"] = wall_k, cpu_k
            prev = row
            lines.append(f"| {row['images']:,} | {row['min']:.3f} | {row['median']:.3f} | {row['cpu_min']:.3f} | "
                         f"{row['cpu_median']:.3f} | {row['rss_kib'] / 1024:.0f} | "
                         f"{'—' if wall_k is None else f'{wall_k:.1f}'} | {'—' if cpu_k is None else f'{cpu_k:.1f}'} | "
                         f"{verdict} | {row['load']} |")
    rm_rows = {(r["images"], r["batch"]): r for r in results["rm"]}
    if rm_rows:
        lines.append("\n### `rm` batch cost: rm(100) − rm(1)\n")
        lines.append("| N images | rm 1 wall / CPU min (s) | rm 100 wall / CPU min (s) | difference wall (s) "
                     "| difference CPU (s) | CPU difference / rm 1 CPU |")
        lines.append("|---:|---:|---:|---:|---:|---:|")
        for n in sorted({n for n, _ in rm_rows}):
            one, hundred = rm_rows.get((n, 1)), rm_rows.get((n, 100))
            if one and hundred:
                diff = hundred["min"] - one["min"]
                diff_cpu = hundred["cpu_min"] - one["cpu_min"]
                lines.append(f"| {n:,} | {one['min']:.3f} / {one['cpu_min']:.3f} | {hundred['min']:.3f} / "
                             f"{hundred['cpu_min']:.3f} | {diff:+.3f} | {diff_cpu:+.3f} | "
                             f"{diff_cpu / one['cpu_min']:+.1%} |")
        lines.append("\n### Targets (issue 3), judged on the median wall time\n")
        lines.append("| target | wall min / median | CPU min | peak RSS | met |")
        lines.append("|---|---|---|---|---|")
        for (n, batch), (limit, rss_limit) in TARGETS.items():
            row = rm_rows.get((n, batch))
            if row is None:
                continue
            ok = row["median"] < limit and (rss_limit is None or row["rss_kib"] < rss_limit)
            what = f"rm {batch} of {n:,} < {limit:g} s" + (" and < 1 GiB RSS" if rss_limit else "")
            lines.append(f"| {what} | {row['min']:.2f} s / {row['median']:.2f} s | {row['cpu_min']:.2f} s | "
                         f"{row['rss_kib'] / 1024:.0f} MiB | {'yes' if ok else '**no**'} |")
    return lines


def machine_facts() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / GIB_KIB:.1f} GiB"
    except OSError:
        pass
    venv_python = REPO / ".venv" / "bin" / "python"
    version = subprocess.run([str(venv_python), "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True).stdout.strip()
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()

    return {"nproc": os.cpu_count(), "cpu": model, "memory": mem, "python": version,
            "commit": git("rev-parse", "--short", "HEAD"),
            "package_changes_uncommitted": git("status", "--short", "--", "ocilayout").splitlines(),
            "kernel": platform.release(), "loadavg_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# -- read counting (in-process) --------------------------------------------------------------


def count_mode(argv: list[str]) -> None:
    """`_count OUT.json CLI-ARGS...`: run the CLI in this process, counting blob reads per digest."""
    out, cli_args = argv[0], argv[1:]
    from ocilayout import cli, storage

    counts: dict[str, collections.Counter[str]] = {
        name: collections.Counter()
        for name in ("read_blob", "read_blob_head", "open_blob")
        if hasattr(storage.LayoutStore, name)}

    def wrap(name: str) -> None:
        original = getattr(storage.LayoutStore, name)

        def counted(self: Any, digest: Any, *a: Any, **k: Any) -> Any:
            counts[name][str(digest)] += 1
            return original(self, digest, *a, **k)

        setattr(storage.LayoutStore, name, counted)

    for name in counts:
        wrap(name)
    sys.argv = ["ocilayout", *cli_args]
    code = 0
    stdout = sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout.close()
        sys.stdout = stdout
    total = collections.Counter()
    for c in counts.values():
        total.update(c)
    Path(out).write_text(json.dumps({
        "exit_code": code,
        "calls": {name: sum(c.values()) for name, c in counts.items()},
        "distinct_digests": len(total),
        "max_per_digest": max(total.values(), default=0),
        "max_per_digest_by_function": {name: max(c.values(), default=0) for name, c in counts.items()},
        "digests_read_more_than_once": sum(1 for v in total.values() if v > 1),
        "examples_read_more_than_once": [d for d, v in total.most_common(5) if v > 1],
    }))


def layout_census(layout: Path) -> dict[str, int]:
    """How many indexes, manifests and configs the layout's entries hold (by walking JSON)."""
    blobs = layout / "blobs" / "sha256"
    indexes = manifests = 0
    for entry in json.loads((layout / "index.json").read_bytes())["manifests"]:
        if entry["mediaType"].endswith("index.v1+json"):
            indexes += 1
            doc = json.loads((blobs / entry["digest"].split(":")[1]).read_bytes())
            manifests += len(doc["manifests"])
        else:
            manifests += 1
    return {"indexes": indexes, "manifests": manifests, "configs": manifests}


def count_reads(args: argparse.Namespace) -> list[dict[str, Any]]:
    images = args.count_images
    layout = cached_layout(args.workdir, images, args.seed)
    census = layout_census(layout)
    python = str(REPO / ".venv" / "bin" / "python")
    copy = args.workdir / "count-copy"
    rows = []
    cases = [
        ("ls", ["ls", str(layout)], False),
        ("ls --format json", ["ls", str(layout), "--format", "json"], False),
        ("tree", ["tree", str(layout)], False),
        ("rm 100", ["rm", str(copy), *rm_targets(images, 100), "-q"], True),
        ("rm 1", ["rm", str(copy), *rm_targets(images, 1), "-q"], True),
    ]
    for label, cli_args, mutates in cases:
        if mutates:
            fresh_copy(layout, copy)
        out = args.workdir / "count.json"
        proc = subprocess.run([python, __file__, "_count", str(out), *cli_args], env=CHILD_ENV,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            print(f"  reads {label}: FAILED {proc.stderr[-1500:]}", flush=True)
            rows.append({"command": label, "images": images, **census, "failed": proc.stderr[-1500:]})
            continue
        data = json.loads(out.read_text())
        out.unlink()
        rows.append({"command": label, "images": images, **census, **data})
        print(f"  reads {label}: {data}", flush=True)
    if copy.exists():
        shutil.rmtree(copy)
    return rows


def reads_markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    r0 = rows[0]
    lines = [f"\nLayout of {r0['images']:,} images: {r0['indexes']:,} indexes, {r0['manifests']:,} image "
             f"manifests, {r0['configs']:,} configs (documents = indexes + manifests = "
             f"{r0['indexes'] + r0['manifests']:,}).\n",
             "| command | exit | read_blob | read_blob_head | open_blob | distinct digests | "
             "max reads per digest | digests read > once | reads / (indexes + manifests) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| `{r['command']}` | failed | | | | | | | |")
            continue
        total = sum(r["calls"].values())
        docs = r["indexes"] + r["manifests"]
        lines.append(f"| `{r['command']}` | {r['exit_code']} | {r['calls']['read_blob']:,} | "
                     f"{r['calls']['read_blob_head']:,} | {r['calls']['open_blob']:,} | {r['distinct_digests']:,} | "
                     f"{r['max_per_digest']} | {r['digests_read_more_than_once']:,} | {total / docs:.3f} |")
    return lines


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_count":
        count_mode(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated image counts")
    parser.add_argument("--batches", default="1,100", help="comma-separated rm batch sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"cache of generated layouts and scratch copies (default {DEFAULT_WORKDIR})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", type=Path, default=DEFAULT_CLI, help="the console script to time")
    parser.add_argument("--only", default="read,rm,reads", help="subset of: read, rm, reads")
    parser.add_argument("--count-images", type=int, default=10_000, help="layout size for the read count")
    parser.add_argument("--json", type=Path, help="write raw results here")
    parser.add_argument("--markdown", type=Path, help="write the result tables here")
    parser.add_argument("--clean", action="store_true", help="delete the work directory at the end")
    parser.add_argument("--rev", default="HEAD",
                        help="time this commit's ocilayout/ (extracted to the workdir, imported via PYTHONPATH); "
                             "'worktree' times the working tree as it is")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.batches = [int(s) for s in args.batches.split(",") if s]
    args.only = set(args.only.split(","))

    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.rev != "worktree":
        commit, snapshot = make_snapshot(args.workdir, args.rev)
        CHILD_ENV["PYTHONPATH"] = str(snapshot)
    else:
        commit = "worktree"
    imported = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", "import ocilayout; print(ocilayout.__file__)"],
                              env=CHILD_ENV, capture_output=True, text=True, cwd="/").stdout.strip()
    print(f"timing ocilayout at {commit}: imports {imported}", flush=True)

    results = bench(args)
    results["code"] = {"rev": args.rev, "commit": commit, "imports": imported}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if "reads" in args.only:
        print(f"read count on N={args.count_images}", flush=True)
        results["reads"] = count_reads(args)
    results["machine"]["loadavg_end"] = os.getloadavg()
    lines = analyse(results) + reads_markdown(results.get("reads", []))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.clean:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
