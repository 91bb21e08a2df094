"""Hand-written annotation files for the importer tests (images as small grey frames)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from poseops.skeletons import COCO17


def image(folder: Path, name: str, width: int = 160, height: int = 120) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 80, np.uint8))


def write(file: Path, data) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data))
    return file


CROWDPOSE14 = [
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "head",
    "neck",
]


def person14(x0: float, y0: float) -> list[float]:
    return [v for j in range(14) for v in (x0 + 3 * (j % 4), y0 + 4 * j, 2)]


def flawed_crowdpose(folder: Path) -> dict:
    """A 14-keypoint file as real releases have it: COCO's 19 edges copied in, no `area` anywhere."""
    image(folder, "a.png")
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 160, "height": 120}],
        "annotations": [
            {
                "id": 7,
                "image_id": 1,
                "category_id": 1,
                "keypoints": person14(20, 5),
                "num_keypoints": 14,
                "bbox": [10, 2, 40, 60],
                "iscrowd": 0,
            },
            {
                "id": 8,
                "image_id": 1,
                "category_id": 1,
                "keypoints": person14(80, 5),
                "num_keypoints": 14,
                "bbox": [70, 2, 40, 60],
                "iscrowd": 0,
            },
        ],
        "categories": [
            {
                "id": 1,
                "name": "person",
                "keypoints": CROWDPOSE14,
                "skeleton": [[a + 1, b + 1] for a, b in COCO17.edges],
            }
        ],
    }


def coco_bodies_file(folder: Path, count: int = 4) -> Path:
    """COCO-17 people, one per 96x96 frame (COCO's own naming)."""
    images, annotations = [], []
    for i in range(count):
        image(folder, f"body{i}.png", 96, 96)
        points = [v for j in range(17) for v in (20 + 3 * j + i, 10 + 4 * j, 2)]
        images.append({"id": i + 1, "file_name": f"body{i}.png", "width": 96, "height": 96})
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "keypoints": points,
                "num_keypoints": 17,
                "bbox": [15, 5, 70, 80],
                "area": 70 * 80,
                "iscrowd": 0,
            }
        )
    categories = [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}]
    return write(
        folder / "bodies.json",
        {"images": images, "annotations": annotations, "categories": categories},
    )


def onehand10k_file(folder: Path, count: int = 6) -> tuple[Path, np.ndarray]:
    """A 21-keypoint hand file in mmpose's OneHand10K naming (`forefinger1`, `pinky_finger4`), joints
    listed little finger first: (file, keypoints [count, 21, 3] in hand21 order)."""
    own = ["wrist"] + [
        f"{f}{j}"
        for f in ("pinky_finger", "ring_finger", "middle_finger", "forefinger", "thumb")
        for j in (1, 2, 3, 4)
    ]
    to_hand21 = [0] + [
        1 + 4 * (4 - f) + j for f in range(5) for j in range(4)
    ]  # own index of hand21 joint
    images, annotations, truth = [], [], []
    for i in range(count):
        image(folder, f"hand{i}.jpg", 128, 128)
        points = np.stack(
            [30 + 3 * np.arange(21) + i, 20 + 4 * np.arange(21), np.full(21, 2)], axis=1
        ).astype(float)
        mine = np.zeros_like(points)
        mine[to_hand21] = points
        images.append({"id": i + 1, "file_name": f"hand{i}.jpg", "width": 128, "height": 128})
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "keypoints": mine.ravel().tolist(),
                "num_keypoints": 21,
                "bbox": [25, 15, 75, 90],
                "area": 75 * 90,
                "iscrowd": 0,
            }
        )
        truth.append(points)
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "hand", "keypoints": own, "skeleton": []}],
    }
    return write(folder / "onehand10k.json", data), np.asarray(truth)


def labels_of(labels: Path, sources: dict[str, Path]) -> Path:
    """`labels`, the internal labels file of COCO-format files merged in the given order, each its own
    named source ({name: file})."""
    from poseops.annotations.internal import build_annotations
    from poseops.config import AnnotationSource

    build_annotations(
        None,
        [
            AnnotationSource(format="coco", file=str(file), name=name)
            for name, file in sources.items()
        ],
        labels,
    )
    return labels


def hand_sources_labels(folder: Path, counts: dict[str, int]) -> Path:
    """folder/labels.json from one OneHand10K-naming file of `count` hands per named source
    (folder/<name>/onehand10k.json), merged in the given order."""
    files = {name: onehand10k_file(folder / name, count=count)[0] for name, count in counts.items()}
    return labels_of(folder / "labels.json", files)


def write_freihand_native(
    folder: Path, poses: int, renderings: int
) -> tuple[np.ndarray, np.ndarray]:
    """A small FreiHAND release: K [poses, 3, 3], xyz [poses, 21, 3] metres, rgb/%08d.jpg."""
    rng = np.random.default_rng(7)
    K = np.zeros((poses, 3, 3))
    K[:, 0, 0], K[:, 1, 1] = rng.uniform(450, 650, poses), rng.uniform(450, 650, poses)
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = (
        rng.uniform(100, 124, poses),
        rng.uniform(100, 124, poses),
        1.0,
    )
    xyz = rng.uniform(-0.06, 0.06, (poses, 21, 3)) + np.array([0.0, 0.0, 0.55])
    (folder / "rgb").mkdir(parents=True)
    (folder / "training_K.json").write_text(json.dumps(K.tolist()))
    (folder / "training_xyz.json").write_text(json.dumps(xyz.tolist()))
    for number in range(poses * renderings):
        cv2.imwrite(
            str(folder / "rgb" / f"{number:08d}.jpg"),
            np.full((224, 224, 3), number * 20 % 255, np.uint8),
        )
    return K, xyz


def dvc(root: Path, *args: str) -> str:
    """`dvc <args>` in `root` with this interpreter's dvc; its stdout (fails the test on a non-zero exit)."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# what an import keeps per image and per annotation, beyond ids (which a COCO import keeps as they are)
ROUND_TRIP_IMAGE_FIELDS = (
    "frame_index",
    "width",
    "height",
    "sequence",
    "subject",
    "view",
    "group",
    "split",
    "frame_number",
    "task",
    "performer",
    "ignore_regions",
)
ROUND_TRIP_ANNOTATION_FIELDS = (
    "track_id",
    "side",
    "person_id",
    "bbox_head",
    "num_keypoints",
    "iscrowd",
    "area",
)


def _numbers(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def round_trip(out: Path, tmp_path: Path) -> tuple[dict, dict]:
    """(imported form at `out`, the form after `poseops data export coco` and a `data import coco` back,
    validated): every label, image field and camera comes back the same (3D with its gaps)."""
    from typer.testing import CliRunner

    from poseops.annotations.internal import load_annotations, resolve_image_path
    from poseops.cli.main import app

    runner = CliRunner()
    first = load_annotations(out)
    exported = tmp_path / "exported" / "coco.json"
    done = runner.invoke(app, ["data", "export", "coco", str(out), str(exported)])
    assert done.exit_code == 0, done.output
    again_dir = tmp_path / "again"
    done = runner.invoke(
        app,
        ["data", "import", "coco", str(exported), "--out", str(again_dir)],
        env={"COLUMNS": "4000"},
    )
    assert done.exit_code == 0, done.output
    assert "repaired" not in done.output  # an export needs no repair
    assert runner.invoke(app, ["data", "validate", str(again_dir)]).exit_code == 0
    again = load_annotations(again_dir)

    assert [c["keypoints"] for c in again["categories"]] == [
        c["keypoints"] for c in first["categories"]
    ]
    assert [c.get("sigmas") for c in again["categories"]] == [
        c.get("sigmas") for c in first["categories"]
    ]
    assert len(again["annotations"]) == len(first["annotations"])
    for a, b in zip(first["annotations"], again["annotations"]):
        assert b["keypoints"] == a["keypoints"], a["id"]
        assert np.allclose(b["bbox"], a["bbox"])
        for field in ("keypoints_3d", "keypoints_clean"):
            assert (field in a) == (field in b), (a["id"], field)
            if field in a:
                np.testing.assert_array_equal(_numbers(b[field]), _numbers(a[field]))
        assert {f: b.get(f) for f in ROUND_TRIP_ANNOTATION_FIELDS} == {
            f: a.get(f) for f in ROUND_TRIP_ANNOTATION_FIELDS
        }
    cameras = [{k: v for k, v in c.items() if k != "id"} for c in (first.get("cameras") or [])]
    assert [{k: v for k, v in c.items() if k != "id"} for c in again.get("cameras") or []] == (
        cameras
    )
    first_cameras = {c["id"]: c for c in first.get("cameras") or []}
    again_cameras = {c["id"]: c for c in again.get("cameras") or []}
    first_images = {i["id"]: i for i in first["images"]}
    for img in again["images"]:
        before = first_images[img["id"]]
        assert {f: img.get(f) for f in ROUND_TRIP_IMAGE_FIELDS} == {
            f: before.get(f) for f in ROUND_TRIP_IMAGE_FIELDS
        }
        assert resolve_image_path(again_dir / "annotations.json", img) == resolve_image_path(
            out / "annotations.json", before
        )
        if before.get("camera_id") is not None:
            assert {k: v for k, v in again_cameras[img["camera_id"]].items() if k != "id"} == {
                k: v for k, v in first_cameras[before["camera_id"]].items() if k != "id"
            }
    return first, again
