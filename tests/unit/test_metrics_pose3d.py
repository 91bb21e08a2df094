"""MPJPE family against hand-computed cases."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from poseops.errors import DataError
from poseops.metrics import (
    acceleration_error,
    auc3d,
    mpjpe,
    mpjve,
    n_mpjpe,
    p_mpjpe,
    pck3d,
    procrustes_align,
)


def _pose(rng, joints=17):
    return rng.normal(0, 300, (joints, 3))


def test_mpjpe_by_hand():
    gt = np.zeros((2, 3, 3))
    gt[:, 1] = [100, 0, 0]
    gt[:, 2] = [0, 100, 0]
    pred = gt.copy()
    pred[0, 1] += [0, 30, 40]  # frame 0: errors 0, 50, 0 -> 50/3
    pred[1] += [7, 7, 7]  # frame 1: pure translation -> 0 after root alignment
    assert mpjpe(pred, gt).value == pytest.approx(25 / 3)
    assert mpjpe(pred, gt, root=None).value == pytest.approx((50 / 3 + np.sqrt(147)) / 2)
    # root 1 (the joint that moved in frame 0): the other two joints are now 50 mm off.
    assert mpjpe(pred, gt, root=1).value == pytest.approx((100 / 3) / 2)
    protocol = mpjpe(pred, gt).protocol
    assert protocol["root_joint"] == 0 and protocol["alignment"] == "root-relative"
    assert protocol["averaging"].startswith("frame")


def test_sequence_versus_frame_averaging():
    gt = np.zeros((4, 2, 3))
    pred = gt.copy()
    pred[:3, 1] = [0, 0, 10]  # sequence a (3 frames): per-frame error 5
    pred[3, 1] = [0, 0, 40]  # sequence b (1 frame): per-frame error 20
    ids = ["a", "a", "a", "b"]
    assert mpjpe(pred, gt, sequence_ids=ids, averaging="frame").value == pytest.approx(
        (5 * 3 + 20) / 4
    )
    result = mpjpe(pred, gt, sequence_ids=ids, averaging="sequence")
    assert result.value == pytest.approx((5 + 20) / 2)
    assert (
        result.protocol["averaging"].startswith("sequence")
        and result.protocol["num_sequences"] == 2
    )


def test_p_mpjpe_is_zero_for_similarity_transform_and_not_for_mirror():
    rng = np.random.default_rng(0)
    gt = np.stack([_pose(rng) for _ in range(4)])
    rotation = Rotation.from_euler("xyz", [30, -50, 110], degrees=True).as_matrix()
    moved = 1.7 * gt @ rotation.T + np.array([250.0, -40.0, 3000.0])
    assert mpjpe(moved, gt).value > 100
    assert p_mpjpe(moved, gt).value == pytest.approx(0.0, abs=1e-8)
    assert np.allclose(procrustes_align(moved, gt), gt, atol=1e-8)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a reflection is not a rotation
    assert p_mpjpe(mirrored, gt).value > 50
    # ...while an orthogonal fit allowed to reflect maps it exactly onto the ground truth.
    x, y = mirrored[0] - mirrored[0].mean(0), gt[0] - gt[0].mean(0)
    u, _, vt = np.linalg.svd(x.T @ y)
    assert np.allclose(x @ (u @ vt), y, atol=1e-6)


def test_p_mpjpe_by_hand_on_a_planar_case():
    # gt: square corners; pred: the same square with one corner pushed out. The optimal similarity
    # for a symmetric perturbation of a square along its diagonal keeps orientation, so the residual
    # can be computed by hand: scale fit s = sum(x.y)/sum(x.x) on centred points.
    gt = np.array([[[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]]], float)
    pred = np.array([[[2, 2, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]]], float)
    centred_pred = pred[0] - pred[0].mean(0)
    centred_gt = gt[0] - gt[0].mean(0)
    # symmetric about the x=y diagonal, so the optimal rotation is the identity
    s = (centred_pred * centred_gt).sum() / (centred_pred**2).sum()
    expected = np.linalg.norm(s * centred_pred - centred_gt, axis=1).mean()
    assert p_mpjpe(pred, gt).value == pytest.approx(expected, rel=1e-9)
    # Procrustes minimises the squared error: never worse than leaving the prediction as it is
    assert ((procrustes_align(pred, gt) - gt) ** 2).sum() < ((pred - gt) ** 2).sum()


def test_n_mpjpe_removes_scale_only():
    rng = np.random.default_rng(1)
    gt = np.stack([_pose(rng) for _ in range(3)])
    assert n_mpjpe(0.5 * gt, gt).value == pytest.approx(0.0, abs=1e-9)
    rotation = Rotation.from_euler("z", 40, degrees=True).as_matrix()
    assert n_mpjpe(gt @ rotation.T, gt).value > 10


def test_velocity_and_acceleration_errors_by_hand():
    t = np.arange(5, dtype=float)
    gt = np.zeros((5, 1, 3))
    gt[:, 0, 0] = 10 * t  # constant velocity
    pred = gt.copy()
    pred[:, 0, 0] = 10 * t + np.array([0, 0, 6, 0, 0])  # one jittered frame
    # velocity errors along x: 0, 6, -6, 0 -> mean |.| = 3 ; accel errors: 6, -12, 6 -> mean 8
    assert mpjve(pred, gt).value == pytest.approx(3.0)
    assert acceleration_error(pred, gt).value == pytest.approx(8.0)
    # a constant offset has no velocity error; sequence boundaries are not differenced across
    shifted = gt + 100
    assert mpjve(shifted, gt).value == 0.0
    jump = np.concatenate([gt, gt + 1000])
    assert mpjve(jump, jump * 0 + jump, sequence_ids=[0] * 5 + [1] * 5).value == 0.0
    assert (
        mpjve(
            jump + np.concatenate([gt * 0, gt * 0 + 500]), jump, sequence_ids=[0] * 5 + [1] * 5
        ).value
        == 0.0
    )
    assert (
        mpjve(jump + np.concatenate([gt * 0, gt * 0 + 500]), jump).value > 0
    )  # one sequence: the jump counts
    with pytest.raises(DataError, match="shorter"):
        acceleration_error(pred[:2], gt[:2])


def test_pck3d_and_auc3d():
    gt = np.zeros((1, 4, 3))
    pred = gt.copy()
    pred[0, 1:, 2] = [100, 150, 200]  # root-relative errors 0, 100, 150, 200
    assert pck3d(pred, gt).value == pytest.approx(3 / 4)
    expected = np.mean([np.mean(np.array([0, 100, 150, 200]) <= t) for t in range(0, 151, 5)])
    assert auc3d(pred, gt).value == pytest.approx(expected)


def test_bad_3d_inputs():
    rng = np.random.default_rng(2)
    gt = np.stack([_pose(rng) for _ in range(2)])
    with pytest.raises(DataError, match="pred"):
        mpjpe(gt[:, :16], gt)
    bad = gt.copy()
    bad[1, 3, 2] = np.nan
    with pytest.raises(DataError, match=r"pred.*\[1, 3\]"):
        p_mpjpe(bad, gt)
    with pytest.raises(DataError, match="root"):
        mpjpe(gt, gt, root=40)
    with pytest.raises(DataError, match="sequence_ids"):
        mpjpe(gt, gt, sequence_ids=[0, 0, 1])
    with pytest.raises(DataError, match="averaging"):
        mpjpe(gt, gt, averaging="clip")


def _videopose3d_p_mpjpe(predicted, target):
    """VideoPose3D's reference implementation (facebookresearch/VideoPose3D, common/loss.py), restated."""
    mu_x, mu_y = target.mean(axis=1, keepdims=True), predicted.mean(axis=1, keepdims=True)
    x0, y0 = target - mu_x, predicted - mu_y
    norm_x = np.sqrt((x0**2).sum(axis=(1, 2), keepdims=True))
    norm_y = np.sqrt((y0**2).sum(axis=(1, 2), keepdims=True))
    x0, y0 = x0 / norm_x, y0 / norm_y
    u, s, vt = np.linalg.svd(np.matmul(x0.transpose(0, 2, 1), y0))
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    sign_det = np.sign(np.expand_dims(np.linalg.det(r), axis=1))
    v[:, :, -1] *= sign_det
    s[:, -1] *= sign_det.flatten()
    r = np.matmul(v, u.transpose(0, 2, 1))
    a = np.expand_dims(s.sum(axis=1, keepdims=True), 2) * norm_x / norm_y
    t = mu_x - a * np.matmul(mu_y, r)
    aligned = a * np.matmul(predicted, r) + t
    return np.linalg.norm(aligned - target, axis=-1).mean()


def test_p_mpjpe_matches_videopose3d_reference_on_noisy_poses():
    rng = np.random.default_rng(3)
    gt = np.stack([_pose(rng) for _ in range(20)])
    rotation = Rotation.random(random_state=4).as_matrix()
    pred = 0.8 * gt @ rotation.T + 50 + rng.normal(0, 40, gt.shape)
    pred[:5] *= np.array([-1.0, 1.0, 1.0])  # some frames mirrored
    assert p_mpjpe(pred, gt).value == pytest.approx(_videopose3d_p_mpjpe(pred, gt), rel=1e-9)


def test_local_procrustes_agrees_with_poseops_geometry():
    geometry = pytest.importorskip("poseops.geometry")
    if not hasattr(geometry, "procrustes_align"):
        pytest.skip("poseops.geometry has no procrustes_align")
    rng = np.random.default_rng(5)
    gt = np.stack([_pose(rng) for _ in range(6)])
    pred = 1.3 * gt @ Rotation.random(random_state=6).as_matrix().T + rng.normal(0, 30, gt.shape)
    pred[:2] *= np.array([1.0, -1.0, 1.0])
    assert np.allclose(
        procrustes_align(pred, gt), np.asarray(geometry.procrustes_align(pred, gt)), atol=1e-6
    )
