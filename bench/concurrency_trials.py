#!/usr/bin/env python3
"""Concurrency trials: several `ocilayout` processes changing one layout at once, and a
foreign writer (no lock) beside `ocilayout gc`.

    .venv/bin/python bench/concurrency_trials.py mixed   --repeats 5 --rounds 40 --images 2000
    .venv/bin/python bench/concurrency_trials.py foreign --repeats 5 --images 500 --count 40 [--grace 1h|0] [--backdate] [--mode rename|inplace] [--against gc|rm]

`mixed`: 4 workers run at once, each a sequence of `--rounds` real CLI processes chosen at
random among tag, untag, rm and gc --grace 0 (a third of them with --lock-timeout 0.05 to
provoke lock timeouts). The images are split: worker k owns the images i with i % 5 == k and
may untag/rm only names it owns; images with i % 5 == 4 are shared tag sources nobody removes.
Each worker tags with names unique to it (`w<k>/n<round>`) and keeps a model of the names it
controls, applying an operation to the model only when the process exited 0 (exit 6, lock
timeout, must leave the layout unchanged). Afterwards the layout's names must be exactly the
union of the models, each on the digest its model says (no entry lost or resurrected); every
blob index.json reaches must exist; every process ended 0 or 6 with an `error:` line about
the lock; and `gc --grace 0` must leave exactly the reachable blobs.

`foreign`: a plain Python process (it does not import ocilayout and takes no lock) writes
`--count` new images -- layer, config and manifest blobs first, then a rewrite of index.json
(atomic rename, or in place with `--mode inplace`) -- while `ocilayout gc --grace G` (or
`ocilayout rm` of the layout's own images, `--against rm`) runs in a loop beside it. Afterwards:
every entry it added is present and every blob index.json reaches exists. With the default
grace (1h) this must hold; `--grace 0`, `--backdate` (the writer sets its blobs' mtime two
hours back, as `cp -p` or an unpacked archive would) and `--against rm` measure the known
limits documented in docs/reliability.md.

Exit status 1 when a trial that must hold failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reliability_common as rc  # noqa: E402

WORKERS = 4
SHORT_TIMEOUT = "0.05"


# -- mixed ocilayout processes ------------------------------------------------------------------


@dataclass
class MixedResult:
    commands: Counter = field(default_factory=Counter)
    exit_codes: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _worker(
    k: int, root: Path, rounds: int, seed: int, model: dict[str, str], shared: dict[str, str], out: MixedResult,
    lock: threading.Lock,
) -> None:
    rng = random.Random(seed * 1000 + k)
    for r in range(rounds):
        op = rng.choices(["tag", "untag", "rm", "gc"], weights=[35, 15, 30, 20])[0]
        if op != "gc" and op != "tag" and not model:
            op = "tag"
        extra = ["--lock-timeout", SHORT_TIMEOUT] if rng.random() < 1 / 3 else []
        if op == "tag":
            pool = sorted(model) + sorted(shared)
            source = rng.choice(pool)
            name = f"w{k}/n{r}"
            args = ["tag", root, source, name, *extra]
            digest = model.get(source) or shared[source]
        elif op in ("untag", "rm"):
            name = rng.choice(sorted(model))
            args = [op, root, name, *extra]
        else:
            args = ["gc", root, "--grace", "0", "-q", *extra]
        result = subprocess.run(rc.ocilayout_argv(*args), capture_output=True, text=True, env=rc.cli_env(), timeout=600)
        with lock:
            out.commands[op] += 1
            out.exit_codes[result.returncode] += 1
        if result.returncode == 0:
            if op == "tag":
                model[name] = digest
            elif op in ("untag", "rm"):
                model.pop(name)
        elif result.returncode == 6:
            lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            if len(lines) != 1 or "locked" not in lines[0] or "Traceback" in result.stderr:
                with lock:
                    out.problems.append(f"worker {k} {op}: exit 6 without one clear lock line: {result.stderr!r}")
        else:
            with lock:
                out.problems.append(f"worker {k} {' '.join(map(str, args[:1] + args[2:]))}: exit {result.returncode}: "
                                    f"{result.stderr.strip()[-300:]}")


def mixed_trial(root: Path, images: int, rounds: int, seed: int) -> MixedResult:
    """One trial on a fresh layout at `root` (created here)."""
    rc.generate.make_bench_layout(root, images, seed=seed)
    initial = {name: digests[0] for name, digests in rc.names_of(root).items()}
    models: list[dict[str, str]] = [{} for _ in range(WORKERS)]
    shared: dict[str, str] = {}
    for i in range(images):
        name = rc.generate.bench_entry_name(i)
        (shared if i % 5 == WORKERS else models[i % 5])[name] = initial[name]
    out = MixedResult()
    lock = threading.Lock()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=_worker, args=(k, root, rounds, seed, models[k], shared, out, lock))
        for k in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.seconds = time.perf_counter() - started

    expected = dict(shared)
    for model in models:
        expected.update(model)
    actual = rc.names_of(root)
    lost = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    wrong = sorted(n for n in set(expected) & set(actual) if actual[n] != [expected[n]])
    if lost:
        out.problems.append(f"{len(lost)} names lost: {lost[:5]}")
    if extra:
        out.problems.append(f"{len(extra)} names present that were removed: {extra[:5]}")
    if wrong:
        out.problems.append(f"{len(wrong)} names on the wrong digest or repeated: {wrong[:5]}")
    problems, _, _ = rc.layout_problems(root)
    out.problems.extend(problems)
    follow = rc.run_cli("gc", root, "--grace", "0", "-q")
    if follow.returncode != 0:
        out.problems.append(f"final gc exited {follow.returncode}: {follow.stderr[-300:]}")
    out.problems.extend(rc.minimal_problems(root))
    return out


# -- the foreign writer -------------------------------------------------------------------------


def foreign_writer(
    root: Path, count: int, mode: str, seed: int, backdate: bool, gap: float = 0.2
) -> list[tuple[str, list[str]]]:
    """Plain Python, no ocilayout, no lock: blobs first, then index.json. Returns what it wrote."""
    rng = random.Random(seed)
    written: list[tuple[str, list[str]]] = []
    old = time.time() - 7200

    def put(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = root / "blobs" / "sha256" / digest[7:]
        with open(path, "wb") as handle:
            handle.write(data)
        if backdate:
            os.utime(path, (old, old))
        return {"digest": digest, "size": len(data)}

    for i in range(count):
        layer = put(rng.randbytes(200)) | {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
        config = put(json.dumps({"architecture": "amd64", "os": "linux", "created": f"2024-03-01T00:00:{i % 60:02d}Z",
                                 "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
        config["mediaType"] = "application/vnd.oci.image.config.v1+json"
        manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "config": config, "layers": [layer]}).encode())
        time.sleep(rng.uniform(0, gap))  # a real writer takes a while between blobs and index
        name = f"foreign/n{i}"
        for attempt in range(200):
            try:
                index = json.loads((root / "index.json").read_bytes())
                break
            except ValueError:  # caught another in-place writer mid-write; never happens with rename
                time.sleep(0.01)
        entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
                 "annotations": {rc.REF_NAME: name}}
        index["manifests"].append(entry)
        data = json.dumps(index, separators=(",", ":")).encode()
        if mode == "rename":
            tmp = root / f"index.json.foreign-{os.getpid()}"
            tmp.write_bytes(data)
            os.replace(tmp, root / "index.json")
        else:
            with open(root / "index.json", "wb") as handle:
                handle.write(data)
        written.append((name, [manifest["digest"], config["digest"], layer["digest"]]))
    return written


@dataclass
class ForeignResult:
    runs: int = 0
    exit_codes: Counter = field(default_factory=Counter)
    lost_entries: int = 0
    lost_blobs: int = 0
    missing_reachable: int = 0
    problems: list[str] = field(default_factory=list)


def foreign_trial(root: Path, images: int, count: int, mode: str, grace: str, backdate: bool, against: str,
                  seed: int, gap: float = 0.2) -> ForeignResult:
    rc.generate.make_bench_layout(root, images, seed=seed)
    names = [rc.generate.bench_entry_name(i) for i in range(images)]
    rng = random.Random(seed)
    rng.shuffle(names)
    out = ForeignResult()
    report = root.parent / f"{root.name}.foreign.json"
    writer = subprocess.Popen(
        [sys.executable, __file__, "foreign-writer", str(root), str(count), mode, str(seed), str(int(backdate)),
         str(report), str(gap)],
        env=rc.cli_env(),
    )
    while writer.poll() is None:
        if against == "gc":
            args = ["gc", root, "--grace", grace, "-q"]
        else:
            args = ["rm", root, names.pop() if names else "none", "-q"]
        result = subprocess.run(rc.ocilayout_argv(*args), capture_output=True, text=True, env=rc.cli_env(), timeout=600)
        out.runs += 1
        out.exit_codes[result.returncode] += 1
        if "Traceback" in result.stderr:
            out.problems.append(f"traceback from {args[0]}: {result.stderr[-300:]}")
    if writer.returncode != 0:
        out.problems.append(f"foreign writer failed ({writer.returncode})")
        return out
    written = json.loads(report.read_text())
    present = rc.names_of(root)
    blobs = rc.blob_files(root)[0]
    for name, digests in written:
        if name not in present:
            out.lost_entries += 1
        out.lost_blobs += sum(1 for d in digests if d not in blobs)
    walk = rc.independent_walk(root)
    out.missing_reachable = len(walk.missing)
    return out


# -- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("mixed")
    m.add_argument("--repeats", type=int, default=5)
    m.add_argument("--rounds", type=int, default=40)
    m.add_argument("--images", type=int, default=2000)
    m.add_argument("--seed", type=int, default=1)
    f = sub.add_parser("foreign")
    f.add_argument("--repeats", type=int, default=5)
    f.add_argument("--images", type=int, default=500)
    f.add_argument("--count", type=int, default=40)
    f.add_argument("--grace", default="1h")
    f.add_argument("--mode", choices=["rename", "inplace"], default="rename")
    f.add_argument("--backdate", action="store_true")
    f.add_argument("--against", choices=["gc", "rm"], default="gc")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--gap", type=float, default=0.2, help="writer's longest pause between its blobs and index.json")
    w = sub.add_parser("foreign-writer")
    for name in ("root", "count", "mode", "seed", "backdate", "report", "gap"):
        w.add_argument(name)
    for p in (m, f):
        p.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    if args.what == "foreign-writer":
        written = foreign_writer(Path(args.root), int(args.count), args.mode, int(args.seed), bool(int(args.backdate)),
                                 float(args.gap))
        Path(args.report).write_text(json.dumps(written))
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="ocilayout-conc-", dir=rc.scratch_root()))
    results = []
    failures = 0
    try:
        for repeat in range(args.repeats):
            root = scratch / f"trial-{repeat}"
            if args.what == "mixed":
                r = mixed_trial(root, args.images, args.rounds, args.seed + repeat)
                failures += bool(r.problems)
                print(f"mixed trial {repeat}: {sum(r.commands.values())} commands {dict(r.commands)} "
                      f"exit codes {dict(r.exit_codes)} in {r.seconds:.1f}s: "
                      f"{'ok' if not r.problems else 'FAIL ' + '; '.join(r.problems)}", flush=True)
                results.append({"commands": dict(r.commands), "exit_codes": dict(r.exit_codes),
                                "seconds": round(r.seconds, 1), "problems": r.problems})
            else:
                r = foreign_trial(root, args.images, args.count, args.mode, args.grace, args.backdate, args.against,
                                  args.seed + repeat, args.gap)
                bad = bool(r.problems or r.lost_entries or r.lost_blobs or r.missing_reachable)
                failures += bad
                print(f"foreign trial {repeat} (grace {args.grace}, {args.mode}, backdate={args.backdate}, "
                      f"against {args.against}): {r.runs} ocilayout runs, exit codes {dict(r.exit_codes)}, "
                      f"entries lost {r.lost_entries}, foreign blobs lost {r.lost_blobs}, "
                      f"reachable blobs missing {r.missing_reachable} {'; '.join(r.problems)}", flush=True)
                results.append({"runs": r.runs, "exit_codes": dict(r.exit_codes), "lost_entries": r.lost_entries,
                                "lost_blobs": r.lost_blobs, "missing_reachable": r.missing_reachable,
                                "problems": r.problems})
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.what}: {args.repeats} trials, {failures} with losses or problems")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "trials": results,
                                         "failures": failures}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
