"""Keypoint sets, mappings and joint angles."""

import json

import numpy as np
import pytest

from poseops.errors import DataError
from poseops.paths import fixtures_dir
from poseops.skeletons import (
    COCO17,
    H36M17,
    HAND21,
    MPII16,
    SKELETONS,
    TASK_CHAINS,
    angle,
    get_skeleton,
    joint_angles,
    map_keypoints,
    mapping_matrix,
    skeleton_from_coco_category,
)


def _fixture_category(relpath: str) -> dict:
    root = fixtures_dir()
    if root is None:
        pytest.skip(
            "real fixtures not found (set POSEOPS_FIXTURES or provide ../shared/fixtures/real)"
        )
    return json.loads((root / relpath).read_text())["categories"][0]


@pytest.mark.parametrize("skeleton", list(SKELETONS.values()), ids=list(SKELETONS))
def test_builtin_sets_are_consistent(skeleton):
    k = skeleton.num_keypoints
    assert len(set(skeleton.keypoints)) == k
    assert all(0 <= i < k for e in skeleton.edges for i in e)
    assert len(set(map(frozenset, skeleton.edges))) == len(skeleton.edges)
    assert skeleton.sigmas is None or len(skeleton.sigmas) == k
    perm = skeleton.flip_permutation()
    assert tuple(perm[i] for i in perm) == tuple(range(k))  # flipping twice is the identity
    for a, b in skeleton.flip_pairs:
        assert skeleton.keypoints[a].replace("left", "right") == skeleton.keypoints[b]
    # Edges connect all keypoints.
    reached, frontier = {0}, [0]
    while frontier:
        i = frontier.pop()
        for a, b in skeleton.edges:
            for x, y in ((a, b), (b, a)):
                if x == i and y not in reached:
                    reached.add(y)
                    frontier.append(y)
    assert len(reached) == k
    assert get_skeleton(skeleton.name) is skeleton


def test_coco_sigmas_are_cocoeval_defaults():
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    assert np.allclose(
        COCO17.sigmas, cocoeval.Params(iouType="keypoints").kpt_oks_sigmas, atol=0, rtol=1e-12
    )


def test_unknown_skeleton_names_the_known_ones():
    with pytest.raises(KeyError, match="coco17"):
        get_skeleton("coco18")


def test_hand21_freihand_order():
    assert HAND21.keypoints[:6] == ("wrist", "thumb1", "thumb2", "thumb3", "thumb4", "index1")
    assert HAND21.keypoints[-1] == "little4"
    assert HAND21.groups["ring"] == (13, 14, 15, 16)
    # FreiHAND's own category (1-based skeleton) lists the same bones.
    freihand = skeleton_from_coco_category(_fixture_category("freihand/test_freihand.json"))
    assert set(map(frozenset, freihand.edges)) == set(map(frozenset, HAND21.edges))


def test_groups_follow_table5():
    for s in (COCO17, H36M17, MPII16):
        assert set(s.groups) == {"wrist", "elbow", "shoulder", "hip", "knee", "ankle", "head"}
        for g in ("wrist", "elbow", "shoulder", "hip", "knee", "ankle"):
            assert sorted(s.keypoints[i] for i in s.groups[g]) == [f"left_{g}", f"right_{g}"]
    assert [COCO17.keypoints[i] for i in COCO17.groups["head"]] == list(COCO17.keypoints[:5])


def test_real_coco_category_gives_coco17():
    custom = skeleton_from_coco_category(_fixture_category("coco/test_coco.json"))
    assert custom.keypoints == COCO17.keypoints
    assert set(custom.edges) == set(COCO17.edges)
    assert custom.sigmas == COCO17.sigmas
    assert custom.flip_pairs == COCO17.flip_pairs and custom.groups == COCO17.groups
    assert np.array_equal(mapping_matrix(custom, H36M17)[0], mapping_matrix(COCO17, H36M17)[0])


def test_zero_based_category_is_read_as_such():
    """mmpose's converted Human3.6M file stores its `skeleton` 0-based."""
    custom = skeleton_from_coco_category(_fixture_category("h36m/h36m_coco.json"))
    assert set(custom.edges) == set(H36M17.edges)


def test_custom_skeleton_works_like_a_builtin():
    category = {
        "name": "arm",
        "keypoints": [
            f"{side}_{joint}"
            for side in ("left", "right")
            for joint in ("shoulder", "elbow", "wrist")
        ],
        "skeleton": [[1, 2], [2, 3], [4, 5], [5, 6], [1, 4]],
    }
    arm = skeleton_from_coco_category(category)
    assert arm.edges[0] == (0, 1) and arm.flip_pairs == ((0, 3), (1, 4), (2, 5))
    assert arm.groups["elbow"] == (1, 4)
    pts = np.array([[0, 0], [0, 10], [10, 10], [30, 0], [30, 10], [30, 20]], float)
    angles = joint_angles(pts, arm)
    assert set(angles) == {"left_elbow", "right_elbow", "arm_mean", "arm_symmetry"}
    assert np.isclose(angles["left_elbow"], 90.0) and np.isclose(angles["right_elbow"], 180.0)
    coco, vis = map_keypoints(pts, arm, COCO17)
    assert np.array_equal(coco[COCO17.index("right_wrist")], pts[5]) and vis.sum() == 2 * 6


@pytest.mark.parametrize(
    "category, field",
    [
        ({"name": "x", "keypoints": []}, "keypoints"),
        ({"name": "x", "keypoints": ["a", "a"]}, "keypoints"),
        ({"name": "x", "keypoints": ["a", "b"], "skeleton": [[1, 3]]}, "skeleton"),
        ({"name": "x", "keypoints": ["a", "b"], "skeleton": [[1]]}, "skeleton"),
        ({"name": "x", "keypoints": ["a", "b"], "sigmas": [0.1]}, "sigmas"),
    ],
)
def test_bad_category_names_the_field(category, field):
    with pytest.raises(DataError, match=f"'x'.*'{field}'"):
        skeleton_from_coco_category(category)


def _coco_pose(rng, n=5):
    return rng.uniform(0, 500, size=(n, 17, 2))


def test_coco_to_h36m_mapping():
    rng = np.random.default_rng(0)
    coco = _coco_pose(rng)
    vis = np.full((5, 17), 2)
    vis[0, COCO17.index("left_eye")] = 0
    vis[1, COCO17.index("right_hip")] = 1
    h36m, h_vis = map_keypoints(coco, COCO17, H36M17, vis)
    c, h = COCO17.index, H36M17.index
    mid = lambda a, b: (coco[:, c(a)] + coco[:, c(b)]) / 2  # noqa: E731
    assert np.allclose(h36m[:, h("pelvis")], mid("left_hip", "right_hip"))
    assert np.allclose(h36m[:, h("thorax")], mid("left_shoulder", "right_shoulder"))
    assert np.allclose(h36m[:, h("spine")], (h36m[:, h("pelvis")] + h36m[:, h("thorax")]) / 2)
    assert np.allclose(h36m[:, h("neck")], coco[:, c("nose")])
    assert np.allclose(h36m[1:, h("head")], mid("left_eye", "right_eye")[1:])
    for name in ("left_wrist", "right_knee", "left_ankle", "right_shoulder"):
        assert np.array_equal(h36m[:, h(name)], coco[:, c(name)])
    assert h_vis[0, h("head")] == 0 and np.all(h36m[0, h("head")] == 0)  # an eye is missing
    assert h_vis[1, h("pelvis")] == 1 and h_vis[1, h("spine")] == 1 and h_vis[1, h("thorax")] == 2


def test_unmappable_joints_are_undefined():
    m, defined = mapping_matrix(H36M17, COCO17)
    assert not defined[:5].any() and defined[5:].all()  # H36M has no eyes or ears
    assert np.allclose(m[defined].sum(axis=1), 1.0)
    _, d_mpii = mapping_matrix(MPII16, H36M17)
    assert d_mpii.all()


def test_angle_matches_geometry():
    rng = np.random.default_rng(1)
    theta = rng.uniform(1.0, 179.0, size=100)
    b = rng.normal(size=(100, 3))
    a = b + 2.0 * np.stack([np.ones(100), np.zeros(100), np.zeros(100)], axis=-1)
    c = b + 3.0 * np.stack(
        [np.cos(np.radians(theta)), np.sin(np.radians(theta)), np.zeros(100)], axis=-1
    )
    assert np.allclose(angle(a, b, c), theta)
    assert np.isnan(angle(a, a, c)).all()


def test_joint_angles_on_a_known_pose():
    """A standing 2D figure (y down): straight legs, one arm bent 90°, trunk leaning 30° forward."""
    pts = np.zeros((17, 2))
    put = lambda name, xy: pts.__setitem__(COCO17.index(name), xy)  # noqa: E731
    lean = np.radians(30.0)
    for side, dx in (("left", -20.0), ("right", 20.0)):
        put(f"{side}_hip", (100 + dx, 300))
        put(f"{side}_knee", (100 + dx, 400))
        put(f"{side}_ankle", (100 + dx, 500))
        put(f"{side}_shoulder", (100 + dx + 150 * np.sin(lean), 300 - 150 * np.cos(lean)))
    ls, rs = pts[COCO17.index("left_shoulder")], pts[COCO17.index("right_shoulder")]
    put("left_elbow", ls + (0, 80))
    put("left_wrist", ls + (60, 80))  # forearm horizontal: 90° at the elbow
    put("right_elbow", rs + (0, 80))
    put("right_wrist", rs + (0, 160))  # straight arm
    angles = joint_angles(pts, COCO17)
    assert set(
        TASK_CHAINS["TO"] + TASK_CHAINS["CT"] + TASK_CHAINS["PF"] + TASK_CHAINS["CR"]
    ) <= set(angles)
    assert np.isclose(angles["trunk_lean"], 30.0)
    assert np.isclose(angles["left_elbow"], 90.0) and np.isclose(angles["right_elbow"], 180.0)
    assert np.isclose(angles["arm_symmetry"], 90.0) and np.isclose(angles["arm_mean"], 135.0)
    assert np.isclose(angles["left_knee"], 180.0)
    trunk = (ls + rs) / 2 - pts[COCO17.index("left_hip")]
    trunk_off_vertical = np.degrees(np.arctan2(trunk[0], -trunk[1]))
    assert np.isclose(
        angles["left_hip"], 180.0 - trunk_off_vertical
    )  # the thigh points straight down

    # Same figure through the COCO -> H36M mapping gives the same angles (mapping keeps limbs).
    h36m, _ = map_keypoints(pts, COCO17, H36M17)
    for name, value in joint_angles(h36m, H36M17).items():
        assert np.isclose(value, angles[name]), name

    # A missing wrist makes that elbow's angle (and what depends on it) NaN, not a number.
    vis = np.full(17, 2)
    vis[COCO17.index("left_wrist")] = 0
    masked = joint_angles(pts, COCO17, vis)
    assert np.isnan(masked["left_elbow"]) and np.isnan(masked["arm_symmetry"])
    assert np.isclose(masked["right_elbow"], 180.0)


def test_joint_angles_batch_and_3d():
    rng = np.random.default_rng(2)
    pose = rng.normal(size=(4, 6, 17, 3))
    angles = joint_angles(pose, H36M17)
    assert all(v.shape == (4, 6) for v in angles.values())
    i = H36M17.index
    shoulder, elbow, wrist = (pose[..., i(f"right_{j}"), :] for j in ("shoulder", "elbow", "wrist"))
    ref = angle(shoulder, elbow, wrist)
    assert np.allclose(angles["right_elbow"], ref)
    upright = np.zeros((17, 3))
    upright[[i("left_shoulder"), i("right_shoulder")], 1] = -500.0  # camera y points down
    assert np.isclose(joint_angles(upright, H36M17)["trunk_lean"], 0.0)


def test_categories_match_by_joint_names_before_joint_count():
    from poseops.datasets.shards import skeleton_categories

    coco, h36m = get_skeleton("coco17"), get_skeleton("h36m17")
    both = [
        {"id": 1, "keypoints": list(coco.keypoints)},
        {"id": 2, "keypoints": list(h36m.keypoints)},
    ]
    assert skeleton_categories(both, coco) == {1}
    assert skeleton_categories(both, h36m) == {2}
    # PoseTrack: COCO order under other head names; taken by count when nothing matches by name
    posetrack = [
        {"id": 5, "keypoints": ["nose", "head_bottom", "head_top"] + list(coco.keypoints[3:])}
    ]
    assert skeleton_categories(posetrack, coco) == {5}
    assert skeleton_categories([{"id": 7, "keypoints": ["a", "b"]}], coco) == set()


def test_face68_markup():
    from poseops.skeletons import FACE68, match_keypoint_set

    # COCO-WholeBody-face's left/right swaps (mmpose's coco_wholebody_face.py, 0-based `face-i`)
    swaps = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
    swaps += [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    swaps += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    expected = list(range(68))
    for a, b in swaps:
        expected[a], expected[b] = b, a
    assert FACE68.num_keypoints == 68 and FACE68.flip_permutation() == tuple(expected)
    assert FACE68.sigmas[8] == 0.020 and FACE68.sigmas[47] == 0.034  # chin; right lower lip
    assert FACE68.keypoints[30] == "nose_bridge4" and FACE68.keypoints[8] == "chin"
    # the numbered namings map in any order: mmpose's 0-based `face-i` / `kpt-i`, iBUG's 1-based points
    shuffled = list(np.random.default_rng(0).permutation(68))
    for names in (
        [f"face-{i}" for i in shuffled],
        [f"kpt-{i}" for i in shuffled],
        [str(i + 1) for i in shuffled],
    ):
        assert match_keypoint_set(names, FACE68) == tuple(shuffled.index(j) for j in range(68))
    assert match_keypoint_set([f"face-{i}" for i in range(1, 69)], FACE68) is None  # off by one
