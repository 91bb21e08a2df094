"""predict@<family>: a top-down 2D family's tracks of the labels-only long sequences, for the lifter.

The sequences have no pixels, so each (sequence, view) is drawn frame by frame with the bodies renderer
(`poseops.capture.sequence_render`); the person is cut out around its ground-truth box (the top-down
protocol with ground-truth boxes, as mmpose evaluates top-down models on COCO with GT boxes) with the
checkpoint's crop margin at its input size, the crops run through the model in batches (flip test as the
checkpoint says, unless overridden), and the keypoints go back to image pixels through the inverse crop
affine. Output: `poseops.datasets.tracks` (tracks.parquet, manifest.json last).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from poseops.capture.sequence_render import sequence_frames
from poseops.config import FamilyPredict
from poseops.datasets.tracks import track_table, write_tracks
from poseops.errors import ConfigError
from poseops.storage import require_published
from poseops.tasks.topdown_crop import predict_people

PROTOCOL = (
    "top-down with ground-truth boxes: each frame drawn by the bodies renderer, cropped around the "
    "person's ground-truth box (every drawn part, clipped to the image) with the checkpoint's crop "
    "margin at its input size; keypoints decoded in the crop and mapped back by the inverse affine"
)


def select(folder: Path, settings: FamilyPredict) -> tuple[list[str], set[str] | None]:
    """(sequence ids, view names or None) the settings pick from a published sequences folder."""
    manifest = require_published(folder, "manifest.json")
    entries = sorted(manifest.get("sequences", []), key=lambda e: e["id"])
    if settings.views is not None:
        known = {v for e in entries for v in e["views"]}
        unknown = sorted(set(settings.views) - known)
        if unknown:
            raise ConfigError(
                f"predict.views: {unknown} are not views of {folder / 'manifest.json'} "
                f"(views: {sorted(known)})"
            )
    ids = [e["id"] for e in entries][: settings.sequences]
    return ids, None if settings.views is None else set(settings.views)


def predict_view(model, frames, margin: float, flip_test: bool, batch_size: int):
    """(frame indices [N], keypoints [N,K,2] image px, scores [N,K], boxes [N,4]) of one drawn view:
    `batch_size` frames at a time through the task's crop-predict-map-back (`predict_people`)."""
    out_kp, out_scores, out_boxes = [], [], []
    for start in range(0, len(frames), batch_size):
        drawn = [frames.frame(t) for t in range(start, min(start + batch_size, len(frames)))]
        images, boxes = [d[0] for d in drawn], [d[1] for d in drawn]
        keypoints, scores = predict_people(model, images, boxes, margin, flip_test, batch_size)
        out_kp.append(keypoints)
        out_scores.append(scores)
        out_boxes.append(np.asarray(boxes))
    return (
        np.arange(len(frames)),
        np.concatenate(out_kp),
        np.concatenate(out_scores),
        np.concatenate(out_boxes),
    )


def predict_sequence_tracks(
    checkpoint_dir: str | Path,
    sequences_dir: str | Path,
    out_dir: str | Path,
    settings: FamilyPredict | None = None,
    on_track=None,
) -> dict:
    """Predict every selected (sequence, view, frame) with a top-down checkpoint; returns the manifest.

    on_track(sequence, view, frames): progress, after each (sequence, view)."""
    from poseops.checkpoints import build_model_from_checkpoint
    from poseops.families import get_family, inference_settings
    from poseops.skeletons import get_skeleton

    settings = settings or FamilyPredict()
    sequences_dir = Path(sequences_dir)
    model = build_model_from_checkpoint(checkpoint_dir).eval()
    info = model.checkpoint_info
    family = get_family(info["family"])
    if family.task != "topdown_crop":
        raise ConfigError(
            f"{checkpoint_dir}: family {family.name!r} (task {family.task}) is not a top-down 2D "
            "family; predict@<family> cuts person crops"
        )
    inference = inference_settings(model)
    margin = float(inference.get("crop_margin", 1.25))
    flip = bool(
        inference.get("flip_test", True) if settings.flip_test is None else settings.flip_test
    )
    size = int(model.config.input_size)
    ids, views = select(sequences_dir, settings)
    started = time.perf_counter()

    def tables() -> Iterator:
        for frames in sequence_frames(sequences_dir, set(ids), views):
            idx, keypoints, scores, boxes = predict_view(
                model, frames, margin, flip, settings.batch_size
            )
            if on_track is not None:
                on_track(frames.sequence, frames.view, len(idx))
            yield track_table(frames.sequence, frames.view, idx, keypoints, scores, boxes)

    source = require_published(sequences_dir, "manifest.json")
    skeleton = get_skeleton(family.skeleton)
    manifest = write_tracks(
        out_dir,
        tables(),
        {
            "kind": "predicted_tracks",
            "family": family.name,
            "model": info["model"],
            "skeleton": skeleton.name,
            "keypoints": list(skeleton.keypoints),
            "protocol": PROTOCOL,
            "checkpoint": {"weights_sha256": info["weights_sha256"]},
            "source": {"kind": "sequences", "labels_sha256": source["labels"]["sha256"]},
            "settings": {
                **settings.model_dump(mode="json"),
                "flip_test": flip,
                "crop_margin": margin,
                "input_size": size,
            },
            "sequences": ids,
        },
    )
    manifest["seconds"] = round(time.perf_counter() - started, 2)  # run fact: returned, not written
    return manifest
