"""Ray Train keeps a run's checkpoints in S3 (`train.storage_path: s3://...`, through fsspec/s3fs) against a
local S3 server, and `poseops train --resume` continues that run from them.

The Ray instance is private to this module and started with the server's AWS_* settings in its
environment, as the derive S3 test does: the Train workers write checkpoints themselves, and a process
takes its S3 credentials from its own environment (none are shipped with the job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.cluster import driver_env, make_hand_project
from tests.s3server import s3_filesystem

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
BUCKET = "poseops-train"
STORAGE = f"s3://{BUCKET}/runs"


@pytest.fixture(scope="module")
def bucket(s3):
    s3_filesystem().mkdir(BUCKET)
    return BUCKET


def train(root: Path, address: str, *options: str) -> subprocess.CompletedProcess:
    env = driver_env(root)
    env["RAY_ADDRESS"] = address
    return subprocess.run(
        [str(BIN / "poseops"), "train", "handmle", *options],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def checkpoint_epochs(fs) -> list[int]:
    """The epoch of every checkpoint under STORAGE (from its train_state.json)."""
    found = fs.glob(f"{BUCKET}/runs/handmle-*/checkpoint_*/train_state.json")
    return sorted(json.loads(fs.cat_file(path))["epoch"] for path in found)


@pytest.mark.timeout(480)
def test_checkpoints_go_to_s3_and_resume_continues_from_them(tmp_path, bucket, s3_ray_address):
    root = make_hand_project(
        tmp_path / "project",
        epochs=1,
        storage_path=STORAGE,
        plateau_window=None,
        lr_milestones=[],
    )
    first = train(root, s3_ray_address)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    fs = s3_filesystem()
    runs = fs.ls(f"{BUCKET}/runs", detail=False)
    assert len(runs) == 1 and runs[0].rsplit("/", 1)[-1].startswith("handmle-"), runs
    assert checkpoint_epochs(fs) == [1]
    assert fs.exists(f"{runs[0]}/checkpoint_manager_snapshot.json")
    assert not (root / ".poseops" / "ray_results").exists()  # nothing went to the local default

    # the run finished: --resume says so; with one more epoch allowed it continues the same run
    again = train(root, s3_ray_address, "--resume")
    said = " ".join((again.stdout + again.stderr).split())  # the console wraps long lines
    assert again.returncode == 1 and "the run already finished" in said, said
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["families"]["handmle"]["train"]["epochs"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    resumed = train(root, s3_ray_address, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed after epoch 1 from" in resumed.stdout + resumed.stderr
    assert fs.ls(f"{BUCKET}/runs", detail=False) == runs  # the same run, no new one
    assert 2 in checkpoint_epochs(fs)
    manifest = json.loads((root / "models" / "handmle" / "manifest.json").read_text())
    assert manifest["extra"]["best_epoch"]["epoch"] in (0, 1)
