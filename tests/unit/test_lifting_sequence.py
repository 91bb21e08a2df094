"""Long labels-only sequences -> sequences.json -> lifting_sequence windows -> tracks, training batches,
validation and evaluation, on a tiny capture (4 sequences x 30 frames x 2 views)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from poseops.annotations.internal import load_annotations
from poseops.annotations.sequences import write_sequence_annotations
from poseops.capture.synthetic_bodies import write_body_captures
from poseops.capture.synthetic_sequences import body_subjects, fold, write_sequence_captures
from poseops.config import BodyCaptureParams, CaptureParams, SequenceCaptureParams, SplitParams
from poseops.datasets.derive import derive_dataset
from poseops.evaluate import write_report
from poseops.families import get_family
from poseops.geometry import Camera, world_to_camera
from poseops.models import create_model
from poseops.tasks import get_task
from poseops.tasks.lifting_sequence import (
    DetectedTrackParams,
    LiftingSequenceData,
    detected_track,
    load_tracks,
    normalize_screen,
    window_indices,
)

pytestmark = pytest.mark.usefixtures("one_thread")
TASK = get_task("lifting_sequence")
PARAMS = CaptureParams(
    hands=None,
    bodies=BodyCaptureParams(sequences=8, frames_per_sequence=2, image_size=128, views=2),
    sequences=SequenceCaptureParams(count=4, frames=30, views=2),
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifting")
    manifest = write_sequence_captures(root / "raw" / "sequences", PARAMS)
    counts = write_sequence_annotations(
        root / "raw" / "sequences", root / "annotations" / "sequences.json"
    )
    data = LiftingSequenceData(sequence_window=9, sequence_stride=9)
    card = derive_dataset(
        TASK.rows,
        root / "annotations" / "sequences.json",
        str(root / "derived"),
        data,
        SplitParams(val_fraction=0.25, seed=0),
        skeleton="h36m17",
        executor="local",
    )
    return {"root": root, "manifest": manifest, "counts": counts, "card": card, "data": data}


# ---------------------------------------------------------------- capture
def test_sequences_part_is_labels_only_and_published_last(dataset):
    folder = dataset["root"] / "raw" / "sequences"
    assert sorted(p.name for p in folder.iterdir()) == [
        "cameras.json",
        "labels.jsonl",
        "manifest.json",
    ]
    manifest = dataset["manifest"]
    assert manifest["kind"] == "sequences"
    assert manifest["counts"] == {"sequences": 4, "subjects": 4, "frames": 120, "views": 2}
    record = json.loads((folder / "labels.jsonl").read_text().splitlines()[0])
    assert np.asarray(record["joints_3d"]).shape == (30, 17, 3)
    assert {k: np.asarray(v).shape for k, v in record["keypoints_2d"].items()} == {
        v["name"]: (30, 17, 3) for v in record["views"]
    }
    assert record["fps"] == 3.0  # the bodies' frame rate: 1 kept frame in 10 of 30 fps


def test_sequences_reuse_the_body_subjects_and_are_deterministic(dataset, tmp_path):
    bodies = write_body_captures(tmp_path / "bodies", PARAMS)
    subjects = body_subjects(PARAMS)
    assert len(subjects) == bodies["counts"]["subjects"]
    seen = {e["subject"] for e in dataset["manifest"]["sequences"]}
    assert seen == {s.name for s in subjects[:4]}
    again = write_sequence_captures(tmp_path / "again", PARAMS)
    assert again["labels"]["sha256"] == dataset["manifest"]["labels"]["sha256"]


def test_labels_are_projections_of_the_3d(dataset):
    folder = dataset["root"] / "raw" / "sequences"
    record = json.loads((folder / "labels.jsonl").read_text().splitlines()[1])
    cameras = json.loads((folder / "cameras.json").read_text())[record["id"]]
    from poseops.geometry import project_world

    for view in record["views"]:
        cam = Camera(**cameras[view["name"]])
        uv = np.asarray(project_world(np.asarray(record["joints_3d"]), cam))
        assert np.abs(uv - np.asarray(record["keypoints_2d"][view["name"]])[..., :2]).max() < 1e-3
        depth = np.asarray(world_to_camera(np.asarray(record["joints_3d"]), cam))[..., 2]
        assert depth.min() > 500.0


def test_fold_keeps_a_long_walk_in_the_room_and_continuous():
    path = np.stack([np.linspace(0, 50_000, 500), np.linspace(0, -20_000, 500)], 1)
    folded = fold(path, 1200.0)
    assert np.abs(folded).max() <= 1200.0 + 1e-9
    assert np.abs(np.diff(folded, axis=0)).max() <= np.abs(np.diff(path, axis=0)).max() + 1e-9


def test_sequence_params_are_validated():
    with pytest.raises(ValueError):
        SequenceCaptureParams(count=0)
    with pytest.raises(ValueError):
        SequenceCaptureParams(views=6)


# ---------------------------------------------------------------- annotations and derive
def test_annotations_one_image_per_frame_and_view(dataset):
    labels = load_annotations(dataset["root"] / "annotations" / "sequences.json")
    assert dataset["counts"] == {"images": 240, "annotations": 240}
    assert len(labels["cameras"]) == 8
    assert {c["name"] for c in labels["categories"]} == {"person_h36m17"}


def test_empty_part_gives_an_empty_valid_file(tmp_path):
    (tmp_path / "sequences").mkdir()
    assert write_sequence_annotations(tmp_path / "sequences", tmp_path / "s.json") == {
        "images": 0,
        "annotations": 0,
    }
    assert load_annotations(tmp_path / "s.json")["images"] == []


def test_tracks_are_whole_and_split_by_subject(dataset):
    url = str(dataset["root"] / "derived")
    splits = {name: load_tracks(url, name) for name in dataset["card"]["splits"]}
    assert sum(len(tracks) for tracks in splits.values()) == 8  # 4 sequences x 2 views
    every = [t for tracks in splits.values() for t in tracks]
    assert all(len(t.frames) == 27 and np.array_equal(t.frames, np.arange(27)) for t in every)
    sequences = [{t.sequence for t in tracks} for tracks in splits.values()]
    assert sum(len(s) for s in sequences) == len(
        set().union(*sequences)
    )  # no sequence in two splits
    train = splits["train"]
    assert all(np.allclose(t.pose_3d[:, 0], 0.0) for t in train)  # root-relative


def test_window_indices_replicate_the_edges():
    idx = window_indices(10, np.array([0, 5, 9]), 5)
    assert idx.tolist() == [[0, 0, 0, 1, 2], [3, 4, 5, 6, 7], [7, 8, 9, 9, 9]]


def test_normalisation_is_videopose3d():
    xy = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 500.0]])
    out = normalize_screen(xy, 1000.0, 1002.0)
    assert np.allclose(out[0], [-1.0, -1.002]) and np.allclose(out[1], [1.0, 1.002])
    assert np.allclose(out[2], [0.0, -0.002])


def test_detected_track_statistics():
    rng = np.random.default_rng(0)
    clean = np.zeros((4000, 17, 2))
    noise = DetectedTrackParams(sigma_px=(3.0, 3.0), outlier_rate=(0.02, 0.02), drop_rate=0.0)
    err = np.linalg.norm(detected_track(rng, clean, noise) - clean, axis=-1)
    assert np.median(err) == pytest.approx(
        3.0 * np.sqrt(2 * np.log(2)), rel=0.05
    )  # Rayleigh median
    assert 0.01 < (err > 30).mean() < 0.03
    walk = np.repeat(np.arange(100.0)[:, None, None], 17, 1).repeat(2, 2)
    dropped = detected_track(
        rng, walk, DetectedTrackParams(sigma_px=(0.0, 0.0), outlier_rate=(0.0, 0.0))
    )
    assert np.allclose(dropped, walk)  # dropped joints are interpolated back onto the straight line


# ---------------------------------------------------------------- train / validate / evaluate
def loop_config(dataset, **data):
    return {
        "family": "lifter",
        "dataset_url": str(dataset["root"] / "derived"),
        "data": {**dataset["data"].model_dump(mode="json"), **data},
        "batch_size": 16,
        "seed": 0,
    }


def test_training_batches_flip_and_learn(dataset):
    torch.manual_seed(0)
    model = create_model("lifter", "tiny")
    windows, loader = TASK.train_loader({**loop_config(dataset), "batch_size": 32}, model, 0, 1)
    batch = next(iter(loader))
    assert batch["input"].shape == (32, 9, 17, 2) and batch["target"].shape == (32, 17, 3)
    # targets are root-relative mm / 1000 (metres)
    assert torch.allclose(batch["target"][:, 0], torch.zeros(32, 3))
    assert 0.1 < batch["target"].abs().max() < 2.0
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = [TASK.train_step(model, b, optimizer)["mpjpe"] for b in loader]
    for epoch in range(1, 3):
        windows.set_epoch(epoch)
        last = [TASK.train_step(model, b, optimizer)["mpjpe"] for b in loader]
    assert np.mean(last) < np.mean(first)


def test_two_ranks_share_the_frames(dataset):
    model = create_model("lifter", "tiny")
    counts = [
        sum(len(b["input"]) for b in TASK.train_loader(loop_config(dataset), model, r, 2)[1])
        for r in (0, 1)
    ]
    total = sum(len(b["input"]) for b in TASK.train_loader(loop_config(dataset), model, 0, 1)[1])
    assert sum(counts) == total and abs(counts[0] - counts[1]) <= 1


def test_window_must_match_the_model(dataset):
    from poseops.errors import ConfigError

    with pytest.raises(ConfigError, match="sequence_window 9 != model.frames 27"):
        TASK.train_loader(loop_config(dataset), create_model("lifter", "tiny", frames=27), 0, 1)


def test_validate_and_evaluate_report(dataset, tmp_path):
    from poseops.config import FamilyParams

    torch.manual_seed(0)
    model = create_model("lifter", "tiny")
    val = TASK.load_validation(loop_config(dataset))
    assert TASK.validate(model, val)["val_mpjpe"] > 0
    fam = FamilyParams(
        model=model.config,
        data=dataset["data"],
        train={"epochs": 1},
        gate={"max_mpjpe": 1000.0},
    )
    family = get_family("lifter")
    evaluation = TASK.evaluate(
        family,
        fam,
        model,
        str(dataset["root"] / "derived"),
        "val",
        dataset["card"],
        {"flip_test": True},
    )
    report = evaluation.report
    assert report["num_frames"] == 27 * report["num_tracks"]
    assert set(report["baselines"]) == {"untrained_mpjpe", "mean_pose_mpjpe"}
    assert report["margin_over_best_baseline"] == pytest.approx(
        min(report["baselines"].values()) - report["mpjpe"]
    )
    assert report["p_mpjpe"] <= report["mpjpe"] and report["mpjve"] > 0
    written = write_report(TASK, evaluation, tmp_path)
    assert sorted(p.name for p in written) == [
        "metrics.json",
        "per_joint.json",
        "per_joint_mpjpe.png",
    ]


def test_noisy_input_differs_from_ground_truth(dataset):
    gt = TASK.load_validation(loop_config(dataset))["inputs"][0]
    noisy = TASK.load_validation(loop_config(dataset, input_2d="noisy"))["inputs"][0]
    assert gt.shape == noisy.shape and not np.allclose(gt, noisy)


def test_predicted_input_needs_a_family():
    with pytest.raises(ValueError, match="input_family"):
        LiftingSequenceData(input_2d="predicted")
    with pytest.raises(ValueError, match="input_family"):
        LiftingSequenceData(input_family="hrnet_am")


# ---------------------------------------------------------------- lower is better, end to end
def test_lower_is_better_picks_the_lowest_epoch_row_and_champion():
    from poseops.tracking.registry import ChampionNotBeaten, compare_with_champion
    from poseops.tune.runner import best_row

    lifter = get_family("lifter")
    assert (lifter.primary_metric, lifter.metric_mode, lifter.val_metric) == (
        "mpjpe",
        "min",
        "val_mpjpe",
    )
    epochs = [
        {"epoch": 0, "val_mpjpe": 90.0},
        {"epoch": 1, "val_mpjpe": 40.0},
        {"epoch": 2, "val_mpjpe": 55.0},
    ]
    assert lifter.best(epochs)["epoch"] == 1
    assert get_family("handmle").best([{"val_pck": 0.2}, {"val_pck": 0.6}])["val_pck"] == 0.6
    # selection reads validation; the test score ("value") plays no part
    rows = [{"val_value": 3.0, "value": 0.5}, {"val_value": 1.0, "value": 9.0}]
    assert best_row(rows, "min")["val_value"] == 1.0
    same = {"dataset_checksum": "x", "split": "val"}
    champion = {**same, "metrics": {"mpjpe": 50.0}}
    compare_with_champion(
        "lifter", {**same, "metrics": {"mpjpe": 45.0}}, champion, "mpjpe", 1.0, ("2", "1"), "min"
    )
    with pytest.raises(ChampionNotBeaten, match="needs <= 49"):
        compare_with_champion(
            "lifter",
            {**same, "metrics": {"mpjpe": 49.5}},
            champion,
            "mpjpe",
            1.0,
            ("2", "1"),
            "min",
        )


def test_train_checkpoint_order_follows_the_metric_mode():
    from poseops.tune.adapter import metric_mode

    assert metric_mode("lifter") == "min" and metric_mode("vmhpe") == "max"


def test_shard_2d_is_the_projection_of_its_3d_target(dataset):
    """Same frames, view and joint order: every window's camera-frame 3D (root-relative + root) seen by
    its own camera lands on its 2D input to < 1 px, and the targets are root-relative (root joint 0)."""
    from poseops.geometry import project
    from poseops.tasks.lifting_sequence import load_lifting_split

    for split in ("train", "val"):
        arrays = load_lifting_split(str(dataset["root"] / "derived"), split)
        assert np.abs(arrays["keypoints_3d_cam"][:, :, 0]).max() == 0.0
        for i, camera in enumerate(arrays["cameras"]):
            cam = arrays["keypoints_3d_cam"][i] + arrays["root_cam"][i][:, None]
            uv = np.asarray(project(cam.astype(np.float64), camera))
            assert np.abs(uv - arrays["keypoints_2d"][i]).max() < 1.0


def test_batch_target_is_the_centre_frame_of_its_2d_window(dataset):
    """Each unmirrored training sample's target is the track's 3D at the centre of its 2D window."""
    data = dataset["data"]
    model = create_model("lifter", "tiny", flip_augment=False)
    tracks = load_tracks(str(dataset["root"] / "derived"), "train")
    windows, loader = TASK.train_loader(loop_config(dataset), model, 0, 1)
    inputs = [normalize_screen(t.keypoints_2d, t.width, t.height) for t in tracks]
    batch = next(iter(loader))
    centre = (data.sequence_window - 1) // 2
    for x, y in zip(batch["input"].numpy(), batch["target"].numpy()):
        hits = [
            (i, n)
            for i, track_2d in enumerate(inputs)
            for n in np.flatnonzero(np.abs(track_2d - x[centre]).max(axis=(1, 2)) < 1e-5)
        ]
        assert hits
        i, n = hits[0]
        assert np.allclose(y * 1000.0, tracks[i].pose_3d[n], atol=1e-2)
