"""The lifter learns to lift: trained with the task's own loader and train_step (plain torch steps, 2
threads) on ground-truth 2D of long synthetic sequences, scored by the task's evaluate on held-out
subjects (every frame of their tracks, flip test).

Pass: MPJPE <= 0.5 x the mean-pose baseline's and <= 60 mm; P-MPJPE and MPJVE are reported. Then the
real Human3.6M fixture (skipped when absent): its frames' 2D -> the trained lifter -> MPJPE against its
3D seen by its own cameras (the data path; single frames, so each window is the frame edge-replicated).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from poseops.annotations.sequences import write_sequence_annotations
from poseops.capture.synthetic_sequences import write_sequence_captures
from poseops.config import (
    BodyCaptureParams,
    CaptureParams,
    FamilyParams,
    SequenceCaptureParams,
    SplitParams,
)
from poseops.datasets.derive import derive_dataset
from poseops.families import get_family
from poseops.models import create_model
from poseops.tasks import get_task
from poseops.tasks.lifting_sequence import LifterPredictor, LiftingSequenceData

pytestmark = pytest.mark.slow

TASK = get_task("lifting_sequence")
# 22 sequences (the 11 smoke subjects, 2 each, as the smoke profile) x 120 frames x 2 views; the
# validation split holds 3 subjects. With 12 sequences (1-2 a subject) the same schedule overfits the 5
# training subjects' motions (train 37 mm, held-out ~70-80 mm); 2 a subject reach ~55 mm.
# The smoke preset at T = 9 (the smoke profile runs T = 27 with the same network).
CAPTURE = CaptureParams(
    hands=None,
    bodies=BodyCaptureParams(sequences=198),  # the smoke bodies' 11 subjects
    sequences=SequenceCaptureParams(count=22, frames=120, views=2),
)
FRAMES = 9
STEPS_EPOCHS = int(os.environ.get("LIFTER_CI_EPOCHS", 20))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifter")
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    started = time.time()
    try:
        write_sequence_captures(root / "sequences", CAPTURE)
        write_sequence_annotations(root / "sequences", root / "sequences.json")
        data = LiftingSequenceData(sequence_window=FRAMES, train_stride=2)
        card = derive_dataset(
            TASK.rows,
            root / "sequences.json",
            str(root / "derived"),
            data,
            SplitParams(val_fraction=0.25, seed=0),
            skeleton="h36m17",
            executor="local",
        )
        torch.manual_seed(0)
        model = create_model("lifter", "smoke", frames=FRAMES)
        cfg = {
            "family": "lifter",
            "dataset_url": str(root / "derived"),
            "data": data.model_dump(mode="json"),
            "batch_size": 32,
            "seed": 0,
        }
        windows, loader = TASK.train_loader(cfg, model, 0, 1)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(STEPS_EPOCHS * 0.75)], 0.1)
        for epoch in range(STEPS_EPOCHS):
            windows.set_epoch(epoch)
            for batch in loader:
                TASK.train_step(model, batch, optimizer)
            schedule.step()
        fam = FamilyParams(model=model.config, data=data, train={"epochs": STEPS_EPOCHS})
        report = TASK.evaluate(
            get_family("lifter"),
            fam,
            model,
            str(root / "derived"),
            "val",
            card,
            {"flip_test": True},
        ).report
    finally:
        torch.set_num_threads(previous)
    seconds = time.time() - started
    print(
        f"\nlifter smoke: MPJPE {report['mpjpe']:.1f} mm, P-MPJPE {report['p_mpjpe']:.1f}, "
        f"MPJVE {report['mpjve']:.1f}, baselines {report['baselines']}, {seconds:.0f} s"
    )
    return model, report


def test_lifter_beats_half_the_mean_pose_and_60_mm(trained):
    _, report = trained
    assert report["mpjpe"] <= 0.5 * report["baselines"]["mean_pose_mpjpe"]
    assert report["mpjpe"] <= 60.0
    assert report["p_mpjpe"] <= report["mpjpe"] and np.isfinite(report["mpjve"])
    assert report["mpjpe"] < report["baselines"]["untrained_mpjpe"]


def test_real_h36m_frames_through_the_lifter(trained, real_fixtures, tmp_path):
    """Human3.6M fixture: its 2D (H36M-17) -> lifter; its world 3D -> its camera's frame, root-relative;
    the 3D projects onto its 2D (the cameras belong to the frames), and the lifted MPJPE is finite mm."""
    from poseops.annotations.h36m import read_h36m
    from poseops.geometry import project, world_to_camera
    from poseops.metrics import mpjpe
    from poseops.tasks.lifting_sequence import camera_of, world_points

    folder = real_fixtures / "h36m"
    if not (folder / "test_h36m_body3d.npz").is_file():
        pytest.skip("Human3.6M fixture absent")
    labels = read_h36m(folder / "test_h36m_body3d.npz", folder, tmp_path)
    cameras = {c["id"]: camera_of(c) for c in labels["cameras"]}
    images = {img["id"]: img for img in labels["images"]}
    model, _ = trained
    predictor = LifterPredictor(model, "poseops-lifter", "test", flip_test=True)
    preds, gts = [], []
    for ann in labels["annotations"]:
        image = images[ann["image_id"]]
        camera = cameras[image["camera_id"]]
        keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        cam = np.asarray(world_to_camera(world_points(ann, 17), camera))
        reprojected = np.asarray(project(cam, camera))
        assert np.median(np.linalg.norm(reprojected - keypoints[:, :2], axis=-1)) < 5.0
        out = predictor.lift(keypoints[None], (image["width"], image["height"]), "h36m17")
        preds.append(out["keypoints_3d"])
        gts.append(cam - cam[:1])
    result = mpjpe(np.asarray(preds), np.asarray(gts), root=0)
    print(
        f"\nHuman3.6M fixture ({len(preds)} frames): MPJPE {result.value:.1f} mm (synthetic-trained)"
    )
    assert np.isfinite(result.value) and result.value > 0


def test_real_h36m_import_derive_evaluate_with_the_checkpoint(trained, real_fixtures, tmp_path):
    """The lifter's real-data path: `data import h36m` of the Human3.6M fixture -> derive (one-frame
    windows: the fixture's frames are single instants of four subjects, split by subject) -> the trained
    lifter saved as a checkpoint and loaded back -> evaluate on the test split: metrics.json says `real`
    and scores real frames in mm."""
    import json

    from poseops.annotations.internal import import_annotations
    from poseops.checkpoints import build_model_from_checkpoint, save_checkpoint
    from poseops.evaluate import evaluate_model

    folder = real_fixtures / "h36m"
    if not (folder / "test_h36m_body3d.npz").is_file():
        pytest.skip("Human3.6M fixture absent")
    manifest = import_annotations(
        "h36m", folder / "test_h36m_body3d.npz", None, tmp_path / "import"
    )
    data = LiftingSequenceData(sequence_window=1)
    split = SplitParams(val_fraction=0.25, test_fraction=0.25, seed=0)
    card = derive_dataset(
        TASK.rows,
        tmp_path / "import" / manifest["annotations"]["file"],
        str(tmp_path / "derived"),
        data,
        split,
        skeleton="h36m17",
        executor="local",
    )
    assert card["source"]["kind"] == "real" and card["counts"] == {"train": 2, "val": 1, "test": 1}

    model, _ = trained
    lifter = get_family("lifter")
    save_checkpoint(
        tmp_path / "checkpoint", "lifter", lifter.model, model.state_dict(), model.config
    )
    loaded = build_model_from_checkpoint(tmp_path / "checkpoint")
    fam = FamilyParams(model=loaded.config, data=data, train={"epochs": 1})
    report = evaluate_model(lifter, fam, loaded, str(tmp_path / "derived"), tmp_path / "metrics")
    written = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    print(
        f"\nHuman3.6M fixture, test split ({written['num_frames']} frame): MPJPE "
        f"{written['mpjpe']:.1f} mm, baselines {written['baselines']}"
    )
    assert written["data"] == "real" and written["split"] == "test"
    assert written["num_frames"] == card["counts"]["test"] == 1
    assert written["dataset_checksum"] == report["dataset_checksum"]
    assert 0.0 < written["mpjpe"] < 1000.0 and np.isfinite(written["p_mpjpe"])
    assert set(written["baselines"]) >= {"untrained_mpjpe", "mean_pose_mpjpe"}
