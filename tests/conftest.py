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


@pytest.fixture
def one_thread():
    """Tiny nets run far faster on one torch thread, especially when other jobs share the 2 cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
