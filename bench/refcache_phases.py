#!/usr/bin/env python3
"""Where one ocilayout command spends its time, with and without the reference cache (issue 9).

Runs the command in this process (as the console script would, through `ocilayout.cli`) and
prints, in seconds since start: when each load of the cache's records started and took, when
each live set started and took, and when the final cache write started and took; then the total.

    OCILAYOUT_CACHE_DIR=/tmp/c .venv/bin/python bench/refcache_phases.py rm -q COPY img-005001
    OCILAYOUT_CACHE_DIR=/tmp/c .venv/bin/python bench/refcache_phases.py rm -q --no-cache COPY img-005001

Run it on a fresh `cp -al` copy each time (an `rm` changes the copy): once with an empty cache
directory (cold: the command fills it), once after `ocilayout ls -q COPY` (warm), once with
`--no-cache`. Wrap it in `/usr/bin/time` for the whole process (interpreter exit included).
"""

from __future__ import annotations

import sys
import time

START = time.perf_counter()

from ocilayout import delete, graph, layout, refcache  # noqa: E402
from ocilayout.cli import cli  # noqa: E402

marks: list[tuple[str, float, float]] = []


def timed(name: str, function):  # type: ignore[no-untyped-def]
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            marks.append((name, began - START, time.perf_counter() - began))

    return run


def main() -> int:
    imported = time.perf_counter() - START
    live = timed("live_set", graph.live_set)
    graph.live_set = live
    delete.live_set = live  # type: ignore[attr-defined]
    finish = timed("cache-write", refcache.finish)
    refcache.finish = finish
    layout.refcache.finish = finish  # type: ignore[attr-defined]
    real_load = refcache.LayoutFacts.load

    def load(self, kind="M"):  # type: ignore[no-untyped-def]
        return timed(f"cache-load-{kind}", real_load)(self, kind)

    refcache.LayoutFacts.load = load  # type: ignore[method-assign]
    try:
        cli.main(sys.argv[1:], standalone_mode=False, prog_name="ocilayout")
    except SystemExit:
        pass
    shown = " ".join(f"{name}@{at:.3f}+{took:.3f}" for name, at, took in marks)
    print(f"imports {imported:.3f} total {time.perf_counter() - START:.3f} {shown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
