"""Look at labels: a grid of samples with keypoints, edges and visibility drawn, from synthetic
captures (manifest.json) or a derived dataset (card.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poseops.errors import DataError
from poseops.skeletons import SKELETONS, Skeleton, get_skeleton
from poseops.storage import exists, join, read_json


def capture_samples(folder: str | Path, count: int) -> tuple[list, list, list, Skeleton]:
    from poseops.capture.synthetic_hands import read_frame

    manifest = read_json(join(folder, "manifest.json"))
    labels = read_json(join(folder, manifest["labels"]["file"]))
    images, points, visibility = [], [], []
    entries = manifest["sequences"]
    for entry in entries[: max(1, count)]:
        frame = labels["sequences"][entry["id"]]["frames"][0]
        images.append(read_frame(Path(folder) / entry["file"], frame["frame_index"]))
        kp = np.asarray(frame["keypoints"], dtype=np.float64)
        points.append(kp[:, :2])
        visibility.append(kp[:, 2])
    return images, points, visibility, get_skeleton(manifest.get("skeleton", "hand21"))


def dataset_samples(url: str, count: int, split: str = "train") -> tuple[list, list, list, Skeleton]:
    from poseops.datasets.loader import decode, read_card, read_row_group, row_groups

    card = read_card(url)
    meta = card["skeleton"]
    skeleton = get_skeleton(meta["name"]) if meta["name"] in SKELETONS else Skeleton(
        meta["name"], tuple(meta["keypoints"]), tuple(map(tuple, meta["edges"])), tuple(map(tuple, meta.get("flip_pairs", [])))
    )
    images, points, visibility = [], [], []
    for path, group in row_groups(url, split, card):
        for row in read_row_group(path, group):
            images.append(decode(row))
            points.append(np.asarray(row["keypoints"], dtype=np.float64).reshape(-1, 2))
            visibility.append(np.asarray(row["visibility"]))
            if len(images) >= count:
                return images, points, visibility, skeleton
    return images, points, visibility, skeleton


def label_grid(url: str, count: int = 16, cols: int = 4) -> np.ndarray:
    """A BGR grid of `count` labelled samples from a capture folder or a derived dataset."""
    from poseops.viz.overlay import sample_grid

    if exists(join(url, "card.json")):
        images, points, visibility, skeleton = dataset_samples(url, count)
    elif exists(join(url, "manifest.json")):
        images, points, visibility, skeleton = capture_samples(url, count)
    else:
        raise DataError(f"{url}: neither a derived dataset (card.json) nor a capture folder (manifest.json)")
    if not images:
        raise DataError(f"{url}: no samples to show")
    return sample_grid(images, points, skeleton, visibility, cols=cols)
