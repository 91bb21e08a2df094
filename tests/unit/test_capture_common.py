"""What hand and body captures share (`poseops.capture.common`), and the bytes DVC versions.

Capture outputs are DVC outputs whose hashes dvc.lock records: a refactor of the generators must
keep every byte for the same seed. The smoke hand capture is checked against dvc.lock itself; the
noisy paths (jitter, outliers, left/right swaps), which the smoke profile leaves off, are checked for
same-seed-same-bytes over hands and bodies together.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from poseops.capture import write_captures
from poseops.capture.common import (
    NoiseParams,
    VideoFormat,
    add_label_noise,
    keypoint_rows,
    read_video,
    video_writer,
)
from poseops.capture.synthetic_hands import write_hand_captures
from poseops.config import BodyCaptureParams, CaptureParams, HandCaptureParams
from poseops.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
HANDS_OUT = "data/raw/synthetic/hands"


def dvc_dir_md5(folder: Path) -> str:
    """DVC's hash of a directory output: md5 of the sorted JSON list of {md5, relpath} + ".dir"."""
    entries = [
        {
            "md5": hashlib.md5(f.read_bytes()).hexdigest(),
            "relpath": f.relative_to(folder).as_posix(),
        }
        for f in sorted(p for p in folder.rglob("*") if p.is_file())
    ]
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def locked_capture() -> tuple[dict, str]:
    """(the data.capture params dvc.lock's capture stage ran with, the md5 it recorded for hands/)."""
    stage = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]["capture"]
    outs = {o["path"]: o["md5"] for o in stage["outs"]}
    return stage["params"]["params.yaml"]["data.capture"], outs[HANDS_OUT]


def test_smoke_hand_capture_matches_dvc_lock(tmp_path):
    try:
        locked_params, locked_md5 = locked_capture()
    except (OSError, KeyError, TypeError) as exc:
        pytest.skip(f"dvc.lock has no capture stage with a hands output: {exc!r}")
    current = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["capture"]
    if locked_params != current:
        pytest.skip(
            "params.yaml's data.capture differs from dvc.lock's: the lock is stale, nothing to compare"
        )
    params = CaptureParams.model_validate({**current, "bodies": None})
    write_hand_captures(tmp_path / "hands", params)
    assert dvc_dir_md5(tmp_path / "hands") == locked_md5


NOISY = CaptureParams(
    seed=5,
    hands=HandCaptureParams(
        sequences=3,
        frames_per_sequence=4,
        image_size=96,
        label_noise_px=1.5,
        label_noise="laplace",
        outlier_rate=0.1,
    ),
    bodies=BodyCaptureParams(
        sequences=2,
        frames_per_sequence=2,
        image_size=96,
        views=2,
        label_noise_px=2.0,
        outlier_rate=0.05,
        swap_rate=0.5,
        occluders=(1, 3),
    ),
)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        f.relative_to(root).as_posix(): hashlib.md5(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


def test_noisy_hands_and_bodies_same_seed_same_bytes(tmp_path):
    write_captures(tmp_path / "a", NOISY)
    write_captures(tmp_path / "b", NOISY)
    first, second = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert (
        first == second
        and any(name.endswith(".mp4") for name in first)
        and any(name.endswith(".avi") for name in first)
    )
    # the noise is really there: training labels differ from the clean ones
    for line in (tmp_path / "a" / "hands" / "labels.jsonl").read_text().splitlines()[:1]:
        frame = json.loads(line)["frames"][0]
        noisy, clean = np.array(frame["keypoints"])[:, :2], np.array(frame["keypoints_clean"])
        assert np.abs(noisy - clean)[np.array(frame["keypoints"])[:, 2] > 0].max() > 0.01
    write_captures(tmp_path / "c", NOISY.model_copy(update={"seed": 6}))
    assert file_hashes(tmp_path / "c")["hands/labels.jsonl"] != first["hands/labels.jsonl"]


def test_noise_params_come_from_either_part_and_no_noise_draws_nothing():
    hands, bodies = NOISY.hands, NOISY.bodies
    assert NoiseParams.of(hands) == NoiseParams(1.5, "laplace", 0.1, 0.3, 0.0)
    assert NoiseParams.of(bodies) == NoiseParams(2.0, "gaussian", 0.05, 0.3, 0.5)
    uv = np.arange(8.0).reshape(4, 2)
    rng = np.random.default_rng(0)
    assert add_label_noise(rng, uv, 10.0, NoiseParams()) is uv
    assert rng.random() == np.random.default_rng(0).random()  # the stream did not move
    swapped = add_label_noise(
        np.random.default_rng(0), uv, 10.0, NoiseParams(swap_rate=1.0), (1, 0, 2, 3)
    )
    assert swapped.tolist() == uv[[1, 0, 2, 3]].tolist()
    with pytest.raises(ValueError, match="flip permutation"):
        add_label_noise(np.random.default_rng(0), uv, 10.0, NoiseParams(swap_rate=1.0))


def test_keypoint_rows_zero_unlabelled_and_round():
    rows = keypoint_rows(np.array([[1.23456, 2.0], [3.0, 4.0]]), np.array([2, 0]), 3)
    assert rows == [[1.235, 2.0, 2.0], [0.0, 0.0, 0.0]]


def test_video_writer_publishes_on_success_and_leaves_nothing_on_error(tmp_path):
    fmt = VideoFormat(suffix=".avi", fourcc="FFV1", codec="ffv1 (lossless)")
    frame = np.full((16, 16, 3), 90, np.uint8)
    with video_writer(tmp_path / "ok.avi", fmt, 5, 16, 16) as writer:
        writer.write(frame)
    assert [f.name for f in tmp_path.iterdir()] == ["ok.avi"]
    assert np.array_equal(read_video(tmp_path / "ok.avi")[0], frame)
    with pytest.raises(RuntimeError), video_writer(tmp_path / "bad.avi", fmt, 5, 16, 16) as writer:
        writer.write(frame)
        raise RuntimeError("render failed")
    assert [f.name for f in tmp_path.iterdir()] == ["ok.avi"]
    with pytest.raises(DataError, match="missing.avi"):
        read_video(tmp_path / "missing.avi")
