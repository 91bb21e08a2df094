"""The served registry under load, on the slow suite's shared Ray cluster: hot promotion and rollback
with 16 concurrent clients, a replica killed under load, the deployed settings read back from Serve,
Prometheus metrics and JSON logs carrying request ids.

Two versions of a tiny handmle are registered in an `mlflow server` (sqlite backend, started here on
a free port); the app serves `RegistrySource("handmle", server)` with 2 replicas.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import httpx
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers_servers import free_port, start_process, stop_process, wait_http

from poseops import checkpoints, packaging
from poseops.client import PoseClient
from poseops.config import FamilyServe, ServeParams
from poseops.models import create_model
from poseops.tracking import registry

pytestmark = pytest.mark.slow

FAMILY = "handmle"
CLIENTS = 16
LOAD_S = 32.0
SWITCH_LIMIT_S = 10.0
SERVE = FamilyServe(num_cpus=0.25, num_replicas=2, max_batch_size=4, batch_wait_timeout_s=0.01)
LIMITS = ServeParams(alias_poll_s=1.0, request_timeout_s=30.0)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on sqlite with local artifacts; MLFLOW_TRACKING_URI points at it meanwhile."""
    root = tmp_path_factory.mktemp("mlflow-live")
    port = free_port()
    log = root / "mlflow.log"
    proc = start_process(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        log_path=log,
    )
    url = f"http://127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "POSEOPS_ROOT")}
    try:
        wait_http(f"{url}/health", timeout=240, process=proc, log_path=log)  # 8-15 s when quiet
        os.environ["MLFLOW_TRACKING_URI"] = url
        os.environ["POSEOPS_ROOT"] = str(root)
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_process(proc)


@pytest.fixture(scope="module")
def versions(mlflow_server, tmp_path_factory):
    """Two registered tiny handmle versions with different weights; the first is champion."""
    root = tmp_path_factory.mktemp("checkpoints")
    registered = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = create_model(FAMILY, "tiny").eval()
        checkpoints.save_checkpoint(
            root / f"s{seed}", FAMILY, FAMILY, model.state_dict(), model.config, {"metrics": {}}
        )
        registered.append(packaging.log_and_register(root / f"s{seed}", FAMILY)["version"])
    registry.promote(FAMILY, registered[0], {"pck": 0.5}, {}, why="first")
    return registered


@pytest.fixture(scope="module")
def url(ray_cluster, mlflow_server, versions):
    import ray

    from poseops.deploy import RegistrySource
    from poseops.serve.app import build_app
    from poseops.serve.runner import serving

    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_cluster.address)
    try:
        app = build_app({FAMILY: RegistrySource(FAMILY, mlflow_server)}, {FAMILY: SERVE}, LIMITS)
        began = time.perf_counter()
        with serving(app, request_timeout_s=LIMITS.request_timeout_s) as base_url:
            print(f"\nserve start-up on the cluster: {time.perf_counter() - began:.1f} s")
            warm(base_url)
            print(
                f"first answers (a version loaded in each replica): {time.perf_counter() - began:.1f} s"
            )
            yield base_url
    finally:
        if started:
            ray.shutdown()


def warm(base_url: str) -> None:
    """Concurrent first requests until both replicas answered (each loads the champion once)."""

    def one(i: int) -> None:
        response = httpx.post(
            f"{base_url}/v1/{FAMILY}/predict",
            content=png(i),
            headers={"content-type": "image/png"},
            timeout=120,
        )
        assert response.status_code == 200, response.text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def png(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


class Answer(NamedTuple):
    """One request of a Load: when it was sent and answered (time.monotonic), status, version."""

    done: float
    status: int
    version: str | None
    headers: dict
    sent: float


class Load:
    """`clients` threads posting images for as long as it runs; records an Answer per request."""

    def __init__(self, base_url: str, retrying: bool = False, clients: int = CLIENTS):
        self.base_url, self.retrying = base_url, retrying
        self.records: list[Answer] = []
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(clients)]
        self.retried = 0

    def run(self, index: int) -> None:
        image = png(index)
        if self.retrying:
            with PoseClient(self.base_url, timeout_s=30, retries=8) as client:
                while not self.stop.is_set():
                    sent = time.monotonic()
                    try:
                        body = client.predict(FAMILY, image)
                        status, version, headers = 200, body["model"]["version"], {}
                    except Exception as exc:  # a request that ended without a 2xx
                        status, version, headers = -1, None, {"error": str(exc)}
                    with self.lock:
                        self.records.append(
                            Answer(time.monotonic(), status, version, headers, sent)
                        )
                with self.lock:
                    self.retried += client.retried
            return
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.post(
                        f"{self.base_url}/v1/{FAMILY}/predict",
                        content=image,
                        headers={"content-type": "image/png"},
                    )
                    record = (
                        response.status_code,
                        response.headers.get("X-Model-Version"),
                        dict(response.headers),
                    )
                except httpx.HTTPError as exc:
                    record = (-1, None, {"error": repr(exc)})
                with self.lock:
                    self.records.append(Answer(time.monotonic(), *record, sent))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self.threads), "a client hung"


def test_hot_promotion_and_rollback_under_load(url, versions):
    v1, v2 = versions
    assert (
        httpx.post(
            f"{url}/v1/{FAMILY}/predict", content=png(0), headers={"content-type": "image/png"}
        ).headers["X-Model-Version"]
        == v1
    )
    began = time.monotonic()
    with Load(url) as load:
        time.sleep(8)
        promote_began = time.monotonic()  # the alias moves during the call
        registry.promote(FAMILY, v2, {"pck": 0.6}, {}, why="hot promotion test")
        promoted_at = time.monotonic()
        time.sleep(12)
        rollback_began = time.monotonic()
        registry.rollback(FAMILY, why="hot promotion test")
        rolled_back_at = time.monotonic()
        # serve on after the rollback (a loaded machine stretches the calls above)
        time.sleep(max(SWITCH_LIMIT_S + 2, LOAD_S - (time.monotonic() - began)))
    records = sorted(load.records)
    statuses = collections.Counter(answer.status for answer in records)
    print(
        f"\n{len(records)} requests in {records[-1].done - records[0].done:.1f} s: {dict(statuses)}"
    )
    assert statuses == {200: len(records)}, [r for r in records if r.status != 200][:5]
    assert records[-1].done - records[0].done >= 30
    assert {answer.version for answer in records} == {v1, v2}
    # Each switch happens once. The ingress resolves the alias for every request it receives, so a
    # request sent after the first answer from the new version gets the new version; requests already
    # in flight at the switch may still finish on the old one, after that first answer.
    first_v2 = min(a.done for a in records if a.version == v2)
    back_to_v1 = min(
        (a.done for a in records if a.version == v1 and a.sent > first_v2), default=float("inf")
    )
    after_promotion = [a.version for a in records if first_v2 < a.sent and a.done < rollback_began]
    after_rollback = [a.version for a in records if a.sent > back_to_v1]
    assert after_promotion and set(after_promotion) == {v2}, collections.Counter(after_promotion)
    assert after_rollback and set(after_rollback) == {v1}, collections.Counter(after_rollback)
    overlap = sum(
        1
        for a in records
        if (a.version == v1 and first_v2 < a.done < rollback_began)
        or (a.version == v2 and a.done > back_to_v1)
    )
    print(
        f"promote took {promoted_at - promote_began:.1f} s, rollback "
        f"{rolled_back_at - rollback_began:.1f} s; v{v2} served {first_v2 - promoted_at:+.1f} s after "
        f"promote returned, v{v1} again {back_to_v1 - rolled_back_at:+.1f} s after rollback returned; "
        f"{overlap} requests in flight at a switch finished on the version before it"
    )
    # each switch: not before its command began, within 10 s of the command's end
    assert promote_began <= first_v2 <= promoted_at + SWITCH_LIMIT_S
    assert rollback_began <= back_to_v1 <= rolled_back_at + SWITCH_LIMIT_S
    registry.set_alias(registry.registered_name(FAMILY), v2, "challenger")
    for header, value in (("X-Model-Alias", "challenger"), ("X-Model-Version", v2)):
        response = httpx.post(
            f"{url}/v1/{FAMILY}/predict",
            content=png(0),
            headers={"content-type": "image/png", header: value},
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"]["version"] == v2
        assert response.headers["X-Model-Version"] == v2


def replicas(family: str = FAMILY) -> list[dict]:
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    deployment = details["applications"]["default"]["deployments"][f"family-{family}"]
    return [replica for replica in deployment["replicas"] if replica["state"] == "RUNNING"]


def test_deployed_settings_read_back_from_serve_status(url):
    from ray import serve
    from ray.serve.context import _get_global_client

    status = serve.status().applications["default"]
    deployment = status.deployments[f"family-{FAMILY}"]
    assert deployment.status == "HEALTHY"
    assert deployment.replica_states.get("RUNNING") == SERVE.num_replicas
    details = _get_global_client().get_serve_details()["applications"]["default"]["deployments"]
    config = details[f"family-{FAMILY}"]["deployment_config"]
    assert config["ray_actor_options"]["num_cpus"] == SERVE.num_cpus
    assert config["num_replicas"] == SERVE.num_replicas
    assert config["max_ongoing_requests"] == SERVE.max_ongoing_requests
    assert config["user_config"] == {
        "max_batch_size": SERVE.max_batch_size,
        "batch_wait_timeout_s": SERVE.batch_wait_timeout_s,
    }
    assert details[f"family-{FAMILY}"]["target_num_replicas"] == SERVE.num_replicas


def test_killed_replica_under_load_503_with_retry_after_and_clients_retry(url):
    """One replica of two killed under load: 8 clients through `PoseClient` (retries) all end with a
    2xx; 8 raw HTTP clients (no retries) see only 200s and 503s with Retry-After, never a 500 or a hang."""
    import ray

    assert len(replicas()) == 2
    with Load(url, retrying=True, clients=8) as retrying, Load(url, clients=8) as raw:
        time.sleep(4)
        victim = replicas()[0]
        ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        killed_at = time.monotonic()
        time.sleep(8)
    failed = [r for r in retrying.records if r.status != 200]
    statuses = collections.Counter(answer.status for answer in raw.records)
    print(
        f"\nreplica killed under load: PoseClient {len(retrying.records)} calls, {len(failed)} "
        f"without a 2xx, {retrying.retried} retries; raw HTTP {dict(statuses)}"
    )
    assert not failed, failed[:3]
    assert set(statuses) <= {200, 503}, statuses
    assert all(
        int(answer.headers.get("retry-after", "0")) >= 1
        for answer in raw.records
        if answer.status == 503
    )
    # served after the kill
    assert sum(1 for answer in retrying.records if answer.done > killed_at + 1) > 0
    deadline = time.monotonic() + 60  # Serve replaces the replica
    while len(replicas()) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert len(replicas()) == 2


def test_prometheus_metrics_and_json_logs_with_request_ids(url):
    import ray

    request_id = f"live-test-{time.time_ns()}"
    for i in range(8):
        response = httpx.post(
            f"{url}/v1/{FAMILY}/predict",
            content=png(i),
            headers={
                "content-type": "image/png",
                "X-Request-Id": request_id if i == 0 else f"r{i}",
            },
        )
        assert response.status_code == 200
    assert response.headers.get_list("X-Request-Id") == ["r7"]  # one header, the client's id
    node = next(n for n in ray.nodes() if n["Alive"] and n.get("MetricsExportPort"))
    metrics_url = f"http://127.0.0.1:{node['MetricsExportPort']}/metrics"
    wanted = {
        "ray_serve_num_http_requests_total": None,
        "ray_serve_http_request_latency_ms_bucket": None,
        "ray_poseops_batch_size_bucket": 'family="handmle"',
    }
    deadline, text, found = time.monotonic() + 60, "", set()
    while time.monotonic() < deadline and len(found) < len(wanted):
        text = "\n".join(
            httpx.get(f"http://127.0.0.1:{n['MetricsExportPort']}/metrics", timeout=10).text
            for n in ray.nodes()
            if n["Alive"] and n.get("MetricsExportPort")
        )
        found = {
            name
            for name, label in wanted.items()
            if any(
                line.startswith(name) and (label is None or label in line)
                for line in text.splitlines()
            )
        }
        time.sleep(2)
    assert found == set(wanted), (set(wanted) - found, metrics_url)
    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "serve"
    lines = [
        line
        for path in logs.glob("replica_default_Ingress_*.log")
        for line in path.read_text(errors="replace").splitlines()
        if request_id in line
    ]
    assert lines, f"no Ingress log line with {request_id} in {logs}"
    record = json.loads(lines[0])
    assert record["request_id"] == request_id and re.match(r"\d", record["asctime"])
