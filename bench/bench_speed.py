#!/usr/bin/env python3
"""Before/after timings for issues 9 and 11: start-up, `ls --format json`, `tree`, `du`, `rm` of
one image and `verify`, two commits of ocilayout side by side in the same run.

Each commit (--old, --new; default d519b74 and HEAD, or `worktree`) is extracted with
`git archive` into --workdir, byte-compiled (as an installed wheel is) and imported by the
venv's console script through PYTHONPATH, so edits made during the run cannot leak in.
Per round every case runs once per commit, the two alternating (order flipped every round);
`rm` runs on a fresh hard-link copy (`cp -al`, plus a real index.json; not timed). Wall time
is time.perf_counter() around subprocess.run; peak RSS and user+sys CPU come from GNU
/usr/bin/time; the 1-minute load average is recorded before every run. Reported: median and
min wall, median CPU, peak RSS (largest over the runs), median load.

Cases (--only, default all but verify):
  help     `ocilayout --help`                      (--startup-runs runs per round)
  rmhelp   `ocilayout rm --help`                   (same)
  lstiny   `ocilayout ls fixtures/layouts/multi`   (same)
  lsjson   `ocilayout ls --format json LAYOUT`
  tree     `ocilayout tree LAYOUT`
  duq      `ocilayout du -q LAYOUT`
  du       `ocilayout du LAYOUT`                   (table: reads the configs for CREATED)
  rm1      `ocilayout rm -q COPY img-050001`       (the name at the middle of a bench layout)
  verify   `ocilayout verify -q LAYOUT`, and the peer `find blobs -type f -print0 | xargs -0 -P2
           -n K openssl dgst -sha256` (K = half the files: both cores) in the same rounds

Example (about 10 min on 2 busy cores):
    .venv/bin/python bench/bench_speed.py --layout /tmp/pb/n100k --rounds 3 --markdown /tmp/speed.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "ocilayout"
PYTHON = REPO / ".venv" / "bin" / "python"
TINY = REPO / "fixtures" / "layouts" / "multi"
TIME = "/usr/bin/time"
STARTUP = ("help", "rmhelp", "lstiny")
CASES = ("help", "rmhelp", "lstiny", "lsjson", "tree", "duq", "du", "rm1", "verify")
LABELS = {
    "help": "--help",
    "rmhelp": "rm --help",
    "lstiny": "ls (tiny layout)",
    "lsjson": "ls --format json",
    "tree": "tree",
    "duq": "du -q",
    "du": "du",
    "rm1": "rm 1 image",
    "verify": "verify -q",
    "openssl": "openssl dgst -sha256, -P2",
}


def extract(rev: str, workdir: Path) -> Path | None:
    """The package at `rev` under workdir (None: the working tree)."""
    if rev == "worktree":
        return None
    sha = subprocess.run(["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    dest = workdir / f"rev-{sha[:12]}"
    if not (dest / "ocilayout").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "ocilayout", "schemas"], cwd=REPO, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)  # schemas/ beside it
        subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(dest / "ocilayout")], check=True)
    return dest


def run(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    load = os.getloadavg()[0]
    with open(os.devnull, "wb") as null:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-f", "%M %U %S", *argv], stdout=null, stderr=subprocess.PIPE, env=env)
        wall = time.perf_counter() - start
    fields = proc.stderr.decode(errors="replace").strip().splitlines()[-1].split()
    rss_kib, user, system = int(fields[0]), float(fields[1]), float(fields[2])
    return {"wall": wall, "rss_mib": rss_kib / 1024, "cpu": user + system, "load": load, "rc": proc.returncode}


def fresh_copy(layout: Path, workdir: Path) -> Path:
    copy = workdir / "copy"
    if copy.exists():
        shutil.rmtree(copy)
    subprocess.run(["cp", "-al", str(layout), str(copy)], check=True)
    (copy / "index.json").unlink()
    shutil.copyfile(layout / "index.json", copy / "index.json")
    return copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", type=Path, required=True, help="a layout from `fixtures/generate.py bench`")
    parser.add_argument("--old", default="d519b74")
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup-runs", type=int, default=20)
    parser.add_argument("--only", default=",".join(c for c in CASES if c != "verify"))
    parser.add_argument("--rm-name", default="img-050001")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocilayout-bench-speed"))
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cases = [c for c in args.only.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    trees = {"old": extract(args.old, args.workdir), "new": extract(args.new, args.workdir)}
    envs = {}
    for which, tree in trees.items():
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        envs[which] = env
    layout = args.layout.resolve()
    files = sorted(str(p) for p in (layout / "blobs").rglob("*") if p.is_file())
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    order = ["old", "new"]
    for round_no in range(args.rounds):
        for case in cases:
            for which in order:
                runs = args.startup_runs if case in STARTUP else 1
                for _ in range(runs):
                    if case == "rm1":
                        copy = fresh_copy(layout, args.workdir)
                        subprocess.run(["sync"], check=True)
                        argv = [str(CLI), "rm", "-q", str(copy), args.rm_name]
                    else:
                        argv = {
                            "help": [str(CLI), "--help"],
                            "rmhelp": [str(CLI), "rm", "--help"],
                            "lstiny": [str(CLI), "ls", str(TINY)],
                            "lsjson": [str(CLI), "ls", "--format", "json", str(layout)],
                            "tree": [str(CLI), "tree", str(layout)],
                            "duq": [str(CLI), "du", "-q", str(layout)],
                            "du": [str(CLI), "du", str(layout)],
                            "verify": [str(CLI), "verify", "-q", str(layout)],
                        }[case]
                    result = run(argv, envs[which])
                    results.setdefault((case, which), []).append(result)
                    print(f"round {round_no + 1} {case} {which}: {result['wall']:.3f} s, "
                          f"{result['rss_mib']:.0f} MiB, load {result['load']:.2f}, rc {result['rc']}", flush=True)
            if case == "verify":
                half = max(1, (len(files) + 1) // 2)
                command = f"find {layout}/blobs -type f -print0 | xargs -0 -P2 -n {half} openssl dgst -sha256"
                result = run(["sh", "-c", command], dict(os.environ))
                results.setdefault(("openssl", "peer"), []).append(result)
                print(f"round {round_no + 1} openssl: {result['wall']:.3f} s, load {result['load']:.2f}", flush=True)
        order.reverse()

    lines = [
        f"Layout: {layout} ({len(files)} blob files); old = {args.old}, new = {args.new}; "
        f"{args.rounds} rounds ({args.startup_runs} runs per round for start-up cases).",
        "",
        "| command | code | runs | median s | min s | CPU s (median) | peak RSS MiB | load1 (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for (case, which), runs in results.items():
        walls = [r["wall"] for r in runs]
        row = {
            "runs": len(runs),
            "median": statistics.median(walls),
            "min": min(walls),
            "cpu": statistics.median(r["cpu"] for r in runs),
            "rss": max(r["rss_mib"] for r in runs),
            "load": statistics.median(r["load"] for r in runs),
            "failed": sum(1 for r in runs if r["rc"] not in (0,)),
        }
        summary[f"{case}/{which}"] = row
        fmt = "{:.3f}" if case in STARTUP else "{:.2f}"
        lines.append(
            f"| {LABELS[case]} | {which} | {row['runs']} | {fmt.format(row['median'])} | {fmt.format(row['min'])} "
            f"| {row['cpu']:.2f} | {row['rss']:.0f} | {row['load']:.2f} |"
            + (f" {row['failed']} runs exited non-zero" if row["failed"] else "")
        )
    ratios = []
    for case in cases:
        old, new = summary.get(f"{case}/old"), summary.get(f"{case}/new")
        if old and new:
            ratios.append(f"{LABELS[case]}: new/old {new['median'] / old['median']:.2f}")
    for which in ("old", "new"):
        du, rm = summary.get(f"duq/{which}"), summary.get(f"rm1/{which}")
        if du and rm:
            ratios.append(f"du -q / rm 1 ({which}): {du['median'] / rm['median']:.2f}")
        du, rm = summary.get(f"du/{which}"), summary.get(f"rm1/{which}")
        if du and rm:
            ratios.append(f"du / rm 1 ({which}): {du['median'] / rm['median']:.2f}")
        ver, ssl = summary.get(f"verify/{which}"), summary.get("openssl/peer")
        if ver and ssl:
            ratios.append(f"verify / openssl -P2 ({which}): {ver['median'] / ssl['median']:.2f}")
    lines += ["", *[f"- {r}" for r in ratios]]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
