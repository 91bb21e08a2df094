"""Version choice, request ids, API keys, rate limits and 503s of the HTTP app (create_api), in process
over fake registries: no Ray cluster, no MLflow."""

import asyncio
import time

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from ray.exceptions import ActorDiedError

from poseops.config import FamilyServe, ServeParams
from poseops.errors import ConfigError, RequestError
from poseops.serve import DEFAULT_ALIAS
from poseops.serve.ingress import LocalClient, Versions, create_api


class VersionPredictor:
    """Answers one keypoint whose x is its version number (tells versions apart in a body)."""

    def __init__(self, version: str):
        self.name, self.version = "poseops-fake", version

    def predict(self, image_bgr, box_xywh):
        return {"keypoints": [[float(self.version), 0.0, 1.0]]}


class FakeRegistry:
    """Versions 1..3, aliases that a test moves; counts lookups; can be made unreachable."""

    def __init__(self):
        self.aliases = {DEFAULT_ALIAS: "1", "challenger": "2"}
        self.lookups = 0
        self.down = False

    def resolve(self, alias_or_version: str) -> str:
        self.lookups += 1
        if self.down:
            raise ConnectionError("registry unreachable")
        if alias_or_version.isdigit():
            if alias_or_version not in {"1", "2", "3"}:
                raise RequestError(404, f"no version {alias_or_version}")
            return alias_or_version
        if alias_or_version not in self.aliases:
            raise RequestError(404, f"no alias {alias_or_version!r}")
        return self.aliases[alias_or_version]

    def load(self, version: str) -> VersionPredictor:
        return VersionPredictor(version)


def png() -> bytes:
    return cv2.imencode(".png", np.full((20, 30, 3), 99, np.uint8))[1].tobytes()


def post(client, headers=None):
    return client.post(
        "/v1/fam/predict", content=png(), headers={"content-type": "image/png", **(headers or {})}
    )


@pytest.fixture
def registry():
    return FakeRegistry()


@pytest.fixture
def client(registry):
    api = create_api({"fam": LocalClient(registry)}, ServeParams(alias_poll_s=0.2))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def test_headers_pick_the_version_and_the_response_names_it(client):
    for headers, version in [
        ({}, "1"),
        ({"X-Model-Version": "3"}, "3"),
        ({"X-Model-Alias": "challenger"}, "2"),
        ({"X-Model-Alias": "champion"}, "1"),
    ]:
        response = post(client, headers)
        assert response.status_code == 200, (headers, response.text)
        assert response.headers["X-Model-Version"] == version
        assert response.json()["model"] == {"name": "poseops-fake", "version": version}
        assert response.json()["keypoints"][0][0] == float(version)
    models = client.get("/v1/models", headers={"X-Model-Alias": "challenger"}).json()["models"]
    assert models == [{"family": "fam", "name": "poseops-fake", "version": "2"}]


@pytest.mark.parametrize(
    "headers, status, words",
    [
        ({"X-Model-Version": "9"}, 404, "no version 9"),
        ({"X-Model-Alias": "nosuch"}, 404, "nosuch"),
        ({"X-Model-Version": "two"}, 422, "X-Model-Version"),
        ({"X-Model-Alias": "a b"}, 422, "X-Model-Alias"),
        ({"X-Model-Version": "1", "X-Model-Alias": "challenger"}, 422, "not both"),
    ],
)
def test_bad_version_headers_are_client_errors(client, headers, status, words):
    response = post(client, headers)
    assert response.status_code == status and words in response.json()["detail"]


def test_a_moved_alias_is_served_after_the_poll_interval(client, registry):
    assert post(client).headers["X-Model-Version"] == "1"
    registry.aliases[DEFAULT_ALIAS] = "2"  # a promotion
    seen, began = "1", time.monotonic()
    while seen == "1" and time.monotonic() - began < 3:
        seen = post(client).headers["X-Model-Version"]
    assert seen == "2" and time.monotonic() - began < 1.0  # alias_poll_s=0.2


def test_versions_cache_reads_the_registry_once_per_interval_and_survives_its_outage(registry):
    async def scenario():
        versions = Versions({"fam": registry}, ttl_s=0.1)
        assert await versions.resolve("fam", DEFAULT_ALIAS) == "1"
        for _ in range(20):
            await versions.resolve("fam", DEFAULT_ALIAS)
        assert registry.lookups == 1
        registry.down = True
        await asyncio.sleep(0.15)
        assert await versions.resolve("fam", DEFAULT_ALIAS) == "1"  # last known, not an error
        with pytest.raises(Exception, match="cannot resolve"):
            await versions.resolve("fam", "challenger")  # never known: Unavailable (503)

    asyncio.run(scenario())


def test_request_id_echoed_or_generated(client):
    assert post(client, {"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    first, second = post(client).headers["X-Request-Id"], post(client).headers["X-Request-Id"]
    assert first and second and first != second
    assert post(client, {"X-Model-Version": "9"}).headers["X-Request-Id"]  # errors carry it too


def test_api_keys_from_env_and_file(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_POSEOPS_KEYS", "k-env-1, k-env-2")
    (tmp_path / "keys").write_text("k-file\n\n")
    limits = ServeParams(api_keys_env="TEST_POSEOPS_KEYS", api_keys_file=str(tmp_path / "keys"))
    with TestClient(create_api({"fam": LocalClient(registry)}, limits)) as client:
        assert client.get("/healthz").status_code == 200  # open
        assert client.get("/openapi.json").status_code == 200
        refused = post(client)
        assert refused.status_code == 401 and "X-API-Key" in refused.json()["detail"]
        assert refused.headers["X-Request-Id"]
        assert post(client, {"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/v1/models").status_code == 401
        for key in ("k-env-1", "k-env-2", "k-file"):
            assert post(client, {"X-API-Key": key}).status_code == 200


def test_api_keys_configured_but_none_found_is_a_config_error(registry, tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_POSEOPS_NO_KEYS", raising=False)
    with pytest.raises(ConfigError, match="no key found"):
        create_api({"fam": LocalClient(registry)}, ServeParams(api_keys_env="TEST_POSEOPS_NO_KEYS"))
    with pytest.raises(ConfigError, match="api_keys_file"):
        create_api(
            {"fam": LocalClient(registry)}, ServeParams(api_keys_file=str(tmp_path / "absent"))
        )


def test_rate_limit_per_client_answers_429_with_retry_after(registry):
    limits = ServeParams(rate_limit="3/minute")
    with TestClient(create_api({"fam": LocalClient(registry)}, limits)) as client:
        statuses = [post(client, {"X-API-Key": "a"}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = post(client, {"X-API-Key": "a"})
        assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
        assert post(client, {"X-API-Key": "b"}).status_code == 200  # another client
        assert client.get("/healthz").status_code == 200  # never limited


def test_rate_limit_and_serve_params_are_validated():
    with pytest.raises(ValidationError, match="rate_limit"):
        ServeParams(rate_limit="many per day")
    with pytest.raises(ValidationError, match="alias_poll_s"):
        ServeParams(alias_poll_s=30)
    with pytest.raises(ValidationError, match="a batch could never fill"):
        FamilyServe(max_batch_size=16, max_ongoing_requests=8)
    with pytest.raises(ValidationError, match="outside autoscaling"):
        FamilyServe(num_replicas=5, autoscaling={"min_replicas": 1, "max_replicas": 2})
    with pytest.raises(ValidationError, match="below min_replicas"):
        FamilyServe(autoscaling={"min_replicas": 3, "max_replicas": 2})


class DyingClient:
    """A family whose replica died mid-request, as a DeploymentHandle reports it."""

    source = FakeRegistry()

    async def predict(self, image_bgr, box_xywh, version=None):
        raise ActorDiedError()

    async def info(self, version=None):
        raise ActorDiedError()


def test_a_dead_replica_is_503_with_retry_after():
    with TestClient(
        create_api({"fam": DyingClient()}, ServeParams()), raise_server_exceptions=False
    ) as client:
        response = post(client)
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) >= 1
        assert "retry" in response.json()["detail"]
        assert client.get("/v1/models").status_code == 503


def test_assess_body_that_is_not_utf8_is_422_not_500(client):
    """Found by schemathesis (tests/slow/test_serve_fuzz.py): bytes that are not UTF-8 JSON."""
    response = client.post(
        "/v1/assess", content=b'{"\xe9', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "not valid JSON" in response.json()["detail"]
