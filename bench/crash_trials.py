#!/usr/bin/env python3
"""Crash trials: SIGKILL real `ocilayout rm|gc|tag|untag` processes at random instants.

    .venv/bin/python bench/crash_trials.py --trials 200 --images 3000 [--seed 1] [--work DIR]

One layout of `--images` images is generated (fixtures/generate.py bench layout), plus a copy
with every 10th entry dropped from index.json (orphans for gc). A pool of command instances
(rm of a batch of names, rm --filter, rm of one name, gc --grace 0, tag, tag that moves a name,
untag) is run once each, uninterrupted, on a private copy: that gives each instance's final
index.json, final blob set and running time T. Each trial then copies the base layout
(`cp -a`), starts the instance, sleeps a random delay and sends SIGKILL. T is the uninterrupted running time, C when that run
was first seen changing the layout (index.json replaced, or its first blob deleted; polled every
millisecond). A third of the kills come U[0, T] after the start; a third U[C - 0.1 s, T] after
the start; a third U[0, T - C] after the trial itself is seen making its first change (so the
short write-and-delete phase is hit often). Afterwards:

- index.json parses, validates against the project's index schema, and is byte-for-byte
  either the original or the uninterrupted run's result (atomic replacement);
- every blob index.json reaches exists (independent JSON walk), every file under blobs/ is
  named by a valid digest and hashes to it (no temporary file under a blob name), files in the
  layout root other than the layout's own are only `.ocilayout-tmp-*`;
- the blob set lies between the uninterrupted run's final set and the original set (nothing
  deleted that the whole command would not have deleted);
- then `ocilayout gc --grace 0` exits 0 and leaves exactly the reachable blobs and no
  temporary file.

Prints one line per trial and a summary; exit status 1 when any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reliability_common as rc  # noqa: E402

KINDS = ("rm-batch", "rm-filter", "rm-one", "gc", "tag", "tag-move", "untag")


@dataclass
class Instance:
    kind: str
    base: Path
    args: list[str]  # after the layout path
    ref_index: bytes = b""
    ref_blobs: set[str] = field(default_factory=set)
    seconds: float = 0.0
    change_at: float | None = None  # seconds after start when the first change was seen (index or blob)

    def argv(self, layout: Path) -> list[str]:
        verb, *rest = self.args
        return rc.ocilayout_argv(verb, layout, *rest)


@dataclass
class Trial:
    number: int
    kind: str
    delay: float
    phase: str
    returncode: int | None
    problems: list[str]


@dataclass
class Summary:
    trials: int = 0
    kills: int = 0
    failures: int = 0
    by_kind: Counter = field(default_factory=Counter)
    failures_by_kind: Counter = field(default_factory=Counter)
    phases: Counter = field(default_factory=Counter)
    images: int = 0
    blobs: int = 0
    seconds: float = 0.0
    failed: list[Trial] = field(default_factory=list)
    instance_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "trials": self.trials,
            "killed_mid_run": self.kills,
            "failures": self.failures,
            "images": self.images,
            "blobs": self.blobs,
            "seconds": round(self.seconds, 1),
            "by_kind": dict(self.by_kind),
            "failures_by_kind": dict(self.failures_by_kind),
            "phases": dict(self.phases),
            "instance_seconds": self.instance_seconds,
            "failed": [t.__dict__ for t in self.failed],
        }


def prepare(work: Path, images: int, seed: int) -> dict[str, Path]:
    """The two base layouts: `plain` (minimal) and `orphans` (10% of entries dropped)."""
    plain = work / "base-plain"
    rc.generate.make_bench_layout(plain, images, seed=seed)
    orphans = work / "base-orphans"
    rc.copy_layout(plain, orphans)
    rc.make_orphans(orphans)
    return {"plain": plain, "orphans": orphans}


def make_instances(bases: dict[str, Path], images: int, rng: random.Random, per_kind: int) -> list[Instance]:
    names = [rc.generate.bench_entry_name(i) for i in range(images)]
    instances = []
    for kind in KINDS:
        for variant in range(per_kind):
            if kind == "rm-batch":
                batch = rng.sample(names, min(len(names), rng.randint(max(2, images // 60), max(3, images // 15))))
                instances.append(Instance(kind, bases["plain"], ["rm", *batch, "-q"]))
            elif kind == "rm-filter":
                digit = rng.randrange(10)
                instances.append(Instance(kind, bases["plain"], ["rm", "--filter", f"reference=img-*{digit}", "-q"]))
            elif kind == "rm-one":
                instances.append(Instance(kind, bases["plain"], ["rm", rng.choice(names)]))
            elif kind == "gc":
                instances.append(Instance(kind, bases["orphans"], ["gc", "--grace", "0", "-q"]))
            elif kind == "tag":
                instances.append(Instance(kind, bases["plain"], ["tag", rng.choice(names), f"crash/new-{variant}"]))
            elif kind == "tag-move":
                source, target = rng.sample(names, 2)
                instances.append(Instance(kind, bases["plain"], ["tag", source, target]))
            elif kind == "untag":
                instances.append(Instance(kind, bases["plain"], ["untag", *rng.sample(names, 3)]))
    return instances


def reference_run(instance: Instance, scratch: Path, first_doomed: Path | None = None) -> None:
    """Run the instance to completion on a private copy; remember its result, its duration and
    when it first changed something (polled every millisecond: index.json's inode, and the
    blob it deletes first when `first_doomed` names it)."""
    rc.copy_layout(instance.base, scratch)
    index = scratch / "index.json"
    inode = os.stat(index).st_ino
    started = time.perf_counter()
    # stdout to /dev/null and stderr to a file: a pipe nobody reads while polling would fill up
    # (gc -q prints a line per blob) and block the command.
    errors = tempfile.TemporaryFile()
    process = subprocess.Popen(instance.argv(scratch), stdout=subprocess.DEVNULL, stderr=errors, env=rc.cli_env())
    change_at = None
    while process.poll() is None:
        if change_at is None:
            try:
                changed = os.stat(index).st_ino != inode
            except FileNotFoundError:
                changed = True
            if changed or (first_doomed is not None and not os.path.lexists(first_doomed)):
                change_at = time.perf_counter() - started
        time.sleep(0.001)
    instance.seconds = time.perf_counter() - started
    process.wait()
    errors.seek(0)
    stderr = errors.read().decode(errors="replace")
    errors.close()
    if process.returncode != 0:
        raise RuntimeError(f"reference run of {instance.args[:3]} failed ({process.returncode}): {stderr}")
    instance.change_at = change_at
    instance.ref_index = index.read_bytes()
    instance.ref_blobs = rc.blob_files(scratch)[0]
    shutil.rmtree(scratch)


def run_trial(
    number: int,
    instance: Instance,
    layout: Path,
    delay: float,
    originals: dict[Path, tuple[bytes, set[str]]],
    triggered: bool = False,
) -> Trial:
    """Kill after `delay` seconds; or, when `triggered`, `delay` seconds after the first change
    to the layout is seen (index.json's inode, or the first blob the command deletes)."""
    original_index, original_blobs = originals[instance.base]
    rc.copy_layout(instance.base, layout)
    index = layout / "index.json"
    inode = os.stat(index).st_ino
    doomed = sorted(original_blobs - instance.ref_blobs)
    first_doomed = rc.blob_path(layout, doomed[0]) if doomed else None
    started = time.perf_counter()
    errors = tempfile.TemporaryFile()
    process = subprocess.Popen(instance.argv(layout), stdout=subprocess.DEVNULL, stderr=errors, env=rc.cli_env())
    if triggered:
        while process.poll() is None:
            try:
                if os.stat(index).st_ino != inode or (first_doomed is not None and not first_doomed.exists()):
                    break
            except FileNotFoundError:
                break
            time.sleep(0.0005)
    time.sleep(delay)
    process.kill()  # SIGKILL; a no-op when it already exited
    delay = time.perf_counter() - started
    process.wait(timeout=600)
    errors.seek(0)
    stderr = errors.read()
    errors.close()
    problems: list[str] = []
    if process.returncode not in (0, -9):
        problems.append(f"command exited {process.returncode}: {stderr.decode(errors='replace')[-300:]}")

    invariants, walk, blobs = rc.layout_problems(layout)
    problems.extend(invariants)
    index_now = (layout / "index.json").read_bytes()
    if index_now == original_index:
        index_state = "original"
    elif index_now == instance.ref_index:
        index_state = "new"
    else:
        index_state = "other"
        problems.append("index.json is neither the original nor the completed command's result")
    if not blobs <= original_blobs:
        problems.append(f"{len(blobs - original_blobs)} blobs appeared that were not there before")
    lost = instance.ref_blobs - blobs
    if lost:
        problems.append(f"{len(lost)} blobs deleted that the uninterrupted command keeps, e.g. {sorted(lost)[:2]}")
    temps = rc.temp_files(layout)
    phase = _phase(instance, process.returncode, index_state, blobs, original_blobs, bool(temps))

    follow = rc.run_cli("gc", layout, "--grace", "0", "-q", timeout=600)
    if follow.returncode != 0 or "Traceback" in follow.stderr:
        problems.append(f"follow-up gc exited {follow.returncode}: {follow.stderr[-300:]}")
    problems.extend(rc.minimal_problems(layout))
    shutil.rmtree(layout)
    return Trial(number, instance.kind, round(delay, 3), phase, process.returncode, problems)


def _phase(instance: Instance, code: int | None, index_state: str, blobs: set[str], original: set[str], temps: bool) -> str:
    if code == 0:
        return "finished before the kill"
    if index_state == "original":
        if blobs != original:
            return "deleting blobs" if blobs != instance.ref_blobs else "all blobs deleted, not exited"
        return "killed with a temp index.json" if temps else "killed before any change"
    if blobs == original:
        return "index.json replaced, no blob deleted yet"
    if blobs == instance.ref_blobs:
        return "all blobs deleted, not exited"
    return "index.json replaced, deleting blobs"


def _delay(instance: Instance, number: int, rng: random.Random) -> tuple[float, bool]:
    """(delay, triggered): a third of the kills anywhere in [0, T]; a third in [C - 0.1 s, T];
    a third triggered: U[0, T - C] after the first change is seen (T: the uninterrupted running
    time, C: when it first changed the layout), so that kills land while it writes and deletes."""
    total = instance.seconds
    if number % 3 == 0 or instance.change_at is None:
        return rng.uniform(0, total), False
    if number % 3 == 1:
        return rng.uniform(max(0.0, instance.change_at - 0.1), total), False
    return rng.uniform(0, max(0.0, total - instance.change_at)), True


def run_trials(
    trials: int,
    images: int,
    seed: int,
    work: Path,
    *,
    per_kind: int = 3,
    min_kills: bool = False,
    log=print,
) -> Summary:
    """Run trials; with `min_kills`, until `trials` of them were killed mid-run (at most 5x
    as many attempts), counting the ones that finished first as extra checked runs."""
    started = time.perf_counter()
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    bases = prepare(work, images, seed)
    summary = Summary(images=images)
    originals = {}
    for base in bases.values():
        originals[base] = ((base / "index.json").read_bytes(), rc.blob_files(base)[0])
    summary.blobs = len(originals[bases["plain"]][1])
    instances = make_instances(bases, images, rng, per_kind)
    for position, instance in enumerate(instances):
        reference_run(instance, work / f"reference-{position}")
        doomed = sorted(originals[instance.base][1] - instance.ref_blobs)
        if doomed and instance.change_at is None:  # gc: watch the first blob it deletes (in name order)
            reference_run(instance, work / f"reference-{position}", work / f"reference-{position}" / "blobs"
                          / "sha256" / doomed[0].partition(":")[2])
    for kind in KINDS:
        times = [i.seconds for i in instances if i.kind == kind]
        changes = [i.change_at for i in instances if i.kind == kind and i.change_at is not None]
        summary.instance_seconds[kind] = round(sum(times) / len(times), 3)
        if changes:
            summary.instance_seconds[kind + " (first change)"] = round(sum(changes) / len(changes), 3)
    log(f"prepared {images} images, {summary.blobs} blobs, {len(instances)} command instances "
        f"in {time.perf_counter() - started:.1f}s; mean uninterrupted times {summary.instance_seconds}")
    number = 0
    while (summary.kills if min_kills else summary.trials) < trials and number < 5 * trials:
        instance = instances[number % len(instances)] if number < len(instances) else rng.choice(instances)
        delay, triggered = _delay(instance, number, rng)
        trial = run_trial(number, instance, work / "trial", delay, originals, triggered)
        number += 1
        if trial.returncode == 0:
            # It ran faster than its reference run (the machine is shared): aim earlier next time.
            instance.seconds *= 0.93
            if instance.change_at is not None:
                instance.change_at *= 0.93
        else:
            summary.kills += 1
        summary.trials += 1
        summary.by_kind[trial.kind] += 1
        summary.phases[trial.phase] += 1
        status = "ok" if not trial.problems else "FAIL " + "; ".join(trial.problems)
        if trial.problems:
            summary.failures += 1
            summary.failures_by_kind[trial.kind] += 1
            summary.failed.append(trial)
        log(f"trial {number:4d} {trial.kind:9s} delay {trial.delay:6.3f}s  {trial.phase:42s} {status}")
    summary.seconds = time.perf_counter() - started
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-kind", type=int, default=3, help="command instances per kind")
    parser.add_argument("--min-kills", action="store_true",
                        help="count only trials whose command was killed mid-run toward --trials")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new one under /dev/shm)")
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args(argv)
    scratch = args.work or Path(tempfile.mkdtemp(prefix="ocilayout-crash-", dir=rc.scratch_root()))
    try:
        summary = run_trials(args.trials, args.images, args.seed, scratch, per_kind=args.per_kind,
                             min_kills=args.min_kills)
    finally:
        if args.work is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\ncrash trials: {summary.trials} trials ({summary.kills} killed mid-run), {summary.failures} failures, "
          f"{summary.images} images / {summary.blobs} blobs, {summary.seconds:.0f}s")
    print("by kind:", dict(summary.by_kind))
    print("where the kill landed:", dict(summary.phases))
    if args.json:
        args.json.write_text(json.dumps(summary.as_dict(), indent=2))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
