"""Procedural hand videos with exact 21-keypoint labels (FreiHAND order, `poseops.skeletons.HAND21`).

Each hand is a small 3D kinematic model: a palm with five finger chains whose joints flex and abduct
within joint limits, seen through an orthographic camera after a global rotation (full circle in the
image plane, a modest tilt out of it), a scale and a shift. Poses move smoothly within a sequence.
It is drawn with OpenCV over a textured or noisy background, palm and fingers far to near (a finger
curled behind the palm is hidden by it): a palm polygon with the thenar eminence, shaded skin-toned
limbs that taper, the thumb thickest and the little finger thinnest, joint discs, the palm side lighter
with flexion creases and the back with nails (what tells the digits and the two sides apart, so that a
hand is not its own mirror image); then random occluder rectangles. A joint under an occluder gets visibility 1
(labelled, occluded); every other joint inside the frame gets 2; joints outside the frame get 0.

Output folder (one file per sequence, never thousands of loose files):
    <out>/<sequence_id>.avi   lossless FFV1 video (see VIDEO_FORMAT for why not mp4v)
    <out>/labels.jsonl        one JSON line per sequence (id, subject, side, frames), written as each sequence
                              is rendered (the writer streams); per frame: keypoints [21,3] (x, y, v),
                              keypoints_clean [21,2], bbox [x, y, w, h], subject, side, occluders [[x0, y0, x1, y1], ...]
    <out>/manifest.json       written last; a folder without it does not exist for readers

Pixel convention: the centre of pixel (col i, row j) is at (x, y) = (i, j), as in OpenCV.
Everything is deterministic from `params.seed`: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from poseops.capture.common import (
    ONE,
    SUBPIXEL_BITS,
    NoiseParams,
    OccluderStyle,
    VideoFormat,
    add_label_noise,
    covered_by,
    draw_rectangle,
    fixed,
    keypoint_rows,
    occluder_rects,
    occluder_track,
    rounded,
    shade,
    textured_background,
    video_writer,
)
from poseops.config import CaptureParams, HandCaptureParams
from poseops.geometry import rotation_x, rotation_y, rotation_z
from poseops.skeletons import HAND21
from poseops.storage import sha256_file, write_json_atomic

GENERATOR_NAME = "poseops.synthetic_hands"
GENERATOR_VERSION = 3  # 3: fingers fan out (spread sign), digit thickness, palm vs back, depth-ordered palm; 2: labels.jsonl
LABELS_FILE = "labels.jsonl"
FPS = 25

# mp4v (the only MPEG-4 encoder OpenCV's FFmpeg writer offers here) ignores every quality setting
# (VIDEOWRITER_PROP_QUALITY is refused) and loses a mean 3-4 grey levels with errors up to ~90 at
# edges on textured frames. FFV1 is lossless and, in AVI, byte-deterministic (Matroska writes a
# random segment id), so decoded frames are exactly the rendered ones.
VIDEO_FORMAT = VideoFormat(suffix=".avi", fourcc="FFV1", codec="ffv1 (lossless)")
OCCLUDERS = OccluderStyle(
    extent=(0.15, 0.35), pad=0, offset=("uniform", 0.3), drift=0.2, stripe_period=5, stripe_width=1
)

NUM_KEYPOINTS = 21
_FINGERS = ("thumb", "index", "middle", "ring", "little")

# Hand frame: wrist at the origin, fingers along +y, palm in the x-y plane, thumb on +x (a right hand
# seen from the palm side), unit = wrist-to-middle-fingertip length of an average hand.
_BASE_POINTS = np.array(  # first joint of each chain: thumb CMC, then index..little MCP
    [[0.13, 0.10], [0.13, 0.45], [0.03, 0.47], [-0.07, 0.45], [-0.16, 0.40]]
)
_BONES = np.array(  # bone lengths base->tip per finger (3 bones each)
    [
        [0.17, 0.13, 0.11],
        [0.22, 0.13, 0.09],
        [0.24, 0.15, 0.10],
        [0.22, 0.14, 0.095],
        [0.17, 0.10, 0.085],
    ]
)
_SPREAD_DEG = np.array(
    [-50.0, -8.0, 0.0, 8.0, 17.0]
)  # finger direction at rest, degrees from +y (+x side is negative)
# joint limits, degrees: (min, max) flexion at each of the three joints, and abduction at the base
_FLEX_LIMITS = np.array(
    [[[-10, 40], [0, 60], [-10, 80]]] + [[[-15, 90], [0, 105], [0, 75]]] * 4, dtype=float
)
_ABDUCT_LIMITS = np.array([[-20, 25], [-15, 15], [-8, 8], [-12, 12], [-20, 15]], dtype=float)


# ---------------------------------------------------------------- hand model
def _subject_shape(rng: np.random.Generator) -> dict[str, Any]:
    """A hand identity: its own bone lengths, palm proportions and skin tone."""
    size = rng.uniform(0.9, 1.1)
    return {
        "bones": _BONES * size * rng.uniform(0.9, 1.1, size=_BONES.shape),
        "base": _BASE_POINTS * size * np.array([rng.uniform(0.9, 1.12), rng.uniform(0.92, 1.08)]),
        "skin_bgr": _skin_tone(rng),
    }


def _skin_tone(rng: np.random.Generator) -> tuple[float, float, float]:
    hue = rng.uniform(8, 22)  # OpenCV hue units (0..180)
    sat = rng.uniform(60, 150)
    val = rng.uniform(110, 240)
    bgr = cv2.cvtColor(np.array([[[hue, sat, val]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(float(c) for c in bgr)


def hand_joints_3d(
    shape: dict[str, Any], flex_deg: np.ndarray, abduct_deg: np.ndarray
) -> np.ndarray:
    """Joint positions [21, 3] in the hand frame for flexion [5, 3] and abduction [5] in degrees.

    Flexion bends a finger towards the palm side (-z); abduction turns it within the palm plane.
    """
    joints = np.zeros((NUM_KEYPOINTS, 3))
    for f in range(5):
        base = np.array([*shape["base"][f], 0.0])
        # orientation of the first bone: spread + abduction about z, then flexion about the finger's x axis.
        # rotation_z(a) turns +y towards -x, so a finger `_SPREAD_DEG` degrees towards +x (negative) turns
        # by -(-spread): the angle itself, not its negative (which fanned the fingers the wrong way, into a
        # crossed bundle with the thumb pointing across the palm at rest)
        heading = rotation_z(math.radians(_SPREAD_DEG[f] + abduct_deg[f]))
        if (
            f == 0
        ):  # the thumb flexes across the palm (to -x and -z), about an axis tilted out of it
            heading = heading @ rotation_y(math.radians(35.0))
        point, orient = base, heading
        joints[1 + 4 * f] = point
        for j in range(3):
            orient = orient @ rotation_x(math.radians(-flex_deg[f, j]))
            point = point + orient @ np.array([0.0, shape["bones"][f, j], 0.0])
            joints[2 + 4 * f + j] = point
    return joints


# ---------------------------------------------------------------- smooth trajectories
def _smooth_track(
    rng: np.random.Generator, frames: int, low: float, high: float, knots: int = 4
) -> np.ndarray:
    """[frames] values moving smoothly between random knots drawn in [low, high]."""
    values = rng.uniform(low, high, size=knots)
    if frames == 1:
        return values[:1]
    t = np.linspace(0.0, knots - 1.0, frames)
    i = np.minimum(np.floor(t).astype(int), knots - 2)
    u = t - i
    u = u * u * (3.0 - 2.0 * u)  # smoothstep: zero velocity at each knot
    return values[i] * (1.0 - u) + values[i + 1] * u


def _sequence_motion(rng: np.random.Generator, frames: int, size: int) -> dict[str, np.ndarray]:
    """Per-frame pose and placement parameters of one sequence."""
    flex = np.zeros((frames, 5, 3))
    abduct = np.zeros((frames, 5))
    for f in range(5):
        for j in range(3):
            lo, hi = _FLEX_LIMITS[f, j]
            flex[:, f, j] = _smooth_track(rng, frames, lo, hi)
        abduct[:, f] = _smooth_track(rng, frames, *_ABDUCT_LIMITS[f])
    start = rng.uniform(0.0, 360.0)
    turn = rng.uniform(-90.0, 90.0)  # total in-plane turn over the sequence
    return {
        "flex": flex,
        "abduct": abduct,
        "roll": start + turn * np.linspace(0.0, 1.0, frames),  # in-plane, full circle
        "tilt_x": _smooth_track(rng, frames, -35.0, 35.0),
        "tilt_y": _smooth_track(rng, frames, -35.0, 35.0),
        "palm_away": np.full(frames, rng.random() < 0.5),
        "span": _smooth_track(rng, frames, 0.4, 0.8) * size,  # longer side of the hand's box, px
        "cx": _smooth_track(rng, frames, 0.0, 1.0),  # placement inside the free room, 0..1
        "cy": _smooth_track(rng, frames, 0.0, 1.0),
    }


def _project(
    joints: np.ndarray, motion: dict[str, np.ndarray], t: int, side: str, size: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Image points [21, 2] (px), depths [21] (larger is farther) of hand-frame joints at frame t, and
    whether the palm faces the camera."""
    p = joints.copy()
    if side == "left":
        p[:, 0] = -p[:, 0]
    # palm normal: the palm side is -z in the hand frame (fingers flex towards it), the camera looks along +z
    normal = np.array([0.0, 0.0, -1.0])
    if motion["palm_away"][t]:
        p = p @ rotation_y(math.pi).T
        normal = rotation_y(math.pi) @ normal
    rot = (
        rotation_z(math.radians(motion["roll"][t]))
        @ rotation_x(math.radians(motion["tilt_x"][t]))
        @ rotation_y(math.radians(motion["tilt_y"][t]))
    )
    p = p @ rot.T
    palm_facing = bool((rot @ normal)[2] < 0)
    xy, depth = p[:, :2] * np.array([1.0, -1.0]), p[:, 2]  # image y points down
    lo, hi = xy.min(0), xy.max(0)
    scale = motion["span"][t] / max(float((hi - lo).max()), 1e-6)
    xy = (xy - lo) * scale
    extent = (hi - lo) * scale
    room = np.maximum(size - 1.0 - extent, 0.0)
    offset = np.array([motion["cx"][t], motion["cy"][t]]) * room
    return xy + offset, depth, palm_facing


# ---------------------------------------------------------------- rendering
# Relative finger thickness, thumb..little: the thumb is the thickest digit and the little finger the
# thinnest (the digit breadths of Greiner, 1991, "Hand Anthropometry of U.S. Army Personnel"); each bone
# tapers towards the tip.
_FINGER_THICKNESS = np.array([1.35, 1.0, 1.0, 0.92, 0.8])
_BONE_TAPER = np.array([1.0, 0.88, 0.76])
# The palm side of a hand is lighter than its back (palmar skin carries less melanin), the back shows
# the nails; both are what tells a viewer which side of the hand faces them.
_PALMAR_LIGHTEN = 0.35  # palm side colour: skin blended this far towards white
_NAIL_BGR = (205.0, 215.0, 240.0)  # pale pink nail plate
PALM = -1  # the palm's place among the finger indices in the painting order
_BEHIND_PALM = 0.02  # a finger this much farther than the palm (hand units) is painted under it


def limb_width(span_px: float) -> int:
    """Thickness of a finger in pixels for a hand whose box's longer side is `span_px`."""
    return max(2, int(round(span_px * 0.07)))


def palmar_skin(skin: tuple) -> tuple[float, ...]:
    """The palm side's colour of a hand of skin colour `skin` (BGR): lighter than the back."""
    return tuple(float(c + (255.0 - c) * _PALMAR_LIGHTEN) for c in skin)


def _palm_outline(uv: np.ndarray) -> np.ndarray:
    """Fixed-point convex outline of the palm: wrist, the thumb's CMC and MCP (the thenar eminence, the
    fleshy base of the thumb that makes the palm lopsided towards it) and the four finger MCPs."""
    palm = np.array([fixed(uv[i]) for i in (0, 1, 2, 5, 9, 13, 17)], dtype=np.int32)
    return cv2.convexHull(palm)


def _draw_finger(
    img: np.ndarray, uv: np.ndarray, f: int, colour: tuple, width: int, palm_facing: bool
) -> None:
    """One finger chain (thumb from the wrist), tapering, with joint discs; a nail on the back side, a
    crease at each flexion joint on the palm side."""
    chain = ([0] if f == 0 else []) + list(range(1 + 4 * f, 5 + 4 * f))
    bones = list(zip(chain[:-1], chain[1:]))
    widths = [
        max(2, int(round(width * _FINGER_THICKNESS[f] * _BONE_TAPER[max(0, i - len(bones) + 3)])))
        for i in range(len(bones))
    ]
    for (a, b), w in zip(bones, widths):
        pa, pb = fixed(uv[a]), fixed(uv[b])
        cv2.line(img, pa, pb, shade(colour, 0.55), w + 2, cv2.LINE_AA, SUBPIXEL_BITS)
        cv2.line(img, pa, pb, colour, w, cv2.LINE_AA, SUBPIXEL_BITS)
        cv2.line(img, pa, pb, shade(colour, 1.2), max(1, w // 3), cv2.LINE_AA, SUBPIXEL_BITS)
    for j, w in zip(chain[1:], widths):
        cv2.circle(
            img,
            fixed(uv[j]),
            max(1, w // 2) * ONE,
            shade(colour, 0.8),
            -1,
            cv2.LINE_AA,
            SUBPIXEL_BITS,
        )
    tip, before = uv[chain[-1]], uv[chain[-2]]
    if palm_facing:  # flexion creases across the finger at its two distal joints
        for j in chain[-3:-1]:
            along = uv[j + 1] - uv[j]
            across = np.array([-along[1], along[0]]) / max(float(np.hypot(*along)), 1e-6)
            half = across * widths[-1] * 0.5
            cv2.line(
                img,
                fixed(uv[j] - half),
                fixed(uv[j] + half),
                shade(colour, 0.6),
                1,
                cv2.LINE_AA,
                SUBPIXEL_BITS,
            )
    else:  # the nail on the distal bone, next to the tip
        centre = before + (tip - before) * 0.7
        length = float(np.hypot(*(tip - before)))
        half_axes = (max(1.0, 0.3 * length), max(1.0, 0.35 * widths[-1]))
        angle = math.degrees(math.atan2(tip[1] - before[1], tip[0] - before[0]))
        cv2.ellipse(
            img,
            fixed(centre),
            (int(half_axes[0] * ONE), int(half_axes[1] * ONE)),
            angle,
            0,
            360,
            _NAIL_BGR,
            -1,
            cv2.LINE_AA,
            SUBPIXEL_BITS,
        )


def _draw_hand(
    img: np.ndarray, uv: np.ndarray, depth: np.ndarray, skin: tuple, width: int, palm_facing: bool
) -> None:
    """Draw a shaded hand in place, far to near: the palm and the five fingers are painted in depth
    order (a finger curled behind the palm is hidden by it), the side facing the camera in its own
    colour (palm lighter, back with nails), the thumb thicker and the little finger thinner."""
    colour = palmar_skin(skin) if palm_facing else skin
    hull = _palm_outline(uv)
    palm_depth = float(depth[[0, 1, 5, 9, 13, 17]].mean())
    finger_depth = [float(depth[2 + 4 * f : 5 + 4 * f].mean()) for f in range(5)]
    far_first = sorted(range(5), key=lambda f: -finger_depth[f])
    behind = [f for f in far_first if finger_depth[f] > palm_depth + _BEHIND_PALM]
    in_front = [f for f in far_first if f not in behind]
    for part in behind + [PALM] + in_front:
        if part == PALM:
            cv2.fillConvexPoly(img, hull, shade(colour, 0.9), cv2.LINE_AA, SUBPIXEL_BITS)
            cv2.polylines(
                img,
                [hull],
                True,
                shade(colour, 0.6),
                max(1, width // 3),
                cv2.LINE_AA,
                SUBPIXEL_BITS,
            )
        else:
            _draw_finger(img, uv, part, colour, width, palm_facing)


def _occluder_tracks(
    rng: np.random.Generator, frames: int, size: int, centre_track: np.ndarray
) -> list[dict]:
    """0-2 moving rectangles per sequence, drawn near the hand so that they do cover joints."""
    return [
        occluder_track(rng, OCCLUDERS, frames, size, centre_track)
        for _ in range(int(rng.choice([0, 1, 1, 2])))
    ]


def _draw_occluders(img: np.ndarray, tracks: list[dict], t: int) -> None:
    for o, rect in zip(tracks, occluder_rects(tracks, t)):
        draw_rectangle(img, rect, o["colour"], o["striped"], OCCLUDERS)


def render_sequence(
    rng: np.random.Generator, shape: dict[str, Any], side: str, frames: int, size: int
) -> tuple[list[np.ndarray], list[dict]]:
    """Frames (BGR [size, size, 3] uint8) and per-frame labels of one sequence."""
    motion = _sequence_motion(rng, frames, size)
    background = textured_background(rng, size)
    centres = []
    poses = []
    for t in range(frames):
        uv, depth, palm_facing = _project(
            hand_joints_3d(shape, motion["flex"][t], motion["abduct"][t]), motion, t, side, size
        )
        poses.append((uv, depth, palm_facing))
        centres.append((uv.min(0) + uv.max(0)) / 2)
    tracks = _occluder_tracks(rng, frames, size, np.array(centres))
    images, labels = [], []
    for t, (uv, depth, palm_facing) in enumerate(poses):
        img = background.copy()
        width = limb_width(motion["span"][t])
        _draw_hand(img, uv, depth, shape["skin_bgr"], width, palm_facing)
        _draw_occluders(img, tracks, t)
        inside = (
            (uv[:, 0] >= -0.5)
            & (uv[:, 0] < size - 0.5)
            & (uv[:, 1] >= -0.5)
            & (uv[:, 1] < size - 0.5)
        )
        vis = np.where(inside, np.where(covered_by(uv, occluder_rects(tracks, t)), 1, 2), 0)
        pad = width / 2.0
        lo, hi = uv.min(0) - pad, uv.max(0) + pad
        images.append(img)
        labels.append(
            {
                "uv": uv,
                "vis": vis,
                "bbox": [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]],
                "occluders": [list(r) for r in occluder_rects(tracks, t)],
            }
        )
    return images, labels


# ---------------------------------------------------------------- writing
def write_hand_captures(out_dir: str | Path, params: CaptureParams) -> dict:
    """Render `params.hands.sequences` synthetic hand videos into `out_dir`; return the manifest.

    Streams: each sequence's video and labels.jsonl line are written as soon as it is rendered, and
    nothing of it is kept but its manifest entry. Deterministic from `params.seed`. Any earlier
    manifest is removed first and the new one is written last, so readers never see a half-written
    capture set.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # unpublish before touching anything
    for stale in list(out.glob(f"seq_*{VIDEO_FORMAT.suffix}")) + [
        out / "labels.json",
        out / LABELS_FILE,
    ]:
        stale.unlink(missing_ok=True)

    hands = params.hands if params.hands is not None else HandCaptureParams()
    size, frames = hands.image_size, hands.frames_per_sequence
    noise = NoiseParams.of(hands)
    root = np.random.SeedSequence([params.seed, 0x4A2D])
    (subject_seq,) = root.spawn(
        1
    )  # child 0; sequence i gets child 1 + i, spawned when it is rendered
    num_subjects = max(2, math.ceil(hands.sequences / 2))
    subject_rng = np.random.default_rng(subject_seq)
    subjects = {f"hand_{i:03d}": _subject_shape(subject_rng) for i in range(num_subjects)}
    subject_sides = {name: ("left" if subject_rng.random() < 0.5 else "right") for name in subjects}

    entries, occluded, labelled = [], 0, 0
    labels_tmp = out / f".{LABELS_FILE}.tmp"
    with labels_tmp.open("w") as labels_fh:
        for index in range(hands.sequences):
            (seq_seed,) = root.spawn(
                1
            )  # same keys as spawning all at once: nothing per sequence is kept
            rng = np.random.default_rng(seq_seed)
            sequence_id = f"seq_{index:04d}"
            subject = f"hand_{index % num_subjects:03d}"
            side = subject_sides[subject]  # a hand identity is one hand: its side is fixed
            images, frame_labels = render_sequence(rng, subjects[subject], side, frames, size)
            path = out / f"{sequence_id}{VIDEO_FORMAT.suffix}"
            with video_writer(path, VIDEO_FORMAT, FPS, size, size) as writer:
                for image in images:
                    writer.write(image)
            records = []
            for t, lab in enumerate(frame_labels):
                uv_noisy = add_label_noise(
                    rng, lab["uv"], max(lab["bbox"][2], lab["bbox"][3]), noise
                )
                records.append(
                    {
                        "frame_index": t,
                        "keypoints": keypoint_rows(uv_noisy, lab["vis"], 3),
                        "keypoints_clean": rounded(lab["uv"], 3),
                        "bbox": rounded(lab["bbox"], 3),
                        "occluders": lab[
                            "occluders"
                        ],  # inclusive pixel rectangles [x0, y0, x1, y1]
                        "subject": subject,
                        "side": side,
                    }
                )
                occluded += int((lab["vis"] == 1).sum())
                labelled += int((lab["vis"] > 0).sum())
            record = {"id": sequence_id, "subject": subject, "side": side, "frames": records}
            labels_fh.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            entries.append(
                {
                    "id": sequence_id,
                    "file": path.name,
                    "sha256": sha256_file(path),
                    "frames": frames,
                    "fps": FPS,
                    "width": size,
                    "height": size,
                    "subject": subject,
                    "side": side,
                    "codec": VIDEO_FORMAT.codec,
                }
            )
    labels_tmp.replace(out / LABELS_FILE)
    manifest = {
        "kind": "hand",
        "generator": {
            "name": GENERATOR_NAME,
            "version": GENERATOR_VERSION,
            "params": params.model_dump(mode="json", include={"generator", "seed", "hands"}),
        },
        "skeleton": HAND21.name,
        "keypoint_names": list(HAND21.keypoints),
        "labels": {"file": LABELS_FILE, "sha256": sha256_file(out / LABELS_FILE)},
        "sequences": entries,
        "counts": {
            "sequences": len(entries),
            "frames": len(entries) * frames,
            "subjects": num_subjects,
            "keypoints_labelled": labelled,
            "keypoints_occluded": occluded,
        },
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


# ---------------------------------------------------------------- reading
def read_hand_sequences(folder: str | Path) -> Iterator[dict[str, Any]]:
    """The label records of a published hand capture folder, one sequence at a time, in file order
    (the manifest's): {"id", "subject", "side", "frames": [per-frame labels]}. Errors: see
    `poseops.capture.read_label_records`."""
    from poseops.capture import read_label_records

    return read_label_records(folder)
