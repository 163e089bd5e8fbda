#!/usr/bin/env python3
"""Time ocilayout side by side with skopeo and umoci on generated layouts (issue 8).

Issue 8: at 10,000 and 100,000 generated images, each run on a fresh copy, modern skopeo and
umoci timed side by side in the same run: `rm` of 1 image <= 0.75x skopeo `delete`; `rm` of 100
>= 100x faster than 100 skopeo deletes; peak RSS <= 512 MiB for `rm` and `gc` at 100,000.

Cases (--only, default all):
  rm1      ocilayout `rm -q COPY NAME`               vs  skopeo `delete oci:COPY:NAME`
  rm1warm  the same, after an untimed `ocilayout ls -q COPY` (issue 9: a warm reference cache)
  rm1borrow  the same, after an untimed `ocilayout ls -q SRC` of the source layout: the copy, at
           a path the cache never saw, borrows SRC's records (a copy of a layout looked at before)
  rm1nocache  the same with `--no-cache` (what the cache fill of rm1 costs)
  rm100    ocilayout `rm -q COPY NAME1 ... NAME100`  vs  100 sequential skopeo deletes
  gc       ocilayout `gc --grace 0 -q COPY`          vs  umoci `gc --layout COPY`
  gcwarm   the same, after an untimed `ocilayout ls -q COPY`
  rmgc     ocilayout `rm` + `gc --grace 0`           vs  umoci `rm --image COPY:NAME` + `umoci gc`

Reference cache (issue 9): ocilayout runs with OCILAYOUT_CACHE_DIR in the workdir, emptied before
every ocilayout run, so the plain cases are cold (they include filling the cache) and the warm
ones are warm only from their own untimed `ls` on the same copy.

Layouts: `fixtures/generate.py bench --images N --seed S` (3 layers per image, 20 shared base
layers, 10% two-platform indexes), generated once into --workdir/layouts and cached. Every blob's
mtime is set 30 days in the past. rm1/rm100 run on that layout as generated; gc/rmgc run on an
"orphans" variant: a hard-link copy whose index.json drops every entry with i % 100 == 50, so 1%
of the images are blobs without an index entry (like bench/reliability_common.make_orphans).

Method: each destructive run gets a fresh copy, `cp -al SRC COPY` plus a real copy of index.json
(`cp --remove-destination`; skopeo rewrites index.json in place), then `sync`; copying is not
timed. Per round, every tool runs once on its own copy, one after the other; the order flips
every round. Wall = time.perf_counter() around subprocess.run; peak RSS and user+sys CPU from GNU
`/usr/bin/time -f "%M %U %S"` (a sequence such as 100 skopeo deletes or rm + gc runs as one
`sh -c 'set -e; ...'` under one /usr/bin/time: CPU is summed, RSS is the largest process).
The 1-minute load average is recorded before every run. Reported: median and min wall, median
CPU, peak RSS over the runs, median load, and ocilayout median / peer median.

Checks after every run: each deleted name is gone from every tool's index.json (and the entry
count dropped by exactly the number deleted); the blob files left by ocilayout equal those left
by the peer (skopeo for rm, umoci for gc and rm+gc); a difference is a WARNING row in the table.

ocilayout is timed at a fixed commit (--rev, default HEAD): `git archive` of ocilayout/ and
schemas/ into the workdir, imported by the console script through PYTHONPATH, so edits made to
the working tree during the run cannot leak in. `--rev worktree` times the working tree.

Run from the repository root with the venv interpreter, after `df -h /tmp`:
    .venv/bin/python bench/bench_peers.py --sizes 10000 --rounds 5 --markdown /tmp/p.md --json /tmp/p.json
    .venv/bin/python bench/bench_peers.py --sizes 100000 --rounds 3 --rounds-slow 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
GENERATOR = REPO / "fixtures" / "generate.py"
DEFAULT_CLI = REPO / ".venv" / "bin" / "ocilayout"
DEFAULT_SKOPEO = Path("/work/peers/skopeo")
DEFAULT_UMOCI = Path("/usr/bin/umoci")
DEFAULT_WORKDIR = Path("/tmp/ocilayout-bench-peers")
TIME = "/usr/bin/time"  # GNU time
REF_NAME = "org.opencontainers.image.ref.name"

CASES = ("rm1", "rm1warm", "rm1borrow", "rm1nocache", "rm100", "gc", "gcwarm", "rmgc")
DEFAULT_CASES = ("rm1", "rm1warm", "rm100", "gc", "rmgc")
# case -> (label, source layout, peer)
CASE_INFO = {
    "rm1": ("rm 1 image", "plain", "skopeo"),
    "rm1warm": ("rm 1 image, warm cache", "plain", "skopeo"),
    "rm1borrow": ("rm 1 image, a copy at a new path, cache warm from the source", "plain", "skopeo"),
    "rm1nocache": ("rm 1 image, --no-cache", "plain", "skopeo"),
    "rm100": ("rm 100 images", "plain", "skopeo"),
    "gc": ("gc (1% orphan images)", "orphans", "umoci"),
    "gcwarm": ("gc (1% orphan images), warm cache", "orphans", "umoci"),
    "rmgc": ("rm 1 image + gc", "orphans", "umoci"),
}
WARM_UP = ["ls", "-q"]  # the untimed command before a warm case (any command fills the cache)
CACHE_ENV = "OCILAYOUT_CACHE_DIR"
ORPHAN_EVERY, ORPHAN_AT = 100, 50  # entries with i % 100 == 50 lose their index.json entry
BACKDATE_S = 30 * 86400
BYTES_PER_IMAGE = 19_000  # ~1.8 GB at 100,000 images (disk check only)
MIB_KIB = 1024

# Targets of issue 9 (rm of 1 on a warm cache, ratio to skopeo delete, by image count).
RM1_WARM_MAX_RATIO = {10_000: 0.20, 100_000: 0.10}
# Targets of issue 8.
RM1_MAX_RATIO = 0.75
RM100_MIN_SPEEDUP = 100.0
RSS_MAX_MIB = 512
RSS_TARGET_IMAGES = 100_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- names -----------------------------------------------------------------------------------


def entry_name(i: int) -> str:
    return f"img-{i:06d}"  # fixtures/generate.py bench_entry_name


def is_multiarch(i: int) -> bool:
    return i % 10 == 0  # fixtures/generate.py bench_is_multiarch


def is_orphan(i: int) -> bool:
    return i % ORPHAN_EVERY == ORPHAN_AT


def rm_targets(images: int, batch: int) -> list[str]:
    """`batch` names spread over the layout, the same for every tool; never an orphan entry.

    batch 1: the single-arch image just past the middle. batch 100: i = k*(N//100) + k%10, so
    with N >= 1,000 ten of the hundred (k = 0, 10, ...) are two-platform indexes.
    """
    if batch == 1:
        picks = [images // 2 + 1]
    else:
        step = images // batch
        if step < 1:
            raise SystemExit(f"rm of {batch} needs at least {batch} images")
        picks = [k * step + (k % 10 if step >= 10 else 0) for k in range(batch)]
    picks = [i + 1 if is_orphan(i) else i for i in picks]
    if len(set(picks)) != len(picks) or max(picks) >= images:
        raise SystemExit(f"cannot pick {batch} distinct names out of {images}")
    return [entry_name(i) for i in picks]


# -- layouts ---------------------------------------------------------------------------------


def backdate_blobs(root: Path) -> int:
    """Set every blob's mtime BACKDATE_S in the past (hard links share it). Returns the count."""
    past = time.time() - BACKDATE_S
    count = 0
    for alg in os.scandir(root / "blobs"):
        if not alg.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(alg.path):
            os.utime(entry.path, (past, past), follow_symlinks=False)
            count += 1
    return count


def blob_set(root: Path) -> set[str]:
    out: set[str] = set()
    for alg in os.scandir(root / "blobs"):
        if alg.is_dir(follow_symlinks=False):
            out.update(f"{alg.name}/{entry.name}" for entry in os.scandir(alg.path))
    return out


def index_names(root: Path) -> tuple[int, set[str]]:
    """(entry count, set of ref names) of root/index.json."""
    manifests = json.loads((root / "index.json").read_bytes())["manifests"]
    names = {(m.get("annotations") or {}).get(REF_NAME) for m in manifests}
    return len(manifests), {n for n in names if isinstance(n, str)}


def warm(root: Path) -> None:
    """Read every file once so all tools start from the same (warm) page cache."""
    for alg in os.scandir(root / "blobs"):
        if alg.is_dir(follow_symlinks=False):
            for entry in os.scandir(alg.path):
                with open(entry.path, "rb") as handle:
                    while handle.read(1 << 20):
                        pass


def prepare_layouts(workdir: Path, images: int, seed: int) -> tuple[Path, Path, dict[str, Any]]:
    """The cached generated layout and its orphans variant (both made atomically)."""
    layouts = workdir / "layouts"
    layouts.mkdir(parents=True, exist_ok=True)
    plain = layouts / f"n{images}-s{seed}"
    orphans = layouts / f"n{images}-s{seed}-orphans"
    info_path = layouts / f"n{images}-s{seed}.info.json"
    if not (plain / "index.json").is_file():
        need = images * BYTES_PER_IMAGE * 1.1 + (1 << 30)
        free = shutil.disk_usage(workdir).free
        if free < need:
            raise SystemExit(f"{workdir}: {free / 1e9:.1f} GB free, about {need / 1e9:.1f} GB needed for {images} images")
        tmp = plain.with_name(plain.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        argv = [str(VENV_PYTHON), str(GENERATOR), "bench", "--images", str(images), "--out", str(tmp), "--seed", str(seed)]
        log(f"  generating: {shlex.join(argv)}")
        start = time.perf_counter()
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
        shown = [*argv[:-3], str(plain), *argv[-2:]]  # generated into a .tmp directory, then renamed
        info = {"generator_command": shlex.join(shown), "generator_output": out,
                "generate_s": round(time.perf_counter() - start, 2)}
        backdate_blobs(tmp)
        tmp.rename(plain)
        info_path.write_text(json.dumps(info))
        log(f"  {out}")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    # Again on every start (cheap): nothing may have touched the mtimes, but gc depends on them.
    backdate_blobs(plain)
    if not (orphans / "index.json").is_file():
        tmp = orphans.with_name(orphans.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["cp", "-al", str(plain), str(tmp)], check=True)
        index = json.loads((plain / "index.json").read_bytes())
        kept = [m for m in index["manifests"]
                if not is_orphan(int(((m.get("annotations") or {}).get(REF_NAME) or "img-1")[4:]))]
        index["manifests"] = kept
        (tmp / "index.json.new").write_bytes(json.dumps(index, separators=(",", ":")).encode())
        os.replace(tmp / "index.json.new", tmp / "index.json")  # breaks the hard link
        tmp.rename(orphans)
    return plain, orphans, info


def fresh_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
    subprocess.run(["cp", "--remove-destination", str(src / "index.json"), str(dst / "index.json")], check=True)


# -- running ---------------------------------------------------------------------------------


def commands(case: str, tool: str, copy: Path, names1: list[str], names100: list[str],
             tools: dict[str, str]) -> list[list[str]]:
    """The processes one run of `tool` executes for `case`, in order."""
    lay = str(copy)
    exe = tools[tool]
    if tool == "ocilayout":
        return {
            "rm1": [[exe, "rm", "-q", lay, *names1]],
            "rm1warm": [[exe, "rm", "-q", lay, *names1]],
            "rm1borrow": [[exe, "rm", "-q", lay, *names1]],
            "rm1nocache": [[exe, "rm", "-q", "--no-cache", lay, *names1]],
            "rm100": [[exe, "rm", "-q", lay, *names100]],
            "gc": [[exe, "gc", "--grace", "0", "-q", lay]],
            "gcwarm": [[exe, "gc", "--grace", "0", "-q", lay]],
            "rmgc": [[exe, "rm", "-q", lay, *names1], [exe, "gc", "--grace", "0", "-q", lay]],
        }[case]
    if tool == "skopeo":
        names = names1 if case in ("rm1", "rm1warm", "rm1borrow", "rm1nocache") else names100
        return [[exe, "delete", f"oci:{lay}:{name}"] for name in names]
    if tool == "umoci":
        gc = [exe, "gc", "--layout", lay]
        return [gc] if case in ("gc", "gcwarm") else [[exe, "rm", "--image", f"{lay}:{names1[0]}"], gc]
    raise ValueError(tool)


def run_measured(steps: list[list[str]], env: dict[str, str], report: Path) -> dict[str, Any]:
    """Run the steps (one process, or `sh -c 'set -e; ...'`) under GNU time; stdout discarded."""
    if len(steps) == 1:
        argv = steps[0]
    else:
        argv = ["/bin/sh", "-c", "set -e\n" + "\n".join(shlex.join(s) for s in steps)]
    load = os.getloadavg()[0]
    with open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-o", str(report), "-f", "%M %U %S", *argv], stdout=devnull,
                              stderr=subprocess.PIPE, env=env, check=False)
        wall = time.perf_counter() - start
    fields = report.read_text().split()[-3:]  # GNU time may prefix "Command exited with ..."
    report.unlink()
    return {"wall": wall, "cpu": float(fields[1]) + float(fields[2]), "rss_kib": int(fields[0]),
            "rc": proc.returncode, "load1": load, "stderr": proc.stderr.decode(errors="replace")[-2000:]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in runs if r["rc"] == 0]
    if not ok:
        return None
    walls = [r["wall"] for r in ok]
    return {"runs": len(ok), "failed": len(runs) - len(ok), "median": statistics.median(walls),
            "min": min(walls), "max": max(walls), "cpu_median": statistics.median(r["cpu"] for r in ok),
            "rss_mib": max(r["rss_kib"] for r in ok) / MIB_KIB,
            "load1_median": statistics.median(r["load1"] for r in ok), "walls": [round(w, 4) for w in walls]}


def bench_case(case: str, src: Path, tools_here: list[str], rounds: int, rounds_slow: int, run_dir: Path,
               names1: list[str], names100: list[str], tools: dict[str, str], envs: dict[str, dict[str, str]]
               ) -> dict[str, Any]:
    label, _, peer = CASE_INFO[case]
    deleted = [] if case in ("gc", "gcwarm") else (names100 if case == "rm100" else names1)
    src_count, src_names = index_names(src)
    missing = [n for n in deleted if n not in src_names]
    if missing:
        raise SystemExit(f"{case}: {missing[:3]} not in {src}/index.json")
    src_blobs = len(blob_set(src))
    src_stat = os.stat(src / "index.json")
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools_here}
    checks: list[dict[str, Any]] = []
    report = run_dir / f"time.{os.getpid()}"
    for r in range(rounds):
        active = [t for t in tools_here if not (case == "rm100" and t == "skopeo" and r >= rounds_slow)]
        order = active if r % 2 == 0 else active[::-1]
        # rm1borrow: a path the cache has never seen, every round.
        copies = {t: run_dir / (f"{t}-{r}" if case == "rm1borrow" else t) for t in active}
        for t in active:
            fresh_copy(src, copies[t])  # not timed
        os.sync()  # so writeback of the copies' metadata does not land inside a timed run
        for t in order:
            if t == "ocilayout":
                reset_cache(envs[t])
                if case.endswith("warm"):  # not timed: any earlier command on this copy
                    subprocess.run([tools[t], *WARM_UP, str(copies[t])], env=envs[t], check=True,
                                   stdout=subprocess.DEVNULL)
                elif case == "rm1borrow":  # not timed: a command on the source (read-only)
                    subprocess.run([tools[t], *WARM_UP, str(src)], env=envs[t], check=True,
                                   stdout=subprocess.DEVNULL)
            res = run_measured(commands(case, t, copies[t], names1, names100, tools), envs[t], report)
            res.update(round=r, position=order.index(t))
            runs[t].append(res)
            status = "ok" if res["rc"] == 0 else f"FAILED rc={res['rc']}: {res['stderr'].strip()[-300:]}"
            log(f"    {case:6} round {r + 1}/{rounds} {t:9} {res['wall']:8.3f} s  cpu {res['cpu']:7.2f} s  "
                f"rss {res['rss_kib'] / MIB_KIB:6.0f} MiB  load {res['load1']:.2f}  {status}")
        left: dict[str, set[str]] = {}
        for t in active:
            check: dict[str, Any] = {"round": r, "tool": t, "rc": runs[t][-1]["rc"]}
            if deleted:
                count, names = index_names(copies[t])
                still = sorted(set(deleted) & names)
                check.update(names_still_present=still[:5], names_still_present_count=len(still),
                             entries_left=count, entries_expected=src_count - len(deleted),
                             ok_index=not still and count == src_count - len(deleted))
            left[t] = blob_set(copies[t])
            check["blobs_removed"] = src_blobs - len(left[t])
            checks.append(check)
        if "ocilayout" in left and peer in left:
            only_ours = sorted(left["ocilayout"] - left[peer])
            only_peer = sorted(left[peer] - left["ocilayout"])
            checks.append({"round": r, "tool": f"ocilayout vs {peer}", "same_blobs": not only_ours and not only_peer,
                           "only_ocilayout": len(only_ours), "only_peer": len(only_peer),
                           "examples": (only_ours + only_peer)[:4]})
        for t in active:
            shutil.rmtree(copies[t])
        now = os.stat(src / "index.json")
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (src_stat.st_ino, src_stat.st_size, src_stat.st_mtime_ns):
            raise SystemExit(f"{src}/index.json changed during the run: a copy was not independent")
    return {"case": case, "label": label, "peer": peer, "source": str(src), "source_entries": src_count,
            "source_blobs": src_blobs, "deleted": deleted, "rounds": rounds,
            "rounds_slow": rounds_slow if case == "rm100" else rounds,
            "summary": {t: summarise(rs) for t, rs in runs.items()}, "runs": runs, "checks": checks}


def reset_cache(env: dict[str, str]) -> None:
    """An empty reference cache directory for the next ocilayout run."""
    directory = Path(env[CACHE_ENV])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)


# -- facts -----------------------------------------------------------------------------------


def first_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else f"? (rc {proc.returncode})"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False).stdout.strip()


def make_snapshot(workdir: Path, rev: str) -> tuple[str, Path]:
    """Extract `rev`'s ocilayout/ and schemas/ into the workdir; (full commit, directory)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if not commit:
        raise SystemExit(f"unknown revision {rev!r}")
    target = workdir / f"snapshot-{commit[:12]}"
    if not (target / "ocilayout" / "__init__.py").is_file():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "ocilayout", "schemas"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        subprocess.run([str(VENV_PYTHON), "-m", "compileall", "-q", str(tmp)], check=True)
        tmp.rename(target)
    return commit, target


def machine_facts(tools: dict[str, str], envs: dict[str, dict[str, str]]) -> dict[str, Any]:
    model, memory = "?", "?"
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    versions = {"ocilayout": first_line([tools["ocilayout"], "--version"], envs["ocilayout"])}
    for peer in ("skopeo", "umoci"):
        if peer in tools:
            versions[peer] = first_line([tools[peer], "--version"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": first_line(["nproc"]),
        "cpu": model,
        "memory": memory,
        "kernel": platform.release(),
        "python": first_line([str(VENV_PYTHON), "-c", "import sys; print(sys.version.split()[0])"]),
        "versions": versions,
        "head": git("rev-parse", "--short", "HEAD"),
        "uncommitted_package_changes": [line.strip() for line in
                                        git("status", "--short", "--", "ocilayout", "schemas").splitlines()],
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- output ----------------------------------------------------------------------------------


def secs(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def ratio_text(ours: float, theirs: float, peer: str) -> str:
    ratio = ours / theirs
    text = f"{ratio:.3f}" if ratio < 0.1 else f"{ratio:.2f}"
    return f"{text} ({peer} {theirs / ours:.1f}× slower)" if ratio < 1 else f"{text} ({peer} {ours / theirs:.2f}× faster)"


def short_names(names: list[str]) -> str:
    return " ".join(names) if len(names) <= 3 else f"{' '.join(names[:3])} … {names[-1]} ({len(names)} names)"


def command_text(case: str, tool: str, r: dict[str, Any], tools: dict[str, str]) -> str:
    names1, names100 = r["names1"], r["names100"]
    steps = commands(case, tool, Path("COPY"), names1, names100, tools)
    if case == "rm100" and tool == "ocilayout":
        return f"`{shlex.join(steps[0][:4])} {short_names(names100)}`"
    if case == "rm100" and tool == "skopeo":
        return f"`{tools['skopeo']} delete oci:COPY:NAME` for each NAME of the 100, sequentially, in one `sh -c 'set -e; …'`"
    return " then ".join(f"`{shlex.join(s)}`" for s in steps) + (" (one `sh -c 'set -e; …'`)" if len(steps) > 1 else "")


def render_size(size: dict[str, Any], tools: dict[str, str], skipped: list[str]) -> list[str]:
    images = size["images"]
    out = [f"## {images:,} images", ""]
    info = size["layout"]
    out.append(f"Layout: `{info.get('generator_command', '?')}` → {info.get('generator_output', '?')}; "
               f"orphans variant (gc, rm+gc): {size['orphan_entries']:,} entries dropped from index.json "
               f"(i % {ORPHAN_EVERY} == {ORPHAN_AT}), same {size['orphans_blobs']:,} blob files, so the dropped images' "
               f"own blobs are garbage; "
               f"blob mtimes {BACKDATE_S // 86400} days in the past.")
    slow = f"; 100 skopeo deletes: {size['rounds_slow']} round(s) only (--rounds-slow)" \
        if size["rounds_slow"] < size["rounds"] and "rm100" in size["cases"] else ""
    out.append(f"Rounds: {size['rounds']}{slow}. Wall: {size['elapsed_s'] / 60:.1f} min for this size.")
    if skipped:
        out.append(f"Skipped (binary missing): {', '.join(skipped)}.")
    out += ["", "| case | tool | runs | median s | min s | CPU s (median) | peak RSS MiB | load1 (median) | ratio to peer (ocilayout / peer, medians) |",
            "|---|---|---|---|---|---|---|---|---|"]
    notes: list[str] = []
    for case in CASES:
        c = size["cases"].get(case)
        if c is None:
            continue
        peer = c["peer"]
        ours = c["summary"].get("ocilayout")
        theirs = c["summary"].get(peer)
        for tool in ("ocilayout", peer):
            if tool not in c["summary"]:
                continue
            s = c["summary"][tool]
            name = "ocilayout" if tool == "ocilayout" else (
                "skopeo ×100" if case == "rm100" else "umoci rm + gc" if case == "rmgc" else tool)
            if s is None:
                out.append(f"| {c['label']} | {name} | 0 | **all runs failed** | | | | | |")
                continue
            runs = f"{s['runs']}" + (f" (+{s['failed']} failed)" if s["failed"] else "")
            ratio = ratio_text(ours["median"], theirs["median"], peer) if tool == "ocilayout" and ours and theirs else ""
            out.append(f"| {c['label']} | {name} | {runs} | {secs(s['median'])} | {secs(s['min'])} | "
                       f"{secs(s['cpu_median'])} | {s['rss_mib']:.0f} | {s['load1_median']:.2f} | {ratio} |")
        bad_index = [k for k in c["checks"] if k.get("ok_index") is False]
        differ = [k for k in c["checks"] if k.get("same_blobs") is False]
        for k in bad_index:
            out.append(f"| {c['label']} | **WARNING** | round {k['round'] + 1} | {k['tool']}: "
                       f"{k['names_still_present_count']} deleted name(s) still in index.json, "
                       f"{k['entries_left']} entries left (expected {k['entries_expected']}) | | | | | |")
        for k in differ:
            out.append(f"| {c['label']} | **WARNING** | round {k['round'] + 1} | blob files differ {k['tool']}: "
                       f"{k['only_ocilayout']} only in ocilayout's copy, {k['only_peer']} only in {peer}'s | | | | | |")
        compared = [k for k in c["checks"] if "same_blobs" in k]
        removed = {t: sorted({k["blobs_removed"] for k in c["checks"] if k["tool"] == t}) for t in c["summary"]}
        note = f"- {c['label']}: blob files removed " + ", ".join(f"{t} {'/'.join(map(str, v))}" for t, v in removed.items())
        if c["deleted"]:
            note += f"; deleted name(s) gone from index.json in every run: {'yes' if not bad_index else '**NO**'}"
        if compared:
            note += (f"; same blob files left as {peer} in {len(compared) - len(differ)}/{len(compared)} rounds"
                     + ("" if not differ else " **(WARNING)**"))
        notes.append(note)
    out += ["", "Checks:", *notes, "", "Targets (medians):"]
    out += targets(size)
    out += ["", "Commands (COPY = the fresh copy of the layout):"]
    for case in CASES:
        c = size["cases"].get(case)
        if c is None:
            continue
        for tool in c["summary"]:
            out.append(f"- {c['label']}, {tool}: {command_text(case, tool, size, tools)}")
    failures = [(case, t, r) for case, c in size["cases"].items() for t, rs in c["runs"].items() for r in rs if r["rc"]]
    if failures:
        out += ["", "Failed runs:"]
        out += [f"- {case} {t} round {r['round'] + 1}: rc {r['rc']}: `{r['stderr'].strip()[-300:]}`" for case, t, r in failures]
    return out + [""]


def targets(size: dict[str, Any]) -> list[str]:
    out = []
    cases = size["cases"]

    def med(case: str, tool: str) -> float | None:
        s = cases.get(case, {}).get("summary", {}).get(tool)
        return s["median"] if s else None

    ours, theirs = med("rm1", "ocilayout"), med("rm1", "skopeo")
    if ours and theirs:
        ratio = ours / theirs
        out.append(f"- rm of 1 ≤ {RM1_MAX_RATIO}× skopeo delete: {ratio:.2f}× — "
                   f"{'**met**' if ratio <= RM1_MAX_RATIO else '**not met**'}")
    ours, theirs = med("rm1warm", "ocilayout"), med("rm1warm", "skopeo")
    goal = RM1_WARM_MAX_RATIO.get(size["images"])
    if ours and theirs:
        ratio = ours / theirs
        verdict = ("**met**" if ratio <= goal else "**not met**") if goal else "(no issue 9 target at this size)"
        out.append(f"- issue 9: rm of 1, warm cache ≤ {goal}× skopeo delete: {ratio:.2f}× — {verdict}")
    cold = med("rm1", "ocilayout")
    if ours and cold:
        out.append(f"- rm of 1, warm cache / cold (cache filled by that run): {ours / cold:.2f}")
    uncached = med("rm1nocache", "ocilayout")
    if cold and uncached:
        out.append(f"- rm of 1, cold (filling the cache) / --no-cache: {cold / uncached:.2f}")
    ours, theirs = med("rm100", "ocilayout"), med("rm100", "skopeo")
    if ours and theirs:
        speedup = theirs / ours
        out.append(f"- rm of 100 ≥ {RM100_MIN_SPEEDUP:.0f}× faster than 100 skopeo deletes: {speedup:.1f}× — "
                   f"{'**met**' if speedup >= RM100_MIN_SPEEDUP else '**not met**'}")
    rss = {case: cases[case]["summary"]["ocilayout"]["rss_mib"] for case in CASES
           if case in cases and cases[case]["summary"].get("ocilayout")}
    if rss:
        worst = max(rss.values())
        verdict = ("**met**" if worst <= RSS_MAX_MIB else "**not met**") if size["images"] >= RSS_TARGET_IMAGES \
            else f"(target applies at {RSS_TARGET_IMAGES:,}; {'within' if worst <= RSS_MAX_MIB else 'above'} it here)"
        out.append(f"- peak RSS ≤ {RSS_MAX_MIB} MiB for rm and gc: "
                   + ", ".join(f"{case} {v:.0f} MiB" for case, v in rss.items()) + f" — {verdict}")
    return out or ["- (no comparable rows)"]


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    code = results["code"]
    out = ["# ocilayout vs skopeo and umoci (issue 8)", "",
           f"Command: `{results['command']}` (cwd `{results['cwd']}`)", "",
           f"- date: {m['date']}; ran {results.get('elapsed_s', 0) / 60:.1f} min",
           f"- code: `git -C {REPO} rev-parse --short HEAD` = {m['head']} at start; timed "
           + (f"commit {code['commit'][:12]} (snapshot via PYTHONPATH, `{code['imports']}`)" if code["commit"] != "worktree"
              else f"the working tree as it was during the run (`{code['imports']}`)")
           + (f"; uncommitted changes in the package at start: {', '.join(m['uncommitted_package_changes'])}"
              if m["uncommitted_package_changes"] else "; no uncommitted changes in the package at start"),
           (f"- machine: nproc {m['nproc']}, {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}, "
            f"Python {m['python']} (venv); load average at start {m['loadavg_start']}, at end {m.get('loadavg_end', '?')}"),
           "- tools: " + "; ".join(f"`{v}` ({results['tools'][t]})" for t, v in m["versions"].items()),
           "",
           ("Method: each run on a fresh `cp -al` copy with a real index.json (copy and `sync` not timed); per round "
            "each tool runs once, order flipped every round; wall = perf_counter around the process, CPU and "
            "peak RSS from GNU `/usr/bin/time` (sequences in one `sh -c`); medians over rounds."),
           ""]
    for size in results["sizes"]:
        out += render_size(size, results["tools"], results["skipped"])
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000", help="comma-separated image counts (default 10000)")
    parser.add_argument("--rounds", type=int, help="rounds per case (default 5 up to 10,000 images, else 3)")
    parser.add_argument("--rounds-slow", type=int,
                        help="rounds of the 100 sequential skopeo deletes (default: --rounds)")
    parser.add_argument("--only", default=",".join(DEFAULT_CASES), help=f"subset of {','.join(CASES)}")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"cached layouts, code snapshot and scratch copies (default {DEFAULT_WORKDIR})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", type=Path, default=DEFAULT_CLI, help=f"ocilayout console script (default {DEFAULT_CLI})")
    parser.add_argument("--skopeo", type=Path, default=DEFAULT_SKOPEO, help=f"default {DEFAULT_SKOPEO}")
    parser.add_argument("--umoci", type=Path, default=DEFAULT_UMOCI, help=f"default {DEFAULT_UMOCI}")
    parser.add_argument("--rev", default="HEAD",
                        help="time this commit's ocilayout/ (git archive into the workdir, PYTHONPATH); "
                             "'worktree' times the working tree as it is")
    parser.add_argument("--markdown", type=Path, help="write the result tables here")
    parser.add_argument("--json", type=Path, help="write every run here")
    parser.add_argument("--clean", action="store_true", help="delete the work directory at the end")
    args = parser.parse_args()
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    only = [c for c in CASES if c in set(args.only.split(","))]
    unknown = set(args.only.split(",")) - set(CASES)
    if unknown or not only:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {','.join(CASES)}")
    if not Path(TIME).is_file():
        raise SystemExit(f"{TIME} (GNU time) is missing: apt-get install time")
    if not os.access(args.cli, os.X_OK):
        raise SystemExit(f"ocilayout console script not found: {args.cli}")

    tools = {"ocilayout": str(args.cli)}
    skipped = []
    for peer, path in (("skopeo", args.skopeo), ("umoci", args.umoci)):
        if os.access(path, os.X_OK):
            tools[peer] = str(path)
        else:
            skipped.append(f"{peer} ({path})")
            log(f"*** {peer} not found at {path}: its rows are skipped ***")

    args.workdir.mkdir(parents=True, exist_ok=True)
    env_ours = dict(os.environ)
    if args.rev != "worktree":
        commit, snapshot = make_snapshot(args.workdir, args.rev)
        env_ours["PYTHONPATH"] = str(snapshot)
    else:
        commit = "worktree"
    env_ours[CACHE_ENV] = str(args.workdir / "refcache")  # emptied before each run (reset_cache)
    env_ours.pop("OCILAYOUT_NO_CACHE", None)
    envs = {"ocilayout": env_ours, "skopeo": dict(os.environ), "umoci": dict(os.environ)}
    imports = subprocess.run([str(VENV_PYTHON), "-c", "import ocilayout; print(ocilayout.__file__)"],
                             env=env_ours, capture_output=True, text=True, cwd="/", check=False).stdout.strip()
    results: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]), "cwd": os.getcwd(),
        "machine": machine_facts(tools, envs), "code": {"rev": args.rev, "commit": commit, "imports": imports},
        "tools": tools, "skipped": skipped, "sizes": [],
    }
    log(f"ocilayout at {commit} ({imports}); HEAD {results['machine']['head']}; tools {results['machine']['versions']}")
    run_dir = args.workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)

    def write() -> str:
        results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results["elapsed_s"] = time.perf_counter() - started
        text = render(results)
        if args.markdown:
            args.markdown.write_text(text)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        return text

    try:
        for images in sizes:
            size_start = time.perf_counter()
            rounds = args.rounds or (5 if images <= 10_000 else 3)
            rounds_slow = min(args.rounds_slow or rounds, rounds)
            log(f"N={images:,}: rounds {rounds}, 100 skopeo deletes {rounds_slow}")
            plain, orphans, info = prepare_layouts(args.workdir, images, args.seed)
            orphan_count = index_names(plain)[0] - index_names(orphans)[0]
            names1, names100 = rm_targets(images, 1), rm_targets(images, min(100, images))
            log("  warming the page cache")
            warm(plain)
            size: dict[str, Any] = {"images": images, "rounds": rounds, "rounds_slow": rounds_slow,
                                    "layout": info, "plain": str(plain), "orphans": str(orphans),
                                    "orphan_entries": orphan_count, "orphans_blobs": len(blob_set(orphans)),
                                    "names1": names1, "names100": names100, "cases": {}, "elapsed_s": 0.0}
            results["sizes"].append(size)
            for case in only:
                _, source, peer = CASE_INFO[case]
                tools_here = ["ocilayout"] + ([peer] if peer in tools else [])
                src = plain if source == "plain" else orphans
                size["cases"][case] = bench_case(case, src, tools_here, rounds, rounds_slow, run_dir,
                                                 names1, names100, tools, envs)
                size["elapsed_s"] = time.perf_counter() - size_start
                write()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if args.clean:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
