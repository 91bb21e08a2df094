"""Keypoint sets: names, edges, flip pairs, OKS sigmas, joint groups, mappings and joint angles.

Built-in sets (`SKELETONS`): `coco17`, `h36m17`, `mpii16`, `panoptic19`, `hand21` and `face68`. Joints are named the same
way across sets (`left_elbow`, `right_knee`, ...), so mappings and joint angles work by name on any
skeleton that has the joints they need, including one read from a COCO file's category
(`skeleton_from_coco_category`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from poseops.errors import DataError


@dataclass(frozen=True)
class Skeleton:
    """A keypoint set. `edges` and `flip_pairs` hold 0-based indices into `keypoints`.

    `sigmas` are the per-keypoint OKS constants (None where the dataset defines none);
    `groups` name sets of keypoints reported together (e.g. "wrist": both wrists).
    """

    name: str
    keypoints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]  # 0-based index pairs
    flip_pairs: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] | None = None
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        """Index of keypoint `name`; KeyError naming the skeleton if it has no such keypoint."""
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise KeyError(f"skeleton {self.name!r} has no keypoint {name!r}") from None

    def flip_permutation(self) -> tuple[int, ...]:
        """perm [K] such that `keypoints[..., perm, :]` swaps left and right joints."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return tuple(perm)


# ---------------------------------------------------------------------------- names as users write them

# Body parts that take a side; `normalize_name` reads `l`/`left`/`r`/`right` as a side only before
# (or after) one of these, so `little1` or `ring1` never lose a letter.
_SIDED_PARTS = (
    "eye",
    "ear",
    "shoulder",
    "elbow",
    "wrist",
    "hip",
    "knee",
    "ankle",
    "foot",
    "heel",
    "hand",
    "big_toe",
    "small_toe",
)
_SIDE_BEFORE = re.compile(r"^(left|right|l|r)_?(" + "|".join(_SIDED_PARTS) + r")$")
_SIDE_AFTER = re.compile(r"^(" + "|".join(_SIDED_PARTS) + r")_?(left|right|l|r)$")


def normalize_name(name: str) -> str:
    """A keypoint name in snake case with its side spelled out: `LShoulder`, `l_shoulder`,
    `left-shoulder`, `shoulder_left` and `Left Shoulder` all become `left_shoulder`."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip())
    s = re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")
    m = _SIDE_BEFORE.match(s) or _SIDE_AFTER.match(s)
    if m:
        side, part = (m.group(1), m.group(2)) if _SIDE_BEFORE.match(s) else (m.group(2), m.group(1))
        s = f"{'left' if side.startswith('l') else 'right'}_{part}"
    return s


# ---------------------------------------------------------------------------- inference by name

_GROUP_WORDS = ("wrist", "elbow", "shoulder", "hip", "knee", "ankle")
_HEAD_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "neck",
    "upper_neck",
    "head",
    "head_top",
)


def _groups_from_names(names: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Per-joint-type groups (wrist, elbow, shoulder, hip, knee, ankle, head) found by name.

    A joint belongs to group `w` if its name is `w` or ends in `_w` (so `left_wrist` -> wrist);
    `head` gathers the face/head points (COCO's 5 face points; H36M's neck/nose and head).
    """
    groups = {
        w: tuple(i for i, n in enumerate(names) if n == w or n.endswith("_" + w))
        for w in _GROUP_WORDS
    }
    groups["head"] = tuple(i for i, n in enumerate(names) if n in _HEAD_NAMES)
    return {g: idx for g, idx in groups.items() if idx}


def _flip_pairs_from_names(names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """(left, right) index pairs for names `left_x` / `right_x`, in any of the common spellings
    (`l_x`, `LShoulder`, `shoulder_left`, ...: see `normalize_name`)."""
    normal = [normalize_name(n) for n in names]
    pairs = []
    for i, n in enumerate(normal):
        if n.startswith("left_") and "right_" + n[5:] in normal:
            pairs.append((i, normal.index("right_" + n[5:])))
    return tuple(pairs)


def _body(name: str, keypoints: tuple[str, ...], edges, sigmas=None) -> Skeleton:
    return Skeleton(
        name=name,
        keypoints=keypoints,
        edges=tuple(tuple(e) for e in edges),
        flip_pairs=_flip_pairs_from_names(keypoints),
        sigmas=tuple(sigmas) if sigmas is not None else None,
        groups=_groups_from_names(keypoints),
    )


# ---------------------------------------------------------------------------- built-in sets

COCO17 = _body(
    "coco17",
    (
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    # COCO's own 1-based `skeleton`, minus one.
    [
        (15, 13),
        (13, 11),
        (16, 14),
        (14, 12),
        (11, 12),
        (5, 11),
        (6, 12),
        (5, 6),
        (5, 7),
        (6, 8),
        (7, 9),
        (8, 10),
        (1, 2),
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (4, 6),
    ],
    # COCO keypoint evaluation's per-keypoint sigmas (cocoeval.py).
    np.array(
        [
            0.26,
            0.25,
            0.25,
            0.35,
            0.35,
            0.79,
            0.79,
            0.72,
            0.72,
            0.62,
            0.62,
            1.07,
            1.07,
            0.87,
            0.87,
            0.89,
            0.89,
        ]
    )
    / 10.0,
)

# Human3.6M's usual 17 joints (VideoPose3D / mmpose order). Index 9 is the "neck/nose" joint
# (mmpose: neck_base); COCO -> H36M maps the nose onto it.
H36M17 = _body(
    "h36m17",
    (
        "pelvis",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "spine",
        "thorax",
        "neck",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
    ),
    [
        (0, 1),
        (1, 2),
        (2, 3),
        (0, 4),
        (4, 5),
        (5, 6),
        (0, 7),
        (7, 8),
        (8, 9),
        (9, 10),
        (8, 11),
        (11, 12),
        (12, 13),
        (8, 14),
        (14, 15),
        (15, 16),
    ],
)

MPII16 = _body(
    "mpii16",
    (
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    ),
    [
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (7, 12),
        (12, 11),
        (11, 10),
        (7, 13),
        (13, 14),
        (14, 15),
    ],
)

# CMU Panoptic's `joints19` (its "coco19" body): body centre = mid-hips, named `pelvis` as in H36M.
PANOPTIC19 = _body(
    "panoptic19",
    (
        "neck",
        "nose",
        "pelvis",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_eye",
        "left_ear",
        "right_eye",
        "right_ear",
    ),
    # Panoptic toolbox's body edges (1-based there), plus the face.
    [
        (0, 1),
        (0, 3),
        (3, 4),
        (4, 5),
        (0, 2),
        (2, 6),
        (6, 7),
        (7, 8),
        (2, 12),
        (12, 13),
        (13, 14),
        (0, 9),
        (9, 10),
        (10, 11),
        (1, 15),
        (15, 16),
        (1, 17),
        (17, 18),
    ],
)

# FreiHAND / COCO-WholeBody-hand order: wrist, then thumb, index, middle, ring, little, base to tip.
_FINGERS = ("thumb", "index", "middle", "ring", "little")
_HAND_NAMES = ("wrist",) + tuple(f"{f}{j}" for f in _FINGERS for j in (1, 2, 3, 4))
_HAND_EDGES = tuple(
    (0 if j == 0 else 1 + 4 * i + j - 1, 1 + 4 * i + j) for i in range(5) for j in range(4)
)

HAND21 = Skeleton(
    name="hand21",
    keypoints=_HAND_NAMES,
    edges=_HAND_EDGES,
    # COCO-WholeBody's hand sigmas (same keypoint order).
    sigmas=(
        0.029,
        0.022,
        0.035,
        0.037,
        0.047,
        0.026,
        0.025,
        0.024,
        0.035,
        0.018,
        0.024,
        0.022,
        0.026,
        0.017,
        0.021,
        0.021,
        0.032,
        0.020,
        0.019,
        0.022,
        0.031,
    ),
    groups={
        "wrist": (0,),
        **{f: tuple(range(1 + 4 * i, 5 + 4 * i)) for i, f in enumerate(_FINGERS)},
    },
)

# The 68-point face markup of Sagonas et al., 2013, "300 Faces in-the-Wild Challenge: The First Facial
# Landmark Localization Challenge" (iBUG 300-W; also COCO-WholeBody's face, Jin et al. 2020): jaw from the
# subject's right ear to the left (0-16), right then left eyebrow outside-in (17-21, 22-26), nose bridge
# (27-30), lower nose right to left (31-35), right eye from its outer corner clockwise in the image
# (36-41), left eye from its inner corner (42-47), outer lips from the right corner (48-59), inner lips
# (60-67). Sided names give the flip pairs (tests/unit/test_skeletons.py::test_face68_markup).
_FACE_NAMES = (
    tuple(f"right_jaw{i}" for i in range(1, 9))
    + ("chin",)
    + tuple(f"left_jaw{i}" for i in range(8, 0, -1))
    + tuple(f"right_eyebrow{i}" for i in range(1, 6))
    + tuple(f"left_eyebrow{i}" for i in range(5, 0, -1))
    + tuple(f"nose_bridge{i}" for i in range(1, 5))
    + ("right_nostril2", "right_nostril1", "nose_base", "left_nostril1", "left_nostril2")
    + tuple(
        f"right_eye_{p}"
        for p in ("outer", "upper_outer", "upper_inner", "inner", "lower_inner", "lower_outer")
    )
    + tuple(
        f"left_eye_{p}"
        for p in ("inner", "upper_inner", "upper_outer", "outer", "lower_outer", "lower_inner")
    )
    + (
        "right_mouth_corner",
        "right_upper_lip2",
        "right_upper_lip1",
        "upper_lip",
        "left_upper_lip1",
        "left_upper_lip2",
        "left_mouth_corner",
        "left_lower_lip2",
        "left_lower_lip1",
        "lower_lip",
        "right_lower_lip1",
        "right_lower_lip2",
    )
    + (
        "right_inner_mouth_corner",
        "right_inner_upper_lip",
        "inner_upper_lip",
        "left_inner_upper_lip",
        "left_inner_mouth_corner",
        "left_inner_lower_lip",
        "inner_lower_lip",
        "right_inner_lower_lip",
    )
)


def _chain(first: int, last: int, closed: bool = False) -> list[tuple[int, int]]:
    edges = [(i, i + 1) for i in range(first, last)]
    return edges + [(last, first)] if closed else edges


FACE68 = _body(
    "face68",
    _FACE_NAMES,
    _chain(0, 16)
    + _chain(17, 21)
    + _chain(22, 26)
    + _chain(27, 30)
    + [(30, 33)]
    + _chain(31, 35)
    + _chain(36, 41, closed=True)
    + _chain(42, 47, closed=True)
    + _chain(48, 59, closed=True)
    + _chain(60, 67, closed=True)
    # the parts joined into one drawing: brows to the jaw's ends and the bridge, eyes to the bridge,
    # nose to the upper lip, outer to inner lips, chin to the lower lip
    + [
        (0, 17),
        (16, 26),
        (21, 27),
        (22, 27),
        (39, 27),
        (42, 27),
        (33, 51),
        (51, 62),
        (57, 66),
        (8, 57),
    ],
    # COCO-WholeBody's face sigmas (its evaluation, myeval_wholebody.py; same 68-point order)
    sigmas=(
        0.042,
        0.043,
        0.044,
        0.043,
        0.040,
        0.035,
        0.031,
        0.025,
        0.020,
        0.023,
        0.029,
        0.032,
        0.037,
        0.038,
        0.043,
        0.041,
        0.045,
        0.013,
        0.012,
        0.011,
        0.011,
        0.012,
        0.012,
        0.011,
        0.011,
        0.013,
        0.015,
        0.009,
        0.007,
        0.007,
        0.007,
        0.012,
        0.009,
        0.008,
        0.016,
        0.010,
        0.017,
        0.011,
        0.009,
        0.011,
        0.009,
        0.007,
        0.013,
        0.008,
        0.011,
        0.012,
        0.010,
        0.034,
        0.008,
        0.008,
        0.009,
        0.008,
        0.008,
        0.007,
        0.010,
        0.008,
        0.009,
        0.009,
        0.009,
        0.007,
        0.007,
        0.008,
        0.011,
        0.008,
        0.008,
        0.008,
        0.010,
        0.008,
    ),
)

SKELETONS: dict[str, Skeleton] = {
    s.name: s for s in (COCO17, H36M17, MPII16, PANOPTIC19, HAND21, FACE68)
}


def get_skeleton(name: str) -> Skeleton:
    if name not in SKELETONS:
        raise KeyError(f"unknown skeleton {name!r}; known: {', '.join(sorted(SKELETONS))}")
    return SKELETONS[name]


# ---------------------------------------------------------------------------- custom skeletons


def skeleton_from_coco_category(category: dict) -> Skeleton:
    """A Skeleton from a COCO `categories` entry (`name`, `keypoints` names, 1-based `skeleton`).

    Flip pairs and groups are inferred from `left_`/`right_` names; sigmas are COCO's when the
    names are COCO-17's (else a `sigmas` list in the category is used if present, else None).
    Some converted files store 0-based edges: an edge holding index 0 is read as 0-based.
    Raises DataError naming the category and field when the entry is malformed.
    """
    label = f"COCO category {category.get('name', category.get('id', '?'))!r}"
    names = category.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{label}: field 'keypoints' must be a non-empty list of names")
    if len(set(names)) != len(names):
        raise DataError(f"{label}: field 'keypoints' repeats a name")
    names = tuple(names)
    k = len(names)
    raw = category.get("skeleton") or []
    try:
        pairs = [(int(a), int(b)) for a, b in raw]
    except (TypeError, ValueError):
        raise DataError(f"{label}: field 'skeleton' must be a list of [a, b] index pairs") from None
    base = 0 if any(0 in p for p in pairs) else 1
    edges = tuple((a - base, b - base) for a, b in pairs)
    if any(not (0 <= i < k) for e in edges for i in e):
        raise DataError(f"{label}: field 'skeleton' has an index outside 1..{k}")
    sigmas = category.get("sigmas")
    if names == COCO17.keypoints:
        sigmas = COCO17.sigmas
    elif sigmas is not None and len(sigmas) != k:
        raise DataError(f"{label}: field 'sigmas' has {len(sigmas)} values for {k} keypoints")
    return Skeleton(
        name=str(category.get("name", "custom")),
        keypoints=names,
        edges=edges,
        flip_pairs=_flip_pairs_from_names(names),
        sigmas=tuple(float(s) for s in sigmas) if sigmas is not None else None,
        groups=_groups_from_names(names),
    )


# ---------------------------------------------------------------------------- alias tables


def _hand_aliases() -> dict[str, str]:
    """The namings of the 21 hand joints in common releases: numbered (`index1`, FreiHAND, COCO-WholeBody),
    mmpose's OneHand10K/RHD names (`forefinger1`, `middle_finger1`, `pinky_finger1`), MediaPipe's anatomical
    ones (`INDEX_FINGER_MCP`, `THUMB_CMC`, `PINKY_TIP`) and InterHand2.6M's (`thumb4` .. `pinky1`, tip = 4)."""
    fingers = {
        "thumb": ("thumb", "thumb_finger"),
        "index": ("index", "forefinger", "fore_finger", "index_finger", "pointer", "first_finger"),
        "middle": ("middle", "middle_finger", "second_finger"),
        "ring": ("ring", "ring_finger", "third_finger"),
        "little": (
            "little",
            "little_finger",
            "pinky",
            "pinkie",
            "pinky_finger",
            "small_finger",
            "fourth_finger",
        ),
    }
    anatomical = {"thumb": ("cmc", "mcp", "ip", "tip")}
    out = dict.fromkeys(("hand_root", "root", "wrist_root", "hand_wrist", "palm_root"), "wrist")
    for finger, spellings in fingers.items():
        for j, joint in enumerate(anatomical.get(finger, ("mcp", "pip", "dip", "tip")), start=1):
            for spelling in spellings:
                for alias in (f"{spelling}{j}", f"{spelling}_{j}", f"{spelling}_{joint}"):
                    out[alias] = f"{finger}{j}"
    return out


def _face_aliases() -> dict[str, str]:
    """The numbered namings of the 68 face points: mmpose's COCO-WholeBody-face `face-0` .. `face-67` and
    300-W `kpt-0` .. `kpt-67` (0-based, the markup's order), and the 1-based `1` .. `68` / `point_1`
    .. `point_68` of iBUG's .pts files and dlib's documentation."""
    out = {}
    for i, name in enumerate(_FACE_NAMES):
        for alias in (f"face_{i}", f"kpt_{i}", f"face_kpt_{i}", f"{i + 1}", f"point_{i + 1}"):
            out[alias] = name
    return out


# Per keypoint set: a user's name (after `normalize_name`) -> the set's own name. The body sets share
# the sided names through `normalize_name`; these add the other words releases use for the same joint
# (mmpose's Human3.6M names `root`, `right_foot`, `neck_base`; MPII's `neck`/`head` for upper neck and
# head top; Panoptic's `body_center`).
KEYPOINT_ALIASES: dict[str, dict[str, str]] = {
    "coco17": {"nose_tip": "nose"},
    "h36m17": {
        "root": "pelvis",
        "mid_hip": "pelvis",
        "hip": "pelvis",
        "right_foot": "right_ankle",
        "left_foot": "left_ankle",
        "chest": "thorax",
        "neck_base": "neck",
        "nose": "neck",
        "head_top": "head",
        "site": "head",
    },
    "mpii16": {
        "neck": "upper_neck",
        "head": "head_top",
        "headtop": "head_top",
        "top_head": "head_top",
        "root": "pelvis",
        "mid_hip": "pelvis",
        "chest": "thorax",
    },
    "panoptic19": {
        "body_center": "pelvis",
        "bodycenter": "pelvis",
        "mid_hip": "pelvis",
        "root": "pelvis",
    },
    "hand21": _hand_aliases(),
    "face68": _face_aliases(),
}


def canonical_names(
    names: Sequence[str], skeleton: Skeleton, keypoint_map: Mapping[str, str] | None = None
) -> list[str | None]:
    """Each name as `skeleton` spells it (None where the set has no such joint): a `keypoint_map`
    entry first (the source's own mapping, to the set's names), else the name itself, else its
    normalized form, else that form through `KEYPOINT_ALIASES`."""
    keypoint_map = keypoint_map or {}
    aliases = KEYPOINT_ALIASES.get(skeleton.name, {})
    out: list[str | None] = []
    for name in names:
        name = keypoint_map.get(name, name)
        if name in skeleton.keypoints:
            out.append(name)
            continue
        normal = normalize_name(name)
        normal = normal if normal in skeleton.keypoints else aliases.get(normal)
        out.append(normal)
    return out


def match_keypoint_set(
    names: Sequence[str], skeleton: Skeleton, keypoint_map: Mapping[str, str] | None = None
) -> tuple[int, ...] | None:
    """perm [K] with skeleton joint j = the source's joint perm[j], when `names` name each of the
    set's joints exactly once (in any order and spelling); else None."""
    mapped = canonical_names(names, skeleton, keypoint_map)
    if len(names) != skeleton.num_keypoints or None in mapped or len(set(mapped)) != len(mapped):
        return None
    return tuple(mapped.index(k) for k in skeleton.keypoints)


def closest_keypoint_set(
    names: Sequence[str], keypoint_map: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """(built-in set, how many of `names` it has under some spelling): the set sharing most joints,
    ties to the one whose size is nearest."""
    scored = []
    for skeleton in SKELETONS.values():
        shared = len({n for n in canonical_names(names, skeleton, keypoint_map) if n is not None})
        scored.append((-shared, abs(skeleton.num_keypoints - len(names)), skeleton.name, shared))
    best = min(scored)
    return best[2], best[3]


def edges_from_names(
    names: Sequence[str], keypoint_map: Mapping[str, str] | None = None
) -> tuple[tuple[int, int], ...]:
    """0-based edges among `names` taken from the built-in sets: every edge of a set whose two joints
    `names` holds (under any spelling), without repeats."""
    edges: list[tuple[int, int]] = []
    for skeleton in SKELETONS.values():
        mapped = canonical_names(names, skeleton, keypoint_map)
        where = {m: i for i, m in enumerate(mapped) if m is not None}
        for a, b in skeleton.edges:
            ka, kb = skeleton.keypoints[a], skeleton.keypoints[b]
            if ka in where and kb in where:
                edge = (where[ka], where[kb])
                if edge not in edges and edge[::-1] not in edges:
                    edges.append(edge)
    return tuple(edges)


def categories_for_skeleton(categories: Sequence[dict], skeleton: Skeleton) -> set:
    """Ids of the categories whose keypoints are the skeleton's.

    A category matches by its joint names (an imported category in another naming has been mapped to
    the set's names already: `poseops.annotations.keypoint_sets`). Only when no category does, a
    built-in skeleton also takes the categories with its number of joints under other names
    (PoseTrack's COCO-order `head_bottom`, `head_top`), so annotations holding two 17-joint forms of
    each person (COCO-17 `person` and `person_h36m17` of the synthetic bodies) give each skeleton its
    own form, never both.
    """
    by_name = {c["id"] for c in categories if tuple(c.get("keypoints") or ()) == skeleton.keypoints}
    if by_name or skeleton.name not in SKELETONS:
        return by_name
    return {c["id"] for c in categories if len(c.get("keypoints") or ()) == skeleton.num_keypoints}


# ---------------------------------------------------------------------------- mappings

# Joints a target set needs that a source set lacks, as the mean of source joints (by name; the
# first recipe whose joints the source has wins). From COCO-17 to H36M-17 this is the conversion of
# Zhu et al., 2023, "MotionBERT: A Unified Perspective on Learning Human Motion Representations"
# (its in-the-wild 2D input): pelvis = mid-hips, thorax = mid-shoulders, spine = (pelvis + thorax)/2,
# neck/nose = nose, head = mid-eyes, limbs directly (tests/unit/test_skeletons.py::test_coco_to_h36m_mapping). From MPII-16: neck = upper neck, head = head top.
DERIVED_JOINTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "pelvis": (("left_hip", "right_hip"),),
    "thorax": (("left_shoulder", "right_shoulder"),),
    "spine": (("pelvis", "thorax"), ("left_hip", "right_hip", "left_shoulder", "right_shoulder")),
    "neck": (("upper_neck",), ("nose",)),
    "head": (("head_top",), ("left_eye", "right_eye")),
}


def mapping_matrix(src: Skeleton, dst: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Linear map from `src` keypoints to `dst` keypoints (works on any skeletons, by joint name).

    Returns (M [K_dst, K_src] float64, defined [K_dst] bool): dst joint j = Σ_i M[j, i]·src joint i
    (rows sum to 1 where defined). A joint `src` has by name maps directly; otherwise the first
    recipe of `DERIVED_JOINTS` that `src` can fill; otherwise it is undefined (a zero row).
    """
    m = np.zeros((dst.num_keypoints, src.num_keypoints))
    for j, name in enumerate(dst.keypoints):
        recipes = ((name,),) + DERIVED_JOINTS.get(name, ())
        sources = next((r for r in recipes if all(n in src.keypoints for n in r)), ())
        for n in sources:
            m[j, src.index(n)] += 1.0 / len(sources)
    return m, m.sum(axis=1) > 0


def map_keypoints(
    keypoints: np.ndarray, src: Skeleton, dst: Skeleton, visibility: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Convert keypoints [..., K_src, D] of `src` into [..., K_dst, D] of `dst`.

    visibility [..., K_src] (COCO 0/1/2, default all 2) becomes [..., K_dst]: a derived joint takes
    the smallest visibility of its sources; undefined joints get coordinates 0 and visibility 0.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if visibility is None:
        visibility = np.full(keypoints.shape[:-1], 2)
    visibility = np.asarray(visibility)
    m, defined = mapping_matrix(src, dst)
    out = np.einsum("ji,...id->...jd", m, np.where(visibility[..., None] > 0, keypoints, 0.0))
    big = np.iinfo(np.int64).max
    vis = np.min(np.where(m > 0, visibility[..., None, :].astype(np.int64), big), axis=-1)
    vis = np.where(defined, vis, 0)
    out = np.where(vis[..., None] > 0, out, 0.0)
    return out, vis


# ---------------------------------------------------------------------------- joint angles


def angle_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors u, v [..., D] -> [...] (NaN where either is zero)."""
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    nu, nv = np.linalg.norm(u, axis=-1), np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(u * v, axis=-1) / (nu * nv)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """∠(a, b, c): the angle in degrees at b between a − b and c − b. Points [..., D] -> [...]."""
    b = np.asarray(b, dtype=np.float64)
    return angle_between(np.asarray(a) - b, np.asarray(c) - b)


# Named angles (the joint angles of Zhang, He, Wu, 2025, "VMHPE", Tables 1 and 7): each is (a, b, c) for ∠(a, b, c); "mid_x" is the midpoint of left_x
# and right_x. The trunk lean, arm mean and arm symmetry are built from these in `joint_angles`.
ANGLES: dict[str, tuple[str, str, str]] = {
    "left_elbow": ("left_shoulder", "left_elbow", "left_wrist"),
    "right_elbow": ("right_shoulder", "right_elbow", "right_wrist"),
    "left_shoulder": ("left_elbow", "left_shoulder", "left_hip"),
    "right_shoulder": ("right_elbow", "right_shoulder", "right_hip"),
    "left_hip": ("mid_shoulder", "left_hip", "left_knee"),  # trunk-hip-knee
    "right_hip": ("mid_shoulder", "right_hip", "right_knee"),
    "left_knee": ("left_hip", "left_knee", "left_ankle"),  # squat support
    "right_knee": ("right_hip", "right_knee", "right_ankle"),
}

# Task chains: which angles each task is judged on, after the key angle chains of Zhang, He, Wu, 2025, "VMHPE",
# Table 7 (tests/unit/test_skeletons.py::test_joint_angles_on_a_known_pose).
TASK_CHAINS: dict[str, tuple[str, ...]] = {
    "TO": ("left_elbow", "right_elbow"),  # tool operation: wrist-elbow-shoulder
    "PC": ("left_hip", "right_hip"),  # part carrying/transport: trunk-hip-knee
    "CT": ("arm_mean", "arm_symmetry"),  # component transfer: two-hand coordination
    "CR": ("left_knee", "right_knee"),  # component replacement: squatting support chain
    "PF": ("trunk_lean",),  # part/component flip: trunk forward lean
}

IMAGE_UP_2D = (0.0, -1.0)  # image y grows downwards
IMAGE_UP_CAM = (0.0, -1.0, 0.0)  # camera frame: x right, y down, z forward


def _sources(joint: str) -> tuple[str, ...]:
    """The keypoint names a joint is built from: `mid_x` -> (left_x, right_x), else itself."""
    return ("left" + joint[3:], "right" + joint[3:]) if joint.startswith("mid_") else (joint,)


def joint_angles(
    keypoints: np.ndarray,
    skeleton: Skeleton,
    visibility: np.ndarray | None = None,
    up: tuple[float, ...] | None = None,
) -> dict[str, np.ndarray]:
    """All named angles (degrees) the skeleton's joints allow, each [...].

    keypoints [..., K, D] (D = 2 image pixels, or 3); visibility [..., K] (an angle is NaN where any
    joint it uses has visibility 0). Besides `ANGLES`: `trunk_lean` = angle between
    (mid-shoulder − mid-hip) and `up` (default image-up: (0, -1) in 2D, (0, -1, 0) in camera 3D),
    `arm_mean` = mean of the elbows, `arm_symmetry` = |left_elbow − right_elbow|.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    valid = (
        np.ones(keypoints.shape[:-1], bool) if visibility is None else np.asarray(visibility) > 0
    )

    def has(*joints: str) -> bool:
        return all(n in skeleton.keypoints for j in joints for n in _sources(j))

    def point(joint: str) -> tuple[np.ndarray, np.ndarray]:  # (coords [..., D], valid [...])
        idx = [skeleton.index(n) for n in _sources(joint)]
        return keypoints[..., idx, :].mean(axis=-2), valid[..., idx].all(axis=-1)

    out: dict[str, np.ndarray] = {}
    for label, (ja, jb, jc) in ANGLES.items():
        if has(ja, jb, jc):
            (a, va), (b, vb), (c, vc) = point(ja), point(jb), point(jc)
            out[label] = np.where(va & vb & vc, angle(a, b, c), np.nan)
    if has("mid_shoulder", "mid_hip"):
        (shoulders, vs), (hips, vh) = point("mid_shoulder"), point("mid_hip")
        if up is None:
            up = IMAGE_UP_2D if keypoints.shape[-1] == 2 else IMAGE_UP_CAM
        out["trunk_lean"] = np.where(
            vs & vh, angle_between(shoulders - hips, np.asarray(up, float)), np.nan
        )
    if "left_elbow" in out and "right_elbow" in out:
        out["arm_mean"] = (out["left_elbow"] + out["right_elbow"]) / 2.0
        out["arm_symmetry"] = np.abs(out["left_elbow"] - out["right_elbow"])
    return out
