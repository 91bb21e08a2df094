"""InterHand2.6M (Moon et al. 2020, "InterHand2.6M: A Dataset and Baseline for 3D Interacting Hand Pose
Estimation from a Single RGB Image") -> the internal form, with one camera per (capture, camera).

Its release (and mmpose's copy) is three JSON files per split, `<prefix>_data.json`, `<prefix>_camera.json`
and `<prefix>_joint_3d.json`:

    data.json      COCO-like. images: id, file_name ('Capture0/ROM03_LT_No_Occlusion/cam400262/image20327.jpg'),
                   width, height, capture, subject, seq_name, camera ('400262'), frame_idx;
                   annotations: id, image_id, bbox [x, y, w, h], joint_valid [42][1], hand_type
                   ('right' | 'left' | 'interacting'), hand_type_valid; optionally 2D keypoints.
    camera.json    {capture: {"campos": {camera: [x, y, z] mm}, "camrot": {camera: 3x3 world -> camera},
                   "focal": {camera: [fx, fy]}, "princpt": {camera: [cx, cy]}}}
    joint_3d.json  {capture: {frame_idx: {"world_coord": [42][3] mm, "joint_valid": [42][1], "hand_type"}}}

42 joints: the right hand's 21 then the left's, each tip first (thumb4 .. thumb1, index4 .. index1,
middle, ring, pinky, then the wrist). A camera maps a world point X to R·(X − campos), so t = −R·campos.
Each hand of an annotation becomes one `hand` annotation of `poseops.skeletons.HAND21` (its joints
reordered by name through the hand alias table), its 2D keypoints the projection of its world joints
into that image (valid joints v = 2, the others 0), `keypoints_3d` the world joints, `side` its hand.
Where the file has 2D (`keypoints` [42·3] or `joint_img` [42][2|3]) the projection must agree within
`MAX_REPROJECTION_PX`, else the record is refused. A single hand keeps the file's box; each hand of an
interacting pair gets its own box around its projected joints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poseops.annotations.internal import category_for, relative_to
from poseops.errors import DataError
from poseops.geometry import Camera, project_world
from poseops.skeletons import HAND21, match_keypoint_set
from poseops.storage import read_json

MAX_REPROJECTION_PX = 1.0
ROTATION_TOLERANCE = (
    1e-3  # camrot is stored in float32: re-orthonormalised when this close to a rotation
)
BOX_MARGIN = 0.1  # of the joints' extent, each side, for a hand of an interacting pair
JOINTS_PER_HAND = 21
_NAMES = tuple(
    f"{finger}{j}" for finger in ("thumb", "index", "middle", "ring", "pinky") for j in (4, 3, 2, 1)
) + ("wrist",)
HAND_ORDER = match_keypoint_set(
    _NAMES, HAND21
)  # hand21 joint j = InterHand joint HAND_ORDER[j] of one hand
SIDES = {"right": 0, "left": JOINTS_PER_HAND}


def companion(file: Path, kind: str) -> Path:
    """`<prefix>_camera.json` / `<prefix>_joint_3d.json` beside `<prefix>_data.json`."""
    stem = file.name[: -len("_data.json")] if file.name.endswith("_data.json") else file.stem
    return file.parent / f"{stem}_{kind}.json"


def camera_of(calibration: dict, capture: str, camera: str, source: Path) -> Camera:
    try:
        R = np.asarray(calibration["camrot"][camera], dtype=np.float64)
        campos = np.asarray(calibration["campos"][camera], dtype=np.float64)
        fx, fy = (float(v) for v in calibration["focal"][camera])
        cx, cy = (float(v) for v in calibration["princpt"][camera])
    except (KeyError, TypeError, ValueError):
        raise DataError(
            f"{source}: capture {capture}: camera {camera!r} lacks campos, camrot, focal or princpt"
        ) from None
    if (
        R.shape != (3, 3)
        or campos.shape != (3,)
        or not (np.isfinite(R).all() and np.isfinite(campos).all())
    ):
        raise DataError(
            f"{source}: capture {capture}: camera {camera!r}: camrot must be 3x3 and campos 3 finite numbers"
        )
    u, _, vt = np.linalg.svd(R)
    nearest = u @ vt
    if np.abs(nearest - R).max() > ROTATION_TOLERANCE or np.linalg.det(nearest) < 0:
        raise DataError(f"{source}: capture {capture}: camera {camera!r}: camrot is not a rotation")
    t = -nearest @ campos
    return Camera(
        fx=fx,
        fy=fy,
        cx=cx,
        cy=cy,
        R=tuple(map(tuple, nearest)),
        t=tuple(t),
        name=f"{capture}:{camera}",
    )


def _file_2d(ann: dict) -> np.ndarray | None:
    """The file's own 2D [42, 2] of an annotation, when it has any."""
    if ann.get("keypoints") is not None:
        points = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
    elif ann.get("joint_img") is not None:
        points = np.asarray(ann["joint_img"], dtype=np.float64)[:, :2]
    else:
        return None
    return points if points.shape == (2 * JOINTS_PER_HAND, 2) else None


def read_interhand(
    file: str | Path,
    images_dir: str | Path | None,
    out_folder: Path | None,
    cameras_file: str | Path | None = None,
) -> dict[str, Any]:
    """`<prefix>_data.json` (or a folder holding one) + its camera and joint_3d files; images under
    `images_dir` (default: the data file's folder)."""
    file = Path(file)
    if file.is_dir():
        found = sorted(file.glob("*_data.json"))
        if not found:
            raise DataError(f"{file}: no <prefix>_data.json in this folder")
        file = found[0]
    cameras_path = Path(cameras_file) if cameras_file else companion(file, "camera")
    joints_path = companion(file, "joint_3d")
    for path, what in ((cameras_path, "camera"), (joints_path, "joint_3d")):
        if not path.is_file():
            raise DataError(f"{file}: InterHand2.6M {what} file {path} not found")
    data = read_json(file)  # COCO-like, without categories
    if not (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("annotations"), list)
    ):
        raise DataError(f"{file}: expected a JSON object with 'images' and 'annotations' lists")
    calibrations, world = read_json(cameras_path), read_json(joints_path)
    folder = Path(images_dir) if images_dir else file.parent
    cameras: dict[tuple[str, str], tuple[int, Camera]] = {}
    images, by_image = [], {}
    for img in data["images"]:
        try:
            capture, camera, frame = str(img["capture"]), str(img["camera"]), str(img["frame_idx"])
        except (KeyError, TypeError):
            raise DataError(
                f"{file}: image id {img.get('id') if isinstance(img, dict) else img!r} lacks capture, camera "
                "or frame_idx"
            ) from None
        if capture not in calibrations:
            raise DataError(
                f"{file}: image id {img['id']}: capture {capture} is not in {cameras_path}"
            )
        if (capture, camera) not in cameras:
            cameras[(capture, camera)] = (
                len(cameras) + 1,
                camera_of(calibrations[capture], capture, camera, cameras_path),
            )
        camera_id, cam = cameras[(capture, camera)]
        record = {
            "id": img["id"],
            "file_name": relative_to(folder / img["file_name"], out_folder),
            "frame_index": None,
            "width": img.get("width"),
            "height": img.get("height"),
            "sequence": f"capture{capture}:{img.get('seq_name', '')}",
            "subject": f"interhand:{img.get('subject', capture)}",
            "source": "interhand",
            "camera_id": camera_id,
            "view": camera,
            "group": f"capture{capture}:{frame}",
            "frame_number": int(frame),
        }
        images.append(record)
        by_image[img["id"]] = (record, cam, capture, frame)
    annotations = []
    for ann in data["annotations"]:
        for hand in _hands(
            ann, by_image, world, file, joints_path
        ):  # an interacting pair gives two: renumbered
            annotations.append({**hand, "id": len(annotations) + 1})
    camera_records = [
        {**cam.model_dump(mode="json"), "id": cid, "subject": None} for cid, cam in cameras.values()
    ]
    for record in camera_records:  # the images' size, where the images say it
        size = next(
            (
                (i["width"], i["height"])
                for i in images
                if i["camera_id"] == record["id"] and i["width"]
            ),
            None,
        )
        if size:
            record["width"], record["height"] = size
    return {
        "images": images,
        "annotations": annotations,
        "categories": [category_for(HAND21, 1, "hand")],
        "cameras": camera_records,
        "info": {"sources": [str(file)]},
    }


def _hands(
    ann: Any, by_image: dict, world: dict, file: Path, joints_path: Path
) -> list[dict[str, Any]]:
    """The hand annotations of one InterHand annotation (one per hand its hand_type names)."""
    if not isinstance(ann, dict) or ann.get("image_id") not in by_image:
        raise DataError(
            f"{file}: annotation {ann.get('id') if isinstance(ann, dict) else ann!r}: image_id does not resolve"
        )
    image, camera, capture, frame = by_image[ann["image_id"]]
    where = f"{file}: annotation id {ann.get('id')!r} (image {ann['image_id']})"
    entry = world.get(capture, {}).get(frame)
    if entry is None:
        raise DataError(
            f"{where}: no world joints for capture {capture} frame {frame} in {joints_path}"
        )
    coords = np.asarray(entry.get("world_coord"), dtype=np.float64)
    valid = np.asarray(ann.get("joint_valid", entry.get("joint_valid")), dtype=np.float64).reshape(
        -1
    )
    if coords.shape != (2 * JOINTS_PER_HAND, 3) or valid.shape != (2 * JOINTS_PER_HAND,):
        raise DataError(f"{where}: world_coord must be 42 x 3 and joint_valid 42 values")
    if not np.isfinite(coords).all():
        raise DataError(f"{where}: world_coord holds NaN or infinite values")
    hand_type = ann.get("hand_type", entry.get("hand_type"))
    sides = ["right", "left"] if hand_type == "interacting" else [hand_type]
    if not set(sides) <= set(SIDES):
        raise DataError(f"{where}: hand_type {hand_type!r} is not right, left or interacting")
    uv = np.asarray(project_world(coords, camera), dtype=np.float64)  # [42, 2]
    depth = (coords @ camera.rotation.T + camera.translation)[:, 2]
    if (depth[valid > 0] <= 0).any():
        raise DataError(f"{where}: a valid joint is behind camera {camera.name} (z <= 0)")
    own = _file_2d(ann)
    if own is not None:
        checked = valid > 0
        error = np.linalg.norm(uv[checked] - own[checked], axis=-1)
        if error.size and error.max() > MAX_REPROJECTION_PX:
            j = int(np.flatnonzero(checked)[int(error.argmax())])
            raise DataError(
                f"{where}: joint {j} reprojects {error.max():.2f} px from the file's 2D "
                f"(more than {MAX_REPROJECTION_PX} px: camera or joints do not belong together)"
            )
    out = []
    for side in sides:
        index = [SIDES[side] + i for i in HAND_ORDER]
        points, seen, joints = uv[index], valid[index] > 0, coords[index]
        if not seen.any():
            continue
        if len(sides) == 1 and ann.get("bbox") is not None:
            bbox = [float(v) for v in ann["bbox"]]
        else:
            lo, hi = points[seen].min(axis=0), points[seen].max(axis=0)
            pad = BOX_MARGIN * (hi - lo) + 1.0
            bbox = [
                float(lo[0] - pad[0]),
                float(lo[1] - pad[1]),
                float(hi[0] - lo[0] + 2 * pad[0]),
                float(hi[1] - lo[1] + 2 * pad[1]),
            ]
        out.append(
            {
                "id": None,
                "source_annotation_id": ann.get("id"),
                "image_id": ann["image_id"],
                "category_id": 1,
                "keypoints": [
                    float(v)
                    for p, s in zip(points, seen)
                    for v in ((p[0], p[1], 2) if s else (0.0, 0.0, 0))
                ],
                "num_keypoints": int(seen.sum()),
                "bbox": bbox,
                "iscrowd": 0,
                "keypoints_3d": [float(v) if s else None for p, s in zip(joints, seen) for v in p],
                "side": side,
                "person_id": f"interhand:{capture}:{frame}:{side}",
            }
        )
    return out
