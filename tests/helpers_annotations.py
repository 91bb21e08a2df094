"""Hand-written annotation files for the importer tests (images as small grey frames)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


def image(folder: Path, name: str, width: int = 160, height: int = 120) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 80, np.uint8))


def write(file: Path, data) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data))
    return file


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
