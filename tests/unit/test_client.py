"""poseops.client retries (over httpx's MockTransport) and `poseops score` against the real HTTP app
served by uvicorn on a free port (in-process fake predictors, no Ray)."""

import json
import threading
import time

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from typer.testing import CliRunner

from poseops.cli.main import app as cli
from poseops.client import PoseClient, ServiceError
from poseops.config import ServeParams
from poseops.serve.ingress import LocalClient, create_api
from poseops.serve.runner import free_port


def scripted(statuses, retry_after="0"):
    """A transport answering `statuses` in turn (then 200s); records each request's headers."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        status = statuses[len(seen) - 1] if len(seen) <= len(statuses) else 200
        if status == 200:
            return httpx.Response(200, json={"model": {"name": "m", "version": "1"}})
        headers = {"Retry-After": retry_after} if status in (429, 503) else {}
        return httpx.Response(status, json={"detail": f"status {status}"}, headers=headers)

    return httpx.MockTransport(handler), seen


def test_retries_503_and_429_after_retry_after_with_one_request_id():
    transport, seen = scripted([503, 429, 503], retry_after="0.2")
    with PoseClient("http://svc", transport=transport, retries=3) as client:
        began = time.perf_counter()
        body = client.predict("fam", b"\x89PNG\r\n\x1a\nxx", box=(1, 2, 3, 4), alias="challenger")
        waited = time.perf_counter() - began
    assert body["model"]["version"] == "1" and client.retried == 3
    assert 0.6 <= waited < 2.0  # three Retry-After waits of 0.2 s
    assert len({headers["X-Request-Id"] for headers in seen}) == 1
    assert seen[0]["X-Model-Alias"] == "challenger"


def test_client_errors_are_not_retried_and_exhaustion_is_an_error():
    transport, seen = scripted([422])
    with PoseClient("http://svc", transport=transport) as client:
        with pytest.raises(ServiceError, match="422 status 422") as refused:
            client.predict("fam", b"x")
    assert len(seen) == 1 and refused.value.status == 422
    transport, seen = scripted([503] * 10)
    with PoseClient("http://svc", transport=transport, retries=2) as client:
        with pytest.raises(ServiceError, match="no success after 3 attempts"):
            client.predict("fam", b"x")
    assert len(seen) == 3


def test_connection_errors_are_retried_then_reported():
    calls = []

    def handler(request):
        calls.append(1)
        raise httpx.ConnectError("refused")

    with PoseClient(
        "http://svc", transport=httpx.MockTransport(handler), retries=2, backoff_s=0.01
    ) as client:
        with pytest.raises(ServiceError, match="ConnectError"):
            client.health()
    assert len(calls) == 3


class CornerPredictor:
    name, version = "fake", "7"

    def predict(self, image_bgr, box_xywh):
        height, width = image_bgr.shape[:2]
        return {"keypoints": [[0.0, 0.0, 1.0], [float(width), float(height), 1.0]]}


@pytest.fixture(scope="module")
def service():
    port = free_port()
    api = create_api({"fam": LocalClient(CornerPredictor())}, ServeParams())
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_score_a_folder_prints_one_json_line_per_image(service, tmp_path):
    for i, (h, w) in enumerate([(20, 30), (40, 10)]):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.zeros((h, w, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    result = CliRunner().invoke(cli, ["score", str(tmp_path), "--family", "fam", "--url", service])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["file"].rsplit("/", 1)[1] for line in lines] == ["img0.png", "img1.png"]
    assert lines[0]["keypoints"][1] == [30, 20, 1] and lines[1]["model"]["version"] == "7"


def test_score_reports_failures_and_exits_1(service, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(
        cli, ["score", str(tmp_path / "broken.png"), "--family", "fam", "--url", service]
    )
    assert result.exit_code == 1
    line = json.loads(result.stdout.splitlines()[0])
    assert "422" in line["error"]
    missing = CliRunner().invoke(
        cli, ["score", str(tmp_path / "nope"), "--family", "fam", "--url", service]
    )
    assert missing.exit_code == 1 and "no such file" in " ".join(missing.output.split())
