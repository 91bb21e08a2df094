"""CMU Panoptic (its body3D release) -> the internal form, as multi-view groups.

Layout, per scene folder `<scene>/`:
    calibration_<scene>.json            `cameras`: name ('00_03'), type (vga/hd/kinect-color),
                                        resolution [w, h], K 3x3, distCoef (k1, k2, p1, p2, k3), R 3x3,
                                        t 3x1 in cm, world -> camera (X_cam = R·X + t)
    hdPose3d_stage1_coco19/body3DScene_<frame:08d>.json
                                        `bodies`: id, joints19 [19·4] x, y, z (cm), confidence
    hdImgs/<view>/<view>_<frame:08d>.jpg   frames as mmpose extracts them (or hdVideos/hd_<view>.mp4)

Every calibrated camera (520 per scene) goes into `cameras` with the `opencv` model, t in mm. Each
(frame, view) of the chosen HD views is an image of the group '<scene>:<frame>'; each body seen in
a view is a `person_panoptic19` annotation with the 2D projection (distortion included; visibility 2
for a joint with confidence > 0.1 that lands inside the frame, else 0), `keypoints_3d` world mm (null
where confidence <= 0.1), `person_id` '<scene>:<frame>:<body id>' and `track_id` the body id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poseops.annotations.internal import category_for, relative_to
from poseops.errors import DataError
from poseops.geometry import Camera, project, world_to_camera
from poseops.skeletons import PANOPTIC19
from poseops.storage import read_json

CATEGORY_NAME = "person_panoptic19"
DEFAULT_VIEWS = ("00_03", "00_06", "00_12", "00_13", "00_23")  # the HD views VoxelPose / mmpose use
CONFIDENCE_MIN = 0.1  # mmpose's threshold on joints19 confidences
BOX_MARGIN = 0.1  # the box of a body's visible joints, grown by this share of its size on each side
BOX_MIN_PAD = 8.0  # ... and by at least this many px (a body with one joint in view has a box too)
CM = 10.0  # mm per cm


def scene_folders(path: Path) -> list[Path]:
    """The scene folders a path names: a scene, its calibration file, or a folder of scenes."""
    if path.is_file():
        return [path.parent]
    if any(path.glob("calibration_*.json")):
        return [path]
    scenes = sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob("calibration_*.json")))
    if not scenes:
        raise DataError(
            f"{path}: neither a Panoptic scene (calibration_<scene>.json) nor a folder of scenes"
        )
    return scenes


def camera_from_calibration(entry: dict[str, Any], file: Path) -> Camera:
    """A Panoptic calibration entry as a Camera (opencv model, mm)."""
    try:
        K = np.asarray(entry["K"], dtype=np.float64).reshape(3, 3)
        k1, k2, p1, p2, k3 = np.asarray(entry["distCoef"], dtype=np.float64).ravel()[:5]
        R = np.asarray(entry["R"], dtype=np.float64).reshape(3, 3)
        t = np.asarray(entry["t"], dtype=np.float64).reshape(3) * CM
        width, height = (int(v) for v in entry["resolution"])
        return Camera(
            fx=K[0, 0],
            fy=K[1, 1],
            cx=K[0, 2],
            cy=K[1, 2],
            R=tuple(map(tuple, R)),
            t=tuple(t),
            model="opencv",
            k=(k1, k2, k3),
            p=(p1, p2),
            width=width,
            height=height,
            name=str(entry["name"]),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(
            f"{file}: camera {entry.get('name')!r}: missing or malformed field ({e})"
        ) from None


def read_panoptic(
    file: str | Path,
    images_dir: str | Path | None,
    out_folder: Path | None,
    views: tuple[str, ...] = DEFAULT_VIEWS,
) -> dict[str, Any]:
    """Panoptic scene(s) at `file`; images under `images_dir`/<scene>/ (default: the scene folders)."""
    images, annotations, cameras = [], [], []
    for scene_dir in scene_folders(Path(file)):
        _read_scene(scene_dir, images_dir, out_folder, views, images, annotations, cameras)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [category_for(PANOPTIC19, 1, CATEGORY_NAME)],
        "cameras": cameras,
        "info": {"sources": [str(file)]},
    }


def _read_scene(
    scene_dir: Path, images_dir, out_folder, views, images: list, annotations: list, cameras: list
) -> None:
    scene = scene_dir.name
    calibrations = sorted(scene_dir.glob("calibration_*.json"))
    if not calibrations:
        raise DataError(f"{scene_dir}: no calibration_<scene>.json")
    calibration = calibrations[0]
    entries = read_json(calibration).get("cameras")
    if not isinstance(entries, list):
        raise DataError(f"{calibration}: no 'cameras' list")
    by_name: dict[str, tuple[int, Camera]] = {}
    for entry in entries:
        camera = camera_from_calibration(entry, calibration)
        camera_id = len(cameras) + 1
        cameras.append(
            {
                **camera.model_dump(mode="json"),
                "id": camera_id,
                "sequence": scene,
                "type": entry.get("type"),
            }
        )
        by_name[camera.name] = (camera_id, camera)
    missing = [v for v in views if v not in by_name]
    if missing:
        raise DataError(f"{calibration}: no camera named {', '.join(missing)}")
    root = Path(images_dir) / scene if images_dir else scene_dir
    body_files = sorted((scene_dir / "hdPose3d_stage1_coco19").glob("body3DScene_*.json"))
    for body_file in body_files:
        frame = int(body_file.stem.split("_")[-1])
        bodies = _bodies(body_file)
        for view in views:
            camera_id, camera = by_name[view]
            image_id = len(images) + 1
            file_name, frame_index = _frame_file(root, view, frame)
            images.append(
                {
                    "id": image_id,
                    "file_name": relative_to(file_name, out_folder),
                    "frame_index": frame_index,
                    "width": camera.width,
                    "height": camera.height,
                    "sequence": scene,
                    "subject": None,
                    "source": "panoptic",
                    "camera_id": camera_id,
                    "view": view,
                    "group": f"{scene}:{frame}",
                    "frame_number": frame,
                }
            )
            for body_id, joints in bodies:
                record = _annotation(joints, camera)
                if record is not None:
                    annotations.append(
                        {
                            **record,
                            "id": len(annotations) + 1,
                            "image_id": image_id,
                            "category_id": 1,
                            "person_id": f"{scene}:{frame}:{body_id}",
                            "track_id": body_id,
                        }
                    )


def _frame_file(root: Path, view: str, frame: int) -> tuple[Path, int | None]:
    """The extracted frame (hdImgs), else the view's video and frame index, else the expected frame path."""
    still = root / "hdImgs" / view / f"{view}_{frame:08d}.jpg"
    video = root / "hdVideos" / f"hd_{view}.mp4"
    if not still.is_file() and video.is_file():
        return video, frame
    return still, None


def _bodies(body_file: Path) -> list[tuple[int, np.ndarray]]:
    """(body id, joints [19, 4] x, y, z cm + confidence) of one body3DScene file."""
    data = read_json(body_file)
    out = []
    for body in data.get("bodies") or []:
        joints = np.asarray(body.get("joints19", []), dtype=np.float64)
        if joints.size != 4 * PANOPTIC19.num_keypoints or not np.isfinite(joints).all():
            raise DataError(
                f"{body_file}: body {body.get('id')!r}: joints19 must hold 76 finite numbers"
            )
        out.append((int(body["id"]), joints.reshape(-1, 4)))
    return out


def _annotation(joints: np.ndarray, camera: Camera) -> dict[str, Any] | None:
    """One body seen by one camera, or None when none of its confident joints lands in the frame."""
    world = joints[:, :3] * CM  # [19, 3] mm
    confident = joints[:, 3] > CONFIDENCE_MIN
    in_front = world_to_camera(world, camera)[:, 2] > 0
    uv = np.where(
        in_front[:, None], project(world_to_camera(world, camera), camera), 0.0
    )  # [19, 2]
    inside = (
        (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    )
    visible = confident & in_front & inside
    if not visible.any():
        return None
    lo, hi = uv[visible].min(axis=0), uv[visible].max(axis=0)
    pad = np.maximum(BOX_MARGIN * (hi - lo), BOX_MIN_PAD)
    lo, hi = lo - pad, hi + pad
    return {
        "keypoints": [
            float(v) for p, vis in zip(uv, visible) for v in (p[0], p[1], 2 if vis else 0)
        ],
        "num_keypoints": int(visible.sum()),
        "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
        "iscrowd": 0,
        "keypoints_3d": [float(v) if c else None for p, c in zip(world, confident) for v in p],
    }
