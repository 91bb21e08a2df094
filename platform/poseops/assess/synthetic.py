"""Synthetic expert and trainee performances of the five maintenance tasks, labels only (no pixels).

Each task has one template motion (`poseops.capture.bodies.task_motion`, an expert, at 30 fps). A
performance is that motion done by another body (`make_subject`), at its own pace (a smooth monotone
time warp, 0.7-1.4x the template's speed), with a small personal deviation of the task's chain
(N(0, `personal_sd_deg`)) and label noise; a trainee adds `trainee_offset_deg` to the task's chain
(Table 7 of Zhang, He, Wu (2025), "VMHPE: Human Pose Estimation for Virtual Maintenance Tasks",
gives ordinary operators' chains 6.8-13.1 degrees off the professional mean). Frames are kept 1 in
10 of the 30 fps motion, as the paper's capture, and seen in profile by an orthographic camera:
COCO-17 [T, 17, 3] (x, y, visibility 2) in pixels of a 640 x 480 image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poseops.assess.grades import TABLE7
from poseops.capture.bodies import P, TASKS, clip_pose, make_subject, sequence_joints, task_motion, to_coco17

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
        times.append(times[-1] + step * float(np.interp(times[-1] / duration, np.linspace(0, 1, 5), knots)))
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
        motion = task_motion(np.random.default_rng([seed, t_index]), task, "expert", fine_frames, frame_step=1)
        roles = [("reference", 0)] + [(role, i) for role in ("expert", "trainee") for i in range(performers)]
        for role, index in roles:
            rng = np.random.default_rng([seed, t_index, ("reference", "expert", "trainee").index(role), index])
            subject = make_subject(rng, f"{task}-{role}-{index}")
            if role == "reference":
                times, deviation = fine_times[::FRAME_STEP], 0.0
            else:
                times, deviation = _warp_times(rng, frames, duration), float(rng.normal(0.0, personal_sd_deg))
            offset = 0.0
            if role == "trainee":
                offset = table7_offset(task) if trainee_offset_deg is None else float(trainee_offset_deg)
            poses = _sample(motion.poses, fine_times, times)
            for name, sign in CHAIN_PARAMS[task]:
                poses[:, P[name]] += sign * (deviation + offset)
            joints = sequence_joints(subject, clip_pose(poses), _sample(motion.root_xy, fine_times, times),
                                     np.interp(times, fine_times, motion.heading))
            points = _project(to_coco17(joints))
            if role != "reference" and label_noise_px > 0:
                points = points + rng.normal(0.0, label_noise_px, points.shape)
            keypoints = np.concatenate([points, np.full(points.shape[:-1] + (1,), 2.0)], axis=-1)
            out.append(Performance(task, role, index, keypoints, offset))
    return out
