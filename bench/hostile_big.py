#!/usr/bin/env python3
"""Big hostile index.json files, too slow or too large for CI: time and peak memory.

    .venv/bin/python bench/hostile_big.py [--json OUT]

Layouts (each the `single` fixture with a replaced index.json):
- `pad-100MiB`: a real ~100 MiB index.json, one entry plus a 100 MiB string in an unknown field
  (under the 128 MiB cap: it must work, and a rewrite must keep the unknown field);
- `entries-300k`: a real ~100 MiB index.json of 300,000 entries, all naming one image;
- `real-200MiB`: a real 200 MiB index.json (over the cap: refused, exit 5);
- `sparse-1GiB`: a sparse file of 1 GiB apparent size (refused from its size, exit 5).
Each goes through ls -q, verify -q, rm --dry-run, rm (one name) and gc --grace 0, every command a
separate process; prints exit code, seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reliability_common as rc  # noqa: E402

REF_NAME = rc.REF_NAME
RUNNER = (
    "import sys\n"
    "from ocilayout.cli import main\n"
    "sys.argv = ['ocilayout', *sys.argv[1:]]\n"
    "code = 0\n"
    "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
    "print('RESULT', code, [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr)\n"
)


def build(kind: str, root: Path) -> None:
    rc.generate.build_fixture("single", root)
    index = json.loads((root / "index.json").read_bytes())
    entry = index["manifests"][0]
    if kind == "pad-100MiB":
        index["x-padding"] = "p" * (100 << 20)
        index["manifests"].append({**entry, "annotations": {REF_NAME: "second"}})
        (root / "index.json").write_text(json.dumps(index))
    elif kind == "entries-300k":
        index["manifests"] = [{**entry, "annotations": {REF_NAME: f"name-{i:06d}", "x-note": "n" * 200}}
                              for i in range(300_000)]
        (root / "index.json").write_text(json.dumps(index, separators=(",", ":")))
    elif kind == "real-200MiB":
        index["x-padding"] = "p" * (200 << 20)
        (root / "index.json").write_text(json.dumps(index))
    elif kind == "sparse-1GiB":
        with open(root / "index.json", "r+b") as handle:
            handle.truncate(1 << 30)


def measure(args: list[str]) -> tuple[int, float, int, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True,
                            env=rc.cli_env(), timeout=1800)
    seconds = time.perf_counter() - started
    lines = result.stderr.splitlines()
    _, code, peak = next(line for line in reversed(lines) if line.startswith("RESULT")).split()
    errors = [line for line in lines if line.startswith("error:")]
    return int(code), seconds, int(peak) // 1024, (errors[0][:120] if errors else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="ocilayout-big-", dir=rc.scratch_root()))
    rows = []
    try:
        for kind in ("pad-100MiB", "entries-300k", "real-200MiB", "sparse-1GiB"):
            root = scratch / kind
            build(kind, root)
            size = (root / "index.json").stat().st_size
            reference = "second" if kind == "pad-100MiB" else ("name-000001" if kind == "entries-300k" else "latest")
            for command in (["ls", "-q"], ["verify", "-q"], ["rm", reference, "--dry-run", "-q"], ["rm", reference, "-q"],
                            ["gc", "--grace", "0", "-q"]):
                code, seconds, peak, error = measure([command[0], str(root), *command[1:]])
                row = {"layout": kind, "index_bytes": size, "command": " ".join(command), "exit": code,
                       "seconds": round(seconds, 2), "peak_rss_mib": peak, "error": error}
                rows.append(row)
                print(f"{kind:13s} {size / 2**20:7.1f} MiB  {row['command']:28s} exit {code}  {seconds:6.2f}s  "
                      f"{peak:5d} MiB  {error}", flush=True)
            if kind == "pad-100MiB":
                kept = json.loads((root / "index.json").read_bytes())
                ok = len(kept.get("x-padding", "")) == 100 << 20 and len(kept["manifests"]) == 1
                print(f"{kind}: unknown 100 MiB field kept by the rewrite: {ok}")
                rows.append({"layout": kind, "check": "unknown field kept after rm", "ok": ok})
            shutil.rmtree(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
