"""A real local Ray cluster for tests: `ray start --head` plus one worker node, on free ports; and the
tiny hand project that the slow Train and Tune tests drive on it with `poseops` in a separate process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalCluster:
    address: str  # GCS address for RAY_ADDRESS
    dashboard_url: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token"}


def start_cluster(head_cpus: int = 2, worker_cpus: int = 1, dashboard: bool = True) -> LocalCluster:
    """Ray >= 2.59 starts `ray start` clusters with token authentication; clients use `.env()`."""
    os.environ["RAY_AUTH_MODE"] = "token"
    if not os.environ.get("RAY_AUTH_TOKEN"):  # a fresh machine has no ~/.ray/auth_token yet
        subprocess.run(
            [str(BIN / "ray"), "get-auth-token", "--generate"], check=True, capture_output=True
        )
    port, dash = free_port(), free_port()
    head = [
        str(BIN / "ray"),
        "start",
        "--head",
        f"--port={port}",
        f"--num-cpus={head_cpus}",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
        "--object-store-memory=500000000",
    ]
    head += (
        [f"--dashboard-port={dash}", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
        if dashboard
        else ["--include-dashboard=false"]
    )
    subprocess.run(head, check=True, capture_output=True, timeout=120)
    address = f"127.0.0.1:{port}"
    if worker_cpus:
        subprocess.run(
            [
                str(BIN / "ray"),
                "start",
                f"--address={address}",
                f"--num-cpus={worker_cpus}",
                "--node-ip-address=127.0.0.1",
                "--disable-usage-stats",
                "--object-store-memory=300000000",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return LocalCluster(address=address, dashboard_url=f"http://127.0.0.1:{dash}")


def stop_cluster() -> None:
    subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)


def wait_http(url: str, timeout: float = 90.0) -> None:
    """Wait until GET `url` answers 200. Serve's proxy answers 404 for a route whose app is not
    deployed yet, so anything but 200 means "not up yet"."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def alive_nodes(cluster: LocalCluster) -> set[str]:
    """The node ids of the cluster's live nodes (Ray's state API, from this process)."""
    import ray

    ray.init(address=cluster.address, ignore_reinit_error=True, log_to_driver=False)
    try:
        return {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()


@contextlib.contextmanager
def one_free_cpu_per_node(cluster: LocalCluster) -> Iterator[dict[str, float]]:
    """While the block runs, every node's free CPUs but one are held by an idle actor pinned to that node,
    so that 1-CPU work can only spread: two 1-CPU tasks started now land on two nodes. Yields node id ->
    CPUs left free (what `ray status` would show). The holders go when the block ends."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote
    class CpuHolder:
        def ready(self) -> bool:
            return True

    ray.init(address=cluster.address, ignore_reinit_error=True, log_to_driver=False)
    holders = []
    try:
        alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        available = ray._private.state.available_resources_per_node()
        free = {node: float(available.get(node, {}).get("CPU", 0.0)) for node in alive}
        for node, cpus in free.items():
            if cpus > 1:
                strategy = NodeAffinitySchedulingStrategy(node, soft=False)
                holders.append(
                    CpuHolder.options(num_cpus=cpus - 1, scheduling_strategy=strategy).remote()
                )
        ray.get([holder.ready.remote() for holder in holders], timeout=60)
        yield {node: min(cpus, 1.0) for node, cpus in free.items()}
    finally:
        for holder in holders:
            ray.kill(holder)
        ray.shutdown()


def make_hand_project(root: Path, **train: object) -> Path:
    """A tiny-profile project with handmle's derived data (rendered and derived in a child process, the
    pipeline's library calls), its `families.handmle.train` block updated with `train`."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    script = (
        "from pathlib import Path; from poseops import pipeline; from poseops.families import load_params;"
        "from poseops.profiles import write_profile; root = Path.cwd();"
        f"write_profile({str(REPO / 'profiles' / 'tiny.yaml')!r}, root / 'params.yaml');"
        "p = load_params(root / 'params.yaml'); w = pipeline.layout(root);"
        "pipeline.capture(p, w); pipeline.annotate(p, w); pipeline.derive('handmle', p, w)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(POSEOPS_ROOT=str(root), PYTHONPATH=str(REPO / "platform"))
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    if train:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["families"]["handmle"]["train"].update(train)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def driver_env(
    root: Path, cluster: LocalCluster | None = None, tracking_uri: str | None = None
) -> dict[str, str]:
    """The environment of a `poseops` driver run on project `root`: attached to `cluster` (else a private
    Ray), this checkout's code, MLflow at `tracking_uri` (else the project's own store)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    if cluster is not None:
        env.update(cluster.env())
    env.update(
        POSEOPS_ROOT=str(root),
        PYTHONPATH=str(REPO / "platform"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env
