"""The synthetic hand renderer draws cues that tell the digits and the two sides of a hand apart.

Without them a hand and its mirror image (thumb and little finger swapped) look alike, and a model
trained on the renders places all 21 keypoints on the wrist-to-fingertip axis (the mean of the two).
"""

from __future__ import annotations

import cv2
import numpy as np

from poseops.capture.common import ONE, shade
from poseops.capture.synthetic_hands import (
    _draw_finger,
    _draw_hand,
    _palm_outline,
    _project,
    _subject_shape,
    hand_joints_3d,
    limb_width,
    palmar_skin,
)

SIZE = 256
SKIN = (120.0, 160.0, 210.0)  # BGR


def _canonical_hand(palm_away: bool = False, flex: float = 0.0):
    """uv [21,2], depth [21], palm_facing of one hand, fingers straight and spread, no tilt."""
    shape = _subject_shape(np.random.default_rng(0))
    abduct = np.array([20.0, -10.0, 0.0, 8.0, 15.0])
    joints = hand_joints_3d(shape, np.full((5, 3), flex), abduct)
    motion = {
        "palm_away": np.array([palm_away]),
        "roll": np.zeros(1),
        "tilt_x": np.zeros(1),
        "tilt_y": np.zeros(1),
        "span": np.array([0.7 * SIZE]),
        "cx": np.array([0.5]),
        "cy": np.array([0.5]),
    }
    return _project(joints, motion, 0, "right", SIZE)


def _width_across(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> int:
    """Painted pixels on the segment through the midpoint of a-b, perpendicular to it (one finger drawn)."""
    along = (b - a) / np.linalg.norm(b - a)
    across = np.array([-along[1], along[0]])
    mid = (a + b) / 2
    points = mid + np.linspace(-30, 30, 241)[:, None] * across
    px = np.floor(points + 0.5).astype(int)
    return int(mask[px[:, 1], px[:, 0]].sum())


def test_digits_differ_in_thickness_thumb_thickest_little_thinnest():
    uv, _, _ = _canonical_hand()
    width = limb_width(0.7 * SIZE)
    widths = []
    for finger in range(5):
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        _draw_finger(img, uv, finger, SKIN, width, palm_facing=True)
        mask = img.any(axis=-1)
        a, b = 1 + 4 * finger + 1, 1 + 4 * finger + 2  # the middle phalanx (the thumb's proximal)
        widths.append(_width_across(mask, uv[a], uv[b]) / 4)  # 4 samples a pixel
    thumb, index, middle, ring, little = widths
    assert min(thumb - index, thumb - middle) > 2 and ring < middle + 0.5 and little < ring - 1, (
        widths
    )


def test_palm_side_and_back_look_different():
    palm_uv, palm_depth, palm_facing = _canonical_hand(palm_away=False)
    back_uv, back_depth, back_facing = _canonical_hand(palm_away=True)
    assert palm_facing and not back_facing
    width = limb_width(0.7 * SIZE)
    palm_img = np.zeros((SIZE, SIZE, 3), np.uint8)
    back_img = np.zeros((SIZE, SIZE, 3), np.uint8)
    _draw_hand(palm_img, palm_uv, palm_depth, SKIN, width, palm_facing)
    _draw_hand(back_img, back_uv, back_depth, SKIN, width, back_facing)
    # the palm side is lighter
    palm_mean = palm_img[palm_img.any(-1)].astype(float).mean()
    back_mean = back_img[back_img.any(-1)].astype(float).mean()
    assert palm_mean > back_mean + 15
    assert np.allclose(palmar_skin(SKIN), [c + (255 - c) * 0.35 for c in SKIN])
    # the back shows a nail (a pale spot, unlike the skin) on every fingertip's distal bone
    for tip in (4, 8, 12, 16, 20):
        near = back_uv[tip] + 0.3 * (back_uv[tip - 1] - back_uv[tip])
        x, y = np.floor(near + 0.5).astype(int)
        patch = back_img[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).astype(float)
        assert (patch.min(axis=1) > 180).any(), tip


def test_fingers_curled_behind_the_palm_are_hidden_by_it():
    uv, depth, palm_facing = _canonical_hand(palm_away=True, flex=70.0)  # back to the camera, fist
    assert not palm_facing
    finger_depth = depth[[2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20]].mean()
    # the curled fingers are behind the palm
    assert finger_depth > depth[[0, 1, 5, 9, 13, 17]].mean()
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    _draw_hand(img, uv, depth, SKIN, limb_width(0.7 * SIZE), palm_facing)
    # the middle fingertip lies well inside the palm's outline: the palm is painted over it
    outline = _palm_outline(uv).astype(np.float32) / ONE
    assert cv2.pointPolygonTest(outline, tuple(float(v) for v in uv[12]), True) > 3
    x, y = np.floor(uv[12] + 0.5).astype(int)
    assert np.allclose(img[y, x], shade(SKIN, 0.9), atol=1)


def test_fingers_fan_out_from_the_palm_at_rest():
    """Straight fingers point away from the palm's centre line on their own side: thumb out on +x,
    little finger out on -x, fingertips in the same order as the knuckles (no crossed fingers)."""
    shape = _subject_shape(np.random.default_rng(0))
    joints = hand_joints_3d(shape, np.zeros((5, 3)), np.zeros(5))
    bases, tips = joints[[1, 5, 9, 13, 17], 0], joints[[4, 8, 12, 16, 20], 0]
    assert np.all(np.diff(bases) <= 0) and np.all(np.diff(tips) < 0)
    assert tips[0] > bases[0] + 0.1 and tips[4] < bases[4] - 0.03
    # the gaps between fingers widen towards the tips
    assert np.all(np.diff(tips)[1:] < np.diff(bases)[1:])


def test_the_thumb_flexes_across_the_palm():
    shape = _subject_shape(np.random.default_rng(0))
    flex = np.zeros((5, 3))
    flex[0] = [30.0, 40.0, 40.0]
    straight = hand_joints_3d(shape, np.zeros((5, 3)), np.zeros(5))[4]
    bent = hand_joints_3d(shape, flex, np.zeros(5))[4]
    # towards the little finger and the palm side
    assert bent[0] < straight[0] - 0.1 and bent[2] < -0.1
