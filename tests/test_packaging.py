"""The wheel a user installs holds every module and the shipped models, and building it warns of nothing
from the project's own files (built from a copy of the tracked files, so the checkout stays as it is)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tracked(*roots: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *roots], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return out.split()


def test_wheel_holds_every_module_and_model_without_warnings(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    src = tmp_path / "src"
    for rel in tracked("pyproject.toml", "README.md", "diffusion_core", "server"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                            str(src), "-w", str(tmp_path / "dist")], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    log = build.stdout + build.stderr
    warnings = [line for line in log.splitlines() if "Warning" in line or "deprecat" in line.lower()]
    assert not warnings, "\n".join(warnings)
    wheel = next((tmp_path / "dist").glob("diffill-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [rel for rel in tracked("diffusion_core", "server") if not rel.endswith((".gitattributes", ".gitignore"))]
    missing = [rel for rel in wanted if rel not in names]
    assert not missing, missing
