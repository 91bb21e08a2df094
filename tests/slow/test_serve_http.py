"""Real HTTP through Ray Serve with fake families; then the foreground runner in a subprocess stopped by
SIGTERM. One Ray instance (num_cpus=2) for the module; the subprocess starts its own."""

import functools
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from poseops.config import FamilyServe, ServeParams
from poseops.errors import RequestError
from poseops.serve.schemas import PredictResponse

pytestmark = pytest.mark.slow

FAMILIES = ["handmle"]  # served fake families; more slot in here
REPO = Path(__file__).resolve().parents[2]


class CornerPredictor:
    """Answers the box's corners (the whole image when no box) as [x, y, score] keypoints."""

    def __init__(self, name: str):
        self.name, self.version = name, "1"

    def predict(self, image_bgr, box_xywh):
        height, width = image_bgr.shape[:2]
        x, y, w, h = box_xywh if box_xywh is not None else (0.0, 0.0, float(width), float(height))
        if w == 13:
            raise RequestError(422, "box: 13 pixels is unlucky")
        return {"keypoints": [[x, y, 1.0], [x + w, y, 1.0], [x + w, y + h, 1.0], [x, y + h, 1.0]]}


def load_corner_predictor(name: str) -> CornerPredictor:
    return CornerPredictor(name)


def fake_app():
    """The Serve application of the fake families (also the subprocess's `--app` factory)."""
    from ray import cloudpickle  # Ray's own copy pickles the deployments

    from poseops.serve.app import build_app

    cloudpickle.register_pickle_by_value(
        sys.modules[__name__]
    )  # replicas cannot import a test module
    loaders = {
        family: functools.partial(load_corner_predictor, f"fake-{family}") for family in FAMILIES
    }
    return build_app(
        loaders, {family: FamilyServe(num_cpus=0.25) for family in FAMILIES}, ServeParams()
    )


@pytest.fixture(scope="module")
def url():
    import ray

    from poseops.serve.runner import serving

    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local", num_cpus=2, include_dashboard=False
        )  # never a `ray start` cluster
    try:
        began = time.perf_counter()
        with serving(fake_app()) as base_url:
            print(f"\nserve start-up: {time.perf_counter() - began:.1f} s")
            yield base_url
    finally:
        if started:
            ray.shutdown()


def png(height: int = 48, width: int = 64) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 200, np.uint8))[1].tobytes()


def png_claiming(width: int, height: int) -> bytes:
    data = png(8, 8)
    at = data.index(b"IHDR")
    ihdr = struct.pack(">II", width, height) + data[at + 12 : at + 17]
    return (
        data[:at] + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[at + 21 :]
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_limits_and_errors_over_http(url, family):
    predict = f"{url}/v1/{family}/predict"
    raw = {"content-type": "image/png"}
    cases = {
        "20000x20000 png": (
            httpx.post(predict, content=png_claiming(20000, 20000), headers=raw),
            413,
        ),
        "11 MB body": (httpx.post(predict, content=b"\0" * 11_000_000, headers=raw), 413),
        "empty body": (httpx.post(predict, content=b"", headers=raw), 422),
        "random bytes": (
            httpx.post(predict, content=np.random.default_rng(0).bytes(5000), headers=raw),
            422,
        ),
        "zero-size box": (
            httpx.post(predict, content=png(), headers=raw, params={"box": "1,1,0,5"}),
            422,
        ),
        "predictor's refusal": (
            httpx.post(predict, content=png(), headers=raw, params={"box": "1,1,13,5"}),
            422,
        ),
        "unknown family": (httpx.post(f"{url}/v1/nosuch/predict", content=png(), headers=raw), 404),
    }
    for name, (response, status) in cases.items():
        assert response.status_code == status, (name, response.text)
        assert response.json()["detail"], name
    assert (
        "unlucky" in cases["predictor's refusal"][0].json()["detail"]
    )  # the replica's message, unwrapped


@pytest.mark.parametrize("family", FAMILIES)
def test_valid_image_answers_the_schema(url, family):
    response = httpx.post(
        f"{url}/v1/{family}/predict",
        files={"image": ("a.png", png(30, 40), "image/png")},
        data={"box": "2,3,10,20"},
    )
    assert response.status_code == 200, response.text
    body = PredictResponse.model_validate(response.json())
    assert body.model.name == f"fake-{family}"
    assert body.keypoints == [(2, 3, 1), (12, 3, 1), (12, 23, 1), (2, 23, 1)]
    whole = httpx.post(
        f"{url}/v1/{family}/predict", content=png(30, 40), headers={"content-type": "image/png"}
    )
    assert whole.json()["keypoints"][2] == [40, 30, 1]


def test_health_models_docs(url):
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "families": sorted(FAMILIES)}
    models = httpx.get(f"{url}/v1/models").json()["models"]
    assert [m["family"] for m in models] == sorted(FAMILIES)
    assert all(m["name"] == f"fake-{m['family']}" for m in models)
    assert httpx.get(f"{url}/docs").status_code == 200
    assert "/v1/{family}/predict" in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_latency_of_50_requests(url):
    image = png(240, 320)
    latencies = []
    with httpx.Client(headers={"content-type": "image/png"}) as client:
        for _ in range(50):
            began = time.perf_counter()
            assert client.post(f"{url}/v1/{FAMILIES[0]}/predict", content=image).status_code == 200
            latencies.append(time.perf_counter() - began)
    p50 = statistics.median(latencies)
    print(
        f"\np50 latency over 50 requests: {p50 * 1000:.1f} ms (max {max(latencies) * 1000:.1f} ms)"
    )
    assert p50 < 1.0


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_runner_subprocess_stops_on_sigterm(tmp_path):
    from poseops.serve.runner import free_port

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(Path(__file__).parent)]),
    }
    env.pop("RAY_ADDRESS", None)
    command = [
        sys.executable,
        "-m",
        "poseops.serve.runner",
        "--app",
        "test_serve_http:fake_app",
        "--port",
        str(port),
    ]
    began = time.perf_counter()
    with open(tmp_path / "stderr.log", "w") as stderr:
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=tmp_path
        )
    lines: list[str] = []
    ready = threading.Event()

    def read_stdout():
        for line in proc.stdout:
            lines.append(line)
            if "serving at" in line:
                ready.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        if not ready.wait(120):
            pytest.fail(
                f"no ready line; stdout: {lines}; stderr: {(tmp_path / 'stderr.log').read_text()[-3000:]}"
            )
        print(f"\nrunner subprocess ready in {time.perf_counter() - began:.1f} s")
        assert f"http://127.0.0.1:{port}" in "".join(lines)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        stopping = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        print(f"runner stopped in {time.perf_counter() - stopping:.1f} s")
        assert not _port_open(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
