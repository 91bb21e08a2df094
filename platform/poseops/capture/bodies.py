"""3D human bodies: one kinematic skeleton, per-subject bone lengths, joint limits and motions.

The body has 22 joints (`BODY22`): Human3.6M's 17 (same order, `poseops.skeletons.H36M17`) plus
the COCO face points (nose, eyes, ears), so COCO-17 and H36M-17 labels come from one motion
(`to_coco17`, `to_h36m17`).

World frame: millimetres, z up, the ground at z = 0 (as Human3.6M's world). A body's own frame has
x to the person's right, y forward, z up. A pose is a vector of named joint angles in degrees
(`POSE_PARAMS`, clipped to `JOINT_LIMITS`); `body_joints` turns (subject, pose, root) into joint
positions by forward kinematics with the lower ankle on the ground.

Motions (`task_motion`, `action_motion`) are smooth per-frame pose tracks for the five
maintenance tasks of Zhang, He, Wu, 2025, "VMHPE: Human Pose Estimation for Virtual Maintenance Tasks" (TO, PF, CR, CT, PC; expert or trainee performer) and general actions (walk,
squat, reach, turn), sampled at the capture rate (30 fps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from poseops.geometry import rotation_x, rotation_y, rotation_z
from poseops.skeletons import COCO17, H36M17

# ---------------------------------------------------------------- joints
BODY_JOINTS: tuple[str, ...] = H36M17.keypoints + (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
)
NUM_BODY_JOINTS = len(BODY_JOINTS)  # 22
J = {name: i for i, name in enumerate(BODY_JOINTS)}

COCO17_FROM_BODY = np.array([J[n] for n in COCO17.keypoints])  # [17] indices into the body joints
H36M17_FROM_BODY = np.arange(17)  # the first 17 body joints are H36M-17's


def to_coco17(joints: np.ndarray) -> np.ndarray:
    """Body joints [..., 22, D] -> COCO-17 keypoints [..., 17, D]."""
    return joints[..., COCO17_FROM_BODY, :]


def to_h36m17(joints: np.ndarray) -> np.ndarray:
    """Body joints [..., 22, D] -> H36M-17 keypoints [..., 17, D]."""
    return joints[..., H36M17_FROM_BODY, :]


# ---------------------------------------------------------------- pose parameters
# Degrees. trunk_pitch > 0 leans forward; shoulder flexion raises the arm forward, abduction sideways,
# rotation > 0 turns the forearm towards the body midline; elbow/knee flexion 0 = straight.
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "trunk_pitch": (-25.0, 90.0),
    "trunk_roll": (-35.0, 35.0),
    "trunk_yaw": (-50.0, 50.0),
    "head_pitch": (-40.0, 55.0),
    "head_yaw": (-70.0, 70.0),
    "left_shoulder_flex": (-50.0, 175.0),
    "left_shoulder_abd": (-15.0, 170.0),
    "left_shoulder_rot": (-70.0, 90.0),
    "left_elbow_flex": (0.0, 150.0),
    "right_shoulder_flex": (-50.0, 175.0),
    "right_shoulder_abd": (-15.0, 170.0),
    "right_shoulder_rot": (-70.0, 90.0),
    "right_elbow_flex": (0.0, 150.0),
    "left_hip_flex": (-25.0, 125.0),
    "left_hip_abd": (-20.0, 45.0),
    "left_knee_flex": (0.0, 150.0),
    "right_hip_flex": (-25.0, 125.0),
    "right_hip_abd": (-20.0, 45.0),
    "right_knee_flex": (0.0, 150.0),
}
POSE_PARAMS: tuple[str, ...] = tuple(JOINT_LIMITS)
P = {name: i for i, name in enumerate(POSE_PARAMS)}
_LIMITS = np.array(list(JOINT_LIMITS.values()))  # [n_params, 2]


def clip_pose(pose: np.ndarray) -> np.ndarray:
    """Pose(s) [..., n_params] clipped to the joint limits."""
    return np.clip(pose, _LIMITS[:, 0], _LIMITS[:, 1])


def neutral_pose() -> np.ndarray:
    """Standing, arms hanging slightly bent [n_params]."""
    pose = np.zeros(len(POSE_PARAMS))
    for side in ("left", "right"):
        pose[P[f"{side}_elbow_flex"]] = 10.0
        pose[P[f"{side}_shoulder_abd"]] = 8.0
        pose[P[f"{side}_knee_flex"]] = 3.0
    return pose


# ---------------------------------------------------------------- subjects
# Template bone lengths, mm: rough means of the Human3.6M subjects (Ionescu, Papava, Olaru, Sminchisescu, 2014,
# "Human3.6M", TPAMI).
TEMPLATE_BONES: dict[str, float] = {
    "pelvis_hip": 130.0,
    "hip_knee": 450.0,
    "knee_ankle": 445.0,
    "pelvis_spine": 230.0,
    "spine_thorax": 255.0,
    "thorax_neck": 120.0,
    "neck_head": 115.0,
    "thorax_shoulder": 150.0,
    "upper_arm": 280.0,
    "forearm": 250.0,
}
ANKLE_HEIGHT = 80.0  # mm above the ground

BODY_TYPES = {"lean": 0.85, "medium": 1.0, "heavy": 1.25}  # limb and torso width factors


@dataclass(frozen=True)
class Subject:
    """One person: bone lengths (mm), width factor, and colours (BGR) for rendering."""

    name: str
    bones: dict[str, float]
    body_type: str
    width: float
    skin: tuple[float, float, float]
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    left: tuple[float, float, float]  # sleeve/leg colour of the left side
    right: tuple[float, float, float]  # ... and of the right side


def _hsv_bgr(h: float, s: float, v: float) -> tuple[float, float, float]:
    """BGR floats of an OpenCV HSV colour (h in 0..180)."""
    import cv2

    bgr = cv2.cvtColor(np.array([[[h, s, v]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(float(c) for c in bgr)


def make_subject(rng: np.random.Generator, name: str) -> Subject:
    """A random person: overall scale ~N(1, 0.05), each bone ±4 %, a body type, clothing colours.

    Left limbs get warm hues (red to yellow) and right limbs cool hues (green to blue), so the two
    sides are told apart in any view.
    """
    scale = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))
    bones = {k: float(v * scale * rng.uniform(0.96, 1.04)) for k, v in TEMPLATE_BONES.items()}
    body_type = str(rng.choice(list(BODY_TYPES)))
    return Subject(
        name=name,
        bones=bones,
        body_type=body_type,
        width=BODY_TYPES[body_type] * float(rng.uniform(0.95, 1.05)),
        skin=_hsv_bgr(rng.uniform(6, 20), rng.uniform(50, 150), rng.uniform(110, 235)),
        shirt=_hsv_bgr(rng.uniform(0, 180), rng.uniform(0, 90), rng.uniform(60, 230)),
        trousers=_hsv_bgr(rng.uniform(0, 180), rng.uniform(0, 80), rng.uniform(30, 140)),
        left=_hsv_bgr(rng.uniform(0, 28), rng.uniform(170, 255), rng.uniform(170, 255)),
        right=_hsv_bgr(rng.uniform(60, 120), rng.uniform(170, 255), rng.uniform(150, 255)),
    )


# ---------------------------------------------------------------- forward kinematics
_DOWN = np.array([0.0, 0.0, -1.0])
_UP = np.array([0.0, 0.0, 1.0])


def body_joints_local(subject: Subject, pose: np.ndarray) -> np.ndarray:
    """Joint positions [22, 3] (mm) in the body frame, pelvis at the origin, for one pose [n_params]."""
    b, d = subject.bones, np.radians(clip_pose(np.asarray(pose, dtype=np.float64)))
    out = np.zeros((NUM_BODY_JOINTS, 3))
    # trunk: one rotation for the whole spine (so the hip->shoulder line leans by trunk_pitch exactly)
    trunk = (
        rotation_z(d[P["trunk_yaw"]])
        @ rotation_y(d[P["trunk_roll"]])
        @ rotation_x(-d[P["trunk_pitch"]])
    )
    out[J["spine"]] = trunk @ (_UP * b["pelvis_spine"])
    out[J["thorax"]] = out[J["spine"]] + trunk @ (_UP * b["spine_thorax"])
    head = trunk @ rotation_z(d[P["head_yaw"]]) @ rotation_x(-d[P["head_pitch"]])
    out[J["neck"]] = out[J["thorax"]] + trunk @ (_UP * b["thorax_neck"])
    neck = out[J["neck"]]
    nh = b["neck_head"]
    out[J["head"]] = neck + head @ np.array([0.0, 0.1, 1.0]) * nh
    out[J["nose"]] = neck + head @ np.array([0.0, 0.85, 0.3]) * nh
    for side, sx in (("left", -1.0), ("right", 1.0)):
        out[J[f"{side}_eye"]] = neck + head @ np.array([0.28 * sx, 0.68, 0.62]) * nh
        out[J[f"{side}_ear"]] = neck + head @ np.array([0.65 * sx, 0.0, 0.45]) * nh
        # arm
        shoulder = out[J["thorax"]] + trunk @ np.array(
            [sx * b["thorax_shoulder"], 0.0, -0.1 * b["thorax_neck"]]
        )
        upper = (
            trunk
            @ rotation_x(d[P[f"{side}_shoulder_flex"]])
            @ rotation_y(-sx * d[P[f"{side}_shoulder_abd"]])
        )
        elbow = shoulder + upper @ _DOWN * b["upper_arm"]
        fore = (
            upper
            @ rotation_z(sx * d[P[f"{side}_shoulder_rot"]])
            @ rotation_x(d[P[f"{side}_elbow_flex"]])
        )
        out[J[f"{side}_shoulder"]] = shoulder
        out[J[f"{side}_elbow"]] = elbow
        out[J[f"{side}_wrist"]] = elbow + fore @ _DOWN * b["forearm"]
        # leg (attached to the upright pelvis)
        hip = np.array([sx * b["pelvis_hip"], 0.0, 0.0])
        thigh = rotation_x(d[P[f"{side}_hip_flex"]]) @ rotation_y(-sx * d[P[f"{side}_hip_abd"]])
        knee = hip + thigh @ _DOWN * b["hip_knee"]
        shank = thigh @ rotation_x(-d[P[f"{side}_knee_flex"]])
        out[J[f"{side}_hip"]] = hip
        out[J[f"{side}_knee"]] = knee
        out[J[f"{side}_ankle"]] = knee + shank @ _DOWN * b["knee_ankle"]
    return out


def body_joints(
    subject: Subject, pose: np.ndarray, root_xy: np.ndarray, heading_deg: float
) -> np.ndarray:
    """World joint positions [22, 3] (mm): the body turned by `heading_deg` about z (0 = facing +y),
    its pelvis above `root_xy` [2] and its lower ankle `ANKLE_HEIGHT` above the ground."""
    local = body_joints_local(subject, pose)
    world = local @ rotation_z(math.radians(heading_deg)).T
    lift = ANKLE_HEIGHT - min(world[J["left_ankle"], 2], world[J["right_ankle"], 2])
    return world + np.array([root_xy[0], root_xy[1], lift])


def sequence_joints(
    subject: Subject, poses: np.ndarray, root_xy: np.ndarray, heading_deg: np.ndarray
) -> np.ndarray:
    """World joints [T, 22, 3] for poses [T, n_params], root positions [T, 2] and headings [T]."""
    return np.stack(
        [
            body_joints(subject, poses[t], root_xy[t], float(heading_deg[t]))
            for t in range(len(poses))
        ]
    )


# ---------------------------------------------------------------- random poses (still images)
def random_pose(rng: np.random.Generator) -> np.ndarray:
    """A varied, plausible static pose [n_params]: standing, leaning, reaching, squatting, stepping."""
    pose = neutral_pose()
    style = rng.choice(["stand", "lean", "squat", "step", "reach"], p=[0.25, 0.2, 0.15, 0.2, 0.2])
    pose[P["trunk_pitch"]] = {"lean": rng.uniform(20, 70), "squat": rng.uniform(10, 45)}.get(
        style, rng.uniform(-10, 20)
    )
    pose[P["trunk_roll"]] = rng.normal(0, 8)
    pose[P["trunk_yaw"]] = rng.normal(0, 15)
    pose[P["head_pitch"]] = rng.uniform(-20, 40)
    pose[P["head_yaw"]] = rng.uniform(-50, 50)
    for side in ("left", "right"):
        pose[P[f"{side}_shoulder_flex"]] = rng.uniform(-30, 160 if style == "reach" else 100)
        pose[P[f"{side}_shoulder_abd"]] = rng.uniform(0, 120 if style == "reach" else 60)
        pose[P[f"{side}_shoulder_rot"]] = rng.uniform(-40, 70)
        pose[P[f"{side}_elbow_flex"]] = rng.uniform(0, 140)
        pose[P[f"{side}_hip_abd"]] = rng.uniform(-5, 20)
    if style == "squat":
        knee = rng.uniform(60, 130)
        for side in ("left", "right"):
            pose[P[f"{side}_knee_flex"]] = knee + rng.normal(0, 8)
            pose[P[f"{side}_hip_flex"]] = knee * 0.75 + rng.normal(0, 8)
    elif style == "step":
        a = rng.uniform(10, 35)
        front = str(rng.choice(["left", "right"]))
        back = "right" if front == "left" else "left"
        pose[P[f"{front}_hip_flex"]] = a
        pose[P[f"{back}_hip_flex"]] = -a * 0.6
        pose[P[f"{front}_knee_flex"]] = rng.uniform(5, 30)
        pose[P[f"{back}_knee_flex"]] = rng.uniform(10, 50)
    else:
        for side in ("left", "right"):
            pose[P[f"{side}_hip_flex"]] = rng.uniform(-5, 20)
            pose[P[f"{side}_knee_flex"]] = rng.uniform(0, 25)
    return clip_pose(pose)


# ---------------------------------------------------------------- motions
CAPTURE_FPS = 30  # Zhang, He, Wu, 2025, "VMHPE", Sec. 3.1.1: Azure Kinect 3840x2160 at 30 fps, 1 frame kept in 10


@dataclass(frozen=True)
class TaskSpec:
    """A maintenance task of Zhang, He, Wu, 2025, "VMHPE" with its Tables 1-2 statistics (2D, front view, 2160 rows)."""

    code: str
    name: str
    elbow: tuple[float, float]  # Table 1 elbow angle mean, SD (deg)
    lean: tuple[float, float]  # Table 1 trunk forward lean mean, SD (deg)
    displacement: tuple[
        float, float, float
    ]  # Table 2 mean, SD, max inter-frame displacement (px at 2160 rows)
    frames: tuple[int, int]  # Table 2 action duration, kept frames
    phases: tuple[str, ...]
    trainee_offset: tuple[
        float, float
    ]  # trainee's (elbow, lean) mean offset (Table 7 "ordinary" vs expert)


TASKS: dict[str, TaskSpec] = {
    t.code: t
    for t in (
        TaskSpec(
            "TO",
            "tool_operation",
            (75.2, 12.3),
            (28.5, 7.2),
            (28.5, 9.2, 45.3),
            (15, 20),
            ("select", "adjust", "operate", "retract"),
            (7.2, 6.0),
        ),
        TaskSpec(
            "PF",
            "component_flip",
            (82.7, 13.5),
            (42.7, 9.8),
            (42.3, 13.5, 68.7),
            (18, 25),
            ("bend", "grasp", "flip", "inspect"),
            (6.0, 9.7),
        ),
        TaskSpec(
            "CR",
            "component_replacement",
            (78.5, 12.8),
            (35.6, 8.4),
            (35.6, 11.2, 52.8),
            (20, 30),
            ("disassemble", "replace", "install"),
            (6.8, 7.0),
        ),
        TaskSpec(
            "CT",
            "component_transfer",
            (88.3, 14.2),
            (25.8, 6.5),
            (38.4, 12.1, 58.9),
            (12, 18),
            ("grasp", "transfer", "receive"),
            (7.5, 6.0),
        ),
        TaskSpec(
            "PC",
            "component_transport",
            (102.3, 15.6),
            (42.7, 10.2),
            (45.8, 14.2, 75.6),
            (25, 35),
            ("approach", "lift", "transport", "place"),
            (8.0, 13.1),
        ),
    )
}
ACTIONS = ("walk", "squat", "reach", "turn")
PERFORMERS = ("expert", "trainee")

# 3D targets that give Table 1 in the front view's 2D labels (projection, heading jitter and the
# arms' out-of-plane parts change 2D angles a little): fitted offline (iterating 3D targets against the front view's measured 2D statistics) and kept as
# constants: per task (elbow mean, elbow SD, lean mean, lean SD, tempo in knots per second).
TASK_3D: dict[str, tuple[float, float, float, float, float]] = {
    "TO": (72.7, 10.3, 28.6, 7.2, 1.1),
    "PF": (79.9, 12.2, 43.0, 9.7, 1.1),
    "CR": (74.9, 10.5, 35.6, 8.3, 0.83),
    "CT": (87.1, 13.0, 26.3, 6.4, 1.25),
    "PC": (96.8, 12.6, 43.2, 10.2, 1.12),
}

# Other joints per task: (low, high) ranges their smooth tracks move within (3D, deg).
_TASK_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "TO": {
        "shoulder_flex": (25, 55),
        "shoulder_abd": (5, 20),
        "shoulder_rot": (10, 40),
        "hip_flex": (0, 10),
        "knee_flex": (3, 15),
        "head_pitch": (15, 40),
        "trunk_yaw": (-8, 8),
    },
    "PF": {
        "shoulder_flex": (40, 85),
        "shoulder_abd": (5, 25),
        "shoulder_rot": (0, 35),
        "hip_flex": (5, 30),
        "knee_flex": (10, 40),
        "head_pitch": (10, 35),
        "trunk_yaw": (-12, 12),
    },
    "CR": {
        "shoulder_flex": (30, 75),
        "shoulder_abd": (5, 25),
        "shoulder_rot": (5, 40),
        "hip_flex": (20, 60),
        "knee_flex": (35, 90),
        "head_pitch": (10, 40),
        "trunk_yaw": (-10, 10),
    },
    "CT": {
        "shoulder_flex": (35, 80),
        "shoulder_abd": (5, 25),
        "shoulder_rot": (0, 30),
        "hip_flex": (0, 12),
        "knee_flex": (5, 20),
        "head_pitch": (0, 25),
        "trunk_yaw": (-25, 25),
    },
    "PC": {
        "shoulder_flex": (15, 50),
        "shoulder_abd": (5, 20),
        "shoulder_rot": (10, 40),
        "hip_flex": (10, 40),
        "knee_flex": (10, 55),
        "head_pitch": (5, 30),
        "trunk_yaw": (-10, 10),
    },
}


# Share of the angle SDs that lies between sequences (per-sequence offset) and between the two sides.
_SEQ_SPREAD, _SIDE_SPREAD = 0.15, 0.1


@dataclass(frozen=True)
class Motion:
    """Per kept frame: poses [T, n_params] (deg), root positions [T, 2] (mm, relative to the sequence's
    place) and headings [T] (deg, relative to the sequence's facing)."""

    poses: np.ndarray
    root_xy: np.ndarray
    heading: np.ndarray


def kept_times(frames: int, frame_step: int, fps: int = CAPTURE_FPS) -> np.ndarray:
    """Times (s) [frames] of the kept frames: every `frame_step`-th frame of an `fps` capture."""
    return np.arange(frames) * frame_step / fps


def _smooth(
    rng: np.random.Generator,
    times: np.ndarray,
    knots_per_second: float,
    low: float = 0.0,
    high: float = 1.0,
) -> np.ndarray:
    """A smooth track [len(times)] through random knots in [low, high], `knots_per_second` apart."""
    duration = float(times[-1]) if len(times) > 1 else 0.0
    n = max(2, int(math.ceil(duration * knots_per_second)) + 2)
    values = rng.uniform(low, high, size=n)
    spacing = max(duration, 1e-9) / (n - 1)
    shift = rng.uniform(0.0, 1.0) * spacing  # knots do not line up with kept frames
    u = np.clip((times + shift) / spacing, 0.0, n - 1.0)
    i = np.minimum(np.floor(u).astype(int), n - 2)
    f = u - i
    f = f * f * (3.0 - 2.0 * f)
    return values[i] * (1.0 - f) + values[i + 1] * f


def _standard(x: np.ndarray) -> np.ndarray:
    """x shifted and scaled to mean 0 and SD 1 over its frames (zeros if constant)."""
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-9 else np.zeros_like(x)


def task_motion(
    rng: np.random.Generator, task: str, performer: str, frames: int, frame_step: int = 10
) -> Motion:
    """A maintenance-task sequence of `frames` kept frames (every `frame_step`-th of a 30 fps capture).

    Elbow angles and trunk lean follow standardised smooth tracks around the task's 3D targets
    (`TASK_3D`), so their mean and SD over a sequence hold by construction (a small per-sequence
    offset adds spread between sequences); other joints wander within the task's ranges. Trainees
    sit off the expert means (Table 7), vary more and move less smoothly.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    spec, (e_mu, e_sd, l_mu, l_sd, tempo) = TASKS[task], TASK_3D[task]
    trainee = performer == "trainee"
    if trainee:
        e_mu, l_mu = e_mu + spec.trainee_offset[0], l_mu + spec.trainee_offset[1]
        e_sd, l_sd, tempo = e_sd * 1.25, l_sd * 1.3, tempo * 1.4
    times = kept_times(frames, frame_step)
    pose = np.tile(neutral_pose(), (frames, 1))
    ranges = _TASK_RANGES[task]
    # elbows: a shared track plus one per side; a per-sequence and per-side offset
    common = _smooth(rng, times, tempo)
    seq_offset = rng.normal(0.0, _SEQ_SPREAD)
    within = math.sqrt(max(1.0 - _SEQ_SPREAD**2 - _SIDE_SPREAD**2, 0.0))
    for side in ("left", "right"):
        track = _standard(0.6 * _standard(common) + 0.8 * _standard(_smooth(rng, times, tempo)))
        angle = e_mu + e_sd * (seq_offset + rng.normal(0.0, _SIDE_SPREAD) + within * track)
        pose[:, P[f"{side}_elbow_flex"]] = 180.0 - angle
        for part in ("shoulder_flex", "shoulder_abd", "shoulder_rot", "hip_flex", "knee_flex"):
            pose[:, P[f"{side}_{part}"]] = _smooth(rng, times, tempo, *ranges[part])
    lean_within = math.sqrt(1.0 - _SEQ_SPREAD**2)
    pose[:, P["trunk_pitch"]] = l_mu + l_sd * (
        rng.normal(0.0, _SEQ_SPREAD) + lean_within * _standard(_smooth(rng, times, tempo))
    )
    pose[:, P["trunk_roll"]] = _smooth(rng, times, tempo, -5.0, 5.0)
    pose[:, P["trunk_yaw"]] = _smooth(rng, times, tempo, *ranges["trunk_yaw"])
    pose[:, P["head_pitch"]] = _smooth(rng, times, tempo, *ranges["head_pitch"])
    pose[:, P["head_yaw"]] = _smooth(rng, times, tempo, -20.0, 20.0)
    if trainee:  # hesitations: frame-to-frame jitter
        pose += rng.normal(0.0, 3.0, pose.shape)
    root = np.stack(
        [_smooth(rng, times, tempo, -40.0, 40.0), _smooth(rng, times, tempo, -40.0, 40.0)], axis=1
    )
    heading = _smooth(rng, times, tempo, -6.0, 6.0)
    if task == "PC":  # approach and transport: the performer walks a little along its facing
        u = times / max(float(times[-1]), 1e-9)
        walk = rng.uniform(300.0, 700.0) * u * u * (3.0 - 2.0 * u)
        root[:, 1] += walk - walk.mean()
        heading = heading + _smooth(rng, times, tempo * 0.5, -20.0, 20.0)
    return Motion(poses=clip_pose(pose), root_xy=root, heading=heading)


def action_motion(
    rng: np.random.Generator, action: str, frames: int, frame_step: int = 10
) -> Motion:
    """A general action (walk, squat, reach, turn) of `frames` kept frames."""
    times = kept_times(frames, frame_step)
    pose = np.tile(neutral_pose(), (frames, 1))
    root = np.zeros((frames, 2))
    heading = np.zeros(frames)
    if action == "walk":
        speed, cadence = rng.uniform(800.0, 1400.0), rng.uniform(0.8, 1.0)  # mm/s, strides/s
        phase = 2 * math.pi * cadence * times + rng.uniform(0, 2 * math.pi)
        for side, sign in (("left", 1.0), ("right", -1.0)):
            s = np.sin(phase) * sign
            pose[:, P[f"{side}_hip_flex"]] = 8.0 + 22.0 * s
            pose[:, P[f"{side}_knee_flex"]] = 25.0 + 25.0 * np.sin(
                phase * 1.0 + sign * 1.2 + math.pi / 2
            )
            pose[:, P[f"{side}_shoulder_flex"]] = -18.0 * s
            pose[:, P[f"{side}_elbow_flex"]] = 20.0 + 10.0 * np.abs(s)
        pose[:, P["trunk_pitch"]] = rng.uniform(0.0, 8.0)
        heading = np.cumsum(np.r_[0.0, np.diff(times)] * rng.uniform(-20.0, 20.0))
        h = np.radians(heading)
        step = np.r_[0.0, np.diff(times)] * speed
        root = np.stack([np.cumsum(-np.sin(h) * step), np.cumsum(np.cos(h) * step)], axis=1)
        root -= root.mean(axis=0)
    elif action == "squat":
        depth = (
            1 - np.cos(2 * math.pi * times / rng.uniform(2.5, 4.0) + rng.uniform(0, 2 * math.pi))
        ) / 2
        for side in ("left", "right"):
            pose[:, P[f"{side}_knee_flex"]] = 5.0 + rng.uniform(90.0, 125.0) * depth
            pose[:, P[f"{side}_hip_flex"]] = 5.0 + rng.uniform(70.0, 100.0) * depth
            pose[:, P[f"{side}_shoulder_flex"]] = 20.0 + 60.0 * depth
        pose[:, P["trunk_pitch"]] = 5.0 + rng.uniform(25.0, 45.0) * depth
    elif action == "reach":
        for side in ("left", "right"):
            pose[:, P[f"{side}_shoulder_flex"]] = _smooth(rng, times, 0.8, -10.0, 170.0)
            pose[:, P[f"{side}_shoulder_abd"]] = _smooth(rng, times, 0.8, 0.0, 90.0)
            pose[:, P[f"{side}_elbow_flex"]] = _smooth(rng, times, 0.8, 0.0, 110.0)
        pose[:, P["trunk_pitch"]] = _smooth(rng, times, 0.5, -10.0, 40.0)
        pose[:, P["trunk_yaw"]] = _smooth(rng, times, 0.5, -30.0, 30.0)
    elif action == "turn":
        total = rng.choice([-1.0, 1.0]) * rng.uniform(90.0, 270.0)
        heading = total * np.clip(times / max(float(times[-1]), 1e-9), 0, 1)
        step = np.abs(np.sin(2 * math.pi * 0.9 * times))
        for side, sign in (("left", 1.0), ("right", -1.0)):
            pose[:, P[f"{side}_hip_flex"]] = 5.0 + 12.0 * step * sign
            pose[:, P[f"{side}_knee_flex"]] = 5.0 + 20.0 * step
        pose[:, P["head_yaw"]] = np.sign(total) * 25.0
    else:
        raise ValueError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    pose[:, P["head_pitch"]] += _smooth(rng, times, 0.5, -10.0, 20.0)
    return Motion(poses=clip_pose(pose), root_xy=root, heading=heading)
