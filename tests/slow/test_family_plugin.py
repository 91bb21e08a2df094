"""A family from an installed package (tests/plugins/toyfamily: entry points `poseops.models` and
`poseops.families`) runs the whole pipeline under `dvc repro` and is served by `poseops serve`, with no
poseops file edited: stage subprocesses, Ray Train workers and Serve replicas all find it by its entry
points. The tiny profile's capture; the toy family is the only family."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np
import pytest
import yaml

from conftest import BIN, REPO, make_project
from helpers_servers import log_tail, start_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
PLUGIN = REPO / "tests" / "plugins" / "toyfamily"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def plugin_project(tmp_path_factory):
    """The project with the plug-in installed into a folder of its own (on the stages' PYTHONPATH only, so
    other tests' family tables stay as they are), params.yaml holding only the toy family, dvc.yaml rendered."""
    tmp = tmp_path_factory.mktemp("plugin")
    site = tmp / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
    )
    root = make_project(tmp / "project", profile="tiny")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        POSEOPS_ROOT=str(root),
        PYTHONPATH=os.pathsep.join([str(root / "platform"), str(site)]),
    )
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["capture"]["bodies"] = None
    toy = {
        **params["families"]["handmle"],
        "model": {"input_size": 64, "num_keypoints": 21, "width": 8},
    }
    params["families"] = {"toyhands": toy}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(
        [str(BIN / "poseops"), "pipeline", "render"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    return root, env


def test_a_plugin_family_runs_the_pipeline_and_is_served(plugin_project):
    root, env = plugin_project
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert list(stages["train"]["foreach"]) == ["toyhands"]

    run = subprocess.run(
        [str(BIN / "dvc"), "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=480
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for stage in ("derive@toyhands", "train@toyhands", "evaluate@toyhands", "promote@toyhands"):
        assert f"Running stage '{stage}'" in run.stdout
    report = json.loads((root / "metrics" / "toyhands" / "metrics.json").read_text())
    assert (
        report["family"] == "toyhands" and 0.0 <= report["pck"] <= 1.0 and report["num_samples"] > 0
    )
    promotion = json.loads((root / "metrics" / "toyhands" / "promotion.json").read_text())
    assert promotion["family"] == "toyhands" and promotion["promoted"] is True

    port = free_port()
    # to a file: an unread pipe fills with the forwarded request logs and blocks the server
    serve_log = root.parent / "serve.log"
    server = start_process(
        [str(BIN / "poseops"), "serve", "--port", str(port)], serve_log, env=env, cwd=root
    )
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.time() + 240
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).json().get("families") == ["toyhands"]:
                    break
            except (httpx.HTTPError, ValueError):  # not up yet, or a proxy's non-JSON answer
                pass
            assert server.poll() is None, log_tail(serve_log)
            time.sleep(1)
        else:
            pytest.fail("poseops serve did not answer /healthz with the toy family")
        image = np.random.default_rng(0).integers(0, 255, (96, 80, 3), dtype=np.uint8)
        png = cv2.imencode(".png", image)[1].tobytes()
        answer = httpx.post(
            f"{base}/v1/toyhands/predict",
            files={"image": ("x.png", png, "image/png")},
            data={"box": "10,10,50,60"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        keypoints = np.array(answer.json()["keypoints"])
        assert keypoints.shape == (21, 3) and np.isfinite(keypoints).all()
        assert answer.json()["model"]["name"] == "poseops-toyhands"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
