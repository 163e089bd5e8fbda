#!/usr/bin/env python3
"""How fast three stores for the reference cache write and read N records (issue 9).

  sqlite-chunks  what ocilayout.refcache does: one SQLite file (WAL, 64 KiB pages, synchronous
                 OFF), a layout's records in one BLOB per command (keys, NUL, rests), checksummed
  sqlite-rows    one SQLite row per record (digest primary key, WITHOUT ROWID), looked up with
                 `IN (...)` queries of 500 digests
  append-file    one append-only file per layout, one write per command, read whole and split

Records are synthetic but shaped like refcache's "M" records of `fixtures/generate.py bench`
image manifests (a key of 72 characters, ~350 characters of rest). Each store is written once
(as a cold command would) and read back three times (as warm commands would); medians. What a
read costs includes turning the data into the dict the walk looks records up in.

    .venv/bin/python bench/bench_refcache_store.py --records 12000,120000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path


def records(n: int) -> tuple[list[str], list[str]]:
    keys, rests = [], []
    for i in range(n):
        digest = hashlib.sha256(b"%d" % i).hexdigest()
        leaves = ",".join("sha256:" + hashlib.sha256(b"%d-%d" % (i, k)).hexdigest() for k in range(4))
        keys.append("Msha256:" + digest)
        rests.append(f"706\t2\t{leaves}\t[[[2,402],[4,96],[4,96],[4,96]],0,1,3,null,null,null]")
    return keys, rests


def checksum(data: bytes) -> bytes:
    return hashlib.sha256(b"tag\0" + data).digest()[:16]


# -- the three stores -------------------------------------------------------------------------


def chunks_write(path: Path, keys: list[str], rests: list[str]) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size = 65536")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, layout TEXT, data BLOB, sum BLOB)")
    data = ("\n".join(keys) + "\0" + "\n".join(rests)).encode("ascii")
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO chunks (layout, data, sum) VALUES (?, ?, ?)", ("/lay", data, checksum(data)))
    con.execute("COMMIT")
    con.close()


def chunks_read(path: Path, keys: list[str]) -> dict[str, str]:
    con = sqlite3.connect(path, isolation_level=None)
    out: dict[str, str] = {}
    for data, sums in con.execute("SELECT data, sum FROM chunks WHERE layout = ?", ("/lay",)):
        assert checksum(data) == sums
        cut = data.find(b"\0")
        view = memoryview(data)
        out.update(zip(str(view[:cut], "ascii").split("\n"), str(view[cut + 1 :], "ascii").split("\n")))
    con.close()
    return out


def rows_write(path: Path, keys: list[str], rests: list[str]) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("CREATE TABLE IF NOT EXISTS refs (key TEXT PRIMARY KEY, rest TEXT, sum BLOB) WITHOUT ROWID")
    con.execute("BEGIN IMMEDIATE")
    con.executemany(
        "INSERT OR REPLACE INTO refs VALUES (?, ?, ?)",
        ((k, r, checksum((k + r).encode())) for k, r in zip(keys, rests)),
    )
    con.execute("COMMIT")
    con.close()


def rows_read(path: Path, keys: list[str]) -> dict[str, str]:
    con = sqlite3.connect(path, isolation_level=None)
    out: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        query = f"SELECT key, rest, sum FROM refs WHERE key IN ({','.join('?' * len(part))})"
        for key, rest, sums in con.execute(query, part):
            assert checksum((key + rest).encode()) == sums
            out[key] = rest
    con.close()
    return out


def file_write(path: Path, keys: list[str], rests: list[str]) -> None:
    data = ("\n".join(keys) + "\0" + "\n".join(rests)).encode("ascii")
    frame = b"%d\n" % len(data) + checksum(data) + data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, frame)
    finally:
        os.close(fd)


def file_read(path: Path, keys: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    data = path.read_bytes()
    at = 0
    while at < len(data):
        line_end = data.index(b"\n", at)
        size = int(data[at:line_end])
        sums = data[line_end + 1 : line_end + 17]
        body = memoryview(data)[line_end + 17 : line_end + 17 + size]
        assert checksum(bytes(body)) == sums
        cut = bytes(body).find(b"\0")
        out.update(zip(str(body[:cut], "ascii").split("\n"), str(body[cut + 1 :], "ascii").split("\n")))
        at = line_end + 17 + size
    return out


STORES = {
    "sqlite-chunks": (chunks_write, chunks_read),
    "sqlite-rows": (rows_write, rows_read),
    "append-file": (file_write, file_read),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", default="12000,120000", help="comma-separated record counts")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.repeat}")
    print("| records | store | write (one command) ms | read all (a warm command) ms | file MB |")
    print("|---|---|---|---|---|")
    for n in (int(x) for x in args.records.split(",")):
        keys, rests = records(n)
        for name, (write, read) in STORES.items():
            writes, reads, size = [], [], 0
            for _ in range(args.repeat):
                directory = Path(tempfile.mkdtemp(prefix="refstore-"))
                try:
                    path = directory / "store"
                    start = time.perf_counter()
                    write(path, keys, rests)
                    writes.append(time.perf_counter() - start)
                    size = sum(p.stat().st_size for p in directory.iterdir())
                    start = time.perf_counter()
                    got = read(path, keys)
                    reads.append(time.perf_counter() - start)
                    assert len(got) == n
                finally:
                    shutil.rmtree(directory)
            print(f"| {n:,} | {name} | {statistics.median(writes) * 1000:.0f} | {statistics.median(reads) * 1000:.0f} "
                  f"| {size / 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
