"""The lifter network: paper sizes (Table IX), TA length-agnostic, module positions, heads, loss terms,
flip symmetry of the test-time flip, and the COCO-17 -> H36M-17 predictor path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poseops.models import create_model
from poseops.models.lifter import (
    FLIP_PERMUTATION,
    TemporalAttentionModule,
    flip_2d,
    flip_3d,
)
from poseops.skeletons import COCO17, H36M17

pytestmark = pytest.mark.usefixtures("one_thread")


def count(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize(
    ("frames", "modules", "paper"),
    [(9, False, 9.59), (81, False, 9.60), (9, True, 9.85), (81, True, 9.86)],
)
def test_paper_size_matches_table_ix_within_5_percent(frames, modules, paper):
    """Table IX: PoseFormer 9.59/9.60M (T = 9/81, no SA/TA), the paper's model 9.85/9.86M (SA + TA)."""
    model = create_model("lifter", "paper", frames=frames, sa=modules, ta=modules)
    assert abs(count(model) - paper) / paper <= 0.05


def test_sa_and_ta_add_a_few_hundred_thousand_parameters():
    off = count(create_model("lifter", "paper", sa=False, ta=False))
    on = count(create_model("lifter", "paper"))
    assert 0.1 < on - off < 0.5  # the paper's +0.26M


def test_ta_runs_at_any_length_with_the_same_weights():
    torch.manual_seed(0)
    ta = TemporalAttentionModule(dim=64, inner=16, softmax=False, layer_scale=1.0).eval()
    outs = {}
    for T in (9, 27, 81):
        z = torch.randn(2, T, 64)
        out = ta(z)
        assert out.shape == z.shape and torch.isfinite(out).all()
        outs[T] = out
        corr = ta.correlation(z)
        assert corr.shape == (2, T, T)
        assert not torch.allclose(corr.sum(-1), torch.ones(2, T))  # no softmax by default
    # the same frames give the same output whatever the window's length, when the window is one frame
    # repeated (the correlation is normalised by T)
    frame = torch.randn(1, 1, 64)
    assert torch.allclose(
        ta(frame.expand(1, 9, 64))[0, 0], ta(frame.expand(1, 81, 64))[0, 0], atol=1e-5
    )


def test_ta_softmax_flag_makes_rows_sum_to_one():
    ta = TemporalAttentionModule(dim=32, inner=8, softmax=True, layer_scale=1.0)
    corr = ta.correlation(torch.randn(3, 27, 32))
    assert torch.allclose(corr.sum(-1), torch.ones(3, 27), atol=1e-5)


@pytest.mark.parametrize("position", ["pre_msa", "post_msa", "post_mlp"])
def test_module_positions_give_different_functions(position):
    torch.manual_seed(0)
    model = create_model("lifter", "tiny", sa_pos=position, ta_pos=position, layer_scale_init=1.0)
    state = model.state_dict()
    x = torch.randn(2, 9, 17, 2)
    outs = {}
    for other in ("pre_msa", "post_msa", "post_mlp"):
        m = create_model("lifter", "tiny", sa_pos=other, ta_pos=other, layer_scale_init=1.0).eval()
        m.load_state_dict(state)
        outs[other] = m(x)
    for other, out in outs.items():
        if other != position:
            assert not torch.allclose(out, outs[position])


def test_heads_and_shapes():
    x = torch.randn(3, 9, 17, 2)
    assert create_model("lifter", "tiny")(x).shape == (3, 17, 3)
    assert create_model("lifter", "tiny", head="seq2seq")(x).shape == (3, 9, 17, 3)
    with pytest.raises(ValueError, match="T = 9"):
        create_model("lifter", "tiny")(torch.randn(1, 27, 17, 2))


def test_loss_terms():
    model = create_model("lifter", "tiny", head="seq2seq", lambda_t=0.5, lambda_m=2.0)
    target = torch.zeros(2, 9, 17, 3)
    out = torch.ones(2, 9, 17, 3)
    terms = model.loss(out, {"target": target})
    assert terms["mpjpe"].item() == pytest.approx(3**0.5)
    assert terms["temporal"].item() == pytest.approx(0.0) and terms[
        "velocity"
    ].item() == pytest.approx(0.0)
    moving = torch.arange(9.0)[None, :, None, None].expand(2, 9, 17, 3)
    terms = model.loss(moving, {"target": target})
    assert terms["temporal"].item() == pytest.approx(3**0.5)
    assert terms["loss"].item() == pytest.approx(terms["mpjpe"].item() + 2.5 * 3**0.5, rel=1e-5)
    masked = model.loss(out, {"target": target, "weight": torch.zeros(2, 9, 17)})
    assert masked["mpjpe"].item() == 0.0


def test_flip_swaps_left_and_right_and_is_an_involution():
    left, right = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]
    assert [FLIP_PERMUTATION[i] for i in left] == right
    x = torch.randn(2, 9, 17, 2)
    y = torch.randn(2, 17, 3)
    assert torch.equal(flip_2d(flip_2d(x, FLIP_PERMUTATION), FLIP_PERMUTATION), x)
    assert torch.equal(flip_3d(flip_3d(y, FLIP_PERMUTATION), FLIP_PERMUTATION), y)
    assert torch.equal(flip_2d(x, FLIP_PERMUTATION)[..., 4, 0], -x[..., 1, 0])


def test_flip_test_prediction_is_mirror_symmetric():
    """With flip averaging, lifting the mirrored input gives the mirrored pose (VideoPose3D's test-time
    augmentation makes the predictor equivariant to the flip)."""
    torch.manual_seed(0)
    model = create_model("lifter", "tiny").eval()
    x = torch.randn(2, 9, 17, 2) * 0.3
    a = model.predict(x, flip_test=True)
    b = model.predict(flip_2d(x, FLIP_PERMUTATION), flip_test=True)
    assert torch.allclose(flip_3d(b, FLIP_PERMUTATION), a, atol=1e-4)
    assert torch.equal(a[:, 0], torch.zeros(2, 3))  # root-relative


def test_predictor_maps_coco17_and_pads_short_tracks():
    from poseops.tasks.lifting_sequence import LifterPredictor

    torch.manual_seed(0)
    model = create_model("lifter", "tiny").eval()
    predictor = LifterPredictor(model, "poseops-lifter", "1", flip_test=False)
    rng = np.random.default_rng(0)
    coco = np.concatenate([rng.uniform(100, 300, (5, 17, 2)), np.ones((5, 17, 1))], -1)
    out = predictor.lift(coco, (400, 400), "coco17")
    assert len(out["keypoints_3d"]) == H36M17.num_keypoints and out["frame"] == 2
    assert out["joints"] == list(H36M17.keypoints)
    # the H36M-17 pelvis of the COCO track is the mid-hip point: same as giving it mapped by hand
    from poseops.skeletons import map_keypoints

    mapped, _ = map_keypoints(coco[..., :2], COCO17, H36M17)
    same = predictor.lift(np.concatenate([mapped, np.ones((5, 17, 1))], -1), (400, 400), "h36m17")
    assert np.allclose(out["keypoints_3d"], same["keypoints_3d"])


def test_a_fresh_lifter_predicts_near_the_root():
    """The head's small init (Liu et al. 2022, head_init_scale): an untrained lifter's outputs are a few
    cm, not PyTorch's default ~1 m a joint (measured: 680 mm first-epoch loss, 230 mm with it)."""
    torch.manual_seed(0)
    out = create_model("lifter", "smoke", frames=9)(torch.randn(4, 9, 17, 2))
    assert out.abs().max() < 0.1  # target units (m)
    assert out.abs().max() > 0  # not zero: the flip and module-position tests need a live function
