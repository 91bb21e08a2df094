"""Frames of the labels-only long sequences, drawn on demand for a 2D model to look at.

The sequences part stores labels only (`poseops.capture.synthetic_sequences`); its bodies are made
again from the manifest's generator parameters (the same seeds give the same motions, subjects and
cameras: `sequence_frames` checks the remade H36M-17 joints against labels.jsonl) and drawn with the
bodies renderer (`poseops.capture.body_render`): a textured background and lighting fixed per
(sequence, view), no occluders, one person. Each frame comes with the person's ground-truth box
(around every drawn part, clipped to the image), as the bodies part's boxes are made.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poseops.capture.body_render import apply_gain, draw_scene, person_box, person_view
from poseops.capture.common import textured_background
from poseops.capture.synthetic_sequences import read_sequence_records, sequence_plans
from poseops.config import CaptureParams
from poseops.errors import DataError
from poseops.geometry import Camera, project_world, world_to_camera
from poseops.storage import require_published

_STREAM = 0xF4A3  # scenery (background, lighting) of a drawn (sequence, view)
JOINT_TOLERANCE_MM = 0.01


@dataclass
class ViewFrames:
    """One (sequence, view) drawn: `frames(indices)` yields (frame index, image BGR, box [x, y, w, h])."""

    sequence: str
    view: str
    camera: Camera
    uv: np.ndarray  # [T, 22, 2] px
    depth: np.ndarray  # [T, 22] mm
    subject: object
    background: np.ndarray
    gain: np.ndarray
    offset: float

    def frame(self, t: int) -> tuple[np.ndarray, list[float]]:
        person = person_view(self.uv[t], self.depth[t], self.subject, float(self.camera.fx))
        image = apply_gain(draw_scene(self.background, [person]).image, self.gain, self.offset)
        box, _ = person_box(person, int(self.camera.width), int(self.camera.height))
        return image, box

    def __len__(self) -> int:
        return len(self.uv)


def capture_params(folder: str | Path) -> CaptureParams:
    """The generator parameters a published sequences folder was made with (its manifest)."""
    manifest = require_published(Path(folder), "manifest.json")
    if manifest.get("kind") != "sequences":
        raise DataError(
            f"{Path(folder) / 'manifest.json'}: kind {manifest.get('kind')!r} is not sequences"
        )
    return CaptureParams.model_validate(manifest["generator"]["params"])


def sequence_frames(
    folder: str | Path, sequences: set[str] | None = None, views: set[str] | None = None
) -> Iterator[ViewFrames]:
    """Every (sequence, view) of a published sequences folder (or those named), ready to draw."""
    folder = Path(folder)
    params = capture_params(folder)
    stored = {r["id"]: r["joints_3d"] for r in read_sequence_records(folder)}
    wanted = set(stored) if sequences is None else set(sequences) & set(stored)
    for sequence_id, subject, plan in sequence_plans(params, wanted):
        remade = np.asarray(plan["joints"])
        if np.abs(remade - np.asarray(stored[sequence_id])).max() > JOINT_TOLERANCE_MM:
            raise DataError(
                f"{folder / 'labels.jsonl'}: sequence {sequence_id!r} does not match its manifest's "
                "generator parameters (its bodies cannot be drawn again)"
            )
        joints = np.asarray(plan["body_joints"])
        for v, (name, camera) in enumerate(plan["views"]):
            if views is not None and name not in views:
                continue
            rng = np.random.default_rng([params.seed, _STREAM, int(sequence_id.split("_")[-1]), v])
            w, h = int(camera.width), int(camera.height)
            background = textured_background(rng, max(w, h))[:h, :w].copy()
            gain = np.float32(rng.uniform(0.8, 1.15))
            yield ViewFrames(
                sequence_id,
                name,
                camera,
                np.asarray(project_world(joints, camera)),
                np.asarray(world_to_camera(joints, camera))[..., 2],
                subject,
                background,
                np.full((1, 1, 1), gain, np.float32),
                float(rng.uniform(-15, 15)),
            )
