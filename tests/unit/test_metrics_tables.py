"""Per-keypoint and per-joint-group tables (the Table 5 layout of Zhang, He, Wu, 2025, "VMHPE")."""

import numpy as np
import pytest

from poseops.errors import DataError
from poseops.metrics import COCO17_TABLE5_GROUPS, epe_table, pck, pck_table, table_markdown


def _coco_case():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, (3, 17, 2))
    offsets = np.zeros_like(gt)
    offsets[:, 9] = [30, 0]  # left wrists 30 px off (normaliser 100, thr 0.1: wrong)
    offsets[:, 10] = [5, 0]  # right wrists 5 px off: right
    offsets[0, 0] = [0, 50]  # one nose wrong
    visible = np.full((3, 17), 2)
    visible[2, 10] = 0  # one right wrist not scored
    return gt + offsets, gt, visible, np.full(3, 100.0)


def test_group_rows_follow_table5_and_pool_left_and_right():
    pred, gt, visible, norm = _coco_case()
    table = pck_table(pred, gt, visible, norm, threshold=0.1)
    groups = {row["group"]: row for row in table["groups"]}
    assert list(groups) == ["wrist", "elbow", "shoulder", "hip", "knee", "ankle", "head"]
    assert groups["wrist"]["value"] == pytest.approx(2 / 5) and groups["wrist"]["num_scored"] == 5
    assert groups["head"]["value"] == pytest.approx(14 / 15)
    assert groups["elbow"]["value"] == 1.0
    rows = {row["keypoint"]: row for row in table["keypoints"]}
    assert rows["left_wrist"]["value"] == 0.0 and rows["right_wrist"]["num_scored"] == 2
    # pooled over everything, the table agrees with the overall PCK
    total = sum(r["value"] * r["num_scored"] for r in table["keypoints"]) / sum(
        r["num_scored"] for r in table["keypoints"]
    )
    assert total == pytest.approx(pck(pred, gt, visible, norm, threshold=0.1).value)
    assert "| wrist | 40.0 | 5 |" in table_markdown(table)


def test_epe_table_and_other_skeletons():
    pred, gt, visible, _ = _coco_case()
    table = epe_table(pred, gt, visible)
    assert {r["group"]: r["value"] for r in table["groups"]}["wrist"] == pytest.approx(
        (30 * 3 + 5 * 2) / 5
    )
    hand_gt = np.zeros((2, 21, 2))
    hand = pck_table(
        hand_gt,
        hand_gt,
        np.ones((2, 21)),
        np.ones(2),
        keypoint_names=None,
        groups={"wrist": (0,), "thumb": (1, 2, 3, 4)},
    )
    assert [r["group"] for r in hand["groups"]] == ["wrist", "thumb"]
    with pytest.raises(DataError, match="groups"):
        pck_table(
            hand_gt[:, :10],
            hand_gt[:, :10],
            np.ones((2, 10)),
            np.ones(2),
            groups=COCO17_TABLE5_GROUPS,
        )
    empty = pck_table(pred, gt, np.where(np.arange(17) == 9, 0, visible), np.full(3, 100.0))
    assert {r["keypoint"]: r["value"] for r in empty["keypoints"]}["left_wrist"] is None
