"""predict@<family> on a tiny capture and a tiny untrained hrnet_am: the tracks it writes (ids, shapes,
image coordinates through the inverse crop affine, manifest last) and the lifter reading them as its
predicted 2D input (mapped COCO-17 -> H36M-17), with clear errors for a missing track or folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from poseops.annotations.sequences import write_sequence_annotations
from poseops.capture.sequence_render import sequence_frames
from poseops.capture.synthetic_sequences import write_sequence_captures
from poseops.checkpoints import save_checkpoint
from poseops.config import (
    BodyCaptureParams,
    CaptureParams,
    FamilyPredict,
    SequenceCaptureParams,
    SplitParams,
)
from poseops.datasets.derive import derive_dataset
from poseops.datasets.tracks import PredictedTracks
from poseops.datasets.transforms import box_affine, invert_affine, warp
from poseops.errors import ConfigError, DataError
from poseops.models import create_model
from poseops.predict import predict_sequence_tracks, predict_view
from poseops.skeletons import COCO17, H36M17, map_keypoints
from poseops.tasks import get_task
from poseops.tasks.lifting_sequence import LiftingSequenceData, load_tracks, track_inputs
from poseops.tasks.topdown_crop import TopDownPredictor, crop_people

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]
SEQUENCES = Path("data") / "raw" / "synthetic" / "sequences"
ANNOTATIONS = Path("data") / "annotations" / "sequences.json"
TASK = get_task("lifting_sequence")
FRAMES, VIEWS, COUNT = 12, 2, 4
PARAMS = CaptureParams(
    hands=None,
    bodies=BodyCaptureParams(sequences=4, frames_per_sequence=2, image_size=128, views=VIEWS),
    sequences=SequenceCaptureParams(count=COUNT, frames=FRAMES, views=VIEWS),
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")  # the pipeline's layout (poseops.pipeline.Layout)
    write_sequence_captures(root / SEQUENCES, PARAMS)
    write_sequence_annotations(
        root / SEQUENCES,
        root / ANNOTATIONS,
    )
    model = create_model("hrnet_am", "tiny")
    save_checkpoint(
        root / "models" / "hrnet_am",
        "hrnet_am",
        "hrnet_am",
        model.state_dict(),
        model.config,
        extra={"inference": {"crop_margin": 1.25, "flip_test": False}},
    )
    manifest = predict_sequence_tracks(
        root / "models" / "hrnet_am", root / SEQUENCES, root / "predicted" / "all"
    )
    return {"root": root, "manifest": manifest}


def test_tracks_cover_every_sequence_view_and_frame(project):
    manifest, folder = project["manifest"], project["root"] / "predicted" / "all"
    assert manifest["counts"] == {"rows": COUNT * VIEWS * FRAMES, "tracks": COUNT * VIEWS}
    assert json.loads((folder / "manifest.json").read_text())["tracks"] == manifest["tracks"]
    assert "ground-truth boxes" in manifest["protocol"]
    assert manifest["skeleton"] == "coco17" and manifest["settings"]["flip_test"] is False
    tracks = PredictedTracks(folder)
    views = {
        v.view
        for v in sequence_frames(project["root"] / "data" / "raw" / "synthetic" / "sequences")
    }
    assert len(views) == VIEWS
    for sequence in (f"long_{i:05d}" for i in range(COUNT)):
        for view in views:
            frames, keypoints, scores = tracks.get(sequence, view)
            assert frames.tolist() == list(range(FRAMES))
            assert keypoints.shape == (FRAMES, 17, 2) and scores.shape == (FRAMES, 17)
            assert np.isfinite(keypoints).all() and ((scores >= 0) & (scores <= 1)).all()


def test_keypoints_are_in_image_pixels_inside_the_crop(project):
    """Whatever the (untrained) model says, its keypoints lie in the crop, mapped back: inside the
    ground-truth box grown by the crop margin (square), not in the crop's own 0..S pixels."""
    import pyarrow.parquet as pq

    table = pq.read_table(project["root"] / "predicted" / "all" / "tracks.parquet").to_pydict()
    keypoints = np.asarray(table["keypoints"]).reshape(-1, 17, 2)
    boxes = np.asarray(table["box"])
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    half = boxes[:, 2:].max(1) * 1.25 / 2 + 1.0
    assert (np.abs(keypoints - centre[:, None]) <= half[:, None, None]).all()
    assert (np.abs(keypoints - centre[:, None]).max((1, 2)) > 0.5 * half / 1.25).any()


def test_crop_affine_round_trip():
    image = np.zeros((100, 120, 3), np.uint8)
    crops, affines = crop_people([image], [[30.0, 20.0, 40.0, 60.0]], 1.25, 32)
    assert crops.shape == (1, 32, 32, 3)
    centre = affines[0] @ np.array([50.0, 50.0, 1.0])  # the box centre -> the crop centre
    np.testing.assert_allclose(centre, [15.5, 15.5], atol=0.51)


def reference_view(model, frames, margin: float, flip_test: bool, batch_size: int):
    """predict@<family>'s own crop, predict and map back before it used the task's `predict_people`."""
    size = int(model.config.input_size)
    keypoints, scores = [], []
    for start in range(0, len(frames), batch_size):
        drawn = [frames.frame(t) for t in range(start, min(start + batch_size, len(frames)))]
        affines = np.stack([box_affine(box, margin, size) for _, box in drawn])
        crops = np.stack([warp(image, a, size)[..., ::-1] for (image, _), a in zip(drawn, affines)])
        with torch.no_grad():
            xy, score = model.predict(
                model.preprocess(torch.from_numpy(np.ascontiguousarray(crops))), flip_test
            )
        inverse = np.stack([invert_affine(a) for a in affines])
        xy = xy.numpy().astype(np.float64)
        keypoints.append(np.einsum("nij,nkj->nki", inverse[:, :, :2], xy) + inverse[:, None, :, 2])
        scores.append(score.numpy())
    return np.concatenate(keypoints), np.concatenate(scores)


@pytest.mark.parametrize("flip_test", [False, True])
def test_predict_view_is_the_endpoints_crop_predict_map_back(project, flip_test):
    """predict@<family> and the endpoint share the task's `predict_people`: the tracks are what the
    former code gave, and what `TopDownPredictor` answers frame by frame with the same flip test."""
    model = create_model("hrnet_am", "tiny").eval()
    frames = next(iter(sequence_frames(project["root"] / SEQUENCES)))
    _, keypoints, scores, boxes = predict_view(model, frames, 1.25, flip_test, batch_size=5)
    expected_keypoints, expected_scores = reference_view(model, frames, 1.25, flip_test, 5)
    np.testing.assert_array_equal(keypoints, expected_keypoints)
    np.testing.assert_array_equal(scores, expected_scores)
    predictor = TopDownPredictor(model, "poseops-hrnet_am", "1", 1.25, flip_test)
    answers = predictor.predict_batch([frames.frame(t)[0] for t in range(5)], list(boxes[:5]))
    served = np.asarray([answer["keypoints"] for answer in answers])
    np.testing.assert_allclose(served[..., :2], keypoints[:5], atol=1e-9)
    np.testing.assert_allclose(served[..., 2], scores[:5], atol=1e-6)
    other = TopDownPredictor(model, "poseops-hrnet_am", "1", 1.25, not flip_test)
    assert not np.allclose(
        np.asarray(other.predict_batch([frames.frame(0)[0]], [boxes[0]])[0]["keypoints"]), served[0]
    )


def test_subsample_and_unknown_views(project, tmp_path):
    root = project["root"]
    view = next(iter(sequence_frames(root / SEQUENCES))).view
    manifest = predict_sequence_tracks(
        root / "models" / "hrnet_am",
        root / SEQUENCES,
        tmp_path / "one",
        FamilyPredict(sequences=1, views=[view], batch_size=5),
    )
    assert manifest["counts"] == {"rows": FRAMES, "tracks": 1}
    assert manifest["pairs"] == [["long_00000", view]]
    with pytest.raises(ConfigError, match="nowhere"):
        predict_sequence_tracks(
            root / "models" / "hrnet_am",
            root / SEQUENCES,
            tmp_path / "bad",
            FamilyPredict(views=["nowhere"]),
        )
    assert not (tmp_path / "bad" / "manifest.json").exists()


def derive(root, out, tracks_folder):
    data = LiftingSequenceData(
        sequence_window=9,
        sequence_stride=3,
        input_2d="predicted",
        input_family="hrnet_am",
        input_tracks=str(tracks_folder),
    )
    card = derive_dataset(
        TASK.rows,
        root / ANNOTATIONS,
        str(out),
        data,
        SplitParams(val_fraction=0.01, test_fraction=0.5, seed=0),
        skeleton="h36m17",
        executor="local",
    )
    return data, card


def test_lifter_reads_the_predicted_tracks_mapped_to_h36m(project, tmp_path):
    root = project["root"]
    data, card = derive(root, tmp_path / "derived", root / "predicted" / "all")
    assert card["input_2d"]["tracks_sha256"] == project["manifest"]["tracks"]["sha256"]
    assert card["input_2d"]["skeleton"] == "coco17"
    predicted = PredictedTracks(root / "predicted" / "all")
    tracks = load_tracks(str(tmp_path / "derived"), "train")
    assert tracks
    for track in tracks:
        view = next(
            v.view
            for v in sequence_frames(root / SEQUENCES, {track.sequence})
            if np.allclose(v.uv[track.frames, :17], track.keypoints_2d, atol=1e-3)
        )
        coco, _ = predicted.at(track.sequence, view, track.frames)
        expected, _ = map_keypoints(coco, COCO17, H36M17)
        assert track.input_2d.shape == track.keypoints_2d.shape
        np.testing.assert_allclose(track.input_2d, expected, atol=1e-3)
    inputs = track_inputs(tracks, data, None)
    gt = track_inputs(tracks, LiftingSequenceData(sequence_window=9), None)
    assert inputs[0].shape == gt[0].shape and not np.allclose(inputs[0], gt[0])


def test_a_missing_track_names_the_tracks_file(project, tmp_path):
    root = project["root"]
    view = next(iter(sequence_frames(root / SEQUENCES))).view
    predict_sequence_tracks(
        root / "models" / "hrnet_am",
        root / SEQUENCES,
        tmp_path / "one",
        FamilyPredict(sequences=1, views=[view]),
    )
    with pytest.raises(DataError, match=r"tracks\.parquet.*no predicted track"):
        derive(root, tmp_path / "derived", tmp_path / "one")
    with pytest.raises(DataError, match=r"manifest\.json.*predict"):
        derive(root, tmp_path / "derived2", tmp_path / "nothing")


def test_gt_derived_data_refuses_predicted_input(project, tmp_path):
    root = project["root"]
    derive_dataset(
        TASK.rows,
        root / ANNOTATIONS,
        str(tmp_path / "derived"),
        LiftingSequenceData(sequence_window=9),
        SplitParams(val_fraction=0.01, test_fraction=0.5, seed=0),
        skeleton="h36m17",
        executor="local",
    )
    tracks = load_tracks(str(tmp_path / "derived"), "train")
    data = LiftingSequenceData(sequence_window=9, input_2d="predicted", input_family="hrnet_am")
    with pytest.raises(DataError, match="no predicted 2D"):
        track_inputs(tracks, data, None)


# ---------------------------------------------------------------- a grid row's input from hrnet_am's grid
def fake_grid_trial(folder: Path, seed: int) -> str:
    """A Ray Train checkpoint as training leaves it (weights.safetensors, config.json) of a tiny hrnet_am."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = create_model("hrnet_am", "tiny")
    folder.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, folder / "weights.safetensors"
    )
    config = {
        "family": "hrnet_am",
        "model": "hrnet_am",
        "config": model.config.model_dump(mode="json"),
    }
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_a_grid_publishes_each_rows_validation_selected_checkpoint(tmp_path):
    """Per row, the seed validation prefers (not the test score's) is published under models/grids/ as a
    verified poseops checkpoint, named in the report by a project-relative path."""
    from poseops.checkpoints import load_checkpoint
    from poseops.tune import checkpoints_root, project_relative, publish_row_checkpoints

    root = tmp_path / "project"
    storage = tmp_path / "tune"
    rows = [
        {
            "name": "4@s0",
            "row": "4",
            "val_value": 0.5,
            "value": 0.1,
            "checkpoint_path": fake_grid_trial(storage / "a", 1),
        },
        {
            "name": "4@s1",
            "row": "4",
            "val_value": 0.4,
            "value": 0.9,
            "checkpoint_path": fake_grid_trial(storage / "b", 2),
        },
        {"name": "none@s0", "row": "none", "val_value": 0.3, "value": 0.3, "checkpoint_path": ""},
    ]
    published = publish_row_checkpoints(
        "hrnet_am", rows, root, checkpoints_root(root, "hrnet_am", "t7_am_layout"), str(storage)
    )
    assert list(published) == ["4"]  # a row without a checkpoint publishes nothing
    assert published["4"]["path"] == "models/grids/hrnet_am_t7_am_layout/4"
    assert published["4"]["trial"] == "4@s0"
    _, info = load_checkpoint(root / published["4"]["path"])
    assert info["weights_sha256"] == published["4"]["weights_sha256"]
    assert info["extra"]["inference"] and info["extra"]["grid_row"] == "4"
    report = {
        "tune_state": str(root / ".poseops" / "tune" / "x"),
        "urls": [str(root / "data"), "s3://b/d"],
    }
    assert project_relative(report, root) == {
        "tune_state": ".poseops/tune/x",
        "urls": ["data", "s3://b/d"],
    }


def test_grid_rows_lift_the_named_hrnet_am_variants_tracks(project, tmp_path):
    """t5_input2d's hrnet_am rows: input_from {hrnet_am, t7_am_layout, row} -> the checkpoint that grid
    published for the row -> its own tracks folder (predicted once, every sequence and view) -> the
    trial's derived data holds those predictions; the gt row keeps the project's dataset."""
    from poseops.checkpoints import load_checkpoint
    from poseops.config import read_yaml
    from poseops.datasets.loader import read_card
    from poseops.profiles import write_profile
    from poseops.storage import write_json_atomic
    from poseops.tune import checkpoints_root, publish_row_checkpoints
    from poseops.tune.grids import load_grid
    from poseops.tune.runner import GridRun, trial_configs

    root = project["root"]
    trials = [
        {
            "name": "4@s0",
            "row": "4",
            "val_value": 0.4,
            "checkpoint_path": fake_grid_trial(tmp_path / "t7" / "a", 1),
        },
        {
            "name": "none@s0",
            "row": "none",
            "val_value": 0.3,
            "checkpoint_path": fake_grid_trial(tmp_path / "t7" / "b", 2),
        },
    ]
    published = publish_row_checkpoints(
        "hrnet_am",
        trials,
        root,
        checkpoints_root(root, "hrnet_am", "t7_am_layout"),
        str(tmp_path / "t7"),
    )
    write_json_atomic(
        root / "reports" / "grids" / "hrnet_am_t7_am_layout.json", {"checkpoints": published}
    )
    write_profile(str(REPO / "profiles" / "tiny.yaml"), tmp_path / "params.yaml")
    grid = load_grid("lifter", "t5_input2d")
    run = GridRun(
        family="lifter",
        name="lifter_t5_input2d_x",
        trials=[t for t in grid.trials([0]) if t.row in ("gt", "hrnet_am_am", "hrnet_am_none")],
        base_params=read_yaml(tmp_path / "params.yaml"),
        project_root=root,
        storage_path=str(tmp_path / "tune"),
    )
    configs = {c["trial"]["row"]: c for c in trial_configs(run, tmp_path / "variants")}
    assert "input_tracks" not in str(configs["gt"]["trial"]["overrides"])
    assert configs["gt"]["trial"]["dataset_url"] == str(root / "data" / "derived" / "lifter")
    shas = set()
    for row, source in (("hrnet_am_am", "4"), ("hrnet_am_none", "none")):
        folder = Path(configs[row]["params"]["families"]["lifter"]["data"]["input_tracks"])
        manifest = json.loads((folder / "manifest.json").read_text())
        _, info = load_checkpoint(root / published[source]["path"])
        assert manifest["checkpoint"]["weights_sha256"] == info["weights_sha256"]
        assert (
            manifest["counts"]["tracks"] == COUNT * VIEWS
        )  # every view, whatever predict.views says
        card = read_card(configs[row]["trial"]["dataset_url"])
        assert card["input_2d"]["tracks_sha256"] == manifest["tracks"]["sha256"]
        shas.add(info["weights_sha256"])
    assert len(shas) == 2
    written = (folder / "tracks.parquet").stat().st_mtime_ns
    trial_configs(run, tmp_path / "variants")  # the same variants: predicted once
    assert (folder / "tracks.parquet").stat().st_mtime_ns == written


def test_a_grid_input_without_its_report_is_a_clear_error(project, tmp_path):
    from poseops.storage import write_json_atomic
    from poseops.tune.adapter import variant_checkpoint
    from poseops.tune.grids import InputFrom

    source = InputFrom(family="hrnet_am", grid="t7_am_layout", row="4")
    with pytest.raises(ConfigError, match=r"hrnet_am_t7_am_layout\.json does not exist"):
        variant_checkpoint(tmp_path, source)
    report = tmp_path / "reports" / "grids" / "hrnet_am_t7_am_layout.json"
    write_json_atomic(report, {"checkpoints": {}})
    with pytest.raises(ConfigError, match=r"no published checkpoint of row '4'.*dvc repro"):
        variant_checkpoint(tmp_path, source)
    write_json_atomic(report, {"checkpoints": {"4": {"path": "models/grids/x/4", "trial": "4@s0"}}})
    with pytest.raises(ConfigError, match=r"holds no checkpoint .*dvc pull"):
        variant_checkpoint(tmp_path, source)


def test_write_clip_draws_up_to_three_people(project, tmp_path):
    from poseops.capture.common import read_frames
    from poseops.capture.sequence_render import write_clip

    folder = project["root"] / SEQUENCES
    one = write_clip(folder, tmp_path / "one.mp4", ["long_00000"], frames=6)
    three = write_clip(folder, tmp_path / "three.mp4", ["long_00000", "long_00001", "long_00002"])
    assert one["people"] == 1 and three["people"] == 3 and three["frames"] == FRAMES
    read = list(read_frames(tmp_path / "three.mp4"))
    assert len(read) == FRAMES and read[0].shape[:2] == tuple(three["size"][::-1])
    assert len(list(read_frames(tmp_path / "one.mp4"))) == 6
    first_one, first_three = next(read_frames(tmp_path / "one.mp4")), read[0]
    assert np.abs(first_one.astype(int) - first_three.astype(int)).max() > 50  # more people drawn
    with pytest.raises(DataError, match="1 to 3"):
        write_clip(folder, tmp_path / "four.mp4", [f"long_{i:05d}" for i in range(4)])
    assert not (tmp_path / "four.mp4").exists()


def test_demo_clips_of_one_two_and_three_people(project, tmp_path):
    from poseops.demo import write_clips

    clips = write_clips(project["root"] / SEQUENCES, tmp_path / "clips", frames=4)
    assert [c["people"] for c in clips] == [1, 2, 3]
    assert all(Path(c["path"]).stat().st_size > 0 and c["frames"] == 4 for c in clips)
    assert write_clips(tmp_path / "none", tmp_path / "clips") == []
