"""Synthetic hand captures: determinism, publish-last, occluder visibility, video read errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from poseops.capture.common import read_frame, read_frames, read_video
from poseops.capture.synthetic_hands import read_hand_sequences, write_hand_captures
from poseops.config import CaptureParams, HandCaptureParams
from poseops.errors import DataError
from poseops.skeletons import HAND21

SMALL = CaptureParams(
    seed=3, hands=HandCaptureParams(sequences=3, frames_per_sequence=5, image_size=96)
)


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    manifest = write_hand_captures(out, SMALL)
    return out, manifest


def test_layout_and_manifest(captures):
    out, manifest = captures
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(
        [e["file"] for e in manifest["sequences"]] + ["labels.jsonl", "manifest.json"]
    )
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["counts"]["sequences"] == 3 and manifest["counts"]["frames"] == 15
    labels = {r["id"]: r for r in read_hand_sequences(out)}
    for entry in manifest["sequences"]:
        frames = read_video(out / entry["file"])
        assert len(frames) == entry["frames"] == 5
        assert frames[0].shape == (96, 96, 3)
        seq = labels[entry["id"]]
        assert seq["subject"] == entry["subject"] and seq["side"] in ("left", "right")
        kp = np.array(seq["frames"][0]["keypoints"])
        assert kp.shape == (HAND21.num_keypoints, 3)
    # the manifest is written last
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert mtimes["manifest.json"] >= max(mtimes.values())


def test_same_seed_same_bytes_other_seed_differs(captures, tmp_path):
    out, _ = captures
    write_hand_captures(tmp_path / "again", SMALL)
    for name in ("labels.jsonl", "manifest.json"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    a = read_video(out / "seq_0000.avi")
    b = read_video(tmp_path / "again" / "seq_0000.avi")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    write_hand_captures(tmp_path / "other", SMALL.model_copy(update={"seed": 4}))
    assert (tmp_path / "other" / "labels.jsonl").read_bytes() != (out / "labels.jsonl").read_bytes()


def test_poses_vary_so_a_mean_pose_is_weak(captures):
    out, _ = captures
    labels = {r["id"]: r for r in read_hand_sequences(out)}
    clean = np.array([f["keypoints_clean"] for s in labels.values() for f in s["frames"]])
    # direction wrist -> middle MCP spreads over the circle across sequences
    d = clean[:, 9] - clean[:, 0]
    angles = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    assert np.ptp(angles) > 60
    span = (clean.max(1) - clean.min(1)).max(1)
    assert (span > 0.3 * 96).all() and (span < 0.9 * 96).all()


def test_visibility_comes_from_occluders(tmp_path):
    params = CaptureParams(
        seed=11, hands=HandCaptureParams(sequences=6, frames_per_sequence=4, image_size=128)
    )
    write_hand_captures(tmp_path, params)
    labels = {r["id"]: r for r in read_hand_sequences(tmp_path)}
    occluded_seen = 0
    for seq_id, seq in labels.items():
        frames = read_video(tmp_path / f"{seq_id}.avi")
        for rec, frame in zip(seq["frames"], frames):
            kp = np.array(rec["keypoints_clean"])
            vis = np.array(rec["keypoints"])[:, 2]
            px = np.floor(kp + 0.5).astype(int)
            covered = np.zeros(len(kp), bool)
            for x0, y0, x1, y1 in rec["occluders"]:
                covered |= (px[:, 0] >= x0) & (px[:, 0] <= x1) & (px[:, 1] >= y0) & (px[:, 1] <= y1)
            inside = (px >= 0).all(1) & (px < 128).all(1)
            assert np.array_equal(vis == 1, covered & inside)
            assert np.array_equal(vis == 2, ~covered & inside)
            if (
                len(rec["occluders"]) == 1
            ):  # the rectangle hides the hand: only its own two colours inside
                x0, y0, x1, y1 = (max(0, min(127, v)) for v in rec["occluders"][0])
                patch = frame[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)
                colours = {tuple(c) for c in patch}
                assert len(colours) <= 2
                for i in np.flatnonzero(vis == 1):
                    assert tuple(frame[px[i, 1], px[i, 0]]) in colours
            occluded_seen += int((vis == 1).sum())
    assert occluded_seen > 0


def test_missing_or_corrupt_video_names_the_file(tmp_path):
    missing = tmp_path / "nope.avi"
    with pytest.raises(DataError, match="nope.avi"):
        list(read_frames(missing))
    corrupt = tmp_path / "broken.avi"
    corrupt.write_bytes(b"not a video" * 100)
    with pytest.raises(DataError, match="broken.avi"):
        read_video(corrupt)


def test_read_frame_random_access(captures):
    out, _ = captures
    frames = read_video(out / "seq_0001.avi")
    assert np.array_equal(read_frame(out / "seq_0001.avi", 3), frames[3])
    with pytest.raises(DataError, match="seq_0001.avi.*frame 99"):
        read_frame(out / "seq_0001.avi", 99)


def test_rewrite_unpublishes_first(captures, tmp_path):
    out = tmp_path / "raw"
    write_hand_captures(out, SMALL)
    smaller = SMALL.model_copy(
        update={"hands": HandCaptureParams(sequences=2, frames_per_sequence=2, image_size=64)}
    )
    manifest = write_hand_captures(out, smaller)
    assert sorted(p.name for p in out.glob("*.avi")) == ["seq_0000.avi", "seq_0001.avi"]
    assert manifest["counts"]["frames"] == 4


def test_label_noise_moves_training_labels_and_keeps_clean_ones(tmp_path):
    hands = dict(sequences=2, frames_per_sequence=6, image_size=96)
    write_hand_captures(tmp_path / "clean", CaptureParams(hands=HandCaptureParams(**hands)))
    noisy = HandCaptureParams(
        **hands, label_noise_px=2.0, outlier_rate=0.2, outlier_box_fraction=0.3
    )
    write_hand_captures(tmp_path / "noisy", CaptureParams(hands=noisy))

    def frames(folder):
        labels = {r["id"]: r for r in read_hand_sequences(tmp_path / folder)}
        return [f for seq in labels.values() for f in seq["frames"]]

    clean, dirty = frames("clean"), frames("noisy")
    for a, b in zip(clean, dirty):
        assert a["keypoints_clean"] == b["keypoints_clean"]  # the truth is untouched
    moved = [
        ((kb[0] - ka[0]) ** 2 + (kb[1] - ka[1]) ** 2) ** 0.5
        for a, b in zip(clean, dirty)
        for ka, kb in zip(a["keypoints"], b["keypoints"])
        if ka[2] > 0
    ]
    assert sum(d > 0.01 for d in moved) > 0.9 * len(moved)  # jitter everywhere
    assert max(moved) > 8.0  # and some outliers far away


def test_labels_stream_one_line_per_sequence_in_manifest_order(captures):
    out, manifest = captures
    lines = (out / "labels.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [e["id"] for e in manifest["sequences"]]
    assert all(
        line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))
        for line in lines
    )
    assert (
        manifest["labels"]["file"] == "labels.jsonl"
        and len(manifest["keypoint_names"]) == HAND21.num_keypoints
    )
    assert [r["id"] for r in read_hand_sequences(out)] == [e["id"] for e in manifest["sequences"]]


def test_read_hand_sequences_names_file_and_line(captures, tmp_path):
    import shutil

    out, _ = captures
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    lines = (copy / "labels.jsonl").read_text().splitlines()
    (copy / "labels.jsonl").write_text("\n".join([lines[0], lines[1][:-9], *lines[2:]]) + "\n")
    stream = read_hand_sequences(copy)
    assert (
        next(stream)["id"] == "seq_0000"
    )  # records come one at a time, before the bad line is reached
    with pytest.raises(DataError, match=r"labels\.jsonl: line 2: not valid JSON"):
        next(stream)
    (copy / "labels.jsonl").write_text(lines[0] + "\n[1, 2]\n")
    with pytest.raises(DataError, match=r"labels\.jsonl: line 2: not a sequence record"):
        list(read_hand_sequences(copy))
    (copy / "labels.jsonl").unlink()
    with pytest.raises(
        DataError, match=r"labels\.jsonl: labels listed in .*manifest\.json are missing"
    ):
        list(read_hand_sequences(copy))
    (copy / "manifest.json").unlink()
    with pytest.raises(DataError, match="no manifest.json"):
        list(read_hand_sequences(copy))


def test_a_null_part_kept_as_an_empty_folder_is_skipped_by_annotate(tmp_path):
    from poseops.annotations.internal import build_annotations, capture_folders
    from poseops.capture import write_captures

    params = CaptureParams(
        hands=HandCaptureParams(sequences=2, frames_per_sequence=2, image_size=64), bodies=None
    )
    (tmp_path / "bodies").mkdir()
    (tmp_path / "bodies" / "stale.mp4").write_bytes(b"old")  # an earlier capture's part is emptied
    assert set(write_captures(tmp_path, params, keep_empty=True)) == {
        "hands"
    }  # as the capture stage writes
    assert (tmp_path / "bodies").is_dir() and not any((tmp_path / "bodies").iterdir())
    assert capture_folders(tmp_path) == [tmp_path / "hands"]
    build_annotations(tmp_path, [], tmp_path / "labels.json")
    assert (
        len(json.loads((tmp_path / "labels.json").read_text())["images"]) == 4
    )  # 2 sequences x 2 frames
    (tmp_path / "bodies" / "half.mp4").write_bytes(
        b"x"
    )  # files but no manifest: half-written, refused
    with pytest.raises(DataError, match="bodies"):
        capture_folders(tmp_path)
