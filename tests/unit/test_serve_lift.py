"""POST /v1/lifter/predict: JSON 2D tracks in, the centre frame's root-relative 3D out; 422 for bad shapes,
too many frames and non-finite numbers; the image route stays for image families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from poseops.config import ServeParams
from poseops.models import create_model
from poseops.serve.ingress import LocalClient, create_api
from poseops.serve.lift import MAX_FRAMES
from poseops.tasks.lifting_sequence import LifterPredictor

pytestmark = pytest.mark.usefixtures("one_thread")


def client(head: str = "seq2frame") -> TestClient:
    torch.manual_seed(0)
    model = create_model("lifter", "tiny", head=head).eval()
    predictor = LifterPredictor(model, "poseops-lifter", "3", flip_test=True)
    return TestClient(create_api({"lifter": LocalClient(predictor)}, ServeParams()))


def track(frames: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(50, 350, (frames, 17, 2))
    return np.concatenate([xy, np.ones((frames, 17, 1))], -1).tolist()


def test_centre_frame_3d_for_both_skeletons():
    api = client()
    for skeleton in ("h36m17", "coco17"):
        r = api.post(
            "/v1/lifter/predict",
            json={"keypoints": track(7), "image_size": [400, 400], "skeleton": skeleton},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == {"name": "poseops-lifter", "version": "3"}
        assert body["frame"] == 3 and len(body["keypoints_3d"]) == 17
        assert body["keypoints_3d"][0] == [0.0, 0.0, 0.0]  # root-relative
        assert np.isfinite(body["keypoints_3d"]).all()


def test_seq2seq_answers_every_frame():
    r = client("seq2seq").post(
        "/v1/lifter/predict", json={"keypoints": track(5), "image_size": [400, 300]}
    )
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["frames"]).shape == (5, 17, 3)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"keypoints": track(MAX_FRAMES + 1)}, "keypoints"),
        ({"keypoints": []}, "keypoints"),
        ({"keypoints": [p[:16] for p in track(3)]}, "expected 17"),
        ({"keypoints": [[q[:2] for q in p] for p in track(3)]}, "expected \\[x, y, score\\]"),
        ({"image_size": [0, 400]}, "image_size"),
        ({"skeleton": "mpii16"}, "skeleton"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_requests_are_422_naming_the_field(change, field):
    body = {"keypoints": track(3), "image_size": [400, 400], **change}
    r = client().post("/v1/lifter/predict", json=body)
    assert r.status_code == 422
    assert pytest.importorskip("re").search(field, r.json()["detail"])


def test_non_finite_numbers_are_422():
    text = (
        '{"keypoints": ['
        + ",".join(["[" + ",".join(["[NaN, 1, 1]"] * 17) + "]"] * 3)
        + '], "image_size": [4, 4]}'
    )
    r = client().post(
        "/v1/lifter/predict", content=text, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "not finite" in r.json()["detail"]
    r = client().post(
        "/v1/lifter/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_an_image_sent_to_the_lifter_is_refused():
    from poseops.errors import RequestError

    predictor = LifterPredictor(
        create_model("lifter", "tiny"), "poseops-lifter", "1", flip_test=False
    )
    with pytest.raises(RequestError, match="lifts 2D tracks"):
        predictor.predict(np.zeros((8, 8, 3), np.uint8), None)
