"""Human3.6M as users have it (mmpose's form) -> the internal form, with cameras.

`<name>.npz` holds, per frame i: `imgname` [N] ('S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg'),
`center` [N, 2] and `scale` [N] (box side = 200·scale px), `part` [N, 17, 3] 2D px + visibility and,
optionally, `S` [N, 17, 4] 3D in metres, camera coordinates, + visibility. `cameras.pkl` next to it
(read by `poseops.geometry.load_h36m_cameras`, a restricted unpickler: arrays and plain values only)
holds the calibration keyed by (subject, camera id), with Human3.6M's own distortion model `h36m`.

Each frame becomes an image (subject, sequence 'S1_Directions_1', task 'Directions', view = camera
id, group = '<sequence>:<frame>' joining the views of one instant) with one `person_h36m17`
annotation whose `keypoints_3d` are world mm (S·1000 mapped camera -> world).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from poseops.annotations.internal import category_for, relative_to
from poseops.errors import DataError
from poseops.geometry import camera_to_world, load_h36m_cameras
from poseops.skeletons import H36M17

CATEGORY_NAME = "person_h36m17"
_FRAME_NAME = re.compile(r"^(S\d+)_(.+)\.(\d+)_(\d+)\.\w+$")  # S1_Directions_1.54138969_000001.jpg


def parse_frame_name(imgname: str) -> dict[str, Any]:
    """subject, sequence, task, camera and frame number of a Human3.6M frame path."""
    m = _FRAME_NAME.match(Path(imgname).name)
    if m is None:
        raise ValueError(
            f"not a Human3.6M frame name (S<n>_<action>.<camera>_<frame>.jpg): {imgname!r}"
        )
    subject, action, camera, frame = m.groups()
    return {
        "subject": subject,
        "sequence": f"{subject}_{action}",
        "task": re.sub(r"[ _]\d+$", "", action),
        "camera": camera,
        "frame_number": int(frame),
    }


def _array(npz, key: str, file: Path, shape_tail: tuple[int, ...], n: int | None) -> np.ndarray:
    if key not in npz.files:
        raise DataError(f"{file}: no array {key!r} (holds {', '.join(npz.files)})")
    a = npz[key]
    if a.shape[1:] != shape_tail or (n is not None and a.shape[0] != n):
        raise DataError(
            f"{file}: array {key!r} has shape {a.shape}, expected (N={n}, {', '.join(map(str, shape_tail))})"
        )
    return a


def read_h36m(
    file: str | Path,
    images_dir: str | Path | None,
    out_folder: Path | None,
    cameras_file: str | Path | None = None,
) -> dict[str, Any]:
    """An mmpose-style Human3.6M npz (+ cameras.pkl, default next to it); images under `images_dir`
    (default: the npz's folder). Metres become mm."""
    file = Path(file)
    folder = Path(images_dir) if images_dir else file.parent
    cameras_file = Path(cameras_file) if cameras_file else file.parent / "cameras.pkl"
    if not cameras_file.is_file():
        raise DataError(
            f"{file}: camera file {cameras_file} not found (Human3.6M needs cameras.pkl)"
        )
    cameras = load_h36m_cameras(cameras_file)
    try:
        npz = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{file}: cannot read as an npz archive ({e})") from e
    with npz:
        names = npz["imgname"] if "imgname" in npz.files else None
        if names is None:
            raise DataError(f"{file}: no array 'imgname' (holds {', '.join(npz.files)})")
        n = len(names)
        k = H36M17.num_keypoints
        center = _array(npz, "center", file, (2,), n)
        scale = _array(npz, "scale", file, (), n)
        part = _array(npz, "part", file, (k, 3), n)
        S = _array(npz, "S", file, (k, 4), n) if "S" in npz.files else None

    keys = sorted(cameras)
    camera_ids = {key: i + 1 for i, key in enumerate(keys)}
    camera_records = [
        {
            **cameras[key].model_dump(mode="json"),
            "id": camera_ids[key],
            "name": key[1],
            "subject": key[0],
        }
        for key in keys
    ]
    category = category_for(H36M17, 1, CATEGORY_NAME)
    images, annotations = [], []
    for i, name in enumerate(names):
        name = str(name)
        try:
            meta = parse_frame_name(name)
        except ValueError as e:
            raise DataError(f"{file}: record {i}: {e}") from None
        key = (meta["subject"], meta["camera"])
        if key not in cameras:
            raise DataError(f"{file}: record {i} ({name}): no camera {key} in {cameras_file}")
        camera = cameras[key]
        group = f"{meta['sequence']}:{meta['frame_number']}"
        images.append(
            {
                "id": i + 1,
                "file_name": relative_to(folder / name, out_folder),
                "frame_index": None,
                "width": camera.width,
                "height": camera.height,
                "sequence": meta["sequence"],
                "subject": meta["subject"],
                "source": "h36m",
                "camera_id": camera_ids[key],
                "view": meta["camera"],
                "group": group,
                "task": meta["task"],
                "frame_number": meta["frame_number"],
            }
        )
        visible = part[i, :, 2] > 0
        keypoints = np.concatenate([part[i, :, :2], np.where(visible, 2, 0)[:, None]], axis=1)
        side = 200.0 * float(scale[i])
        record = {
            "id": i + 1,
            "image_id": i + 1,
            "category_id": 1,
            "keypoints": [float(v) for v in keypoints.ravel()],
            "num_keypoints": int(visible.sum()),
            "bbox": [float(center[i, 0]) - side / 2, float(center[i, 1]) - side / 2, side, side],
            "iscrowd": 0,
            "person_id": f"h36m:{group}",
        }
        if S is not None:
            world = camera_to_world(S[i, :, :3] * 1000.0, camera)  # [17, 3] mm
            record["keypoints_3d"] = [
                float(v) if S[i, j, 3] > 0 else None for j in range(k) for v in world[j]
            ]
        annotations.append(record)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [category],
        "cameras": camera_records,
        "info": {"sources": [str(file)]},
    }
