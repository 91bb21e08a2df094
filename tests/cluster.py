"""A real local Ray cluster for tests: `ray start --head` plus one worker node, on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


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
