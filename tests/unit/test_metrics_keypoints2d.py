"""PCK / PCKh / AUC / EPE / NME against hand-computed cases and a plain-loop reference."""

import json
import math

import numpy as np
import pytest

from poseops.errors import DataError
from poseops.metrics import (
    MetricResult,
    auc,
    bbox_size,
    epe,
    head_box_size,
    keypoint_box_size,
    nme,
    pck,
    pck_curve,
    pckh,
    torso_size,
)


def _two_people():
    """Two instances, 3 keypoints; instance 1's last keypoint is invisible."""
    gt = np.array([[[0, 0], [10, 0], [10, 20]], [[100, 100], [130, 100], [0, 0]]], float)
    visible = np.array([[2, 2, 1], [2, 2, 0]])
    offsets = np.array(
        [[[3, 4], [0, 0], [0, 1]], [[6, 8], [0, 0], [500, 500]]], float
    )  # 5, 0, 1 | 10, 0, (far)
    return gt + offsets, gt, visible


def test_keypoint_box_size_uses_visible_points_only():
    _, gt, visible = _two_people()
    assert keypoint_box_size(gt, visible).tolist() == [20.0, 30.0]
    assert keypoint_box_size(gt, np.zeros((2, 3), bool)).tolist() == [0.0, 0.0]


def test_pck_by_hand():
    pred, gt, visible = _two_people()
    norm = keypoint_box_size(gt, visible)  # 20, 30 -> ratios .25 0 .05 | .333 0
    result = pck(pred, gt, visible, norm, threshold=0.2)
    assert isinstance(result, MetricResult)
    assert result.value == pytest.approx(3 / 5)
    assert pck(pred, gt, visible, norm, threshold=0.25).value == pytest.approx(
        4 / 5
    )  # <= is inclusive
    assert pck(pred, gt, visible, norm, threshold=0.34).value == 1.0
    assert result.protocol["threshold"] == 0.2
    assert result.protocol["normaliser"] == "keypoint_box"
    assert result.protocol["num_keypoints_scored"] == 5
    assert json.loads(json.dumps(result.to_dict()))["value"] == pytest.approx(0.6)


def test_pck_matches_plain_loop_reference():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, (7, 17, 2))
    pred = gt + rng.normal(0, 8, gt.shape)
    visible = rng.integers(0, 3, (7, 17))
    visible[:, 0] = 2
    norm = rng.uniform(40, 90, 7)
    for t in (0.05, 0.1, 0.2):
        hits = total = 0
        for i in range(7):
            for k in range(17):
                if visible[i, k] > 0:
                    total += 1
                    d = math.dist(pred[i, k], gt[i, k])
                    hits += d / norm[i] <= t
        assert pck(pred, gt, visible, norm, threshold=t).value == pytest.approx(
            hits / total, abs=1e-12
        )


def test_pckh_and_normaliser_helpers():
    pred, gt, visible = _two_people()
    heads = np.array([[0, 0, 30, 40], [0, 0, 6, 8]], float)  # diag 50, 10 -> 30, 6
    assert head_box_size(heads).tolist() == pytest.approx([30.0, 6.0])
    result = pckh(pred, gt, visible, head_box_size(heads))  # ratios 5/30 0 1/30 | 10/6 0
    assert result.value == pytest.approx(4 / 5)
    assert result.protocol["metric"] == "PCKh" and result.protocol["normaliser"] == "head"
    assert bbox_size([[0, 0, 5, 9], [1, 1, 7, 2]]).tolist() == [9.0, 7.0]
    coco = np.zeros((1, 17, 2))
    coco[0, 5], coco[0, 12] = (0, 0), (3, 4)
    assert torso_size(coco, np.ones((1, 17), bool)).tolist() == [5.0]
    assert np.isnan(torso_size(coco, np.zeros((1, 17), bool))).all()


def test_curve_auc_epe_nme():
    pred, gt, visible = _two_people()
    norm = keypoint_box_size(gt, visible)
    curve = pck_curve(pred, gt, visible, norm, [0.0, 0.1, 0.3, 0.4])
    assert curve["values"] == pytest.approx([2 / 5, 3 / 5, 4 / 5, 1.0])
    perfect = auc(gt, gt, visible, norm)
    assert perfect.value == pytest.approx(1.0)
    # ratios .25 0 .05 .333 0: on [0, .2] PCK is 2/5 at 0, 3/5 on (0.05, 0.2]; trapezoid on 21 steps.
    thr = np.linspace(0, 0.2, 21)
    expected = (
        np.trapezoid([(np.array([0.25, 0, 0.05, 1 / 3, 0]) <= t).mean() for t in thr], thr) / 0.2
    )
    assert auc(pred, gt, visible, norm).value == pytest.approx(expected)
    assert epe(pred, gt, visible).value == pytest.approx((5 + 0 + 1 + 10 + 0) / 5)
    assert nme(pred, gt, visible, norm).value == pytest.approx((0.25 + 0 + 0.05 + 1 / 3 + 0) / 5)


def test_bad_inputs_raise_data_error_naming_the_field():
    pred, gt, visible = _two_people()
    norm = keypoint_box_size(gt, visible)
    with pytest.raises(DataError, match="pred"):
        pck(pred[:, :2], gt, visible, norm)  # wrong number of keypoints
    nan_pred = pred.copy()
    nan_pred[1, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"pred.*\[1, 0\]"):
        epe(nan_pred, gt, visible)
    with pytest.raises(DataError, match="normaliser: instance 1"):
        pck(pred, gt, visible, np.array([20.0, 0.0]))
    with pytest.raises(DataError, match="visible"):
        pck(pred, gt, visible[:, :2], norm)
    with pytest.raises(DataError, match="no visible"):
        epe(pred, gt, np.zeros((2, 3), bool))
    # ground truth NaN at an invisible keypoint is fine
    nan_gt = gt.copy()
    nan_gt[1, 2] = np.nan
    assert epe(pred, nan_gt, visible).value == pytest.approx(16 / 5)


def test_mpii_pckh_by_hand_leaves_out_pelvis_and_thorax():
    from poseops.metrics import mpii_pckh

    gt = np.zeros((2, 16, 2))
    gt[:, :, 0] = np.arange(16) * 10.0
    visible = np.ones((2, 16), int)
    visible[1, 15] = 0  # person 2's left wrist is not labelled
    # head boxes as imported (x, y, w, h): diagonals 50 and 10 -> head sizes 30 and 6, radii 15 and 3
    heads = [[100, 100, 30, 40], [0, 0, 6, 8]]
    offset = np.zeros_like(gt)
    offset[0, :, 0] = 14.0  # person 1: every joint 14 px off (< 15): all correct
    offset[0, 9, 0] = 16.0  # ... but the head top (> 15)
    offset[1, :, 1] = 3.0  # person 2: 3 px off, on the radius (<= counts)
    offset[1, [0, 6, 7], 1] = (
        4.0  # right ankle, pelvis, thorax miss (pelvis, thorax are not scored)
    )
    result = mpii_pckh(gt + offset, gt, visible, heads)
    # scored: 14 joints of person 1, 13 of person 2; wrong: head top (1), right ankle (2)
    assert result.value == pytest.approx((14 - 1 + 13 - 1) / 27)
    assert result.protocol["num_keypoints_scored"] == 27
    per_type = result.protocol["per_joint_type"]
    assert per_type["head"] == 0.5 and per_type["ankle"] == pytest.approx(3 / 4)
    assert per_type["wrist"] == pytest.approx(3 / 3)  # person 2's left wrist is unlabelled
    # the general PCKh over all 16 joints counts the pelvis and thorax too
    assert pckh(
        gt + offset, gt, visible, head_box_size([[100, 100, 130, 140], [0, 0, 6, 8]])
    ).value == (pytest.approx((16 - 1 + 15 - 3) / 31))
    with pytest.raises(DataError, match="16 MPII joints"):
        mpii_pckh(gt[:, :15], gt[:, :15], visible[:, :15], heads)
