"""A local S3 server for tests: moto's server mode on a free loopback port (as s3fs tests itself).

server = start_s3_server(tmp / "moto.log")
with s3_environment(server):          # AWS_* for this process, its children and Ray tasks
    fs = s3_filesystem(); fs.mkdir("bucket")
stop_s3_server(server)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers_servers import free_port, port_open, start_process, stop_process, wait_until

BIN = Path(sys.executable).parent


@dataclass
class S3Server:
    endpoint: str
    process: object
    log_path: Path

    def env(self) -> dict[str, str]:
        """What a client needs: dummy credentials (moto accepts any), region and the endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": "poseops-test",
            "AWS_SECRET_ACCESS_KEY": "poseops-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }


def start_s3_server(log_path: str | os.PathLike, timeout: float = 30) -> S3Server:
    port = free_port()
    process = start_process(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log_path=log_path
    )
    wait_until(lambda: port_open(port), timeout, "moto_server", process, log_path)
    return S3Server(f"http://127.0.0.1:{port}", process, Path(log_path))


def stop_s3_server(server: S3Server) -> None:
    stop_process(server.process)


def forget_s3_clients() -> None:
    """s3fs caches filesystem instances (and their listings): drop them when the endpoint changes."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def s3_environment(server: S3Server) -> Iterator[None]:
    """Set the server's AWS_* variables in os.environ (so subprocesses and local Ray workers see them)."""
    previous = {key: os.environ.get(key) for key in server.env()}
    os.environ.update(server.env())
    forget_s3_clients()
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        forget_s3_clients()


def s3_filesystem():
    """A fresh (uncached-listing) s3fs filesystem on the current environment's endpoint."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
