"""lifting_sequence and multiview_group from a hand-made annotations file: two subjects walking in front of
two calibrated cameras (h36m17, 2D = projection of the world 3D), with one joint's 3D missing in places."""

from __future__ import annotations

import json

import numpy as np
import pytest

from poseops.config import SplitParams
from poseops.datasets.derive import derive_dataset
from poseops.errors import DataError
from poseops.geometry import Camera, project, project_world, triangulate
from poseops.skeletons import get_skeleton
from poseops.tasks import get_task
from poseops.tasks.lifting_sequence import load_lifting_split
from poseops.tasks.multiview_group import load_multiview_split

SK = get_skeleton("h36m17")
K = SK.num_keypoints
FRAMES = 10
SPLIT = SplitParams(val_fraction=0.5, seed=0)


def rotation_y(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


CAMERAS = [
    Camera(
        fx=1000,
        fy=1000,
        cx=500,
        cy=500,
        R=tuple(map(tuple, rotation_y(0))),
        t=(0, 0, 4000),
        width=1000,
        height=1000,
    ),
    Camera(
        fx=900,
        fy=950,
        cx=480,
        cy=510,
        R=tuple(map(tuple, rotation_y(40))),
        t=(100, -50, 4500),
        k=(0.01, 0.0, 0.0),
        width=1000,
        height=1000,
    ),
]


def body(frame: int, subject: int, rng: np.random.Generator) -> np.ndarray:
    """World joints [K,3] mm: a body around the pelvis walking along x."""
    offsets = rng.normal(0, 250, (K, 3))
    offsets[0] = 0.0
    pelvis = np.array([-300.0 + 60 * frame + 500 * subject, 0.0, 200.0 * subject])
    return pelvis + offsets


@pytest.fixture(scope="module")
def annotations(tmp_path_factory):
    root = tmp_path_factory.mktemp("mv")
    cameras = [
        {**c.model_dump(mode="json"), "id": i + 1, "name": f"cam{i}", "subject": ""}
        for i, c in enumerate(CAMERAS)
    ]
    images, anns = [], []
    for subject in range(2):
        joints_rng = np.random.default_rng(subject)
        for frame in range(FRAMES):
            world = body(frame, subject, np.random.default_rng([subject, 0]))
            world += joints_rng.normal(0, 5, world.shape)
            for view, camera in enumerate(CAMERAS):
                uv = np.asarray(project_world(world, camera))
                image_id = len(images) + 1
                images.append(
                    {
                        "id": image_id,
                        "file_name": f"S{subject}_cam{view}.mp4",
                        "frame_index": frame,
                        "width": 1000,
                        "height": 1000,
                        "sequence": f"S{subject}_walk",
                        "subject": f"S{subject}",
                        "source": "synthetic",
                        "camera_id": view + 1,
                        "view": f"cam{view}",
                        "group": f"S{subject}_walk:{frame}",
                    }
                )
                kp3d = world.ravel().tolist()
                if frame == 3:
                    kp3d[3 * 5 : 3 * 5 + 3] = [None, None, None]  # joint 5 has no 3D in this frame
                (x0, y0), (x1, y1) = uv.min(0), uv.max(0)
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": image_id,
                        "category_id": 1,
                        "keypoints": np.column_stack([uv, np.full(K, 2.0)]).ravel().tolist(),
                        "num_keypoints": K,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": (x1 - x0) * (y1 - y0),
                        "iscrowd": 0,
                        "keypoints_3d": kp3d,
                        "person_id": f"S{subject}",
                    }
                )
    category = {
        "id": 1,
        "name": "person_h36m17",
        "keypoints": list(SK.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in SK.edges],
    }
    path = root / "annotations.json"
    path.write_text(
        json.dumps(
            {"images": images, "annotations": anns, "categories": [category], "cameras": cameras}
        )
    )
    return path


def derive(kind: str, annotations, tmp_path, **options) -> tuple[str, dict]:
    url = str(tmp_path / kind)
    task = get_task(kind)
    card = derive_dataset(
        task.rows, annotations, url, task.Options(), SPLIT, skeleton="h36m17", options=options
    )
    return url, card


def test_lifting_windows_are_root_relative_camera_space(annotations, tmp_path):
    url, card = derive("lifting_sequence", annotations, tmp_path, window=4, stride=2)
    # per subject and camera 10 frames -> windows starting at 0, 2, 4, 6
    assert card["window"] == 4 and card["counts"]["train"] + card["counts"]["val"] == 2 * 2 * 4
    assert card["counts"]["train"] == card["counts"]["val"] == 8  # one subject per split
    for split in ("train", "val"):
        arrays = load_lifting_split(url, split)
        n = card["counts"][split]
        assert arrays["keypoints_2d"].shape == (n, 4, K, 2) and arrays[
            "keypoints_3d_cam"
        ].shape == (n, 4, K, 3)
        valid = arrays["valid_3d"] > 0
        assert np.all(arrays["keypoints_3d_cam"][:, :, 0] == 0)  # the root (pelvis) is the origin
        for i, camera in enumerate(arrays["cameras"]):
            absolute = arrays["keypoints_3d_cam"][i] + arrays["root_cam"][i][:, None]
            uv = np.asarray(project(absolute.astype(np.float64), camera))
            assert np.allclose(uv[valid[i]], arrays["keypoints_2d"][i][valid[i]], atol=0.05)
            assert np.allclose(
                arrays["intrinsics"][i], [camera.fx, camera.fy, camera.cx, camera.cy]
            )
        # the frame with a joint's 3D missing: NaN there, valid 0, the rest intact
        assert (~valid).sum() > 0 and np.isnan(arrays["keypoints_3d_cam"][~valid]).all()
        assert np.isfinite(arrays["keypoints_3d_cam"][valid]).all()


def test_lifting_windows_follow_frame_order(annotations, tmp_path):
    url, card = derive(
        "lifting_sequence", annotations, tmp_path, window=5
    )  # stride = T: no overlap
    from poseops.datasets.loader import read_row_group, row_groups

    rows = [r for p, g in row_groups(url, "train") for r in read_row_group(p, g)]
    assert (
        sorted(tuple(r["frame_indices"]) for r in rows)
        == [(0, 1, 2, 3, 4)] * 2 + [(5, 6, 7, 8, 9)] * 2
    )
    assert all(len(set(r["image_ids"])) == 5 for r in rows)
    with pytest.raises(DataError, match="nothing to derive"):
        derive("lifting_sequence", annotations, tmp_path, window=11)  # longer than every track


def test_multiview_groups_triangulate_to_their_3d(annotations, tmp_path):
    url, card = derive("multiview_group", annotations, tmp_path)
    assert card["counts"]["train"] + card["counts"]["val"] == 2 * FRAMES and card["max_views"] == 2
    for split in ("train", "val"):
        for group in load_multiview_split(url, split):
            assert group["keypoints_2d"].shape == (2, K, 2) and group["views"] == ["cam0", "cam1"]
            points = np.asarray(
                triangulate(group["keypoints_2d"].astype(np.float64), group["cameras"])
            )
            valid = group["valid_3d"] > 0
            assert np.allclose(points[valid], group["keypoints_3d"][valid], atol=0.5)
            assert group["group"].endswith(f":{group['frame_index']}")
            assert valid.sum() == (K - 1 if group["frame_index"] == 3 else K)


def test_multiview_needs_two_views(annotations, tmp_path):
    form = json.loads(annotations.read_text())
    keep = {img["id"] for img in form["images"] if img["camera_id"] == 1}
    form["images"] = [img for img in form["images"] if img["id"] in keep]
    form["annotations"] = [a for a in form["annotations"] if a["image_id"] in keep]
    one_view = tmp_path / "one_view.json"
    one_view.write_text(json.dumps(form))
    with pytest.raises(DataError, match="nothing to derive"):
        derive("multiview_group", one_view, tmp_path)
    url, card = derive("multiview_group", one_view, tmp_path / "one", min_views=1)
    assert card["counts"]["train"] + card["counts"]["val"] == 2 * FRAMES
