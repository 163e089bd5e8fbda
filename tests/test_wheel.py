"""The built wheel works on its own: installed into a fresh venv outside the repository, its
`ocilayout ls` lists a fixture and its schema files are found inside site-packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURE_LAYOUTS, REPO_ROOT

HELLO = "sha256:33ac2360630538dd7ee271e0c327b679eb5dc61045e22b81cbc7edea01c6511e"


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # A clean environment: nothing may leak the source checkout onto the path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    # build from a copy of the source so the build cannot write into the working tree
    source = base / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".pytest_cache", ".hypothesis", "__pycache__", "*.egg-info", "build", "dist"))
    dist = base / "dist"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source, cwd=base)
    if built.returncode != 0 and ("hatchling" in built.stderr and "No matching distribution" in built.stderr
                                  or "Network is unreachable" in built.stderr):
        pytest.skip(f"cannot fetch the build backend: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, built.stderr
    [wheel] = dist.glob("ocilayout-*.whl")

    venv = base / "venv"
    # --without-pip + `pip --python`: bootstrapping pip into the venv costs ~20 s for nothing
    made = run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    assert made.returncode == 0, made.stderr
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q"]
    deps = run(*pip, "click>=8.1", "jsonschema>=4.18", cwd=base)
    if deps.returncode != 0:
        pytest.skip(f"no package index reachable for click/jsonschema: {deps.stderr.strip().splitlines()[-1:]}")
    install = run(*pip, wheel, cwd=base)
    assert install.returncode == 0, install.stderr
    return venv


def test_installed_ocilayout_ls(installed: Path, tmp_path: Path) -> None:
    layout = tmp_path / "elsewhere" / "single"
    shutil.copytree(FIXTURE_LAYOUTS / "single", layout)
    proc = run(installed / "bin" / "ocilayout", "ls", layout, "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [image] = json.loads(proc.stdout)["images"]
    assert (image["name"], image["digest"]) == ("latest", HELLO)
    table = run(installed / "bin" / "ocilayout", "tree", layout, cwd=tmp_path)
    assert table.returncode == 0 and "latest" in table.stdout
    module = run(installed / "bin" / "python", "-m", "ocilayout", "ls", layout, cwd=tmp_path)
    assert module.returncode == 0 and "latest" in module.stdout


def test_installed_package_and_schemas_live_in_site_packages(installed: Path, tmp_path: Path) -> None:
    code = (
        "import json, ocilayout, ocilayout.schemas as s;"
        "print(json.dumps([ocilayout.__file__, str(s.schema_dir()), sorted(p.name for p in s.schema_dir().iterdir()),"
        " s.validate({'imageLayoutVersion': '1.0.0'}, 'layout'), bool(s.validate({}, 'layout'))]))"
    )
    proc = run(installed / "bin" / "python", "-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    module_file, schema_dir, files, valid_problems, invalid_has_problems = json.loads(proc.stdout)
    site = installed.resolve()
    assert Path(module_file).resolve().is_relative_to(site), module_file
    assert "site-packages" in schema_dir
    assert Path(schema_dir).resolve().is_relative_to(site), schema_dir
    assert not Path(schema_dir).resolve().is_relative_to(REPO_ROOT)
    assert {"layout.json", "index.json", "manifest.json", "descriptor.json", "config.json"} <= set(files)
    assert not valid_problems and invalid_has_problems


def test_installed_has_typing_marker_and_version(installed: Path, tmp_path: Path) -> None:
    proc = run(installed / "bin" / "python", "-c",
               "import importlib.resources as r, importlib.metadata as m;"
               "print(r.files('ocilayout').joinpath('py.typed').is_file(), m.version('ocilayout'))", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "0.1.0"]
    version = run(installed / "bin" / "ocilayout", "--version", cwd=tmp_path)
    assert version.returncode == 0 and "0.1.0" in version.stdout
