"""Every layout `poseops data import` reads comes back the same through `poseops data export coco` and a
COCO import: labels, 3D, cameras and the image fields sequences and views need
(`tests.helpers_annotations.round_trip`). The layouts' own readings are tested in test_importers.py and
test_import_layouts.py; here each source is imported once and sent round."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.helpers_annotations import (
    flawed_crowdpose,
    image,
    onehand10k_file,
    round_trip,
    write,
    write_freihand_native,
)

from poseops.annotations.internal import import_annotations
from poseops.skeletons import FACE68, HAND21


def face_file(folder: Path) -> tuple[Path, None, dict]:
    """A COCO-WholeBody-face style file (mmpose's `face-0` .. `face-67`), one face, no sigmas."""
    image(folder, "face.png", 200, 200)
    keypoints = [v for i in range(68) for v in (40 + 2 * i, 30 + i, 2 if i % 9 else 1)]
    data = {
        "images": [{"id": 5, "file_name": "face.png", "width": 200, "height": 200}],
        "annotations": [
            {
                "id": 9,
                "image_id": 5,
                "category_id": 1,
                "keypoints": keypoints,
                "bbox": [35, 25, 150, 80],
            }
        ],
        "categories": [{"id": 1, "name": "face", "keypoints": [f"face-{i}" for i in range(68)]}],
    }
    return write(folder / "face.json", data), None, {}


def crowdpose_file(folder: Path) -> tuple[Path, None, dict]:
    return write(folder / "crowdpose.json", flawed_crowdpose(folder)), None, {}


def onehand_file(folder: Path) -> tuple[Path, None, dict]:
    return onehand10k_file(folder, count=2)[0], None, {}


def freihand_native(folder: Path) -> tuple[Path, None, dict]:
    write_freihand_native(folder / "FreiHAND", poses=2, renderings=2)
    return folder / "FreiHAND", None, {}


def fixture(relative: str):
    def build(folder: Path, real: Path) -> tuple[Path, None, dict]:
        return real / relative, None, {}

    return build


def panoptic(folder: Path, real: Path) -> tuple[Path, Path, dict]:
    source = real / "panoptic_body3d" / "160906_band1"
    views = ("00_03", "00_06")
    for body_file in source.glob("hdPose3d_stage1_coco19/body3DScene_*.json"):
        frame = int(body_file.stem.split("_")[-1])
        for view in views:
            path = folder / "frames" / source.name / "hdImgs" / view / f"{view}_{frame:08d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.zeros((1080, 1920, 3), np.uint8))
    return source, folder / "frames", {"views": views}


HAND_WRITTEN = {
    "coco-own-set": ("coco", crowdpose_file),
    "coco-face68": ("coco", face_file),
    "coco-hand-naming": ("coco", onehand_file),
    "freihand-native": ("freihand", freihand_native),
}
REAL = {
    "coco-wholebody": ("coco", fixture("coco/test_coco_wholebody.json")),
    "freihand-coco": ("freihand", fixture("freihand/test_freihand.json")),
    "h36m": ("h36m", fixture("h36m/test_h36m_body3d.npz")),
    "panoptic": ("panoptic", panoptic),
    "posetrack": ("posetrack", fixture("posetrack18/annotations/test_posetrack18_val.json")),
}


@pytest.mark.parametrize("layout", list(HAND_WRITTEN))
def test_hand_written_layouts_round_trip(layout, tmp_path):
    fmt, build = HAND_WRITTEN[layout]
    file, images, options = build(tmp_path / "source")
    import_annotations(fmt, file, images, tmp_path / "out", **options)
    first, _ = round_trip(tmp_path / "out", tmp_path)
    if layout == "coco-face68":  # mapped onto the built-in set: its sigmas, no default
        (cat,) = first["categories"]
        assert cat["keypoints"] == list(FACE68.keypoints) and cat["sigmas"] == list(FACE68.sigmas)
    if layout == "freihand-native":
        assert all(len(a["keypoints_3d"]) == 63 for a in first["annotations"]) and first["cameras"]
    if layout == "coco-hand-naming":
        assert first["categories"][0]["keypoints"] == list(HAND21.keypoints)


@pytest.mark.parametrize("layout", list(REAL))
def test_real_layouts_round_trip(layout, real_fixtures, tmp_path):
    fmt, build = REAL[layout]
    file, images, options = build(tmp_path / "source", real_fixtures)
    import_annotations(fmt, file, images, tmp_path / "out", **options)
    first, again = round_trip(tmp_path / "out", tmp_path)
    assert first["annotations"]
    if layout in ("h36m", "panoptic"):  # cameras and views survive: 3D reprojects as before
        assert first["cameras"] and all(i.get("camera_id") for i in again["images"])
    if layout == "coco-wholebody":
        names = {c["name"] for c in again["categories"]}
        assert {"hand", "face"} <= names
    if layout == "posetrack":
        assert json.dumps([a["track_id"] for a in again["annotations"]]) == json.dumps(
            [a["track_id"] for a in first["annotations"]]
        )
