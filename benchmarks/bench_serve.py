"""Serving overheads, all in one run on this machine (loopback), with the smoke handmle (random weights):

1. DeploymentHandle overhead: median of `handle.predict` (decode in the caller, then a Serve replica's
   predict) minus the median of the same work in process (decode + predict_body), sequential calls,
   the two interleaved. Serve and uvicorn also alternate at each concurrency level: on a shared machine
   the load changes during a run, and ratios of interleaved figures suffer least from it.
2. HTTP p50/p99 at concurrency 1, 8, 32: `poseops.serve` on Ray Serve (Ingress + 1 family replica) vs
   the same FastAPI app (`create_api` over a `LocalClient`) under a plain uvicorn with 1 worker, the
   same model and torch threads.
3. Batching on (max_batch_size 8) vs off (1) at concurrency 32 on Serve: throughput and the family
   replica's CPU seconds per image.

    PYTHONPATH=platform .venv/bin/python benchmarks/bench_serve.py [--requests 160] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
TORCH_THREADS = 1
IMAGE_SHAPE = (240, 320, 3)


def smoke_predictor():
    """The smoke handmle with random weights (seed 0), single-threaded torch."""
    import torch

    from poseops.families import get_family
    from poseops.models import create_model

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    return get_family("handmle").make_predictor(create_model("handmle", "smoke").eval(), "bench")


def plain_app():
    """uvicorn --factory target: the same FastAPI app, predictor in process."""
    from poseops.config import ServeParams
    from poseops.serve.ingress import LocalClient, create_api

    return create_api({"handmle": LocalClient(smoke_predictor())}, ServeParams())


def png() -> bytes:
    image = np.random.default_rng(0).integers(0, 255, IMAGE_SHAPE, dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def quantiles_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def load(url: str, concurrency: int, requests: int) -> dict[str, float]:
    """`requests` POSTs of one PNG from `concurrency` threads; latency quantiles and throughput."""
    body, latencies, lock = png(), [], threading.Lock()
    remaining = [requests]

    def worker() -> None:
        with httpx.Client(timeout=120, headers={"content-type": "image/png"}) as client:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                began = time.perf_counter()
                response = client.post(f"{url}/v1/handmle/predict", content=body)
                elapsed = time.perf_counter() - began
                assert response.status_code == 200, response.text
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {**quantiles_ms(latencies), "throughput_rps": requests / wall, "requests": requests}


def in_process_vs_handle(runs: int) -> dict[str, float]:
    from ray import serve

    from poseops.config import FamilyServe, ServeParams
    from poseops.serve import FixedSource, predict_body
    from poseops.serve.app import FamilyModel, deployment_options
    from poseops.serve.images import decode_request

    limits, body = ServeParams(), png()
    predictor = smoke_predictor()

    def local() -> None:
        image, box = decode_request("image/png", body, limits)
        predict_body(predictor, image, box)

    from poseops.serve.runner import free_port

    serve.start(http_options={"port": free_port()})  # not 8000: another Serve may hold it
    options = deployment_options("handmle", FamilyServe(num_cpus=0.5, max_batch_size=1), limits)
    handle = serve.run(
        FamilyModel.options(**options).bind("handmle", FixedSource(smoke_predictor)),
        name="bench-handle",
        route_prefix=None,
    )

    def remote() -> None:
        image, box = decode_request("image/png", body, limits)
        handle.predict.remote(image, box).result()

    for _ in range(5):
        local()
        remote()
    samples: dict[str, list[float]] = {"in_process": [], "handle": []}
    for _ in range(runs):  # interleaved, so a change in the machine's load hits both alike
        for name, fn in (("in_process", local), ("handle", remote)):
            began = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - began)
    timings = {f"{name}_ms": 1000 * statistics.median(values) for name, values in samples.items()}
    serve.shutdown()  # the HTTP figures start their own Serve on their own port
    timings["handle_overhead_ms"] = timings["handle_ms"] - timings["in_process_ms"]
    return timings


def serve_app(max_batch_size: int):
    from poseops.config import FamilyServe, ServeParams
    from poseops.serve import FixedSource
    from poseops.serve.app import build_app

    serve_params = FamilyServe(
        num_cpus=0.5, max_batch_size=max_batch_size, batch_wait_timeout_s=0.01
    )
    return build_app(
        {"handmle": FixedSource(smoke_predictor)},
        {"handmle": serve_params},
        ServeParams(log_encoding="TEXT"),
    )


def family_replica_pid() -> int:
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    replicas = details["applications"]["default"]["deployments"]["family-handmle"]["replicas"]
    return next(r["pid"] for r in replicas if r["state"] == "RUNNING")


def plain_server(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench_serve:plain_app",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError("plain uvicorn server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=160, help="requests per concurrency level")
    parser.add_argument(
        "--runs", type=int, default=60, help="sequential calls for the handle figure"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import ray
    from ray import cloudpickle

    from poseops.paths import state_dir
    from poseops.serve.runner import free_port, serving

    cloudpickle.register_pickle_by_value(
        sys.modules[__name__]
    )  # replicas cannot import benchmarks/
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    results: dict[str, object] = {
        "torch_threads": TORCH_THREADS,
        "image": list(IMAGE_SHAPE),
        "load_average_at_start": os.getloadavg()[0],
    }
    levels = {1: max(30, args.requests // 4), 8: args.requests, 32: args.requests * 2}
    try:
        results["handle"] = in_process_vs_handle(args.runs)
        print(json.dumps(results["handle"]), flush=True)

        http: dict[str, dict] = {"serve": {}, "uvicorn": {}}
        batching: dict[str, dict] = {}
        port = free_port()
        proc = plain_server(port)
        try:
            plain = f"http://127.0.0.1:{port}"
            for max_batch in (1, 8):
                with serving(serve_app(max_batch)) as url:
                    load(url, 4, 16)  # warm
                    load(plain, 4, 16)
                    pid = family_replica_pid()
                    if max_batch == 1:  # Serve and uvicorn alternate at each level
                        for concurrency, count in levels.items():
                            for name, base in (("serve", url), ("uvicorn", plain)):
                                http[name][concurrency] = load(base, concurrency, count)
                                print(
                                    name,
                                    concurrency,
                                    json.dumps(http[name][concurrency]),
                                    flush=True,
                                )
                    cpu0 = psutil.Process(pid).cpu_times()
                    figures = load(url, 32, levels[32])
                    cpu1 = psutil.Process(pid).cpu_times()
                    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
                    figures["replica_cpu_ms_per_image"] = 1000 * cpu / levels[32]
                    batching[f"max_batch_{max_batch}"] = figures
                    print("batching", max_batch, json.dumps(figures), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
        results["http"] = http
        results["http_ratio_serve_over_uvicorn"] = {
            c: {q: http["serve"][c][q] / http["uvicorn"][c][q] for q in ("p50_ms", "p99_ms")}
            for c in levels
        }
        results["batching_c32"] = batching
        results["batching_throughput_ratio_8_over_1"] = (
            batching["max_batch_8"]["throughput_rps"] / batching["max_batch_1"]["throughput_rps"]
        )
    finally:
        ray.shutdown()
    out = args.out or state_dir() / "bench" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(
        json.dumps(
            {
                k: results[k]
                for k in (
                    "handle",
                    "http_ratio_serve_over_uvicorn",
                    "batching_throughput_ratio_8_over_1",
                )
            },
            indent=2,
        )
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
