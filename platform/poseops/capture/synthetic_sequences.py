"""Long synthetic motion sequences, labels only, for 2D -> 3D lifting (no pixels are drawn).

The same bodies as `poseops.capture.synthetic_bodies`: its subjects (the same seed stream, so the
same names and bone lengths, hence the same subject train/val split), its task and action motions
(`poseops.capture.bodies`), and its calibrated rig (`poseops.capture.rigs.sequence_rig`: a front camera
and Human3.6M cameras), at its frame rate (1 kept frame in `frame_step` of a 30 fps capture). A
sequence is one performer, `frames` kept frames long; sequence i is played by subject i mod the
number of subjects, so every subject appears once `count` reaches it.

A long walk would leave the capture area, so the root path is folded back into a square of side
2 * `ROOM_HALF_MM` (a triangle wave on each coordinate: the path stays continuous; the pose is
untouched, and lifting works on root-relative joints).

Output folder:
    labels.jsonl   one JSON line per sequence: id, subject, kind, task, performer, fps, frame_step,
                   calibration, views [{name, width, height}], joints_3d [T][17][3] world mm (H36M-17),
                   keypoints_2d {view: [T][17][3]} (x, y, v: exact projections, v = 2 inside the image,
                   1 outside it)
    cameras.json   per sequence and view: Camera.model_dump()
    manifest.json  written last: kind "sequences", checksums, counts, generator parameters
Everything is deterministic from `params.seed`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from poseops.capture import bodies as B
from poseops.capture.rigs import H36M_SUBJECTS, sequence_rig
from poseops.capture.synthetic_bodies import _STREAM as BODY_STREAM
from poseops.capture.synthetic_bodies import sequence_kinds
from poseops.config import BodyCaptureParams, CaptureParams
from poseops.geometry import project_world, world_to_camera
from poseops.skeletons import H36M17
from poseops.storage import sha256_file, write_json_atomic

GENERATOR_NAME = "poseops.synthetic_sequences"
GENERATOR_VERSION = 1
ROOM_HALF_MM = 1200.0
_STREAM = 0x5E05


def body_subjects(params: CaptureParams) -> list[B.Subject]:
    """The subjects `write_body_captures` makes for these params (same seed stream and count)."""
    bodies = params.bodies if params.bodies is not None else BodyCaptureParams()
    subject_seq = np.random.SeedSequence([params.seed, BODY_STREAM]).spawn(1)[0]
    rng = np.random.default_rng(subject_seq)
    count = min(11, max(3, math.ceil(bodies.sequences / 2)))
    return [B.make_subject(rng, f"person_{i:03d}") for i in range(count)]


def fold(path_xy: np.ndarray, half: float = ROOM_HALF_MM) -> np.ndarray:
    """Positions [T, 2] folded into [-half, half] per coordinate by reflection (continuous)."""
    period = 4.0 * half
    u = np.mod(path_xy + half, period)
    return np.where(u <= 2.0 * half, u, period - u) - half


def sequence_plan(
    rng: np.random.Generator,
    kind: tuple[str, str, str | None],
    subject: B.Subject,
    frames: int,
    frame_step: int,
    bodies: BodyCaptureParams,
    views: int,
) -> dict:
    """World joints [T, 17, 3] (H36M-17; `body_joints`: all 22 body joints, for drawing) and the views
    [(name, Camera)] of one performer's sequence."""
    kind_name, activity, level = kind
    if kind_name == "task":
        motion = B.task_motion(rng, activity, level or "expert", frames, frame_step)
    else:
        motion = B.action_motion(rng, activity, frames, frame_step)
    facing = float(rng.uniform(0.0, 360.0))
    a = math.radians(facing - 90.0)  # heading 0 faces +y: turn it to face `facing`
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    root = fold(rng.uniform(-300.0, 300.0, 2) + motion.root_xy @ rot.T)
    joints = B.sequence_joints(subject, motion.poses, root, motion.heading + facing - 90.0)
    target = np.array([0.0, 0.0, 950.0])
    side = 1.0 if rng.random() < 0.5 else -1.0
    front_azimuth = facing + side * 90.0 + float(rng.normal(0.0, 8.0))
    calibration = str(H36M_SUBJECTS[int(rng.integers(len(H36M_SUBJECTS)))])
    rig = sequence_rig(calibration, target, front_azimuth, bodies.image_size, views, bodies.zoom)
    return {
        "kind": kind_name,
        "activity": activity,
        "performer": level,
        "calibration": calibration,
        "joints": B.to_h36m17(joints),
        "body_joints": joints,
        "views": rig,
    }


def view_labels(joints: np.ndarray, camera) -> np.ndarray:
    """[T, 17, 3] (x, y, v) of world joints [T, 17, 3] seen by `camera`: v = 2 inside the image and in
    front of the camera, else 1 (labelled, not visible)."""
    uv = np.asarray(project_world(joints, camera))
    depth = np.asarray(world_to_camera(joints, camera))[..., 2]
    w, h = float(camera.width), float(camera.height)
    inside = (
        (depth > 0)
        & (uv[..., 0] >= 0)
        & (uv[..., 0] <= w - 1)
        & (uv[..., 1] >= 0)
        & (uv[..., 1] <= h - 1)
    )
    return np.concatenate([uv, np.where(inside, 2.0, 1.0)[..., None]], axis=-1)


def sequence_plans(params: CaptureParams, only: set[str] | None = None):
    """(sequence id, subject, `sequence_plan`) of every sequence `params.sequences` describes, in order
    (or of those in `only`): deterministic from the params, so the drawn bodies of a published
    labels-only folder can be made again from its manifest's generator parameters."""
    seqs = params.sequences
    if seqs is None:
        raise ValueError("data.capture.sequences is null: no sequences")
    bodies = params.bodies if params.bodies is not None else BodyCaptureParams()
    frame_step = seqs.frame_step or bodies.frame_step
    subjects = body_subjects(params)
    kinds = sequence_kinds(bodies)
    for index, seed in enumerate(np.random.SeedSequence([params.seed, _STREAM]).spawn(seqs.count)):
        sequence_id = f"long_{index:05d}"
        if only is not None and sequence_id not in only:
            continue
        rng = np.random.default_rng(seed)
        subject = subjects[index % len(subjects)]
        plan = sequence_plan(
            rng, kinds[index % len(kinds)], subject, seqs.frames, frame_step, bodies, seqs.views
        )
        yield sequence_id, subject, plan


def write_sequence_captures(out_dir: str | Path, params: CaptureParams) -> dict:
    """Write `params.sequences` long labels-only sequences into `out_dir`; return the manifest.

    Any earlier manifest is removed first and the new one written last."""
    seqs = params.sequences
    if seqs is None:
        raise ValueError("data.capture.sequences is null: nothing to write")
    bodies = params.bodies if params.bodies is not None else BodyCaptureParams()
    frame_step = seqs.frame_step or bodies.frame_step
    fps = B.CAPTURE_FPS / frame_step
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    cameras: dict[str, dict[str, dict]] = {}
    entries = []
    tmp = out / ".labels.jsonl.tmp"
    with tmp.open("w") as fh:
        for sequence_id, subject, plan in sequence_plans(params):
            record = {
                "id": sequence_id,
                "subject": subject.name,
                "kind": plan["kind"],
                "task": plan["activity"],
                "performer": plan["performer"],
                "calibration": plan["calibration"],
                "fps": fps,
                "frame_step": frame_step,
                "skeleton": H36M17.name,
                "views": [
                    {"name": name, "width": int(cam.width), "height": int(cam.height)}
                    for name, cam in plan["views"]
                ],
                "joints_3d": np.round(plan["joints"], 3).tolist(),
                "keypoints_2d": {
                    name: np.round(view_labels(plan["joints"], cam), 4).tolist()
                    for name, cam in plan["views"]
                },
                "frames": seqs.frames,
            }
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            cameras[sequence_id] = {
                name: cam.model_dump(mode="json") for name, cam in plan["views"]
            }
            entries.append(
                {
                    "id": sequence_id,
                    "subject": subject.name,
                    "task": plan["activity"],
                    "frames": seqs.frames,
                    "views": [name for name, _ in plan["views"]],
                }
            )
    tmp.replace(out / "labels.jsonl")
    write_json_atomic(out / "cameras.json", cameras)
    manifest = {
        "kind": "sequences",
        "generator": {
            "name": GENERATOR_NAME,
            "version": GENERATOR_VERSION,
            "params": params.model_dump(
                mode="json", include={"generator", "seed", "bodies", "sequences"}
            ),
        },
        "skeletons": {"person_h36m17": H36M17.name},
        "capture": {"fps": B.CAPTURE_FPS, "frame_step": frame_step},
        "labels": {"file": "labels.jsonl", "sha256": sha256_file(out / "labels.jsonl")},
        "cameras": {"file": "cameras.json", "sha256": sha256_file(out / "cameras.json")},
        "sequences": entries,
        "counts": {
            "sequences": len(entries),
            "subjects": len({e["subject"] for e in entries}),
            "frames": seqs.frames * len(entries),
            "views": seqs.views,
        },
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def read_sequence_records(folder: str | Path):
    """The labels.jsonl records of a published sequences folder, one at a time."""
    from poseops.capture import read_label_records

    return read_label_records(folder)
