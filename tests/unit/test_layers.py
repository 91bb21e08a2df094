"""The import layers of DESIGN.md hold: import-linter's contracts in pyproject.toml, run as `make lint` does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
        "lint-imports"
    )
    if found is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    return found


def test_import_contracts_are_kept():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [lint_imports(), "--no-cache"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_contract_can_fail(tmp_path):
    """A training module importing a model module breaks the contract (so the check above means something)."""
    package = tmp_path / "poseops"
    shutil.copytree(
        REPO / "platform" / "poseops", package, ignore=shutil.ignore_patterns("__pycache__")
    )
    (package / "train" / "leak.py").write_text("from poseops.models import vmhpe\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [lint_imports(), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "poseops.train.leak -> poseops.models.vmhpe" in result.stdout
