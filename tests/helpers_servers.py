"""Start and stop local servers for tests: free ports, waiting for readiness, process groups.

port = free_port()
proc = start_process(["mlflow", "server", "--port", str(port)], log_path=tmp / "mlflow.log")
wait_http(f"http://127.0.0.1:{port}/health", timeout=60, process=proc, log_path=tmp / "mlflow.log")
stop_process(proc)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_process(
    args: Sequence[str],
    log_path: str | os.PathLike,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.Popen:
    """Start `args` in its own process group, stdout+stderr to `log_path`."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()


def log_tail(log_path: str | os.PathLike, chars: int = 3000) -> str:
    path = Path(log_path)
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def wait_until(
    check,
    timeout: float,
    what: str,
    process: subprocess.Popen | None = None,
    log_path: str | os.PathLike | None = None,
    interval: float = 0.2,
) -> None:
    """Poll `check()` until it is true; fail with the log tail if `process` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{what}: process exited with {process.returncode}\n{log_tail(log_path or '')}"
            )
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s\n{log_tail(log_path or '')}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def wait_http(
    url: str,
    timeout: float = 60,
    process: subprocess.Popen | None = None,
    log_path: str | os.PathLike | None = None,
) -> None:
    """Wait until GET `url` answers 200."""
    wait_until(lambda: http_ok(url), timeout, url, process, log_path)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process group `start_process` made, then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)
