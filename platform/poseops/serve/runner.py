"""Run a Serve application: in the foreground until SIGINT/SIGTERM, or as a context manager.

    run_foreground(app, host, port)          -> 0 after a clean stop (what `poseops serve` calls)
    with serving(app, host, port) as url:    ...  (tests, flows; always shuts down)
    python -m poseops.serve.runner --app module:factory [--host H] [--port P]

Ray: connects to `RAY_ADDRESS` when set, otherwise starts a private local instance; either way only
a Ray instance that this module started is shut down. Port 0 picks a free port.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from poseops.errors import ConfigError, PoseopsError
from poseops.ray_cluster import attach_ray


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    """ConfigError naming `serve.port` if something already listens there (Serve would hang on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"serve.port: cannot listen on {host}:{port} ({exc.strerror})"
            ) from None


def base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}"


def ensure_ray(**init_kwargs: Any) -> bool:
    """Attach to Ray (poseops.ray_cluster.attach_ray) unless this process already is; True if this call
    did (so must stop it). Serve keeps Ray's dashboard default (`include_dashboard=None`) and gives a
    cluster's workers no numerics pins; `init_kwargs` (a `namespace`, ...) go to ray.init."""
    import ray

    if ray.is_initialized():
        return False
    attach_ray(**{"include_dashboard": None, "pin_worker_numerics": False, **init_kwargs})
    return True


def start(app: Any, host: str, port: int, request_timeout_s: float | None = None) -> str:
    """Start Serve's HTTP proxy on host:port and deploy `app` at "/"; returns the base URL when ready.

    One proxy, on the head node: on a cluster whose nodes share an address (a one-machine cluster) a
    proxy per node would contend for the port. `request_timeout_s` bounds every HTTP request."""
    from ray import serve

    http_options: dict[str, Any] = {"host": host, "port": port}
    if request_timeout_s is not None:
        http_options["request_timeout_s"] = request_timeout_s
    serve.start(proxy_location="HeadOnly", http_options=http_options)
    serve.run(app, blocking=False, route_prefix="/")
    return base_url(host, port)


def stop(started_ray: bool) -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        if started_ray:
            ray.shutdown()


@contextlib.contextmanager
def serving(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    request_timeout_s: float | None = None,
    **ray_init_kwargs: Any,
) -> Iterator[str]:
    """Serve `app` while the block runs; yields the base URL; always shuts Serve (and own Ray) down."""
    port = port or free_port(host)
    check_port_free(host, port)
    started_ray = ensure_ray(**ray_init_kwargs)
    try:
        yield start(app, host, port, request_timeout_s)
    finally:
        stop(started_ray)


def run_foreground(
    app: Any,
    host: str,
    port: int,
    ready_message_fn: Callable[[str], str] | None = None,
    request_timeout_s: float | None = None,
    **ray_init_kwargs: Any,
) -> int:
    """Serve `app` until SIGINT or SIGTERM, then shut down cleanly; returns the exit code (0).

    Prints one ready line (`ready_message_fn(url)` or a default) once the app answers. A signal
    during start-up is honoured as soon as start-up ends. Must run in the main thread.
    """
    port = port or free_port(host)
    check_port_free(host, port)
    stop_requested = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop_requested.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    started_ray = False
    try:
        started_ray = ensure_ray(**ray_init_kwargs)
        # ray.init installs its own SIGTERM handler: take it back.
        for sig in previous:
            signal.signal(sig, lambda *_: stop_requested.set())
        url = start(app, host, port, request_timeout_s)
        default = f"poseops: serving at {url} (API docs: {url}/docs); Ctrl-C to stop"
        print(ready_message_fn(url) if ready_message_fn else default, flush=True)
        while not stop_requested.wait(0.5):
            pass
        print("poseops: stopping", flush=True)
    finally:
        stop(started_ray)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def load_factory(spec: str) -> Any:
    """'package.module:name' -> the object (a Serve Application, or a zero-argument callable making one)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app {spec!r}: expected 'module:name'")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--app {spec!r}: {exc}") from None
    return target() if callable(target) else target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m poseops.serve.runner", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--app", required=True, help="module:name of a Serve Application or a factory of one"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        return run_foreground(load_factory(args.app), args.host, args.port)
    except PoseopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
