"""Ray Tune grids on the slow suite's 2-node cluster: a killed driver's grid restores without re-running
finished trials, a trial whose Train worker died runs again from its checkpoint, and a 2-trial grid
logging to an MLflow server trains on both nodes.

Both run `poseops tune` as a separate driver process on the tiny profile's hand data (1 epoch per trial).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.cluster import driver_env, make_hand_project, one_free_cpu_per_node
from tests.helpers_servers import free_port, start_process, stop_process, wait_http

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ONE_EPOCH = [
    "--set",
    "families.handmle.train.epochs=1",
    "--set",
    "families.handmle.train.plateau_window=null",
    "--set",
    "families.handmle.train.plateau_min_epochs=0",
    "--set",
    "families.handmle.train.lr_milestones=[]",
]
GRID = [
    "tune",
    "handmle",
    "--grid",
    "a2_loss",
    "--rows",
    "mle,integral_l1",
    "--max-concurrent",
    "2",
    *ONE_EPOCH,
]


@pytest.fixture(scope="module")
def hand_project(tmp_path_factory):
    """A tiny-profile project with handmle's derived data."""
    return make_hand_project(tmp_path_factory.mktemp("tune") / "project")


def finished_trials(root: Path) -> dict[str, bytes]:
    """Trial folder -> its result.json bytes, for trials that Tune's saved experiment state calls TERMINATED
    (what a restore reads) and whose summary report is in."""
    terminated = set()
    for state in (root / ".poseops" / "tune").glob("handmle_a2_loss_*/experiment_state-*.json"):
        try:
            trials = json.loads(state.read_text())["trial_data"]
        except (json.JSONDecodeError, KeyError):  # being written
            continue
        terminated |= {
            json.loads(t[0])["trial_id"]
            for t in trials
            if json.loads(t[0])["status"] == "TERMINATED"
        }
    found = {}
    for result in (root / ".poseops" / "tune").glob("handmle_a2_loss_*/*/result.json"):
        text = result.read_bytes()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        if lines and lines[-1].get("done_summary") and lines[-1]["trial_id"] in terminated:
            found[result.parent.name] = text
    return found


def child_runs(tracking_uri: str, parent: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("poseops-handmle")
    return client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")


@pytest.mark.timeout(420)
def test_killed_grid_restores_without_rerunning_finished_trials(hand_project, ray_cluster):
    root = hand_project
    args = [str(BIN / "poseops"), *GRID, "--seeds", "0,1"]  # 2 rows x 2 seeds = 4 trials
    log = root / "first.log"
    first = start_process(args, log, env=driver_env(root, ray_cluster), cwd=root)
    deadline = time.monotonic() + 240
    while not finished_trials(root):
        assert first.poll() is None, (
            f"the driver ended before any trial finished:\n{log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, (
            f"no trial finished in 240 s:\n{log.read_text()[-3000:]}"
        )
        time.sleep(1)
    os.killpg(
        first.pid, signal.SIGKILL
    )  # the driver and its process group, as a lost head shell would
    first.wait(timeout=30)
    before = finished_trials(root)
    assert 1 <= len(before) < 4

    second = subprocess.run(
        args,
        env=driver_env(root, ray_cluster),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = finished_trials(root)
    assert len(after) == 4
    for name, text in before.items():
        assert after[name] == text, f"{name} ran again after the restore"
        assert text.count(b'"done_summary": 1') == 1

    report = json.loads((root / "reports" / "grids" / "handmle_a2_loss.json").read_text())
    runs = {e["row"]: e["runs"] for e in report["summary"]}
    assert runs == {"mle": 2, "integral_l1": 2, "heatmap_l2": 0}
    assert sorted(t["name"] for t in report["trials"]) == [
        "integral_l1@s0",
        "integral_l1@s1",
        "mle@s0",
        "mle@s1",
    ]
    children = child_runs(
        f"sqlite:///{root / '.poseops' / 'mlflow.db'}", report["mlflow_parent_run"]
    )
    assert sorted(r.data.tags["tune_trial"] for r in children) == sorted(
        t["name"] for t in report["trials"]
    )
    assert {r.info.status for r in children} == {"FINISHED"}


@pytest.mark.timeout(420)
def test_a_trial_whose_train_worker_died_runs_again_from_its_checkpoint(tmp_path, ray_cluster):
    """Ray Train may lose a trial's worker group (a killed worker, a node lost, or Ray's placement-group
    cleaner misreading a busy controller as dead); with train.max_failures 0 the Train run fails, Tune
    runs the trial again, and its Train run (same name and storage) continues from its checkpoint."""
    import psutil

    epochs = 12  # a few seconds each on the tiny data: the kill lands mid-run
    root = make_hand_project(tmp_path / "project")
    args = [
        str(BIN / "poseops"),
        *GRID[:4],
        "--rows",
        "mle",
        "--seeds",
        "0",
        *ONE_EPOCH,
        "--set",
        f"families.handmle.train.epochs={epochs}",
        "--set",
        "families.handmle.train.max_failures=0",
    ]
    log = root / "grid.log"
    driver = start_process(args, log, env=driver_env(root, ray_cluster), cwd=root)
    pattern = "handmle_a2_loss_*-train/*/checkpoint_*/train_state.json"
    deadline = time.monotonic() + 240
    try:
        worker_pid = None
        while worker_pid is None:  # Ray Train deletes superseded checkpoints: read one that stays
            assert driver.poll() is None, f"the grid ended early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"no checkpoint in 240 s:\n{log.read_text()[-3000:]}"
            )
            for state in (root / ".poseops" / "tune").glob(pattern):
                try:
                    (worker_pid,) = json.loads(state.read_text())["pids"]
                except (OSError, ValueError):  # being written or deleted
                    continue
            time.sleep(0.2)
        psutil.Process(worker_pid).kill()
        assert driver.wait(timeout=360) == 0, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    text = log.read_text()
    assert "resumed after epoch" in text, text[-3000:]
    report = json.loads((root / "reports" / "grids" / "handmle_a2_loss.json").read_text())
    (trial,) = report["trials"]
    assert trial["name"] == "mle@s0" and trial["epochs_run"] == epochs, trial


@pytest.mark.timeout(600)
def test_two_trials_train_on_both_nodes_logging_to_an_mlflow_server(
    hand_project, ray_cluster, tmp_path
):
    port = free_port()
    server_log = tmp_path / "mlflow.log"
    server = start_process(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        server_log,
    )
    try:
        wait_http(
            f"http://127.0.0.1:{port}/health", timeout=90, process=server, log_path=server_log
        )
        uri = f"http://127.0.0.1:{port}"
        # 3 epochs: each trial's Train worker holds its CPU long enough that the two workers overlap even on
        # a loaded machine (a worker group that starts after the other ended may take the freed CPU)
        args = [
            str(BIN / "poseops"),
            *GRID,
            "--seeds",
            "5",
            "--storage",
            str(tmp_path / "tune"),
            "--set",
            "families.handmle.train.epochs=3",
        ]
        # The head has 2 CPUs and a trial driver takes none, so Ray may pack both 1-CPU trials there; with
        # one CPU left free on each node, the second trial has to go to the worker node
        with one_free_cpu_per_node(ray_cluster) as free:
            if sum(cpus >= 1 for cpus in free.values()) < 2:
                pytest.skip(f"the shared cluster has no free CPU on two nodes now (free: {free})")
            run = subprocess.run(
                args,
                env=driver_env(hand_project, ray_cluster, uri),
                cwd=hand_project,
                capture_output=True,
                text=True,
                timeout=540,
            )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        report = json.loads(
            (hand_project / "reports" / "grids" / "handmle_a2_loss.json").read_text()
        )
        assert len(report["trials"]) == 2
        nodes = [t["worker_nodes"] for t in report["trials"]]
        assert all(len(n) == 1 for n in nodes), nodes  # one Train worker per trial
        assert nodes[0] != nodes[1], f"both trials trained on node {nodes[0]}"
        children = child_runs(uri, report["mlflow_parent_run"])
        assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}
        assert {r.data.tags["worker_nodes"] for r in children} == {n[0] for n in nodes}
        assert all(r.data.tags["checkpoint_path"] for r in children)
        assert all(
            "val_pck" in r.data.metrics and "best_val_pck" in r.data.metrics for r in children
        )
    finally:
        stop_process(server)


@pytest.mark.timeout(300)
def test_a_label_noise_row_trains_on_its_own_derived_variant(tmp_path):
    """The noise grid's data axis: a noisy-label row gets its own capture + derive (hands only), whose
    training labels are corrupted while the clean ones (what validation scores against) are kept."""
    from poseops.config import read_yaml
    from poseops.datasets.loader import load_split_arrays
    from poseops.profiles import write_profile
    from poseops.tune import adapter
    from poseops.tune.grids import apply_overrides, load_grid

    write_profile(str(REPO / "profiles" / "tiny.yaml"), tmp_path / "params.yaml")
    base = read_yaml(tmp_path / "params.yaml")
    rows = {r.name: r for r in load_grid("handmle", "noise").rows()}
    urls = {}
    for name in ("mle/clean", "mle/noisy"):
        params = adapter.validated(apply_overrides(base, rows[name].overrides), name)
        urls[name] = adapter.derive_variant(params, "handmle", tmp_path / name.replace("/", "_"))
    assert not any((tmp_path / "mle_noisy" / "data" / "raw" / "synthetic" / "bodies").iterdir())
    clean, noisy = (
        load_split_arrays(urls[n], "train", 32, 1.25) for n in ("mle/clean", "mle/noisy")
    )
    assert abs(clean["keypoints"] - clean["keypoints_clean"]).max() < 1e-4
    assert (
        abs(noisy["keypoints"] - noisy["keypoints_clean"]) > 1e-3
    ).mean() > 0.5  # jitter on every point
