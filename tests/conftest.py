"""Shared test helpers: repository paths, fixture layouts, and running the real CLI.

Keep this small and general; test-specific helpers belong in the test module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "fixtures"
FIXTURE_LAYOUTS = FIXTURES / "layouts"
# ../shared next to the repository: design docs, seeds and the conformance corpus (optional).
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
CONSOLE_SCRIPT = Path(sys.executable).parent / "ocilayout"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the repository; skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent")
    return SHARED_DIR


@pytest.fixture
def fixture_layout(tmp_path: Path) -> Callable[[str], Path]:
    """`fixture_layout("multi")`: a private copy of `fixtures/layouts/<name>` under tmp_path.

    Names with a slash work too (`"broken/bad-json"`, `"shared/a"`); copy `"shared"` to
    get the pair of layouts together with their shared blob directory.
    """

    def copy(name: str) -> Path:
        source = FIXTURE_LAYOUTS / name
        if not source.is_dir():
            pytest.skip(f"fixture layout {name!r} is absent ({source})")
        dest = tmp_path / "layouts" / name
        shutil.copytree(source, dest, symlinks=True)
        return dest

    return copy


@pytest.fixture(scope="session")
def generate_module():
    """`fixtures/generate.py` imported as a module (LayoutWriter, build_fixture, ...)."""
    if not (FIXTURES / "generate.py").is_file():
        pytest.skip("fixtures/generate.py is absent")
    sys.path.insert(0, str(FIXTURES))
    try:
        import generate  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(FIXTURES))
    return generate


def cli_command(*args: str | os.PathLike[str], module: bool = False) -> list[str]:
    """argv for the real CLI: the venv's console script, or `python -m ocilayout`."""
    if module or not CONSOLE_SCRIPT.exists():
        return [sys.executable, "-m", "ocilayout", *map(str, args)]
    return [str(CONSOLE_SCRIPT), *map(str, args)]


def run_cli_process(
    *args: str | os.PathLike[str], module: bool = False, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a real subprocess; text output; never raises on a non-zero exit."""
    return subprocess.run(
        cli_command(*args, module=module),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_cli("ls", path, "--format", "json")` → CompletedProcess (returncode, stdout, stderr)."""
    return run_cli_process
