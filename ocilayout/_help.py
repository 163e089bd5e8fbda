"""`ocilayout --help` as click prints it at 78 columns, stored so that the bare top-level help
needs no import of click or of the library (DESIGN 5: start-up).

Generated: `python -m ocilayout._help` rewrites this file after any change to cli.py.
`entry.main` prints TEXT only when cli.py's CRC-32 equals CLI_CRC32 (a stale text is never
shown: it falls back to click) and the terminal is at least 80 columns wide (click's width).
tests/test_startup.py checks that TEXT is what click prints.
"""

CLI_CRC32 = 1648418770
TEXT = (
    'Usage: ocilayout [OPTIONS] COMMAND [ARGS]...\n'
    '\n'
    '  Manipulate OCI image-layout directories in place: list, inspect, referrers,\n'
    '  tag, delete, prune, du, gc, verify.\n'
    '\n'
    '  Exit codes: 0 success; 1 some work failed or problems found; 2 usage error;\n'
    '  3 not found; 4 conflict; 5 invalid or corrupt layout; 6 lock not acquired;\n'
    '  130/143 interrupted by SIGINT/SIGTERM.\n'
    '\n'
    'Options:\n'
    '  --version                 Show the version and exit.\n'
    '  --no-cache                Read every manifest again instead of using the\n'
    '                            reference cache (also OCILAYOUT_NO_CACHE=1).\n'
    '  --debug                   Show tracebacks on errors.\n'
    '  --strict                  Treat missing children of indexes (sparse layouts)\n'
    '                            as errors.\n'
    '  --shared-blobs DIRECTORY  Also read blobs from this shared blob directory\n'
    '                            (never deleted from, except by `gc --shared-blobs\n'
    '                            DIR --layout A --layout B ...`).\n'
    '  -h, --help                Show this message and exit.\n'
    '\n'
    'Commands:\n'
    '  du         Space per image and for the layout, like `docker system df -v`.\n'
    '  fsck       Check every reachable blob (presence, size, digest, schema).\n'
    '  gc         Delete blobs that no entry of index.json reaches.\n'
    '  inspect    Show the descriptor, manifest (or index) and config of...\n'
    "  ls         List the entries of LAYOUT's index.json: name, digest, kind,...\n"
    '  prune      Retention: per repository keep the newest images, remove the...\n'
    '  referrers  List the manifests whose subject is REFERENCE (signatures,...\n'
    '  rm         Remove images by name, digest or digest prefix, and delete...\n'
    '  tag        Give the image SOURCE resolves to the name NAME (moving NAME...\n'
    '  tree       Show the nested structure of REFERENCE, or of every entry.\n'
    '  untag      Remove NAMES; content is kept (as a dangling entry when it...\n'
    '  verify     Check every reachable blob (presence, size, digest, schema).\n'
)

if __name__ == "__main__":  # pragma: no cover - maintenance tool
    import os
    import subprocess
    import sys
    import zlib
    from pathlib import Path

    here = Path(__file__).resolve().parent
    printed = subprocess.run(  # click itself, as the console script runs it (CliRunner forces 80 columns)
        [sys.executable, "-c", "from ocilayout.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    source = (here / "_help.py").read_text()
    head, _, _ = source.partition("\nCLI_CRC32 = ")
    _, _, tail = source.partition('\nif __name__ == "__main__":')
    crc = zlib.crc32((here / "cli.py").read_bytes())
    lines = "".join(f"    {line!r}\n" for line in printed.stdout.splitlines(keepends=True))
    text = f"{head}\nCLI_CRC32 = {crc}\nTEXT = (\n{lines})\n\nif __name__ == \"__main__\":{tail}"
    (here / "_help.py").write_text(text)
    print(f"wrote {here / '_help.py'} ({len(printed.stdout)} characters, cli.py CRC-32 {crc}){os.linesep}", end="")
