"""`poseops.browse`: label grids of hand and body captures, capture roots and derived datasets."""

from __future__ import annotations

import json
import tarfile

import cv2
import numpy as np
import pytest

from poseops import browse
from poseops.capture import synthetic_bodies, synthetic_hands
from poseops.config import BodyCaptureParams, CaptureParams, HandCaptureParams, SplitParams
from poseops.errors import DataError
from poseops.skeletons import COCO17
from poseops.tasks.topdown_crop import TopdownCrop, TopdownCropData

CELL_H = browse.CELL + browse.CAPTION_HEIGHT


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A capture root: hands/ (2 sequences x 3 frames, 64 px) and bodies/ (2 sequences x 3 frames x 2 views, 128 px)."""
    out = tmp_path_factory.mktemp("captures")
    params = CaptureParams(
        seed=11,
        hands=HandCaptureParams(sequences=2, frames_per_sequence=3, image_size=64),
        bodies=BodyCaptureParams(
            sequences=2, frames_per_sequence=3, views=2, image_size=128, people=(2, 3)
        ),
    )
    synthetic_hands.write_hand_captures(out / "hands", params)
    synthetic_bodies.write_body_captures(out / "bodies", params)
    return out


def _raw_jpeg(folder, shard: str, member: str) -> np.ndarray:
    with tarfile.open(folder / shard) as tar:
        data = tar.extractfile(member).read()
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_picks_cover_every_sequence_and_view_before_repeating():
    frames, views = [5, 9, 3], [["a", "b"], ["a", "b", "c"], ["a"]]
    picks = browse.spread_picks(frames, views, 2)
    assert [s for s, _, _ in picks] == [0, 1]  # two of three sequences, spread
    picks = browse.spread_picks(frames, views, 7)
    assert len(picks) == 7 and {s for s, _, _ in picks} == {0, 1, 2}
    assert {v for s, v, _ in picks if s == 1} == {"b", "c"} and all(
        v in views[s] for s, v, _ in picks
    )
    one_each = browse.spread_picks([4] * 3, [["a", "b", "c"]] * 3, 3)
    assert [v for _, v, _ in one_each] == [
        "a",
        "b",
        "c",
    ]  # one pick per sequence still shows every view
    assert all(0 <= t < frames[s] for s, _, t in picks)
    assert len({(s, v, t) for s, v, t in picks}) == 7  # no frame twice


def test_body_samples_are_the_shard_frames_with_every_person(root):
    folder = root / "bodies"
    samples, skeleton = browse.body_samples(str(folder), 4)
    assert skeleton is COCO17 and len(samples) == 4
    records = {
        r["id"]: r for r in map(json.loads, (folder / "labels.jsonl").read_text().splitlines())
    }
    seen_views = set()
    for sample in samples:
        sequence_id, view, frame = sample.caption.split()
        at = records[sequence_id]["frames"][int(frame[1:])]["views"][view]
        raw = _raw_jpeg(folder, at["image"]["shard"], at["image"]["member"])
        assert np.array_equal(sample.image, raw)
        assert len(sample.keypoints) == len(at["people"]) >= 2
        for points, vis, person in zip(sample.keypoints, sample.visibility, at["people"]):
            assert np.allclose(points, np.asarray(person["keypoints"])[:, :2]) and points.shape == (
                17,
                2,
            )
            assert np.array_equal(vis, np.asarray(person["keypoints"])[:, 2])
        seen_views.add((sequence_id, view))
    assert len({s for s, _ in seen_views}) == 2 and len({v for _, v in seen_views}) == 2


def test_body_grid_shape_and_drawn_visible_keypoints(root):
    folder = root / "bodies"
    grid = browse.label_grid(str(folder), count=5, cols=4)
    assert grid.shape == (2 * CELL_H, 4 * browse.CELL, 3) and grid.dtype == np.uint8
    samples, _ = browse.body_samples(str(folder), 5)
    changed = checked = 0
    for i, sample in enumerate(samples):
        r, c = divmod(i, 4)
        h, w = sample.image.shape[:2]
        zoom = browse.CELL / max(h, w)
        plain = cv2.resize(sample.image, (round(w * zoom), round(h * zoom)))
        cell = grid[
            r * CELL_H : r * CELL_H + plain.shape[0],
            c * browse.CELL : c * browse.CELL + plain.shape[1],
        ]
        for points, vis in zip(sample.keypoints, sample.visibility):
            for x, y in np.round(points[vis == 2] * zoom).astype(int):
                if 1 <= x < plain.shape[1] - 1 and 1 <= y < plain.shape[0] - 1:
                    checked += 1
                    diff = np.abs(
                        cell[y - 1 : y + 2, x - 1 : x + 2].astype(int)
                        - plain[y - 1 : y + 2, x - 1 : x + 2]
                    )
                    changed += int(diff.sum() > 60)
    assert checked >= 20
    assert changed == checked  # every visible joint is painted over the frame


def test_hand_grid_and_capture_root_stack(root):
    hands = browse.label_grid(str(root / "hands"), count=3, cols=4)
    assert hands.shape == (CELL_H, 3 * browse.CELL, 3)
    bodies = browse.label_grid(str(root / "bodies"), count=3, cols=4)
    both = browse.label_grid(str(root), count=3, cols=4)
    assert both.shape == (
        2 * browse.TITLE_HEIGHT + hands.shape[0] + bodies.shape[0],
        3 * browse.CELL,
        3,
    )
    lower = both[2 * browse.TITLE_HEIGHT + hands.shape[0] :]
    assert np.array_equal(lower, bodies)  # the bodies grid, unchanged, below the hands grid
    only = browse.label_grid(str(root), count=3, cols=4, part="bodies")
    assert np.array_equal(only, bodies)


def test_sources_that_cannot_be_drawn_name_the_problem(root, tmp_path):
    with pytest.raises(DataError, match="neither a derived dataset"):
        browse.label_grid(str(tmp_path / "nowhere"))
    (tmp_path / "hands").mkdir()
    (tmp_path / "hands" / "manifest.json").write_text(
        json.dumps({"kind": "ingest", "generator": "poseops.ingest"})
    )
    with pytest.raises(DataError, match="no labels to draw"):
        browse.label_grid(str(tmp_path))
    with pytest.raises(DataError, match="no published bodies"):
        browse.label_grid(str(tmp_path), part="bodies")
    with pytest.raises(DataError, match="expected one of"):
        browse.label_grid(str(root), part="feet")


def test_derived_dataset_grid(tmp_path):
    from poseops.annotations.internal import build_annotations
    from poseops.datasets.shards import derive_dataset

    params = CaptureParams(
        seed=2, hands=HandCaptureParams(sequences=2, frames_per_sequence=2, image_size=64)
    )
    synthetic_hands.write_hand_captures(tmp_path / "raw", params)
    build_annotations(tmp_path / "raw", [], tmp_path / "annotations.json")
    url = str(tmp_path / "ds")
    derive_dataset(
        TopdownCrop.rows,
        tmp_path / "annotations.json",
        url,
        TopdownCropData(),
        SplitParams(val_fraction=0.5, seed=0),
        executor="local",
    )
    grid = browse.label_grid(url, count=2, cols=4)
    assert grid.shape == (CELL_H, 2 * browse.CELL, 3)
    samples, skeleton = browse.dataset_samples(url, 2)
    assert skeleton.name == "hand21" and all(
        k.shape == (21, 2) for s in samples for k in s.keypoints
    )
