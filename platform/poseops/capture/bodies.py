"""3D human bodies: one kinematic skeleton, per-subject bone lengths, joint limits and motions.

The body has 22 joints (`BODY22`): Human3.6M's 17 (same order, `poseops.skeletons.H36M17`) plus
the COCO face points (nose, eyes, ears), so COCO-17 and H36M-17 labels come from one motion
(`to_coco17`, `to_h36m17`).

World frame: millimetres, z up, the ground at z = 0 (as Human3.6M's world). A body's own frame has
x to the person's right, y forward, z up. A pose is a vector of named joint angles in degrees
(`POSE_PARAMS`, clipped to `JOINT_LIMITS`); `body_joints` turns (subject, pose, root) into joint
positions by forward kinematics with the lower ankle on the ground.

Motions (`task_motion`, `action_motion`) are smooth per-frame pose tracks for seed 000's five
maintenance tasks (TO, PF, CR, CT, PC; expert or trainee performer) and general actions (walk,
squat, reach, turn), sampled at the capture rate (30 fps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from poseops.skeletons import COCO17, H36M17

# ---------------------------------------------------------------- joints
BODY_JOINTS: tuple[str, ...] = H36M17.keypoints + ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
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
# Template bone lengths, mm (notes/001 §10: rough Human3.6M lengths).
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
def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


_DOWN = np.array([0.0, 0.0, -1.0])
_UP = np.array([0.0, 0.0, 1.0])


def body_joints_local(subject: Subject, pose: np.ndarray) -> np.ndarray:
    """Joint positions [22, 3] (mm) in the body frame, pelvis at the origin, for one pose [n_params]."""
    b, d = subject.bones, np.radians(clip_pose(np.asarray(pose, dtype=np.float64)))
    out = np.zeros((NUM_BODY_JOINTS, 3))
    # trunk: one rotation for the whole spine (so the hip->shoulder line leans by trunk_pitch exactly)
    trunk = _rz(d[P["trunk_yaw"]]) @ _ry(d[P["trunk_roll"]]) @ _rx(-d[P["trunk_pitch"]])
    out[J["spine"]] = trunk @ (_UP * b["pelvis_spine"])
    out[J["thorax"]] = out[J["spine"]] + trunk @ (_UP * b["spine_thorax"])
    head = trunk @ _rz(d[P["head_yaw"]]) @ _rx(-d[P["head_pitch"]])
    out[J["neck"]] = out[J["thorax"]] + trunk @ (_UP * b["thorax_neck"])
    neck = out[J["neck"]]
    nh = b["neck_head"]
    out[J["head"]] = neck + head @ np.array([0.0, 0.1, 1.0]) * nh
    out[J["nose"]] = neck + head @ np.array([0.0, 0.85, 0.3]) * nh
    for side, sx in (("left", -1.0), ("right", 1.0)):
        out[J[f"{side}_eye"]] = neck + head @ np.array([0.28 * sx, 0.68, 0.62]) * nh
        out[J[f"{side}_ear"]] = neck + head @ np.array([0.65 * sx, 0.0, 0.45]) * nh
        # arm
        shoulder = out[J["thorax"]] + trunk @ np.array([sx * b["thorax_shoulder"], 0.0, -0.1 * b["thorax_neck"]])
        upper = trunk @ _rx(d[P[f"{side}_shoulder_flex"]]) @ _ry(-sx * d[P[f"{side}_shoulder_abd"]])
        elbow = shoulder + upper @ _DOWN * b["upper_arm"]
        fore = upper @ _rz(sx * d[P[f"{side}_shoulder_rot"]]) @ _rx(d[P[f"{side}_elbow_flex"]])
        out[J[f"{side}_shoulder"]] = shoulder
        out[J[f"{side}_elbow"]] = elbow
        out[J[f"{side}_wrist"]] = elbow + fore @ _DOWN * b["forearm"]
        # leg (attached to the upright pelvis)
        hip = np.array([sx * b["pelvis_hip"], 0.0, 0.0])
        thigh = _rx(d[P[f"{side}_hip_flex"]]) @ _ry(-sx * d[P[f"{side}_hip_abd"]])
        knee = hip + thigh @ _DOWN * b["hip_knee"]
        shank = thigh @ _rx(-d[P[f"{side}_knee_flex"]])
        out[J[f"{side}_hip"]] = hip
        out[J[f"{side}_knee"]] = knee
        out[J[f"{side}_ankle"]] = knee + shank @ _DOWN * b["knee_ankle"]
    return out


def body_joints(subject: Subject, pose: np.ndarray, root_xy: np.ndarray, heading_deg: float) -> np.ndarray:
    """World joint positions [22, 3] (mm): the body turned by `heading_deg` about z (0 = facing +y),
    its pelvis above `root_xy` [2] and its lower ankle `ANKLE_HEIGHT` above the ground."""
    local = body_joints_local(subject, pose)
    world = local @ _rz(math.radians(heading_deg)).T
    lift = ANKLE_HEIGHT - min(world[J["left_ankle"], 2], world[J["right_ankle"], 2])
    return world + np.array([root_xy[0], root_xy[1], lift])


def sequence_joints(subject: Subject, poses: np.ndarray, root_xy: np.ndarray, heading_deg: np.ndarray) -> np.ndarray:
    """World joints [T, 22, 3] for poses [T, n_params], root positions [T, 2] and headings [T]."""
    return np.stack([body_joints(subject, poses[t], root_xy[t], float(heading_deg[t])) for t in range(len(poses))])


# ---------------------------------------------------------------- random poses (still images)
def random_pose(rng: np.random.Generator) -> np.ndarray:
    """A varied, plausible static pose [n_params]: standing, leaning, reaching, squatting, stepping."""
    pose = neutral_pose()
    style = rng.choice(["stand", "lean", "squat", "step", "reach"], p=[0.25, 0.2, 0.15, 0.2, 0.2])
    pose[P["trunk_pitch"]] = {"lean": rng.uniform(20, 70), "squat": rng.uniform(10, 45)}.get(style, rng.uniform(-10, 20))
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
