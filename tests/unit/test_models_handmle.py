"""handmle model family: presets, shapes, loss switches, predict API, and a tiny overfit run."""

import pytest
import torch

from poseops.codecs.integral import to_norm
from poseops.errors import ConfigError
from poseops.models import build_from_config, create_model, list_models
from poseops.models.blocks.resnet import ResNetTrunk
from poseops.models.handmle import IMAGE_MEAN, IMAGE_STD, preprocess

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return create_model("handmle", "tiny", **overrides)


def fixed_batch(size=32, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=g)
    target_px = torch.rand(batch, 21, 2, generator=g) * (size * 0.75) + size * 0.125
    return images, target_px, to_norm(target_px, size), torch.ones(batch, 21)


def test_registered():
    assert "handmle" in list_models()


def test_paper_preset_is_the_papers_network():
    torch.manual_seed(0)
    model = create_model("handmle", "paper").eval()
    assert (
        model.config.input_size == 256
        and model.config.num_stages == 5
        and model.config.flow_couplings == 6
    )
    assert len(model.backbone.state_dict()) == 318
    assert n_params(model.backbone) == 23_508_032
    assert all(stage.flow.couplings == 6 for stage in model.stages)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert out["mu"].shape == (5, 1, 21, 2) and out["sigma"].shape == (5, 1, 21, 2)
    assert out["heatmaps"].shape == (5, 1, 21, 64, 64)
    assert out["mu"].abs().max() <= 0.5 and (out["sigma"] > 0).all()


@pytest.mark.parametrize("profile", ["smoke", "tiny"])
def test_small_presets_have_quarter_resolution_heatmaps(profile):
    model = create_model("handmle", profile)
    size, t = model.config.input_size, model.config.num_stages
    out = model(torch.randn(2, 3, size, size))
    assert out["heatmaps"].shape == (t, 2, 21, size // 4, size // 4)
    assert out["mu"].shape == (t, 2, 21, 2)


@pytest.mark.parametrize("loss_type", ["mle", "integral_l1", "heatmap_l2"])
@pytest.mark.parametrize("flow_mode", ["direct", "residual"])
def test_every_loss_is_finite_with_gradients(loss_type, flow_mode):
    model = tiny(loss_type=loss_type, flow_mode=flow_mode)
    images, _, target, weight = fixed_batch()
    terms = model.loss(model(images), {"target_norm": target, "weight": weight})
    loss, parts = terms["loss"], {name: float(value.detach()) for name, value in terms.items()}
    assert torch.isfinite(loss) and loss.ndim == 0
    assert set(parts) == {"loss_stage1", "loss_stage2", "loss"}
    assert parts["loss"] == pytest.approx(
        parts["loss_stage1"] + parts["loss_stage2"], rel=1e-5, abs=1e-5
    )
    loss.backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert (
        model.stages[1].heatmap_in[0].weight.grad.abs().sum() > 0
    )  # stage 2 sees stage 1's heatmap
    flow_grad = model.stages[0].flow.s[0][0].weight.grad
    if loss_type == "mle":
        assert flow_grad.abs().sum() > 0
        assert model.stages[0].variance_head[-1].weight.grad.abs().sum() > 0
    for p in model.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_switches_change_parameter_count():
    counts = [n_params(tiny(num_stages=t)) for t in (1, 2, 3)]
    assert counts[0] < counts[1] < counts[2]
    couplings = [n_params(tiny(flow_couplings=k)) for k in (0, 2, 4, 6)]
    assert couplings == sorted(set(couplings))
    assert n_params(tiny(backbone_depth=34)) > n_params(tiny())
    assert n_params(tiny(head_width=24)) > n_params(tiny())
    assert n_params(tiny(var_hidden=24)) > n_params(tiny())
    assert n_params(tiny(stage1_heatmap_input=True)) > n_params(tiny())


@pytest.mark.parametrize(
    "switch",
    [
        {"loss_type": "integral_l1"},
        {"loss_type": "heatmap_l2"},
        {"flow_mode": "residual"},
        {"flow_term": "per_keypoint"},
        {"sigma_activation": "softplus"},
        {"stage_input": "logits"},
        {"heatmap_sigma_px": 1.0, "loss_type": "heatmap_l2"},
    ],
)
def test_switches_change_the_loss_on_a_fixed_batch(switch):
    images, _, target, weight = fixed_batch()
    base = {"loss_type": "heatmap_l2"} if "heatmap_sigma_px" in switch else {}
    reference = tiny(**base).loss(tiny(**base)(images), {"target_norm": target, "weight": weight})[
        "loss"
    ]
    model = tiny(**switch)
    switched = model.loss(model(images), {"target_norm": target, "weight": weight})["loss"]
    assert abs(switched.item() - reference.item()) > 1e-4 * max(1.0, abs(reference.item()))


def test_flow_changes_the_mle_loss_once_trained_away_from_identity():
    images, _, target, weight = fixed_batch()
    model = tiny(flow_couplings=2)
    out = model(images)
    before = model.loss(out, {"target_norm": target, "weight": weight})["loss"]
    with torch.no_grad():
        for p in model.stages[0].flow.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    after = model.loss(out, {"target_norm": target, "weight": weight})["loss"]
    assert abs(after.item() - before.item()) > 1e-3


def rle_by_hand(log_phi, sigma, target, mu):
    """RLE's reference loss per keypoint, written out from Li et al. (2021): RegressFlow's
    nf_loss = log(sigma) - log_phi (log_phi [B,K,1] broadcast over both axes) plus RLELoss.logQ =
    log(sigma / amp) + |gt - mu| / (sqrt(2) sigma), amp = 1 / sqrt(2 pi); summed over the axes."""
    import math

    amp = 1 / math.sqrt(2 * math.pi)
    nf_loss = torch.log(sigma) - log_phi[..., None]
    log_q = torch.log(sigma / amp) + (target - mu).abs() / (math.sqrt(2) * sigma + 1e-9)
    return (nf_loss + log_q).sum(-1)


def test_residual_log_q_matches_rle_by_hand():
    """The residual MLE loss equals RLE's formula term by term: log Q's constant is +log sqrt(2 pi) per axis,
    and the flow term counts once per axis (per_axis; per_keypoint counts it once)."""
    model = tiny(flow_mode="residual", flow_couplings=2)
    g = torch.Generator().manual_seed(1)
    mu = torch.rand(3, 21, 2, generator=g) - 0.5
    target = torch.rand(3, 21, 2, generator=g) - 0.5
    sigma = torch.rand(3, 21, 2, generator=g) * 0.3 + 0.05
    flow = model.stages[0].flow
    log_phi = flow.log_prob(((target - mu) / sigma).reshape(-1, 2)).reshape(3, 21)
    mine = model._mle(flow, mu, sigma, target)
    assert torch.allclose(mine, rle_by_hand(log_phi, sigma, target, mu), atol=1e-5)
    once = tiny(flow_mode="residual", flow_couplings=2, flow_term="per_keypoint")
    once.stages[0].flow.load_state_dict(flow.state_dict())
    assert torch.allclose(
        mine - once._mle(once.stages[0].flow, mu, sigma, target), -log_phi, atol=1e-5
    )


def test_direct_flow_term_counts_per_axis():
    """Direct mode: -2 log p(eps) + sum log sigma per keypoint (per_axis), -log p + sum log sigma (per_keypoint)."""
    model = tiny(flow_couplings=2)
    g = torch.Generator().manual_seed(2)
    mu, target = torch.rand(2, 21, 2, generator=g) - 0.5, torch.rand(2, 21, 2, generator=g) - 0.5
    sigma = torch.rand(2, 21, 2, generator=g) * 0.3 + 0.05
    flow = model.stages[0].flow
    log_p = flow.log_prob(((target - mu) / sigma).reshape(-1, 2)).reshape(2, 21)
    expected = -2 * log_p + sigma.log().sum(-1)
    assert torch.allclose(model._mle(flow, mu, sigma, target), expected, atol=1e-5)


def test_predict_stages_gives_every_stage_and_the_last_is_predict():
    model = tiny(num_stages=3)
    images, *_ = fixed_batch()
    stages = model.predict_stages(images)
    assert stages.shape == (3, 4, 21, 2)
    assert torch.allclose(stages[-1], model.predict(images)[0])
    assert not torch.allclose(stages[0], stages[-1])  # each stage has its own head
    assert "mle" in model.loss_description() and "per axis" in model.loss_description()
    assert tiny(loss_type="integral_l1").loss_description().startswith("integral_l1")


def test_loss_respects_keypoint_weights():
    model = tiny()
    images, _, target, weight = fixed_batch()
    out = model(images)
    weight[:, 5] = 0
    moved = target.clone()
    moved[:, 5] += 0.3
    a = model.loss(out, {"target_norm": target, "weight": weight})["loss"]
    b = model.loss(out, {"target_norm": moved, "weight": weight})["loss"]
    assert a.item() == pytest.approx(b.item())
    zero = model.loss(out, {"target_norm": target, "weight": torch.zeros_like(weight)})["loss"]
    assert zero.item() == 0


def test_predict_returns_pixels_and_scores_and_keeps_mode():
    model = tiny()
    model.train()
    images, *_ = fixed_batch()
    for loss_type in ("mle", "integral_l1", "heatmap_l2"):
        model = tiny(loss_type=loss_type).train()
        coords, scores = model.predict(images)
        assert model.training
        assert coords.shape == (4, 21, 2) and scores.shape == (4, 21)
        assert not coords.requires_grad
        assert (coords >= 0).all() and (coords <= 32).all()
        assert (scores >= 0).all() and (scores <= 1).all()


def test_config_rejects_inconsistent_geometry_and_unknown_fields():
    with pytest.raises(ConfigError, match="deconv_layers"):
        create_model(
            "handmle", "tiny", deconv_layers=3
        )  # stride 16 needs 2 deconvs for S/4 heatmaps
    with pytest.raises(ConfigError, match="multiple of the trunk stride"):
        create_model("handmle", "tiny", input_size=40)
    with pytest.raises(ConfigError, match="not_a_field"):
        create_model("handmle", "tiny", not_a_field=1)
    assert (
        create_model("handmle", "tiny", backbone_stages=4, deconv_layers=None).config.deconv_layers
        == 3
    )


def test_rebuild_from_config_dump():
    model = tiny()
    rebuilt = build_from_config("handmle", model.config.model_dump())
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())  # strict: same names and shapes


def test_pretrained_backbone_is_loaded_from_a_local_file(tmp_path):
    source = ResNetTrunk(18, width=8, stages=4)
    state = {**source.state_dict(), "fc.weight": torch.zeros(10, 64), "fc.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "r18.pth")
    model = tiny(pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(model.backbone.layer3[0].conv1.weight, source.layer3[0].conv1.weight)


def test_preprocess_accepts_both_layouts():
    g = torch.Generator().manual_seed(0)
    nhwc = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8, generator=g)
    a = preprocess(nhwc)
    b = preprocess(nhwc.permute(0, 3, 1, 2))
    assert a.shape == (2, 3, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, b)
    expected = (nhwc[0, 1, 2, 0].item() / 255 - IMAGE_MEAN[0]) / IMAGE_STD[0]
    assert a[0, 0, 1, 2].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss_type", ["mle", "integral_l1"])
def test_tiny_model_overfits_one_batch(loss_type):
    model = tiny(loss_type=loss_type)
    images, target_px, target, weight = fixed_batch()
    error_before = (model.predict(images)[0] - target_px).norm(dim=-1).mean().item()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = model.loss(model(images), {"target_norm": target, "weight": weight})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    error_after = (model.predict(images)[0] - target_px).norm(dim=-1).mean().item()
    assert losses[-1] < losses[0] - 0.5 * abs(losses[0])
    assert error_after < 0.4 * error_before, (error_before, error_after)


def test_validation_logs_every_stage_pck():
    """One model shows its stage curve: topdown_crop's validate logs val_pck_stage<t> for every stage, and
    they differ (each stage has its own head); the last stage is val_pck."""
    import numpy as np

    from poseops.tasks import get_task

    model = tiny(num_stages=3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    stage1 = model.predict_stages(model.preprocess(torch.from_numpy(images)))[0].numpy()
    val = {  # labels = stage 1's output, threshold 2e-5 px: stage 1 scores 1, a different stage less
        "image": images,
        "keypoints": stage1.astype(np.float64),
        "keypoints_clean": stage1.astype(np.float64),
        "visibility": np.full((16, 21), 2.0),
        "norm_size": np.full(16, 1e-4),
    }
    numbers = get_task("topdown_crop").validate(model, val)
    assert {"val_pck", "val_pck_stage1", "val_pck_stage2", "val_pck_stage3"} == set(numbers)
    assert numbers["val_pck_stage3"] == pytest.approx(numbers["val_pck"])
    assert numbers["val_pck_stage1"] == 1.0 and numbers["val_pck_stage3"] < 1.0


def test_method_baselines_build_their_own_networks():
    """The comparison's baselines (Lou et al., 2024, Sec. IV-C) as switches: RLE regresses coordinates
    from pooled features (one output, no heatmaps), integral pose has one heatmap head whatever
    num_stages says, CPM adds a 3x3 convolution body to every stage."""
    images, *_ = fixed_batch()
    regression = tiny(method="regression", num_stages=3).eval()
    out = regression(images)
    assert (
        "heatmaps" not in out
        and out["mu"].shape == (1, 4, 21, 2)
        and out["sigma"].shape == (1, 4, 21, 2)
    )
    assert len(regression.stages) == 1 and not hasattr(regression.stages[0], "heatmap_head")
    assert regression.predict_stages(images).shape == (1, 4, 21, 2)
    integral = tiny(method="integral", num_stages=3)
    assert len(integral.stages) == 1 and integral(images)["heatmaps"].shape == (1, 4, 21, 8, 8)
    cpm, sequential = tiny(method="cpm", num_stages=3), tiny(num_stages=3)
    assert len(cpm.stages) == 3 and n_params(cpm) > n_params(sequential)
    assert isinstance(sequential.stages[0].body, torch.nn.Identity)
    assert "RLE-style" in regression.loss_description() and "CPM" in cpm.loss_description()
    with pytest.raises(ConfigError, match="heatmap_l2"):
        tiny(method="regression", loss_type="heatmap_l2")


def test_rle_coordinate_layer_divides_by_the_feature_norm():
    """RLE's fc_coord (Li et al., 2021): x W^T / ||x|| + b, so scaling the pooled features keeps the output."""
    from poseops.models.handmle import NormalisedLinear

    layer = NormalisedLinear(8, 4)
    with torch.no_grad():
        layer.bias.uniform_(-0.1, 0.1)
    x = torch.randn(3, 8)
    expected = x @ layer.weight.t() / x.norm(dim=1, keepdim=True) + layer.bias
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert torch.allclose(layer(5 * x), layer(x), atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        {"method": "regression", "flow_mode": "residual"},
        {"method": "integral", "loss_type": "integral_l1"},
        {"method": "cpm", "loss_type": "heatmap_l2"},
    ],
)
def test_method_baselines_fit_one_batch(overrides):
    model = tiny(**overrides)
    images, target_px, target, weight = fixed_batch()
    error_before = (model.predict(images)[0] - target_px).norm(dim=-1).mean().item()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss = model.loss(model(images), {"target_norm": target, "weight": weight})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    error_after = (model.predict(images)[0] - target_px).norm(dim=-1).mean().item()
    assert error_after < 0.5 * error_before, (overrides, error_before, error_after)
