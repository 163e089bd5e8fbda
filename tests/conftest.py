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


# -- the reference cache -------------------------------------------------------------------------

# Modules whose every test also runs on a warm reference cache (each command first walks the
# whole layout and writes the cache, then runs): crashes, concurrency, hostile layouts, doubt.
WARM_CACHE_MODULES = frozenset(
    {"test_crash_trials", "test_concurrency", "test_hostile", "test_doubt", "test_broken", "test_transaction"}
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--warm-cache",
        action="store_true",
        help="Run every test with a warm reference cache (each command prewarms it first).",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cache_mode" in metafunc.fixturenames:
        module = metafunc.module.__name__.rpartition(".")[2]
        if module in WARM_CACHE_MODULES and not metafunc.config.getoption("--warm-cache"):
            metafunc.parametrize("cache_mode", ["cold", "warm"], indirect=True)


@pytest.fixture
def cache_mode(request: pytest.FixtureRequest) -> str:
    """"cold" (the cache starts empty) or "warm" (every command prewarms it first)."""
    if request.config.getoption("--warm-cache"):
        return "warm"
    return getattr(request, "param", "cold")


@pytest.fixture(autouse=True)
def _reference_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, cache_mode: str
) -> object:
    """Every test gets its own cache directory (never the user's ~/.cache), the cache switched
    on, and in "warm" mode the prewarm hook set (inherited by CLI subprocesses too)."""
    from ocilayout import refcache

    directory = tmp_path_factory.mktemp("refcache")
    directory.chmod(0o700)
    monkeypatch.setenv(refcache.DIR_ENV, str(directory))
    monkeypatch.delenv(refcache.OFF_ENV, raising=False)
    if cache_mode == "warm":
        monkeypatch.setenv(refcache.PREWARM_ENV, "1")
    else:
        monkeypatch.delenv(refcache.PREWARM_ENV, raising=False)
    refcache.set_enabled(True)
    yield directory
    refcache.finish()
    refcache.set_enabled(True)
