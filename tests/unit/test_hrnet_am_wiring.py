"""hrnet_am wired in: the family row, its profile blocks, PCK with the person-box normaliser, COCO AP with
ground-truth boxes, and `POST /v1/hrnet_am/predict` through the generic per-family route."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from poseops.config import ServeParams
from poseops.families import get_family, load_params, model_schemas
from poseops.models import create_model
from poseops.profiles import write_profile
from poseops.serve.ingress import LocalClient, create_api
from poseops.skeletons import get_skeleton
from poseops.tasks import get_task
from poseops.tasks.topdown_crop import coco_ap_ground_truth_boxes, score_predictions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_family_row():
    family = get_family("hrnet_am")
    assert (family.model, family.task, family.skeleton, family.primary_metric) == (
        "hrnet_am",
        "topdown_crop",
        "coco17",
        "pck",
    )
    assert family.task_module is get_task("topdown_crop") and "hrnet_am" in model_schemas()


@pytest.mark.parametrize("profile", ["tiny", "smoke", "paper"])
def test_every_profile_scores_pck_at_0_1_of_the_person_box(profile, tmp_path):
    params = load_params(write_profile(profile, tmp_path / "params.yaml"))
    fam = params.families["hrnet_am"]
    assert fam.data.kind == "topdown_crop"
    assert (fam.data.pck_threshold, fam.data.pck_normaliser) == (0.1, "bbox")
    assert fam.model.input_size % 32 == 0
    assert params.families["handmle"].data.pck_threshold == 0.2  # handmle keeps its PCK@0.2


def split(n=6, seed=0):
    """A fake evaluation split of person crops: labels, boxes and the crop -> source affine (x2, +10)."""
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(8, 56, (n, 17, 2))
    affine = np.tile(np.array([[2.0, 0.0, 10.0], [0.0, 2.0, 10.0]]), (n, 1, 1))
    lo, hi = keypoints.min(1), keypoints.max(1)
    return {
        "keypoints": keypoints,
        "keypoints_clean": keypoints,
        "visibility": np.full((n, 17), 2.0),
        "norm_size": (hi - lo).max(1),
        "box_size": np.full(n, 60.0),
        "box_source": np.concatenate([lo * 2 + 10, (hi - lo) * 2], axis=1),
        "affine_to_source": affine,
    }


def test_pck_uses_the_person_box_and_the_threshold():
    val = split()
    names = list(get_skeleton("coco17").keypoints)
    pred = val["keypoints"] + [5.0, 0.0]  # 5 px: within 0.1 x 60 = 6, outside 0.1 x 40 etc.
    result = score_predictions(pred, val, names, threshold=0.1, normaliser="bbox")["pck"]
    assert result.value == 1.0 and result.protocol["normaliser"] == "bbox"
    assert (
        score_predictions(pred, val, names, threshold=0.08, normaliser="bbox")["pck"].value == 0.0
    )


def test_coco_ap_with_ground_truth_boxes():
    val = split()
    skeleton = get_skeleton("coco17")
    scores = np.ones((6, 17))
    perfect = coco_ap_ground_truth_boxes(val["keypoints"], scores, val, skeleton)
    assert perfect["AP"] == pytest.approx(1.0)
    far = coco_ap_ground_truth_boxes(val["keypoints"] + 20.0, scores, val, skeleton)
    assert far["AP"] < 0.2


def test_predict_endpoint_answers_17_keypoints_in_the_image():
    torch.manual_seed(0)
    model = create_model("hrnet_am", "tiny")
    predictor = get_family("hrnet_am").make_predictor(model, version="5")
    api = create_api({"hrnet_am": LocalClient(predictor)}, ServeParams())
    image = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    with TestClient(api, raise_server_exceptions=False) as client:
        answer = client.post(
            "/v1/hrnet_am/predict",
            files={"image": ("a.png", png, "image/png")},
            data={"box": "[10, 12, 30, 50]"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"]["version"] == "5" and "hrnet_am" in body["model"]["name"]
        points = np.array(body["keypoints"])
        assert points.shape == (17, 3)
        # the box with the crop margin (1.25 x 50 = 62.5 px square around the box's centre)
        assert (points[:, 0] >= 25 - 32).all() and (points[:, 0] <= 25 + 32).all()
        assert (points[:, 1] >= 37 - 32).all() and (points[:, 1] <= 37 + 32).all()
        whole = client.post(
            "/v1/hrnet_am/predict", content=png, headers={"content-type": "image/png"}
        )
        assert whole.status_code == 200 and len(whole.json()["keypoints"]) == 17


def test_flip_test_setting_reaches_the_predictor_as_it_reaches_predict_tracks(tmp_path):
    """The checkpoint's inference settings carry the model block's flip test; the endpoint's predictor
    passes them to the model as predict@<family> does; a model without a flip test accepts only False."""
    params = load_params(write_profile("tiny", tmp_path / "params.yaml"))
    fam = params.families["hrnet_am"]
    task = get_task("topdown_crop")
    assert task.inference(fam, {"flip_test": True}) == {
        "crop_margin": fam.data.crop_margin,
        "flip_test": fam.model.flip_test,
    }
    assert "flip_test" not in params.families["handmle"].model.model_dump()
    assert task.inference(params.families["handmle"], {"flip_test": False})["flip_test"] is False

    model = create_model("hrnet_am", "tiny").eval()
    image = np.random.default_rng(1).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    family = get_family("hrnet_am")
    answers = {
        flip: np.array(family.make_predictor(model, flip_test=flip).predict(image)["keypoints"])
        for flip in (False, True)
    }
    own = np.array(family.make_predictor(model, flip_test=None).predict(image)["keypoints"])
    assert not np.allclose(answers[False], answers[True])
    assert np.array_equal(own, answers[model.config.flip_test])

    from poseops.errors import ConfigError
    from poseops.tasks.topdown_crop import predict_crops

    hand = create_model("handmle", "tiny").eval()
    crops = np.zeros((1, hand.config.input_size, hand.config.input_size, 3), np.uint8)
    assert predict_crops(hand, crops, flip_test=False)[0].shape[0] == 1
    with pytest.raises(ConfigError, match="no flip test"):
        predict_crops(hand, crops, flip_test=True)
