"""Synthetic multi-view, multi-person body captures with exact COCO-17 / H36M-17 / 3D labels.

A sequence is one scene: a performer doing one of the maintenance tasks of Zhang, He, Wu, 2025,
"VMHPE: Human Pose Estimation for Virtual Maintenance Tasks" (expert or trainee)
or a general action (`poseops.capture.bodies`), plus up to two more people (a partner who receives
the part in a transfer, bystanders doing general actions), seen by a calibrated rig
(`poseops.capture.rigs`: a Kinect-like "front" camera 2.5 m from the performer, who is seen in
profile, and up to four real Human3.6M cameras). Each view is drawn with OpenCV
(`poseops.capture.body_render`): its own background, lighting and 2D occluders; visibility comes
from the drawn masks (depth order, occluders), never from a coin flip.

Frames are kept 1 in `frame_step` of a 30 fps capture (VMHPE, Sec. 3.1.1: one frame in 10), so videos play at
30 / frame_step fps.

Output folder (never more than 1,000 files in any folder):
    videos/<chunk>/<sequence>_<view>.mp4  per sequence and view (cv2 'mp4v'; <= 100 sequences a chunk)
    shards/images-<n>.tar                 every frame of every view as JPEG, member <sequence>/<view>/<frame>.jpg
    labels.jsonl                          one JSON line per sequence (see `sequence_record`)
    cameras.json                          per sequence and view: Camera.model_dump() + width/height
    manifest.json                         written last: checksums, counts, generator parameters

2D labels are stored with 4 decimals (reprojection agrees to 1e-4 px) and 3D joints with 3 (mm).
`keypoints` are the training labels (label noise applied when configured; x = y = 0 where v = 0);
`keypoints_clean` are the exact projections. Pixel convention: pixel (i, j) has its centre at (i, j).
Everything is deterministic from `params.seed`: the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from poseops.capture import bodies as B
from poseops.capture.body_render import (
    OCCLUDER_ID,
    OCCLUDERS,
    apply_gain,
    draw_scene,
    lighting_field,
    person_box,
    person_view,
    visibility,
)
from poseops.capture.common import (
    NoiseParams,
    VideoFormat,
    add_label_noise,
    keypoint_rows,
    occluder_rects,
    occluder_track,
    rounded,
    textured_background,
    video_writer,
)
from poseops.capture.rigs import H36M_SUBJECTS, sequence_rig
from poseops.config import BodyCaptureParams, CaptureParams
from poseops.errors import DataError
from poseops.geometry import Camera, project_world, world_to_camera
from poseops.skeletons import COCO17, H36M17, joint_angles
from poseops.storage import sha256_file, write_json_atomic

GENERATOR_NAME = "poseops.synthetic_bodies"
GENERATOR_VERSION = 1
VIDEO_FORMAT = VideoFormat(suffix=".mp4", fourcc="mp4v", codec="mpeg4 part 2 (mp4v), lossy")
SEQUENCES_PER_CHUNK = 100  # 100 sequences x <= 5 views = 500 videos per folder
ACTION_FRAMES = 20
_STREAM = 0xB0D1

# body-joint flip permutation (left <-> right), for label swaps
_BODY_FLIP = tuple(
    B.J[n.replace("left_", "right_")]
    if n.startswith("left_")
    else B.J[n.replace("right_", "left_")]
    if n.startswith("right_")
    else i
    for i, n in enumerate(B.BODY_JOINTS)
)


# ---------------------------------------------------------------- planning a sequence
@dataclass(frozen=True)
class PersonTrack:
    """One person of a sequence: identity, role and world joints [T, 22, 3] (mm)."""

    index: int
    role: str  # performer | partner | bystander
    subject: B.Subject
    activity: str  # task code or action name
    joints: np.ndarray


@dataclass(frozen=True)
class SequencePlan:
    id: str
    kind: str  # task | action
    activity: str  # task code (TO, PF, ...) or action name
    performer: str | None  # expert | trainee for tasks
    calibration: str  # Human3.6M subject whose camera extrinsics the rig uses
    views: list[tuple[str, Camera]]
    people: list[PersonTrack]

    @property
    def frames(self) -> int:
        return int(self.people[0].joints.shape[0])


def sequence_kinds(bodies: BodyCaptureParams) -> list[tuple[str, str, str | None]]:
    """The cycle of (kind, activity, performer) sequences are drawn from, in order."""
    kinds: list[tuple[str, str, str | None]] = [
        ("task", task, performer) for performer in bodies.performers for task in bodies.tasks
    ]
    kinds += [("action", action, None) for action in bodies.actions]
    if not kinds:
        raise DataError(
            "data.capture.bodies: tasks, performers and actions leave no sequence kind to render"
        )
    return kinds


def _frames_for(
    rng: np.random.Generator, kind: str, activity: str, bodies: BodyCaptureParams
) -> int:
    if bodies.frames_per_sequence is not None:
        return bodies.frames_per_sequence
    if kind == "task":
        low, high = B.TASKS[activity].frames
        return int(rng.integers(low, high + 1))
    return ACTION_FRAMES


def _place(
    motion: B.Motion, origin: np.ndarray, facing_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """World root positions [T, 2] and headings [T] of a motion (relative to its place) put at `origin`
    [2], turned so that heading 0 faces `facing_deg`."""
    a = math.radians(facing_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return origin + motion.root_xy @ rot.T, motion.heading + facing_deg


def _track(
    subject: B.Subject, motion: B.Motion, origin: np.ndarray, facing_deg: float
) -> np.ndarray:
    root, heading = _place(motion, origin, facing_deg)
    return B.sequence_joints(subject, motion.poses, root, heading)


def _fits(joints: np.ndarray, others: list[np.ndarray], front: Camera) -> bool:
    """A person stays inside the capture area, away from the others, and well in front of the front camera."""
    roots = joints[:, B.J["pelvis"], :2]
    if np.linalg.norm(roots, axis=1).max() > 3000.0:
        return False
    for other in others:
        if np.linalg.norm(roots - other[:, B.J["pelvis"], :2], axis=1).min() < 700.0:
            return False
    depth = np.asarray(world_to_camera(joints, front))[..., 2]
    return bool(depth.min() > 1200.0)


def plan_sequence(
    rng: np.random.Generator,
    sequence_id: str,
    kind: tuple[str, str, str | None],
    bodies: BodyCaptureParams,
    subjects: list[B.Subject],
) -> SequencePlan:
    """People, motions and cameras of one sequence (no pixels yet)."""
    kind_name, activity, level = kind
    frames = _frames_for(rng, kind_name, activity, bodies)
    order = rng.permutation(len(subjects))
    performer_subject = subjects[int(order[0])]
    centre = rng.uniform(-300.0, 300.0, 2)
    facing = float(rng.uniform(0.0, 360.0))  # performer's facing, world azimuth (0 = +x)
    if kind_name == "task":
        motion = B.task_motion(rng, activity, level or "expert", frames, bodies.frame_step)
    else:
        motion = B.action_motion(rng, activity, frames, bodies.frame_step)
    # heading 0 faces +y (azimuth 90): turn the motion so that the performer faces `facing`
    performer = _track(performer_subject, motion, centre, facing - 90.0)
    target = np.array([*performer[:, B.J["pelvis"], :2].mean(axis=0), 950.0])
    side = 1.0 if rng.random() < 0.5 else -1.0
    front_azimuth = facing + side * 90.0 + float(rng.normal(0.0, 8.0))  # performer seen in profile
    calibration = str(H36M_SUBJECTS[int(rng.integers(len(H36M_SUBJECTS)))])
    views = sequence_rig(
        calibration, target, front_azimuth, bodies.image_size, bodies.views, bodies.zoom
    )
    front = views[0][1]
    people = [PersonTrack(0, "performer", performer_subject, activity, performer)]
    wanted = int(rng.integers(bodies.people[0], bodies.people[1] + 1))
    if kind_name == "task" and activity == "CT" and bodies.people[1] >= 2:
        wanted = max(wanted, 2)  # grasp-transfer-receive: a partner receives the part
    for slot in range(1, wanted):
        subject = subjects[int(order[slot % len(subjects)])]
        for _ in range(12):  # a few tries to find a place that fits; else the person is left out
            if slot == 1 and kind_name == "task" and activity == "CT":
                role, act = "partner", "CT"
                gap = rng.uniform(900.0, 1200.0)
                a = math.radians(facing)
                origin = performer[0, B.J["pelvis"], :2] + gap * np.array(
                    [math.cos(a), math.sin(a)]
                )
                m = B.task_motion(rng, "CT", "expert", frames, bodies.frame_step)
                joints = _track(subject, m, origin, facing + 180.0 - 90.0)
            else:
                role, act = "bystander", str(rng.choice(B.ACTIONS))
                away = front_azimuth + 180.0 + rng.uniform(-70.0, 70.0)
                a = math.radians(away)
                origin = performer[0, B.J["pelvis"], :2] + rng.uniform(1100.0, 2200.0) * np.array(
                    [math.cos(a), math.sin(a)]
                )
                m = B.action_motion(rng, act, frames, bodies.frame_step)
                joints = _track(subject, m, origin, float(rng.uniform(0.0, 360.0)))
            if _fits(joints, [p.joints for p in people], front):
                people.append(PersonTrack(len(people), role, subject, act, joints))
                break
    return SequencePlan(sequence_id, kind_name, activity, level, calibration, views, people)


# ---------------------------------------------------------------- rendering
def _occluder_tracks(
    rng: np.random.Generator, frames: int, width: int, height: int, centres: np.ndarray, count: int
) -> list[dict]:
    """`count` slowly moving rectangles per view, placed near the performer's image centre [T, 2]."""
    return [
        occluder_track(rng, OCCLUDERS, frames, min(width, height), centres) for _ in range(count)
    ]


def _occluders_at(tracks: list[dict], t: int) -> list[tuple[str, tuple]]:
    """The occluders at frame t as `draw_scene` primitives."""
    return [
        ("rectangle", (*rect, o["colour"], o["striped"]))
        for o, rect in zip(tracks, occluder_rects(tracks, t))
    ]


def _background_for(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    return textured_background(rng, max(width, height))[:height, :width].copy()


@dataclass
class ViewRender:
    """Everything needed to draw one view of a sequence: projections and fixed per-view scenery."""

    name: str
    camera: Camera
    uv: np.ndarray  # [P, T, 22, 2] px
    depth: np.ndarray  # [P, T, 22] mm
    background: np.ndarray
    gain: np.ndarray
    offset: float
    occluders: list[dict]


def prepare_views(
    rng: np.random.Generator, plan: SequencePlan, bodies: BodyCaptureParams
) -> list[ViewRender]:
    joints = np.stack([p.joints for p in plan.people])  # [P, T, 22, 3]
    out = []
    for name, cam in plan.views:
        uv = np.asarray(project_world(joints, cam))
        depth = np.asarray(world_to_camera(joints, cam))[..., 2]
        w, h = int(cam.width), int(cam.height)
        gain, offset = lighting_field(rng, h, w)
        count = int(rng.integers(bodies.occluders[0], bodies.occluders[1] + 1))
        centres = uv[0].mean(axis=1)  # performer's centre per frame [T, 2]
        out.append(
            ViewRender(
                name,
                cam,
                uv,
                depth,
                _background_for(rng, w, h),
                gain,
                offset,
                _occluder_tracks(rng, plan.frames, w, h, centres, count),
            )
        )
    return out


def render_frame(
    view: ViewRender, plan: SequencePlan, t: int
) -> tuple[np.ndarray, list[dict], Any]:
    """(image BGR [H, W, 3] uint8, per-person labels, canvas) of view at kept frame t.

    Labels per person: uv [22, 2] exact px, vis [22] COCO 0/1/2 from the owner mask, bbox (clipped),
    bbox_raw, occluded_by (owner ids found at covered joints: person index + 1, or OCCLUDER_ID)."""
    focal = float(view.camera.fx)
    people = [
        person_view(view.uv[p, t], view.depth[p, t], person.subject, focal)
        for p, person in enumerate(plan.people)
    ]
    occluders = _occluders_at(view.occluders, t)
    canvas = draw_scene(view.background, people, occluders)
    image = apply_gain(canvas.image, view.gain, view.offset)
    labels = []
    for p, pv in enumerate(people):
        vis = visibility(pv.uv, pv.depth, canvas.mask, owner=p + 1)
        bbox, raw = person_box(pv, view.camera.width, view.camera.height)
        labels.append({"uv": pv.uv, "vis": vis, "bbox": bbox, "bbox_raw": raw})
    return image, labels, (canvas, people, occluders)


# ---------------------------------------------------------------- writing
def _camera_record(cam: Camera) -> dict:
    return cam.model_dump(mode="json")


class _ShardWriter:
    """JPEG frames into tar shards of at most `per_shard` members, byte-deterministic (fixed metadata)."""

    def __init__(self, folder: Path, per_shard: int):
        self.folder, self.per_shard = folder, per_shard
        self.entries: list[dict] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    def _roll(self) -> None:
        self.close()
        path = self.folder / f"images-{len(self.entries):05d}.tar"
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)
        self.entries.append({"file": f"shards/{path.name}", "images": 0})
        self._count = 0

    def add(self, member: str, data: bytes) -> str:
        if self._tar is None or self._count >= self.per_shard:
            self._roll()
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
            len(data),
            0,
            0o644,
            0,
            0,
            "",
            "",
        )
        self._tar.addfile(info, io.BytesIO(data))
        self._count += 1
        self.entries[-1]["images"] = self._count
        return self.entries[-1]["file"]

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def finish(self, root: Path) -> list[dict]:
        self.close()
        return [{**e, "sha256": sha256_file(root / e["file"])} for e in self.entries]


def write_body_captures(out_dir: str | Path, params: CaptureParams) -> dict:
    """Render `params.bodies` synthetic multi-view body captures into `out_dir`; return the manifest.

    Streams: one sequence at a time is held in memory. Any earlier manifest is removed first and the
    new one is written last, so readers never see a half-written capture set.
    """
    bodies = params.bodies if params.bodies is not None else BodyCaptureParams()
    noise = NoiseParams.of(bodies)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # unpublish before touching anything
    for stale in [
        *out.glob("videos/*/*.mp4"),
        *out.glob("videos/*/.*.mp4"),
        *out.glob("shards/*.tar"),
        out / "labels.jsonl",
        out / "cameras.json",
    ]:
        stale.unlink(missing_ok=True)
    (out / "shards").mkdir(exist_ok=True)

    root = np.random.SeedSequence([params.seed, _STREAM])
    subject_seq, *sequence_seqs = root.spawn(1 + bodies.sequences)
    subject_rng = np.random.default_rng(subject_seq)
    num_subjects = min(11, max(3, math.ceil(bodies.sequences / 2)))
    subjects = [B.make_subject(subject_rng, f"person_{i:03d}") for i in range(num_subjects)]
    kinds = sequence_kinds(bodies)
    fps = B.CAPTURE_FPS / bodies.frame_step

    shards = _ShardWriter(out / "shards", bodies.shard_images)
    cameras: dict[str, dict[str, dict]] = {}
    entries: list[dict] = []
    counts = {
        "frames": 0,
        "images": 0,
        "person_views": 0,
        "keypoints_labelled": 0,
        "keypoints_occluded": 0,
    }
    labels_tmp = out / ".labels.jsonl.tmp"
    with labels_tmp.open("w") as labels_fh:
        for index, seq_seed in enumerate(sequence_seqs):
            rng = np.random.default_rng(seq_seed)
            sequence_id = f"seq_{index:05d}"
            plan = plan_sequence(rng, sequence_id, kinds[index % len(kinds)], bodies, subjects)
            views = prepare_views(rng, plan, bodies)
            chunk = out / "videos" / f"{index // SEQUENCES_PER_CHUNK:03d}"
            chunk.mkdir(parents=True, exist_ok=True)
            frames = [
                {"frame_index": t, "capture_frame": t * bodies.frame_step, "views": {}}
                for t in range(plan.frames)
            ]
            view_entries = []
            for view in views:
                w, h = int(view.camera.width), int(view.camera.height)
                path = chunk / f"{sequence_id}_{view.name}{VIDEO_FORMAT.suffix}"
                with video_writer(path, VIDEO_FORMAT, fps, w, h) as writer:
                    for t in range(plan.frames):
                        image, labels, _ = render_frame(view, plan, t)
                        writer.write(image)
                        ok, jpeg = cv2.imencode(
                            ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, bodies.jpeg_quality]
                        )
                        if not ok:
                            raise DataError(
                                f"{out}: cannot encode frame {t} of {sequence_id}/{view.name} as JPEG"
                            )
                        member = f"{sequence_id}/{view.name}/{t:05d}.jpg"
                        shard = shards.add(member, jpeg.tobytes())
                        frames[t]["views"][view.name] = {
                            "image": {"shard": shard, "member": member},
                            "occluders": [
                                list(map(int, o[1][:4])) for o in _occluders_at(view.occluders, t)
                            ],
                            "people": [
                                _person_labels(rng, plan.people[p], lab, noise)
                                for p, lab in enumerate(labels)
                            ],
                        }
                        counts["images"] += 1
                        for lab in labels:
                            counts["person_views"] += 1
                            counts["keypoints_labelled"] += int(
                                (lab["vis"][B.COCO17_FROM_BODY] > 0).sum()
                            )
                            counts["keypoints_occluded"] += int(
                                (lab["vis"][B.COCO17_FROM_BODY] == 1).sum()
                            )
                rel = path.relative_to(out).as_posix()
                view_entries.append(
                    {
                        "name": view.name,
                        "file": rel,
                        "sha256": sha256_file(path),
                        "width": w,
                        "height": h,
                        "camera_model": view.camera.model,
                        "codec": VIDEO_FORMAT.codec,
                    }
                )
                cameras.setdefault(sequence_id, {})[view.name] = _camera_record(view.camera)
            for t in range(plan.frames):
                frames[t]["people"] = [
                    {
                        "person_id": f"{sequence_id}:{p.index}",
                        "keypoints_3d": rounded(p.joints[t], 3),
                    }
                    for p in plan.people
                ]
            record = sequence_record(plan, bodies, fps, frames)
            labels_fh.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            counts["frames"] += plan.frames
            entries.append(
                {
                    "id": sequence_id,
                    "kind": plan.kind,
                    "task": plan.activity,
                    "performer": plan.performer,
                    "subject": plan.people[0].subject.name,
                    "frames": plan.frames,
                    "fps": fps,
                    "people": len(plan.people),
                    "front_view": "front",
                    "views": view_entries,
                }
            )
    labels_tmp.replace(out / "labels.jsonl")
    write_json_atomic(out / "cameras.json", cameras)
    manifest = {
        "kind": "body",
        "generator": {
            "name": GENERATOR_NAME,
            "version": GENERATOR_VERSION,
            "params": params.model_dump(mode="json", include={"generator", "seed", "bodies"}),
        },
        "skeletons": {
            "person": COCO17.name,
            "person_h36m17": H36M17.name,
            "body": list(B.BODY_JOINTS),
        },
        "capture": {"fps": B.CAPTURE_FPS, "frame_step": bodies.frame_step, "native_height": 2160},
        "labels": {"file": "labels.jsonl", "sha256": sha256_file(out / "labels.jsonl")},
        "cameras": {"file": "cameras.json", "sha256": sha256_file(out / "cameras.json")},
        "shards": shards.finish(out),
        "sequences": entries,
        "counts": {"sequences": len(entries), "subjects": num_subjects, **counts},
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def _person_labels(
    rng: np.random.Generator, person: PersonTrack, lab: dict, noise: NoiseParams
) -> dict:
    """One person in one view and frame: COCO-17 and H36M-17 labels (training and clean)."""
    uv, vis = lab["uv"], lab["vis"]
    box_side = max(lab["bbox_raw"][2], lab["bbox_raw"][3])
    noisy = add_label_noise(rng, uv, box_side, noise, _BODY_FLIP)
    coco, h36m = B.COCO17_FROM_BODY, B.H36M17_FROM_BODY
    return {
        "person_id": person.index,
        "role": person.role,
        "subject": person.subject.name,
        "activity": person.activity,
        "keypoints": keypoint_rows(noisy[coco], vis[coco], 4),
        "keypoints_clean": rounded(uv[coco], 4),
        "keypoints_h36m": keypoint_rows(noisy[h36m], vis[h36m], 4),
        "keypoints_h36m_clean": rounded(uv[h36m], 4),
        "bbox": rounded(lab["bbox"], 3),
        "bbox_raw": rounded(lab["bbox_raw"], 3),
    }


def sequence_record(
    plan: SequencePlan, bodies: BodyCaptureParams, fps: float, frames: list[dict]
) -> dict:
    """One labels.jsonl line: the sequence, its people, and per frame the 3D joints and each view's labels."""
    return {
        "id": plan.id,
        "kind": plan.kind,
        "task": plan.activity,
        "performer": plan.performer,
        "calibration": plan.calibration,
        "fps": fps,
        "frame_step": bodies.frame_step,
        "front_view": "front",
        "views": [name for name, _ in plan.views],
        "people": [
            {
                "person_id": f"{plan.id}:{p.index}",
                "index": p.index,
                "role": p.role,
                "subject": p.subject.name,
                "body_type": p.subject.body_type,
                "activity": p.activity,
            }
            for p in plan.people
        ],
        "frames": frames,
    }


# ---------------------------------------------------------------- reading and statistics
def read_sequences(raw_dir: str | Path):
    """The labels.jsonl records of a published body capture folder, one sequence at a time (see
    `sequence_record`; errors: `poseops.capture.read_label_records`)."""
    from poseops.capture import read_label_records

    return read_label_records(raw_dir)


def front_statistics(
    keypoints: np.ndarray, sequence_ids: list[str], height: int
) -> dict[str, float]:
    """Table 1-2 statistics of COCO-17 2D labels keypoints [N, 17, 2] (px, consecutive kept frames of
    the sequences named per row) in a render `height` rows tall.

    elbow: both elbows pooled, ∠(shoulder, elbow, wrist); trunk lean: mid-shoulder − mid-hip vs image up;
    displacement: mean over the 17 keypoints of the move between consecutive kept frames of a
    sequence, scaled to 2160 rows (px · 2160 / height).
    """
    angles = joint_angles(keypoints, COCO17)
    elbows = np.concatenate([angles["left_elbow"], angles["right_elbow"]])
    lean = angles["trunk_lean"]
    same = np.array([a == b for a, b in zip(sequence_ids[:-1], sequence_ids[1:])], bool)
    steps = np.linalg.norm(np.diff(keypoints, axis=0), axis=-1).mean(axis=-1)[same] * (
        2160.0 / height
    )
    return {
        "elbow_mean": float(np.nanmean(elbows)),
        "elbow_sd": float(np.nanstd(elbows)),
        "lean_mean": float(np.nanmean(lean)),
        "lean_sd": float(np.nanstd(lean)),
        "displacement_mean": float(steps.mean()) if len(steps) else float("nan"),
        "displacement_max": float(steps.max()) if len(steps) else float("nan"),
        "frames": int(len(keypoints)),
    }


__all__ = [
    "write_body_captures",
    "read_sequences",
    "front_statistics",
    "plan_sequence",
    "prepare_views",
    "render_frame",
    "sequence_kinds",
    "OCCLUDER_ID",
]
