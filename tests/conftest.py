"""Shared fixtures: the repository root, the real-data fixtures (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    from poseops.paths import fixtures_dir

    found = fixtures_dir()
    if found is None:
        pytest.skip("real-data fixtures absent (../shared/fixtures/real or $POSEOPS_FIXTURES)")
    return found
