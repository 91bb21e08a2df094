"""A dataset's own skeleton (from its COCO `categories`) works where a built-in one does: derive, the
loader's flip augmentation, and drawing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from poseops.annotations.internal import build_annotations
from poseops.config import AnnotationSource, AugmentParams, SplitParams
from poseops.datasets.loader import CropDataset, load_split_arrays
from poseops.datasets.shards import derive_dataset
from poseops.errors import DataError
from poseops.skeletons import skeleton_from_coco_category
from poseops.tasks import get_task
from poseops.viz.overlay import draw_keypoints

NAMES = ["tip", "left_arm", "right_arm", "left_leg", "right_leg"]
CATEGORY = {
    "id": 7,
    "name": "widget",
    "keypoints": NAMES,
    "skeleton": [[1, 2], [1, 3], [1, 4], [1, 5]],
}


@pytest.fixture()
def widget_annotations(tmp_path):
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(12):
        pixels = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.png"), pixels)
        points = np.c_[rng.uniform(20, 50, 5), rng.uniform(15, 45, 5), np.full(5, 2)]
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 80, "height": 64})
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 7,
                "keypoints": points.ravel().tolist(),
                "bbox": [18, 13, 34, 34],
                "area": 34 * 34,
                "iscrowd": 0,
                "num_keypoints": 5,
            }
        )
    coco = tmp_path / "widgets.json"
    coco.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [CATEGORY]})
    )
    labels = tmp_path / "labels.json"
    build_annotations(None, [AnnotationSource(format="coco", file=str(coco))], labels)
    return labels


def test_a_custom_skeleton_derives_loads_flips_and_draws(widget_annotations, tmp_path):
    data = get_task("topdown_crop").Options(
        augment=AugmentParams(flip=True, rotation_deg=0, color_jitter=0)
    )
    card = derive_dataset(
        get_task("topdown_crop").rows,
        widget_annotations,
        str(tmp_path / "ds"),
        data,
        SplitParams(val_fraction=0.25),
        skeleton="widget",
    )
    assert card["skeleton"]["keypoints"] == NAMES
    assert sorted(map(tuple, card["skeleton"]["flip_pairs"])) == [(1, 2), (3, 4)]
    assert sum(card["counts"].values()) == 12

    dataset = CropDataset(str(tmp_path / "ds"), "train", 32, 1.25, augment=data.augment, seed=3)
    assert dataset.flip_permutation.tolist() == [0, 2, 1, 4, 3]
    samples = list(dataset)
    assert all(s["keypoints"].shape == (5, 2) for s in samples)

    val = load_split_arrays(str(tmp_path / "ds"), "val", 32, 1.25)
    skeleton = skeleton_from_coco_category(CATEGORY)
    drawn = draw_keypoints(val["image"][0].copy(), val["keypoints"][0], skeleton)
    assert drawn.shape == (32, 32, 3) and (drawn != val["image"][0]).any()


def test_an_unknown_skeleton_name_is_refused_naming_the_file(widget_annotations, tmp_path):
    with pytest.raises(DataError, match="labels.json.*gadget"):
        derive_dataset(
            get_task("topdown_crop").rows,
            widget_annotations,
            str(tmp_path / "ds"),
            get_task("topdown_crop").Options(),
            SplitParams(),
            skeleton="gadget",
        )
