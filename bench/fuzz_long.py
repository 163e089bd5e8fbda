#!/usr/bin/env python3
"""The fuzz targets of tests/test_fuzz.py, run long.

    .venv/bin/python bench/fuzz_long.py [--examples 20000] [--cli-examples 3000] [--seed 0] [--json OUT]

Each target runs with hypothesis (no example database, so every run explores afresh; `--seed`
makes a run repeatable). Prints, per target, the examples run, the seconds taken and the
failure (hypothesis's minimal failing example) if any. Exit status 1 when a target failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import test_fuzz  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="examples per parser target")
    parser.add_argument("--cli-examples", type=int, default=3000, help="examples for the graph and cli targets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="run only these targets")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = []
    failed = 0
    for name in args.only or list(test_fuzz.TARGETS):
        examples = args.cli_examples if name in ("graph", "cli") else args.examples
        counter = [0]
        started = time.perf_counter()
        error = None
        try:
            hypothesis_seed(args.seed)(lambda: test_fuzz.run_target(name, examples, counter, database=None))()
        except Exception as exc:  # noqa: BLE001 - report whatever hypothesis found
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
            failed += 1
        seconds = time.perf_counter() - started
        results.append({"target": name, "examples": counter[0], "seconds": round(seconds, 1), "failure": error})
        print(f"{name:18s} {counter[0]:7d} examples  {seconds:7.1f}s  {'ok' if error is None else 'FAIL: ' + error}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "results": results}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
