"""Synthetic expert and trainee performances of the five maintenance tasks, labels only (no pixels).

Each task has one template motion (`poseops.capture.bodies.task_motion`, an expert, at 30 fps). A
performance is that motion done by another body (`make_subject`), at its own pace (a smooth monotone
time warp, 0.7-1.4x the template's speed), with a small personal deviation of the task's chain
(N(0, `personal_sd_deg`)) and label noise; a trainee adds `trainee_offset_deg` to the task's chain
(Table 7 of Zhang, He, Wu (2025), "VMHPE: Human Pose Estimation for Virtual Maintenance Tasks",
gives ordinary operators' chains 6.8-13.1 degrees off the professional mean). Frames are kept 1 in
10 of the 30 fps motion, as the paper's capture, and seen in profile by an orthographic camera:
COCO-17 [T, 17, 3] (x, y, visibility 2) in pixels of a 640 x 480 image. `render_performance` draws a
performance with the capture's body renderer, seen in profile by its Kinect-like front camera (frames
and that camera's labels), and `write_performance_video` writes it as an MP4.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from poseops.assess.grades import TABLE7
from poseops.capture.bodies import (
    TASKS,
    J,
    P,
    Subject,
    clip_pose,
    make_subject,
    sequence_joints,
    task_motion,
    to_coco17,
)
from poseops.config import BodyCaptureParams

FRAME_STEP = 10  # capture frames per kept frame (30 fps, 1 in 10)
PX_PER_MM = 0.2
IMAGE_SIZE = (640, 480)  # width, height
TASK_ORDER = ("TO", "PF", "CR", "CT", "PC")

# Pose parameters that move each task's chain, and the sign that opens the chain's angle by +1 degree
# (a flexion closes an elbow or knee; trunk pitch opens the trunk lean; hip flexion closes trunk-hip-knee).
# CT (arm mean and two-hand symmetry): one arm opens, so both the mean and the symmetry move.
CHAIN_PARAMS: dict[str, tuple[tuple[str, float], ...]] = {
    "TO": (("left_elbow_flex", -1.0), ("right_elbow_flex", -1.0)),
    "PC": (("left_hip_flex", -1.0), ("right_hip_flex", -1.0)),
    "CT": (("left_elbow_flex", -1.0),),
    "CR": (("left_knee_flex", -1.0), ("right_knee_flex", -1.0)),
    "PF": (("trunk_pitch", 1.0),),
}


@dataclass(frozen=True)
class Performance:
    task: str
    role: str  # reference | expert | trainee
    index: int
    keypoints: np.ndarray  # [T, 17, 3] x, y (px), visibility
    offset_deg: float  # the chain offset it was made with (trainees), 0 otherwise
    joints: np.ndarray = field(repr=False, default=None)  # [T, 22, 3] world joints, mm
    subject: Subject | None = field(repr=False, default=None)


def table7_offset(task: str) -> float:
    """Ordinary minus professional mean of the task's key angle chain (Table 7)."""
    return TABLE7[task].offset_deg


def _project(joints_mm: np.ndarray) -> np.ndarray:
    """World joints [T, J, 3] (mm, z up, the body facing +y) -> profile image points [T, J, 2] (px)."""
    width, height = IMAGE_SIZE
    x = width / 2 + PX_PER_MM * (joints_mm[..., 1] - joints_mm[..., 1].mean())
    y = height - 40 - PX_PER_MM * joints_mm[..., 2]
    return np.stack([x, y], axis=-1)


def _warp_times(rng: np.random.Generator, frames: int, duration: float) -> np.ndarray:
    """Times (s) of a performance's kept frames: the template's pace times a smooth speed in [0.7, 1.4]."""
    knots = rng.uniform(0.7, 1.4, size=5)
    step = duration / (frames - 1)
    times = [0.0]
    while times[-1] < duration:
        times.append(
            times[-1] + step * float(np.interp(times[-1] / duration, np.linspace(0, 1, 5), knots))
        )
    times[-1] = duration
    return np.array(times)


def _sample(track: np.ndarray, fine_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """A [N, ...] track at 30 fps read at `times` by linear interpolation -> [len(times), ...]."""
    flat = track.reshape(len(track), -1)
    out = np.stack([np.interp(times, fine_times, flat[:, c]) for c in range(flat.shape[1])], axis=1)
    return out.reshape((len(times),) + track.shape[1:])


def performances(
    seed: int = 0,
    performers: int = 3,
    trainee_offset_deg: float | None = None,
    label_noise_px: float = 0.5,
    personal_sd_deg: float = 1.0,
    tasks: tuple[str, ...] = TASK_ORDER,
) -> list[Performance]:
    """Per task: the reference (the template at its own pace, no noise), then `performers` experts and
    `performers` trainees. `trainee_offset_deg` None: each task's Table 7 offset (`table7_offset`)."""
    out: list[Performance] = []
    for t_index, task in enumerate(tasks):
        low, high = TASKS[task].frames
        frames = (low + high) // 2
        fine_frames = (frames - 1) * FRAME_STEP + 1
        fine_times = np.arange(fine_frames) / 30.0
        duration = float(fine_times[-1])
        motion = task_motion(
            np.random.default_rng([seed, t_index]), task, "expert", fine_frames, frame_step=1
        )
        roles = [("reference", 0)] + [
            (role, i) for role in ("expert", "trainee") for i in range(performers)
        ]
        for role, index in roles:
            rng = np.random.default_rng(
                [seed, t_index, ("reference", "expert", "trainee").index(role), index]
            )
            subject = make_subject(rng, f"{task}-{role}-{index}")
            if role == "reference":
                times, deviation = fine_times[::FRAME_STEP], 0.0
            else:
                times, deviation = (
                    _warp_times(rng, frames, duration),
                    float(rng.normal(0.0, personal_sd_deg)),
                )
            offset = 0.0
            if role == "trainee":
                offset = (
                    table7_offset(task) if trainee_offset_deg is None else float(trainee_offset_deg)
                )
            poses = _sample(motion.poses, fine_times, times)
            for name, sign in CHAIN_PARAMS[task]:
                poses[:, P[name]] += sign * (deviation + offset)
            joints = sequence_joints(
                subject,
                clip_pose(poses),
                _sample(motion.root_xy, fine_times, times),
                np.interp(times, fine_times, motion.heading),
            )
            points = _project(to_coco17(joints))
            if role != "reference" and label_noise_px > 0:
                points = points + rng.normal(0.0, label_noise_px, points.shape)
            keypoints = np.concatenate([points, np.full(points.shape[:-1] + (1,), 2.0)], axis=-1)
            out.append(Performance(task, role, index, keypoints, offset, joints, subject))
    return out


def render_performance(
    performance: Performance, image_size: int = 256, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """(frames BGR [H, W, 3] uint8, COCO-17 labels [T, 17, 3] of that camera with visibility) of a
    performance drawn by the capture's renderer, seen in profile by the Kinect-like front camera."""
    from poseops.capture.rigs import H36M_SUBJECTS, sequence_rig
    from poseops.capture.synthetic_bodies import (
        PersonTrack,
        SequencePlan,
        prepare_views,
        render_frame,
    )

    joints = performance.joints
    target = np.array([*joints[:, J["pelvis"], :2].mean(axis=0), 950.0])
    calibration = str(H36M_SUBJECTS[0])
    # the body faces +y (azimuth 90 degrees): a camera at azimuth 180 sees it in profile, as the capture's front view
    views = sequence_rig(calibration, target, 180.0, image_size, 1)
    plan = SequencePlan(
        f"{performance.task}-{performance.role}-{performance.index}",
        "task",
        performance.task,
        "trainee" if performance.role == "trainee" else "expert",
        calibration,
        views,
        [PersonTrack(0, "performer", performance.subject, performance.task, joints)],
    )
    bodies = BodyCaptureParams(views=1, image_size=image_size, occluders=(0, 0), people=(1, 1))
    view = prepare_views(np.random.default_rng([seed, performance.index]), plan, bodies)[0]
    frames, labels = [], []
    for t in range(plan.frames):
        image, people, _ = render_frame(view, plan, t)
        frames.append(image)
        labels.append(
            np.concatenate(
                [to_coco17(people[0]["uv"]), to_coco17(people[0]["vis"][:, None])], axis=-1
            )
        )
    return frames, np.stack(labels).astype(np.float64)


def write_performance_video(
    performance: Performance, path: str | Path, image_size: int = 256, seed: int = 0
) -> np.ndarray:
    """Write the rendered performance as an MP4 (3 fps: 1 in 10 of 30 fps); returns its labels [T, 17, 3]."""
    frames, labels = render_performance(performance, image_size, seed)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0 / FRAME_STEP, (width, height)
    )
    for frame in frames:
        writer.write(frame)
    writer.release()
    return labels
