"""Ray Train survives failures and spans nodes, on the slow suite's shared 2-node cluster.

Deterministic CPU training of the tiny hand family at 2 workers (`poseops train handmle` as a separate
driver process):
- a Train worker killed after checkpoint >= 1 is replaced by FailureConfig, training resumes from the
  latest checkpoint, and the last epoch's train loss and validation PCK equal an uninterrupted run's
  (rel 1e-5) with bit-identical published weights;
- a killed driver's run continues with `poseops train handmle --resume`: the same figures;
- the 2 workers of a STRICT_SPREAD run on the 2-node cluster land one on each node, and it finishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from tests.cluster import alive_nodes, driver_env, make_hand_project
from tests.helpers_servers import start_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EPOCHS = 5  # a second or two each on the tiny data: a kill after the first lands mid-run
TRAIN = {
    "epochs": EPOCHS,
    "num_workers": 2,
    "cpus_per_worker": 1.0,
    "max_failures": 1,
    "lr_milestones": [2],
    "plateau_window": None,
}


def train(root: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(BIN / "poseops"), "train", "handmle", *options],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def checkpoint_states(root: Path) -> list[dict]:
    """train_state.json of every checkpoint in the project's Ray Train storage (newest epoch last)."""
    states = []
    for path in (root / ".poseops" / "ray_results").glob("handmle-*/checkpoint_*/train_state.json"):
        try:
            states.append(json.loads(path.read_text()))
        except (json.JSONDecodeError, OSError):  # being written
            continue
    return sorted(states, key=lambda s: s["epoch"])


def outcome(root: Path) -> dict:
    """The last epoch's figures (from the newest checkpoint) and the published weights' SHA-256."""
    last = checkpoint_states(root)[-1]
    manifest = json.loads((root / "models" / "handmle" / "manifest.json").read_text())
    return {
        "epochs": last["epoch"],
        "train_loss": last["history"][-1]["train_loss"],
        "val_pck": last["history"][-1]["val_pck"],
        "weights": manifest["files"]["weights.safetensors"]["sha256"],
    }


def same_figures(a: dict, b: dict) -> None:
    assert a["epochs"] == b["epochs"] == EPOCHS
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert a["val_pck"] == pytest.approx(b["val_pck"], rel=1e-5, abs=1e-9)
    assert a["weights"] == b["weights"]


def wait_for_checkpoint(root: Path, process: subprocess.Popen, log: Path, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while not checkpoint_states(root):
        assert process.poll() is None, f"the driver ended early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"no checkpoint in {timeout} s:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.2)


def run_killing_a_worker(root: Path, env: dict[str, str]) -> dict:
    log = root / "killed_worker.log"
    driver = start_process([str(BIN / "poseops"), "train", "handmle"], log, env=env, cwd=root)
    try:
        wait_for_checkpoint(root, driver, log)
        pids = checkpoint_states(root)[-1]["pids"]  # each rank's process, as the checkpoint records
        assert len(pids) == 2, pids
        worker = psutil.Process(pids[1])
        assert "RayTrainWorker" in " ".join(worker.cmdline()), worker.cmdline()
        worker.kill()
        assert driver.wait(timeout=420) == 0, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    text = log.read_text()
    assert "resumed after epoch" in text, text[-3000:]
    return outcome(root)


def run_killing_the_driver(root: Path, env: dict[str, str], registered: bool) -> dict:
    """Kill the driver after its first checkpoint reached storage, then `poseops train --resume`.

    `registered=False` removes Ray Train's record of the run's checkpoints, as when the driver dies
    after a checkpoint was copied to storage but before the controller registered it: the resumed run
    must then start from the checkpoint folder on storage."""
    log = root / "killed_driver.log"
    driver = start_process([str(BIN / "poseops"), "train", "handmle"], log, env=env, cwd=root)
    try:
        wait_for_checkpoint(root, driver, log)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver's process group, as a lost shell would
        driver.wait(timeout=30)
    interrupted = checkpoint_states(root)[-1]["epoch"]
    assert 1 <= interrupted < EPOCHS
    if not registered:
        for snapshot in (root / ".poseops" / "ray_results").glob("handmle-*/checkpoint_manager_*"):
            snapshot.unlink()
    done = train(root, env, "--resume")
    said = done.stdout + done.stderr
    assert "resumed after epoch" in said, said[-3000:]
    assert f"epoch 1/{EPOCHS}:" not in said, said[-3000:]  # no epoch trained twice
    return outcome(root)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, ray_cluster) -> dict:
    root = make_hand_project(tmp_path_factory.mktemp("faults") / "baseline", **TRAIN)
    train(root, driver_env(root, ray_cluster))
    return outcome(root)


@pytest.mark.timeout(600)
def test_a_killed_worker_is_replaced_and_training_ends_as_without_the_fault(
    tmp_path, ray_cluster, baseline
):
    root = make_hand_project(tmp_path / "project", **TRAIN)
    same_figures(run_killing_a_worker(root, driver_env(root, ray_cluster)), baseline)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("registered", [True, False], ids=["registered", "unregistered"])
def test_a_killed_driver_resumes_with_the_resume_flag(tmp_path, ray_cluster, baseline, registered):
    root = make_hand_project(tmp_path / "project", **TRAIN)
    same_figures(run_killing_the_driver(root, driver_env(root, ray_cluster), registered), baseline)


@pytest.mark.timeout(420)
def test_two_workers_train_one_on_each_node(tmp_path, ray_cluster):
    """STRICT_SPREAD over the head (2 CPUs) and the worker node (1 CPU): each rank records its node
    (ray.get_runtime_context) in the checkpoint; two distinct live nodes, and the run finishes."""
    root = make_hand_project(
        tmp_path / "project", **{**TRAIN, "epochs": 1, "placement_strategy": "STRICT_SPREAD"}
    )
    train(root, driver_env(root, ray_cluster))
    nodes = checkpoint_states(root)[-1]["nodes"]
    alive = alive_nodes(ray_cluster)
    assert len(nodes) == 2 and len(set(nodes)) == 2 and set(nodes) <= alive, (nodes, alive)
    assert (root / "models" / "handmle" / "manifest.json").is_file()
