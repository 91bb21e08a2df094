"""A fresh clone's `make demo` reproduces the committed results (CI runs it before this suite).

Every DVC-versioned output is a pure function of its inputs, so the data stages must rebuild exactly
what the committed dvc.lock records, and training (same seed, worker and thread count: params.yaml pins
them, on the same machine type) must give the committed metrics. Skipped where `make demo` has not run
in this checkout, or where params.yaml is not the committed one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo_checkout() -> Path:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing committed to compare with")
    if not ((REPO / ".poseops" / "demo").is_dir() and (REPO / "data" / "derived").is_dir()):
        pytest.skip("make demo has not run in this checkout")
    if git("diff", "--quiet", "HEAD", "--", "params.yaml").returncode != 0:
        pytest.skip("params.yaml differs from the committed one")
    return REPO


def data_stages(lock: dict) -> list[str]:
    return [
        name
        for name in lock["stages"]
        if name in ("capture", "annotate") or name.startswith("derive@")
    ]


def test_data_stages_rebuilt_what_the_committed_lock_records(demo_checkout):
    committed = yaml.safe_load(git("show", "HEAD:dvc.lock").stdout)
    current = yaml.safe_load((demo_checkout / "dvc.lock").read_text())
    stages = data_stages(committed)
    assert {"capture", "annotate"} <= set(stages) and any(s.startswith("derive@") for s in stages)

    def outs(lock: dict, stage: str) -> dict:
        return {o["path"]: (o["md5"], o.get("nfiles")) for o in lock["stages"][stage]["outs"]}

    for stage in stages:
        assert outs(current, stage) == outs(committed, stage), (
            f"{stage}: outputs differ from the committed dvc.lock"
        )
    status = subprocess.run(
        [str(BIN / "dvc"), "status", "--json", *stages],
        cwd=demo_checkout,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout or "{}") == {}, status.stdout


def test_trained_metrics_equal_the_committed_ones(demo_checkout):
    from poseops.reporting import committed_metrics_diff

    diff = committed_metrics_diff(demo_checkout)
    assert diff == {}, json.dumps(diff, indent=1)[:4000]
