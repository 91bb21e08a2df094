"""vmhpe wired in: the family row, profiles, its task's training parts (collate + step), scoring (AP, PCK,
counts), the gate on an untrained model, the bottom-up predictor and the endpoint on real images."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from poseops.config import ServeParams
from poseops.errors import ConfigError, GateRefused
from poseops.families import get_family, load_params, model_schemas
from poseops.models import create_model
from poseops.profiles import write_profile
from poseops.serve.ingress import LocalClient, create_api
from poseops.tasks import get_task
from poseops.tasks.bottomup_image import (
    COUNT_SCORE,
    COUNT_SCORES,
    BottomUpPredictor,
    bottomup_collate,
    bottomup_input,
    bottomup_train_step,
    count_accuracy,
    count_score_from_validation,
    people_json,
    predict_split,
    score_people,
    split_from_images,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_people import people_images

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]
BOTTOM_UP = get_task("bottomup_image")


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return create_model("vmhpe", "tiny", **overrides)


def truth_of(people):
    return {
        "keypoints": np.stack([p["keypoints"] for p in people]),
        "visibility": np.stack([p["visibility"] for p in people]),
        "boxes": np.array([p["bbox"] for p in people]),
    }


def as_prediction(truth, scores=None, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    count = len(truth["keypoints"])
    scores = np.full(count, 0.9) if scores is None else np.asarray(scores, dtype=np.float64)
    return {
        "keypoints": truth["keypoints"] + rng.normal(0, noise, truth["keypoints"].shape),
        "keypoint_scores": np.ones(truth["visibility"].shape) * scores[:, None],
        "scores": scores,
    }


# ---------------------------------------------------------------- the row, the profiles, the task
def test_family_row_and_task():
    vmhpe, handmle = get_family("vmhpe"), get_family("handmle")
    assert (vmhpe.task, vmhpe.skeleton, vmhpe.primary_metric) == ("bottomup_image", "coco17", "ap")
    assert vmhpe.task_module is BOTTOM_UP and handmle.task_module is get_task("topdown_crop")
    assert (vmhpe.val_metric, handmle.val_metric) == ("val_ap", "val_pck")
    assert "vmhpe" in model_schemas()
    with pytest.raises(ConfigError, match="multiview_group.*train_step"):  # rows only, so far
        get_task("multiview_group").train_step(None, None, None)


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_every_profile_has_a_vmhpe_block_with_an_ap_gate(profile, tmp_path):
    params = load_params(write_profile(profile, tmp_path / "params.yaml"))
    fam = params.families["vmhpe"]
    assert fam.data.kind == "bottomup_image" and "min_ap" in fam.gate
    assert fam.model.input_size % 32 == 0
    assert BOTTOM_UP.inference(fam, {"flip_test": True}) == {
        "input_size": fam.model.input_size,
        "flip_test": True,
    }
    assert "handmle" in params.families  # the other family is untouched


def test_collate_makes_targets_after_padding_and_a_step_learns():
    model = tiny(centre_jitter=0)
    size, kwargs = model.config.input_size, None
    from poseops.models.vmhpe import target_kwargs

    kwargs = target_kwargs(model.config)
    rng = np.random.default_rng(0)
    samples = []
    for count in (2, 1):  # padded to P_max = 3; rows past num_people are garbage on purpose
        keypoints = rng.uniform(size * 0.2, size * 0.8, (3, 17, 2)).astype(np.float32)
        samples.append(
            {
                "image": torch.from_numpy(rng.integers(0, 255, (3, size, size), dtype=np.uint8)),
                "keypoints": torch.from_numpy(keypoints),
                "visibility": torch.full((3, 17), 2.0),
                "num_people": torch.tensor(count),
            }
        )
    batch = bottomup_collate(samples, kwargs)
    assert batch["image"].shape == (2, 3, size, size) and batch["num_people"].tolist() == [2, 1]
    assert batch["targets"]["instance_image"].tolist() == [0, 0, 1]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = [bottomup_train_step(model, batch, optimizer)["loss"] for _ in range(25)]
    assert set(bottomup_train_step(model, batch, optimizer)) >= {
        "loss",
        "loss_multi",
        "loss_instance",
        "loss_contrastive",
    }
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses


# ---------------------------------------------------------------- scoring
def test_scoring_perfect_noisy_and_missing_people():
    truth = [truth_of(people) for _, people in people_images(0, 4, size=128)]
    perfect = score_people([as_prediction(t) for t in truth], truth)
    assert perfect["ap"] == pytest.approx(1.0) and perfect["ar"] == pytest.approx(1.0)
    assert perfect["count_accuracy"] == 1.0 and perfect["pck_0.05"] == 1.0
    groups = {row["group"]: row["value"] for row in perfect["pck_table"]["groups"]}
    assert set(groups) == {"wrist", "elbow", "shoulder", "hip", "knee", "ankle", "head"} and set(
        groups.values()
    ) == {1.0}

    noisy = score_people([as_prediction(t, noise=4.0) for t in truth], truth)
    assert 0.0 < noisy["ap"] < perfect["ap"] and noisy["pck_0.05"] < 1.0

    dropped = [
        dict(as_prediction(t), scores=np.array([0.9] + [0.1] * (len(t["keypoints"]) - 1)))
        for t in truth
    ]
    assert (
        count_accuracy(dropped, truth) == 0.0
    )  # every image has >= 2 people, one scores above 0.3
    missing = [{k: v[:1] for k, v in as_prediction(t).items()} for t in truth]
    result = score_people(missing, truth)
    assert result["ar"] < 0.7 and result["pck_0.2"] < 0.7  # unmatched people count as misses


def test_the_count_threshold_is_picked_on_validation_where_true_people_score_low():
    truth = [truth_of(people) for _, people in people_images(0, 4, size=128)]
    # every true person found, but scored 0.12 (a product of two sigmoid peaks), plus one spurious at 0.04
    low = []
    for t in truth:
        found = as_prediction(t)
        low.append(
            {
                "keypoints": np.concatenate([found["keypoints"], found["keypoints"][:1] + 50.0]),
                "keypoint_scores": np.concatenate(
                    [found["keypoint_scores"], found["keypoint_scores"][:1]]
                ),
                "scores": np.array([0.12] * len(t["keypoints"]) + [0.04]),
            }
        )
    assert count_accuracy(low, truth) == 0.0  # nobody above the default 0.3
    picked = count_score_from_validation(low, truth)
    assert 0.04 <= picked < 0.12 and count_accuracy(low, truth, picked) == 1.0
    assert score_people(low, truth, count_score=picked)["count_accuracy"] == 1.0
    # when several thresholds count right, the one nearest the default wins
    assert count_score_from_validation([as_prediction(t) for t in truth], truth) == COUNT_SCORE


def test_window_pck_cuts_training_windows_and_maps_them_back_to_the_source():
    from poseops.datasets.transforms import apply_affine
    from poseops.tasks.bottomup_image import window_pck

    data = people_images(2, 4, size=128, people_per_image=(1, 1))
    truth = [truth_of(people) for _, people in data]
    model = tiny()
    samples = []
    for (image, _), item in zip(data, truth):
        pixels, affine = bottomup_input(image, 64)
        samples.append(
            {
                "image": torch.from_numpy(pixels.transpose(2, 0, 1).copy()),
                "keypoints": torch.from_numpy(apply_affine(item["keypoints"], affine)).float(),
                "visibility": torch.as_tensor(item["visibility"]).float(),
                "num_people": torch.tensor(1),
            }
        )
    batch = bottomup_collate(samples, model.target_kwargs(None))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):  # fit these 4 images, so that PCK is well above 0
        bottomup_train_step(model, batch, optimizer)
    split = split_from_images([image for image, _ in data], 64, truth)
    whole = score_people(predict_split(model, split, flip_test=False), truth)["pck_0.2"]
    # a window as big as the input is the whole input: the same people, the same PCK
    assert whole > 0.3
    assert window_pck(model, split, 64, flip_test=False, alpha=0.2) == pytest.approx(whole)
    assert 0.0 <= window_pck(model, split, 32, flip_test=False, alpha=0.2) <= 1.0


def test_an_untrained_model_scores_below_the_smoke_gate_and_is_refused(tmp_path):
    from poseops.tracking.registry import check_gate

    gate = load_params(write_profile("smoke", tmp_path / "params.yaml")).families["vmhpe"].gate
    data = people_images(1, 4, size=128)
    untrained = tiny()
    predictions = predict_split(
        untrained, split_from_images([i for i, _ in data], 64), flip_test=False
    )
    result = score_people(predictions, [truth_of(p) for _, p in data])
    assert result["ap"] < gate["min_ap"]
    with pytest.raises(GateRefused) as refused:
        check_gate("vmhpe", {"ap": result["ap"]}, gate)
    message = str(refused.value)
    assert (
        "ap" in message and f"{gate['min_ap']:.4f}" in message and f"{result['ap']:.4f}" in message
    )


# ---------------------------------------------------------------- the predictor
def test_the_endpoint_input_is_the_training_loaders_letterbox():
    from poseops.datasets.bottomup import make_image_sample

    image = np.random.default_rng(0).integers(0, 255, (60, 100, 3), dtype=np.uint8)
    row = {
        "image": cv2.imencode(".png", image)[1].tobytes(),
        "num_people": 1,
        "sample_id": 0,
        "keypoints": [10.0, 20.0] * 17,
        "keypoints_clean": [10.0, 20.0] * 17,
        "visibility": [2] * 17,
    }
    sample = make_image_sample(row, 17, 64)
    pixels, affine = bottomup_input(image, 64)
    assert np.array_equal(pixels, sample["image"])
    assert np.allclose(cv2.invertAffineTransform(affine), sample["affine_to_source"], atol=1e-4)


class FixedPeople(torch.nn.Module):
    """A stand-in model that 'finds' one person with every keypoint at input pixel (40, 20)."""

    def __init__(self, input_size=64):
        super().__init__()
        self.config = type("C", (), {"input_size": input_size})()
        self.seen = []

    def preprocess(self, images):
        self.seen.append(tuple(images.shape))
        return images.float()

    def predict(self, images, flip_test=False):
        return [
            {
                "keypoints": torch.tensor([[[40.0, 20.0]] * 17]),
                "keypoint_scores": torch.full((1, 17), 0.5),
                "scores": torch.tensor([0.5]),
            }
            for _ in range(len(images))
        ]


def test_predictor_maps_input_pixels_back_to_the_source_image_and_the_box():
    model = FixedPeople(64)
    predictor = BottomUpPredictor(model, "m", "1", flip_test=False)
    image = np.zeros(
        (100, 200, 3), np.uint8
    )  # longer side 200 -> zoom 0.32, centred on (99.5, 49.5)
    body = predictor.predict(image, None)
    assert model.seen[-1] == (1, 64, 64, 3)
    x, y, score = body["people"][0]["keypoints"][0]
    assert (x, y) == pytest.approx(
        ((40 - 31.5) / 0.32 + 99.5, (20 - 31.5) / 0.32 + 49.5), abs=0.01
    ) and score == 0.5
    assert body["people"][0]["score"] == 0.5 and len(body["people"][0]["keypoints"]) == 17
    boxed = predictor.predict(
        image, (100.0, 10.0, 50.0, 80.0)
    )  # side 80 -> zoom 0.8, centre (124.5, 49.5)
    x, y, _ = boxed["people"][0]["keypoints"][0]
    assert (x, y) == pytest.approx(((40 - 31.5) / 0.8 + 124.5, (20 - 31.5) / 0.8 + 49.5), abs=0.01)


def test_tiny_predictor_answers_people_inside_the_image():
    predictor = BottomUpPredictor(tiny(max_people=4, centre_threshold=0.0), "poseops-vmhpe", "1")
    image = np.random.default_rng(0).integers(0, 255, (90, 150, 3), dtype=np.uint8)
    people = predictor.predict(image)["people"]
    assert 1 <= len(people) <= 4
    scores = [p["score"] for p in people]
    assert scores == sorted(scores, reverse=True)
    points = np.array([p["keypoints"] for p in people])
    assert points.shape == (len(people), 17, 3)
    assert (
        (points[..., :2] >= 0).all()
        and (points[..., 0] <= 149).all()
        and (points[..., 1] <= 89).all()
    )


def test_pyfunc_predictor_of_the_family_takes_records():
    records = [{"image_bgr": np.zeros((64, 64, 3), np.uint8), "box": None}] * 2
    answers = get_family("vmhpe").predictor(tiny(max_people=2, centre_threshold=0.0))(records)
    assert len(answers) == 2 and all("people" in a for a in answers)


def test_people_json_is_plain_floats():
    body = people_json(np.zeros((1, 17, 2), np.float32), np.ones((1, 17)), np.array([0.7]))
    assert body[0]["score"] == 0.7 and type(body[0]["keypoints"][0][0]) is float


# ---------------------------------------------------------------- the endpoint
def test_endpoint_on_real_coco_images(real_fixtures):
    images = sorted((real_fixtures / "coco").glob("*.jpg"))
    if not images:
        pytest.skip("no COCO fixture images")
    predictor = BottomUpPredictor(tiny(max_people=3, centre_threshold=0.0), "poseops-vmhpe", "7")
    api = create_api({"vmhpe": LocalClient(predictor)}, ServeParams())
    with TestClient(api, raise_server_exceptions=False) as client:
        for path in images[:2]:
            height, width = cv2.imread(str(path)).shape[:2]
            answer = client.post(
                "/v1/vmhpe/predict",
                content=path.read_bytes(),
                headers={"content-type": "image/jpeg"},
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model"] == {"name": "poseops-vmhpe", "version": "7"}
            points = np.array([p["keypoints"] for p in body["people"]])
            assert points.shape[1:] == (17, 3) and all(
                isinstance(p["score"], float) for p in body["people"]
            )
            assert (points[..., :2] >= 0).all() and (points[..., 0] <= width - 1).all()
            assert (points[..., 1] <= height - 1).all()
    small = create_api({"vmhpe": LocalClient(predictor)}, ServeParams(max_pixels=1000))
    with TestClient(small, raise_server_exceptions=False) as client:
        refused = client.post(
            "/v1/vmhpe/predict",
            content=images[0].read_bytes(),
            headers={"content-type": "image/jpeg"},
        )
        assert refused.status_code == 413 and "pixels" in refused.json()["detail"]


# ---------------------------------------------------------------- on a derived bottomup_image dataset
@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    """8 synthetic 128-px images of 2-3 people (4 sequences) as internal annotations, derived locally."""
    import json

    from poseops.config import SplitParams
    from poseops.datasets.derive import derive_dataset
    from poseops.skeletons import get_skeleton

    root = tmp_path_factory.mktemp("vmhpe")
    skeleton = get_skeleton("coco17")
    images, annotations = [], []
    for i, (image, people) in enumerate(people_images(5, 8, size=128)):
        cv2.imwrite(str(root / f"img_{i}.png"), image)
        images.append(
            {
                "id": i + 1,
                "file_name": f"img_{i}.png",
                "frame_index": None,
                "width": 128,
                "height": 128,
                "sequence": f"seq{i // 2}",
                "subject": "",
                "source": "synthetic",
            }
        )
        for person in people:
            flat = np.concatenate(
                [person["keypoints"], person["visibility"][:, None]], axis=1
            ).ravel()
            box = [float(v) for v in person["bbox"]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "keypoints": [float(v) for v in flat],
                    "num_keypoints": int((person["visibility"] > 0).sum()),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    category = {
        "id": 1,
        "name": "person",
        "keypoints": list(skeleton.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in skeleton.edges],
    }
    labels = root / "labels.json"
    labels.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [category]})
    )
    url = str(root / "derived")
    derive_dataset(
        BOTTOM_UP.rows,
        labels,
        url,
        BOTTOM_UP.Options(),
        SplitParams(val_fraction=0.5),
        skeleton="coco17",
        executor="local",
    )
    return url


def test_bottom_up_hooks_load_step_and_validate_a_derived_dataset(derived):
    model = tiny()
    cfg = {
        "dataset_url": derived,
        "input_size": model.config.input_size,
        "seed": 0,
        "batch_size": 2,
        "loader_workers": 0,
        "data": {
            "train_window": None,
            "augment": {
                "rotation_deg": 20.0,
                "scale": [0.8, 1.2],
                "shift": 0.05,
                "color_jitter": 0.2,
                "flip": True,
            },
        },
    }
    dataset, loader = BOTTOM_UP.train_loader(cfg, model, 0, 1)
    dataset.set_epoch(0)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 64, 64) and len(batch["targets"]["instance_image"]) >= 1
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    assert np.isfinite(BOTTOM_UP.train_step(model, batch, optimizer)["loss"])
    val = BOTTOM_UP.load_validation(cfg)
    assert len(val["images_rgb"]) == len(val["truth"]) >= 1
    numbers = BOTTOM_UP.validate(model, val)
    assert set(numbers) == {"val_ap", "val_count_accuracy"} and 0.0 <= numbers["val_ap"] <= 1.0


def test_evaluate_writes_ap_counts_and_the_per_joint_pck_table(derived, tmp_path):
    import json

    from poseops.evaluate import evaluate_model
    from poseops.tasks.bottomup_image import load_evaluation_split

    params = load_params(write_profile("smoke", tmp_path / "params.yaml"))
    model = tiny(max_people=4)
    fam = params.families["vmhpe"].model_copy(
        update={"model": model.config}
    )  # the baseline: these weights
    report = evaluate_model(get_family("vmhpe"), fam, model, derived, tmp_path / "metrics")
    written = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert written["ap"] == report["ap"] and 0.0 <= report["ap"] <= 1.0
    # what the model trains with, in words: heatmap loss, weights, contrastive form
    assert written["loss"] == model.loss_description() and written["loss"].startswith("focal")
    assert {
        "ar",
        "ap50",
        "count_accuracy",
        "pck_0.1",
        "baselines",
        "per_joint_pck",
        "protocol",
    } <= set(written)
    assert set(written["per_joint_pck"]) == {
        "wrist",
        "elbow",
        "shoulder",
        "hip",
        "knee",
        "ankle",
        "head",
    }
    assert report["num_images"] >= 1 and report["num_people"] >= 2 * report["num_images"]
    # evaluate scores the test split (validation picked the checkpoint) and says so
    assert written["split"] == "test" and written["split_rule"].startswith("test: ")
    # the baseline is the untrained model of the training seed (here the evaluated one), scored without flip
    data = load_evaluation_split(derived, "test", model.config.input_size, fam.evaluate.max_images)
    unflipped = score_people(predict_split(model, data, flip_test=False), data["truth"])
    assert written["flip_test"] is True and written["protocol"]["untrained_flip_test"] is False
    assert written["baselines"]["untrained_ap"] == pytest.approx(unflipped["ap"] or 0.0)
    # each model is counted at the threshold its validation images pick, stated beside the default's count
    assert (
        written["count_score"] in COUNT_SCORES
        and "validation" in written["protocol"]["count_score"]
    )
    val = load_evaluation_split(derived, "val", model.config.input_size, 32)
    untrained_pick = count_score_from_validation(
        predict_split(model, val, flip_test=False), val["truth"]
    )
    assert written["baselines"]["untrained_count_accuracy"] == pytest.approx(
        count_accuracy(predict_split(model, data, flip_test=False), data["truth"], untrained_pick)
    )
    assert 0.0 <= written["count_accuracy_at_default"] <= 1.0
    curve = json.loads((tmp_path / "metrics" / "pck_curve.json").read_text())
    assert any(
        row["untrained"] > 0 for row in curve
    )  # matched people: a comparison that could fail
    assert [row["untrained"] for row in curve] == pytest.approx(
        [unflipped[f"pck_{row['threshold']:g}"] for row in curve]
    )
    for name in (
        "per_keypoint.json",
        "pck_curve.json",
        "pck_curve.png",
        "per_keypoint_pck.png",
        "overlays.png",
        "best_worst.png",
    ):
        assert (tmp_path / "metrics" / name).stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == sorted(
        a.name for a in BOTTOM_UP.artefacts
    )


def test_evaluate_states_the_window_pck_when_training_windows_are_smaller_than_the_input(
    derived, tmp_path
):
    """Training cuts windows smaller than the evaluated inputs: metrics.json then carries PCK@0.1 from
    training-size windows beside the whole inputs' PCK@0.1, the measured effect of the global pooling's
    statistics (and leaves it out when the windows are the whole input)."""
    import json

    from poseops.evaluate import evaluate_model
    from poseops.tasks.bottomup_image import load_evaluation_split, window_pck

    params = load_params(write_profile("smoke", tmp_path / "params.yaml"))
    model = tiny(max_people=4)
    size = model.config.input_size
    vmhpe = params.families["vmhpe"]
    for window, stated in ((size // 2, True), (size, False)):
        fam = vmhpe.model_copy(
            update={
                "model": model.config,
                "data": vmhpe.data.model_copy(update={"train_window": window}),
            }
        )
        out = tmp_path / f"metrics_{window}"
        evaluate_model(get_family("vmhpe"), fam, model, derived, out)
        written = json.loads((out / "metrics.json").read_text())
        assert ("window_pck_0.1" in written) is stated
    data = load_evaluation_split(derived, "test", size, fam.evaluate.max_images)
    expected = window_pck(model, data, size // 2, True)
    stated_value = json.loads((tmp_path / f"metrics_{size // 2}" / "metrics.json").read_text())
    assert stated_value["window_pck_0.1"] == pytest.approx(expected)


def test_the_demo_sends_bottom_up_images_whole_and_draws_every_scored_person(derived):
    from poseops.demo import answer_people, held_out_example

    image, box = held_out_example(derived)
    assert (
        box is None and image.ndim == 3 and image.shape[2] == 3
    )  # no box_in_crop column: the whole image
    person = lambda score, x: {"keypoints": [[x, 1.0, 0.9]] * 17, "score": score}  # noqa: E731
    kept = answer_people({"people": [person(0.2, 1.0), person(0.8, 2.0), person(0.5, 3.0)]})
    assert [p[0, 0] for p in kept] == [2.0, 3.0] and kept[0].shape == (17, 3)
    assert [p[0, 0] for p in answer_people({"people": [person(0.1, 4.0), person(0.2, 5.0)]})] == [
        5.0
    ]  # the best
    top_down = answer_people({"keypoints": [[1.0, 2.0, 0.5]] * 21})
    assert len(top_down) == 1 and top_down[0].shape == (21, 3)


def test_the_demo_draws_people_at_the_evaluations_count_threshold(tmp_path):
    import json

    from poseops.demo import SHOWN_SCORE, answer_people, shown_score

    assert shown_score(tmp_path) == SHOWN_SCORE  # no metrics.json yet
    (tmp_path / "metrics.json").write_text(json.dumps({"ap": 0.2, "count_score": 0.05}))
    person = lambda score, x: {"keypoints": [[x, 1.0, 0.9]] * 17, "score": score}  # noqa: E731
    body = {"people": [person(0.12, 1.0), person(0.08, 2.0), person(0.01, 3.0)]}
    assert [p[0, 0] for p in answer_people(body, shown_score(tmp_path))] == [1.0, 2.0]


def test_the_demo_overlay_draws_each_shown_person_where_the_endpoint_put_it():
    """The demo's picture: an enlarged copy of the image with each person the endpoint returned at or above
    the shown score drawn at its keypoints, and nothing drawn for the others."""
    from poseops.demo import answer_people, draw_people
    from poseops.skeletons import get_skeleton

    image = np.full((64, 48, 3), 40, np.uint8)
    shown = [[4.0 + k, 4.0 + 2 * k, 0.9] for k in range(17)]  # the upper left
    weak = [[40.0 + k % 3, 50.0 + k % 5, 0.9] for k in range(17)]  # the lower right
    body = {"people": [{"keypoints": shown, "score": 0.8}, {"keypoints": weak, "score": 0.01}]}
    overlay = draw_people(image, answer_people(body, 0.5), get_skeleton("coco17"))
    zoom = 480 // 64
    assert overlay.shape == (64 * zoom, 48 * zoom, 3) and (image == 40).all()  # the input is kept
    for x, y, _ in shown:
        assert (overlay[round((y + 0.5) * zoom - 0.5), round((x + 0.5) * zoom - 0.5)] != 40).any()
    assert (overlay[46 * zoom :, 36 * zoom :] == 40).all()  # the weak person is not drawn
