"""FreiHAND -> the internal form, from either of the two forms users have.

- The native release: a folder (or its `training_K.json`) holding `training_K.json` (N 3x3
  intrinsics), `training_xyz.json` (N x 21 x 3 joints, metres, camera frame) and `rgb/%08d.jpg`.
  The release has 4 renderings of each of the N poses: image i shows pose i mod N. 2D keypoints
  are the projection uv = K·xyz / z (no distortion); `keypoints_3d` are camera-frame mm, and each
  image gets its own camera (identity extrinsics, so world = that camera's frame).
- The COCO-style form converted for mmpose (a JSON with images/annotations/categories).

Both name the category `hand` with the `hand21` keypoints (same order as FreiHAND's), and put the
renderings of one pose in one `sequence` (`freihand_<i mod N>`), so they never straddle splits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from poseops.annotations.coco import coco_to_internal, read_coco_json
from poseops.annotations.internal import category_for, relative_to
from poseops.errors import DataError
from poseops.geometry import Camera
from poseops.skeletons import HAND21
from poseops.storage import read_json

NUM_POSES = 32560  # FreiHAND v2 training poses; images i and i + 32560·m show the same pose
IMAGE_SIZE = 224
_RGB_NAME = re.compile(r"^(\d{8})\.(jpg|png)$")


def project_uv(K: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """uv [..., 21, 2] px = (K·xyz)[:2] / z for intrinsics K [..., 3, 3] and joints xyz [..., 21, 3]."""
    p = np.einsum("...ij,...kj->...ki", K, xyz)
    return p[..., :2] / p[..., 2:3]


def read_freihand(
    file: str | Path, images_dir: str | Path | None, out_folder: Path | None
) -> dict[str, Any]:
    """FreiHAND, native layout (a folder or its training_K.json) or the COCO-style JSON."""
    file = Path(file)
    if file.is_dir() or file.name.endswith("_K.json"):
        return read_freihand_native(
            file if file.is_dir() else file.parent,
            images_dir,
            out_folder,
            prefix=file.name[: -len("_K.json")] if file.is_file() else "training",
        )
    return read_freihand_coco(file, images_dir, out_folder)


def read_freihand_native(
    folder: Path, images_dir: str | Path | None, out_folder: Path | None, prefix: str = "training"
) -> dict[str, Any]:
    """<folder>/<prefix>_K.json + <prefix>_xyz.json; images <images_dir or folder>/rgb/%08d.jpg."""
    k_file, xyz_file = folder / f"{prefix}_K.json", folder / f"{prefix}_xyz.json"
    K = _matrix_list(k_file, (3, 3))
    xyz = _matrix_list(xyz_file, (HAND21.num_keypoints, 3))
    if len(K) != len(xyz):
        raise DataError(f"{xyz_file}: {len(xyz)} poses but {k_file} has {len(K)} intrinsics")
    if not np.all(xyz[..., 2] > 0):
        i = int(np.argwhere(~(xyz[..., 2] > 0))[0, 0])
        raise DataError(f"{xyz_file}: record {i}: a joint has z <= 0 (behind the camera)")
    rgb = (Path(images_dir) if images_dir else folder) / "rgb"
    if not rgb.is_dir():
        raise DataError(f"{folder}: no rgb/ folder of images under {rgb.parent}")
    numbers = sorted(
        int(m.group(1)) for m in map(_RGB_NAME.match, (p.name for p in rgb.iterdir())) if m
    )
    n = len(K)
    uv = project_uv(K, xyz)  # [N, 21, 2]
    category = category_for(HAND21, 1, "hand")
    images, annotations, cameras = [], [], []
    for number in numbers:
        pose = number % n
        image_id = len(images) + 1
        fx, fy, cx, cy = K[pose, 0, 0], K[pose, 1, 1], K[pose, 0, 2], K[pose, 1, 2]
        cameras.append(
            {
                **Camera(
                    fx=fx,
                    fy=fy,
                    cx=cx,
                    cy=cy,
                    width=IMAGE_SIZE,
                    height=IMAGE_SIZE,
                    name=f"{number:08d}",
                ).model_dump(mode="json"),
                "id": image_id,
            }
        )
        images.append(
            {
                "id": image_id,
                "file_name": relative_to(rgb / f"{number:08d}.jpg", out_folder),
                "frame_index": None,
                "width": IMAGE_SIZE,
                "height": IMAGE_SIZE,
                "sequence": f"freihand_{pose:08d}",
                "subject": None,
                "source": "freihand",
                "camera_id": image_id,
                "frame_number": number,
            }
        )
        points = uv[pose]  # [21, 2]
        lo, hi = points.min(axis=0), points.max(axis=0)
        annotations.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": 1,
                "keypoints": [float(v) for p in points for v in (p[0], p[1], 2)],
                "num_keypoints": HAND21.num_keypoints,
                "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
                "iscrowd": 0,
                "keypoints_3d": [float(v) for v in (xyz[pose] * 1000.0).ravel()],
                "person_id": f"freihand:{number:08d}",
            }
        )
    if not images:
        raise DataError(f"{rgb}: no image named like 00000000.jpg")
    return {
        "images": images,
        "annotations": annotations,
        "categories": [category],
        "cameras": cameras,
        "info": {"sources": [str(folder / f"{prefix}_K.json")]},
    }


def _matrix_list(file: Path, shape: tuple[int, int]) -> np.ndarray:
    raw = read_json(file)
    try:
        a = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim != 3 or a.shape[1:] != shape:
        raise DataError(f"{file}: expected a list of {shape[0]}x{shape[1]} arrays")
    if not np.isfinite(a).all():
        i = int(np.argwhere(~np.isfinite(a))[0, 0])
        raise DataError(f"{file}: record {i} holds NaN or infinite values")
    return a


def read_freihand_coco(
    file: Path, images_dir: str | Path | None, out_folder: Path | None
) -> dict[str, Any]:
    """The COCO-style FreiHAND JSON; a 21-keypoint category takes the hand21 names."""
    data = read_coco_json(file)
    part = coco_to_internal(
        data,
        file,
        Path(images_dir) if images_dir else file.parent,
        out_folder,
        source="freihand",
        image_extra=lambda img: _pose_sequence(img),
    )
    for cat in part["categories"]:
        if len(cat["keypoints"]) == HAND21.num_keypoints:
            cat.update(category_for(HAND21, cat["id"], "hand"))
    return part


def _pose_sequence(img: dict[str, Any]) -> dict[str, Any]:
    m = _RGB_NAME.match(Path(str(img["file_name"])).name)
    number = int(m.group(1)) if m else None
    return {
        "sequence": f"freihand_{number % NUM_POSES:08d}" if number is not None else None,
        "frame_number": number,
    }
