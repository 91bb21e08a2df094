"""The HTTP routes (poseops.serve.ingress.create_api) over in-process fake predictors, no Ray cluster;
and the family deployment through Serve's local testing mode."""

import base64
import functools

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from poseops.config import FamilyServe, ServeParams
from poseops.errors import RequestError
from poseops.serve import Predictor
from poseops.serve.ingress import LocalClient, create_api

FAMILIES = ["handmle", "otherfam"]  # served fake families; real ones slot in the same way


class CornerPredictor:
    """Answers the box's corners (the whole image when no box) as keypoints; misbehaves on request."""

    def __init__(self, name: str, version: str = "3"):
        self.name, self.version = name, version

    def predict(self, image_bgr: np.ndarray, box_xywh):
        assert image_bgr.dtype == np.uint8 and image_bgr.ndim == 3 and image_bgr.shape[2] == 3
        height, width = image_bgr.shape[:2]
        x, y, w, h = box_xywh if box_xywh is not None else (0.0, 0.0, float(width), float(height))
        if w == 13:
            raise RequestError(422, "box: 13 pixels is unlucky")
        if w == 666:
            raise RuntimeError("a genuine server bug")
        corners = np.array(
            [[x, y, 1.0], [x + w, y, 1.0], [x + w, y + h, 0.5], [x, y + h, 0.5]], dtype=np.float32
        )
        return {"keypoints": corners}  # numpy on purpose: the server converts it


def load_corner_predictor(name: str) -> CornerPredictor:
    return CornerPredictor(name)


@pytest.fixture(scope="module")
def client():
    clients = {family: LocalClient(CornerPredictor(f"fake-{family}")) for family in FAMILIES}
    with TestClient(
        create_api(clients, ServeParams()), raise_server_exceptions=False
    ) as test_client:
        yield test_client


def png(height: int = 48, width: int = 64) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 127, np.uint8))[1].tobytes()


def corners(x, y, w, h):
    return [[x, y, 1.0], [x + w, y, 1.0], [x + w, y + h, 0.5], [x, y + h, 0.5]]


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_multipart_json_and_raw(client, family):
    url = f"/v1/{family}/predict"
    response = client.post(
        url, files={"image": ("a.png", png(), "image/png")}, data={"box": "[4, 5, 10, 20]"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": {"name": f"fake-{family}", "version": "3"},
        "keypoints": corners(4, 5, 10, 20),
    }

    body = {"image_b64": base64.b64encode(png(30, 40)).decode()}
    response = client.post(url, json=body)
    assert response.status_code == 200 and response.json()["keypoints"] == corners(0, 0, 40, 30)

    response = client.post(
        url, content=png(), headers={"content-type": "image/png"}, params={"box": "1,2,3,4"}
    )
    assert response.status_code == 200 and response.json()["keypoints"] == corners(1, 2, 3, 4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "kwargs, status",
    [
        ({"content": b""}, 422),
        (
            {
                "content": np.random.default_rng(0).bytes(3000),
                "headers": {"content-type": "image/png"},
            },
            422,
        ),
        ({"content": b"x" * 10_000_001, "headers": {"content-type": "image/png"}}, 413),
        ({"json": {"image_b64": "!!"}}, 422),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415),
        ({"files": {"image": ("a.png", png(), "image/png")}, "data": {"box": "1,2,0,4"}}, 422),
        (
            {"files": {"image": ("a.png", png(), "image/png")}, "data": {"box": "1,2,13,4"}},
            422,
        ),  # predictor's own
        (
            {"files": {"image": ("a.png", png(), "image/png")}, "data": {"box": "1,2,666,4"}},
            500,
        ),  # a server bug
    ],
)
def test_errors_answer_their_status(client, family, kwargs, status):
    response = client.post(f"/v1/{family}/predict", **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    if status == 500:
        assert "bug" not in detail  # internals are logged, not answered


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_body_over_limit_is_413(client, family):
    chunks = (b"x" * 1_000_000 for _ in range(11))  # no Content-Length: refused while streaming
    response = client.post(
        f"/v1/{family}/predict", content=chunks, headers={"content-type": "image/png"}
    )
    assert response.status_code == 413, response.text


def test_unknown_family_is_404_naming_the_served_ones(client):
    response = client.post(
        "/v1/nosuch/predict", content=png(), headers={"content-type": "image/png"}
    )
    assert response.status_code == 404
    assert "nosuch" in response.json()["detail"] and FAMILIES[0] in response.json()["detail"]


def test_healthz_models_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok", "families": sorted(FAMILIES)}
    models = client.get("/v1/models").json()["models"]
    assert models == [{"family": f, "name": f"fake-{f}", "version": "3"} for f in sorted(FAMILIES)]
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/{family}/predict"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(operation["requestBody"]["content"])
    assert {"200", "404", "413", "422"} <= set(operation["responses"])
    assert "PredictResponse" in schema["components"]["schemas"]


def test_predictor_returning_model_key_is_a_server_error():
    class Rogue(CornerPredictor):
        def predict(self, image_bgr, box_xywh):
            return {"model": "mine", "keypoints": []}

    with TestClient(
        create_api({"x": LocalClient(Rogue("r"))}, ServeParams()), raise_server_exceptions=False
    ) as c:
        assert (
            c.post(
                "/v1/x/predict", content=png(), headers={"content-type": "image/png"}
            ).status_code
            == 500
        )


def test_family_batch_answers_each_request_its_own_body_or_error():
    """`@serve.batch` and `@serve.multiplexed` need a real replica (Serve's local testing mode has no
    replica context: tests/slow/test_serve_http.py covers them); the batch's work is `predict_many`."""
    from poseops.serve.app import predict_many

    assert isinstance(CornerPredictor("a"), Predictor)
    image = np.zeros((30, 40, 3), np.uint8)
    bodies = predict_many(
        CornerPredictor("fake-hand"), [image] * 3, [(1.0, 2.0, 3.0, 4.0), (0, 0, 13, 1), None]
    )
    assert bodies[0] == {
        "model": {"name": "fake-hand", "version": "3"},
        "keypoints": corners(1, 2, 3, 4),
    }
    assert isinstance(bodies[1], RequestError) and "unlucky" in str(bodies[1])
    assert bodies[2]["keypoints"] == corners(0, 0, 40, 30)


def test_predict_many_uses_a_predictors_batch_method_once():
    from poseops.serve.app import predict_many

    class Batched(CornerPredictor):
        calls = 0

        def predict_batch(self, images, boxes):
            Batched.calls += 1
            return [self.predict(image, box) for image, box in zip(images, boxes)]

    image = np.zeros((30, 40, 3), np.uint8)
    bodies = predict_many(Batched("b"), [image] * 4, [None] * 4)
    assert Batched.calls == 1 and len(bodies) == 4
    assert all(body["keypoints"] == corners(0, 0, 40, 30) for body in bodies)


def test_build_app_takes_options_from_params():
    from poseops.serve.app import build_app, deployment_options

    app = build_app(
        {f: functools.partial(load_corner_predictor, f) for f in FAMILIES},
        {FAMILIES[0]: FamilyServe(num_cpus=0.5, num_replicas=2)},
        ServeParams(),
    )
    assert app is not None
    options = deployment_options(
        "handmle",
        FamilyServe(
            num_cpus=0.5,
            num_replicas=2,
            max_batch_size=4,
            batch_wait_timeout_s=0.02,
            autoscaling={"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2},
        ),
        ServeParams(log_encoding="TEXT"),
    )
    assert options["ray_actor_options"] == {"num_cpus": 0.5}
    assert options["user_config"] == {"max_batch_size": 4, "batch_wait_timeout_s": 0.02}
    assert options["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 3,
        "initial_replicas": 2,
        "target_ongoing_requests": 2.0,
    }
    assert "num_replicas" not in options and options["logging_config"]["encoding"] == "TEXT"


def test_topdown_predict_batch_equals_one_at_a_time():
    """~8 s alone: importing torch and the first forward of a tiny handmle (shared by the suite)."""
    import torch

    from poseops.families import get_family
    from poseops.models import create_model

    torch.manual_seed(0)
    predictor = get_family("handmle").make_predictor(create_model("handmle", "tiny").eval(), "1")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(3)]
    boxes = [None, (4.0, 5.0, 30.0, 20.0), (0.0, 0.0, 10.0, 40.0)]
    batched = predictor.predict_batch(images, boxes)
    single = [predictor.predict(image, box) for image, box in zip(images, boxes)]
    assert len(batched) == 3
    for one, many in zip(single, batched):
        np.testing.assert_allclose(one["keypoints"], many["keypoints"], atol=1e-4)
