"""Frames of the labels-only long sequences, drawn on demand for a 2D model to look at.

The sequences part stores labels only (`poseops.capture.synthetic_sequences`); its bodies are made
again from the manifest's generator parameters (the same seeds give the same motions, subjects and
cameras: `sequence_frames` checks the remade H36M-17 joints against labels.jsonl) and drawn with the
bodies renderer (`poseops.capture.body_render`): a textured background and lighting fixed per
(sequence, view), no occluders, one person. Each frame comes with the person's ground-truth box
(around every drawn part, clipped to the image), as the bodies part's boxes are made. `write_clip`
draws 1-3 sequences' performers together into an MP4 (the demo's and assessment's rendered clips).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poseops.capture.body_render import apply_gain, draw_scene, person_box, person_view
from poseops.capture.common import VideoFormat, textured_background, video_writer
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


def sequence_bodies(folder: Path, params: CaptureParams, wanted: set[str]):
    """(sequence id, subject, body joints [T, 22, 3] world mm, views [(name, Camera)]) of the wanted
    sequences, made again from the generator parameters and checked against labels.jsonl."""
    stored = {r["id"]: r["joints_3d"] for r in read_sequence_records(folder)}
    unknown = sorted(wanted - set(stored))
    if unknown:
        raise DataError(f"{folder / 'labels.jsonl'}: no sequence {unknown}")
    for sequence_id, subject, plan in sequence_plans(params, wanted):
        remade = np.asarray(plan["joints"])
        if np.abs(remade - np.asarray(stored[sequence_id])).max() > JOINT_TOLERANCE_MM:
            raise DataError(
                f"{folder / 'labels.jsonl'}: sequence {sequence_id!r} does not match its manifest's "
                "generator parameters (its bodies cannot be drawn again)"
            )
        yield sequence_id, subject, np.asarray(plan["body_joints"]), plan["views"]


def scenery(seed: int, sequence_id: str, view_index: int, camera: Camera):
    """(background BGR, gain [1, 1, 1], offset) fixed for one drawn (sequence, view)."""
    rng = np.random.default_rng([seed, _STREAM, int(sequence_id.split("_")[-1]), view_index])
    w, h = int(camera.width), int(camera.height)
    background = textured_background(rng, max(w, h))[:h, :w].copy()
    gain = np.full((1, 1, 1), rng.uniform(0.8, 1.15), np.float32)
    return background, gain, float(rng.uniform(-15, 15))


def sequence_frames(
    folder: str | Path, sequences: set[str] | None = None, views: set[str] | None = None
) -> Iterator[ViewFrames]:
    """Every (sequence, view) of a published sequences folder (or those named), ready to draw."""
    folder = Path(folder)
    params = capture_params(folder)
    if sequences is None:
        sequences = {r["id"] for r in read_sequence_records(folder)}
    for sequence_id, subject, joints, plan_views in sequence_bodies(folder, params, set(sequences)):
        for v, (name, camera) in enumerate(plan_views):
            if views is not None and name not in views:
                continue
            background, gain, offset = scenery(params.seed, sequence_id, v, camera)
            yield ViewFrames(
                sequence_id,
                name,
                camera,
                np.asarray(project_world(joints, camera)),
                np.asarray(world_to_camera(joints, camera))[..., 2],
                subject,
                background,
                gain,
                offset,
            )


CLIP_FORMAT = VideoFormat(suffix=".mp4", fourcc="mp4v", codec="mpeg4 part 2 (mp4v), lossy")


def write_clip(
    folder: str | Path,
    out_path: str | Path,
    sequences: list[str],
    view: str | None = None,
    frames: int | None = None,
    spread_mm: float = 900.0,
) -> dict:
    """An MP4 of 1-3 sequences' performers together, seen by the first sequence's `view` (default its
    first), over its scenery, at the sequences' frame rate: each sequence's world motion as recorded,
    the people set `spread_mm` apart along the image's x axis (on the floor) so they overlap less.
    Returns {"path", "frames", "people", "fps", "size"}."""
    folder = Path(folder)
    if not 1 <= len(sequences) <= 3:
        raise DataError(f"a clip holds 1 to 3 people, got {len(sequences)} sequences")
    params = capture_params(folder)
    fps = float(next(iter(read_sequence_records(folder)))["fps"])
    found = {
        s: (subject, joints, views)
        for s, subject, joints, views in sequence_bodies(folder, params, set(sequences))
    }
    first_subject, first_joints, first_views = found[sequences[0]]
    names = [name for name, _ in first_views]
    if view is not None and view not in names:
        raise DataError(
            f"{folder / 'cameras.json'}: sequence {sequences[0]!r} has no view {view!r} ({names})"
        )
    index = names.index(view) if view is not None else 0
    camera = first_views[index][1]
    background, gain, offset = scenery(params.seed, sequences[0], index, camera)
    length = min(len(found[s][1]) for s in sequences)
    length = length if frames is None else min(length, frames)
    across = np.asarray(camera.rotation)[0] * [1.0, 1.0, 0.0]  # the image's x axis, on the floor
    across = across / max(float(np.linalg.norm(across)), 1e-9)
    people = [
        (found[s][0], found[s][1] + (i - (len(sequences) - 1) / 2) * spread_mm * across)
        for i, s in enumerate(sequences)
    ]
    w, h = int(camera.width), int(camera.height)
    with video_writer(Path(out_path), CLIP_FORMAT, fps, w, h) as writer:
        for t in range(length):
            drawn = [
                person_view(
                    np.asarray(project_world(joints[t], camera)),
                    np.asarray(world_to_camera(joints[t], camera))[..., 2],
                    subject,
                    float(camera.fx),
                )
                for subject, joints in people
            ]
            writer.write(apply_gain(draw_scene(background, drawn).image, gain, offset))
    return {
        "path": str(out_path),
        "frames": length,
        "people": len(people),
        "fps": fps,
        "size": [w, h],
    }
