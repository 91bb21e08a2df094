"""vmhpe model family: presets, every switch matters, loss/gradients, predict API, flip test, overfit."""

import pytest
import torch

from poseops.codecs.bottomup import encode_targets
from poseops.errors import ConfigError
from poseops.models import create_model, list_models
from poseops.models.vmhpe import IMAGE_MEAN, info_nce, preprocess, target_kwargs

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return create_model("vmhpe", "tiny", **overrides)


def people(count, size, g):
    """[P,17,3]: people around separate anchors, keypoints within +-size/6 of each."""
    anchors = torch.tensor([[0.3, 0.3], [0.7, 0.7], [0.7, 0.3]])[:count] * size
    xy = anchors[:, None, :] + (torch.rand(count, 17, 2, generator=g) - 0.5) * size / 3
    return torch.cat([xy, torch.full((count, 17, 1), 2.0)], dim=-1)


def fixed_batch(config, batch=2, per_image=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = config.input_size
    keypoints = [people(per_image, size, g) for _ in range(batch)]
    images = torch.randn(batch, 3, size, size, generator=g)
    return images, keypoints, encode_targets(keypoints, **target_kwargs(config))


def eval_loss(model, seed=0):
    """Loss on a fixed batch with the model in eval mode (no jitter, BN running stats): deterministic."""
    images, _, targets = fixed_batch(model.config, seed=seed)
    model.eval()
    with torch.no_grad():
        terms = model.loss(model(images), {"targets": targets})
    return terms["loss"].item(), {name: float(value.detach()) for name, value in terms.items()}


def test_registered_and_presets():
    assert "vmhpe" in list_models()
    with pytest.raises(ConfigError):
        create_model("vmhpe", "tiny", input_size=100)
    with pytest.raises(ConfigError):
        create_model("vmhpe", "tiny", no_such_knob=1)


def test_paper_preset_is_hrnet_w32_at_512():
    torch.manual_seed(0)
    model = create_model("vmhpe", "paper")
    cfg = model.config
    assert (
        cfg.input_size == 512
        and cfg.heatmap_size == 128
        and cfg.embed_dim == 16
        and cfg.components == "both"
    )
    assert len(model.backbone.state_dict()) == 1830 and n_params(model.backbone) == 29_305_536
    assert model.feature_dim == 480 and model.irl.out_channels == 18


def test_forward_shapes_tiny():
    model = tiny()
    images, _, targets = fixed_batch(model.config)
    out = model(images, targets)
    h = model.config.heatmap_size
    assert out["heatmaps"].shape == (2, 18, h, h) and out["global"].shape == (2, 8, h, h)
    assert out["features"].shape == (2, model.feature_dim, h, h) and out["fused"].shape == (
        2,
        8,
        h,
        h,
    )
    assert out["instance_heatmaps"].shape == (4, 17, h, h)
    assert out["heatmaps"].min() >= 1e-4 and out["heatmaps"].max() <= 1 - 1e-4


def test_components_and_embed_dim_all_change_the_parameter_count():
    counts = {
        (c, e): n_params(tiny(components=c, embed_dim=e))
        for c in ("none", "mfcm", "mffm", "both")
        for e in (8, 16, 32)
    }
    counts[("cid", 32)] = n_params(tiny(components="cid", embed_dim=32))
    assert len(set(counts.values())) == 13, counts
    for e in (8, 16, 32):
        assert counts[("none", e)] < counts[("mfcm", e)] < counts[("both", e)]
        assert counts[("none", e)] < counts[("mffm", e)] < counts[("both", e)]


@pytest.mark.parametrize(
    "knob, value",
    [
        ("ke_type", "unet"),
        ("mffm_inputs", "cs_branches"),
        ("mfcm_scales", (1,)),
        ("mfcm_reduction", 4),
        ("mffm_kernels", (3,)),
        ("spatial_hidden", 8),
    ],
)
def test_architecture_knobs_change_the_parameter_count(knob, value):
    assert n_params(tiny(**{knob: value})) != n_params(tiny())


@pytest.mark.parametrize(
    "knob, value",
    [
        ("contrastive_w", 1.0),
        ("temperature", 0.2),
        ("contrastive", "image"),
        ("heatmap_loss", "mse"),
        ("attn_l1_w", 0.1),
        ("instance_heatmap_w", 1.0),
        ("multi_heatmap_w", 2.0),
        ("mfcm_lambda_init", 0.1),
        ("mffm_max_kv", 2),
    ],
)
def test_loss_knobs_change_the_loss_on_a_fixed_batch(knob, value):
    base, _ = eval_loss(tiny())
    changed, _ = eval_loss(tiny(**{knob: value}))
    assert abs(changed - base) > 1e-6 * abs(base), (knob, base, changed)


def test_in_image_contrastive_is_zero_for_one_person_and_batch_form_is_not():
    features = torch.randn(3, 16)
    positives = features + 0.1 * torch.randn(3, 16)
    one_per_image = torch.tensor([0, 1, 2])
    assert info_nce(features, positives, one_per_image, 0.07, "image").item() == 0.0
    assert info_nce(features, positives, one_per_image, 0.07, "batch").item() > 0.0


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"components": "none"},
        {"components": "cid"},
        {"ke_type": "unet", "mffm_inputs": "cs_branches"},
    ],
)
def test_loss_is_finite_and_every_parameter_gets_a_gradient(overrides):
    model = tiny(**overrides).train()
    images, _, targets = fixed_batch(model.config)
    terms = model.loss(model(images), {"targets": targets})  # instance branch computed inside loss
    loss, parts = terms["loss"], {name: float(value.detach()) for name, value in terms.items()}
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {
        "loss_multi",
        "loss_instance",
        "loss_contrastive",
        "loss_attention",
        "loss",
    }
    assert all(parts[k] > 0 for k in ("loss_multi", "loss_instance", "loss_contrastive"))
    no_grad = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert no_grad == []


def test_loss_with_no_people_is_finite():
    model = tiny().train()
    images = torch.randn(2, 3, 64, 64)
    targets = encode_targets([torch.zeros(0, 17, 3)] * 2, **target_kwargs(model.config))
    terms = model.loss(model(images), {"targets": targets})
    loss, parts = terms["loss"], {name: float(value.detach()) for name, value in terms.items()}
    loss.backward()
    assert torch.isfinite(loss) and parts["loss_instance"] == 0.0


def test_max_instances_caps_the_instance_branch():
    model = tiny(max_instances=3).train()
    images, _, targets = fixed_batch(model.config, batch=2, per_image=3)
    out = model(images, targets)
    assert len(targets["instance_image"]) == 6 and out["instance_heatmaps"].shape[0] == 3
    assert torch.isfinite(model.loss(out, {"targets": targets})["loss"])


@pytest.mark.parametrize("flip_test", [False, True])
def test_predict_returns_people_per_image(flip_test):
    model = tiny(max_people=5, centre_threshold=0.0).train()
    images = torch.randn(3, 3, 64, 96)
    results = model.predict(images, flip_test=flip_test)
    assert model.training  # mode restored
    assert len(results) == 3
    for r in results:
        p = r["scores"].shape[0]
        assert 1 <= p <= 5
        assert r["keypoints"].shape == (p, 17, 2) and r["keypoint_scores"].shape == (p, 17)
        # inside the image, which spans [-0.5, W - 0.5] (pixel centres at integers, `poseops.codecs`)
        assert (r["keypoints"][..., 0] >= -0.5).all() and (r["keypoints"][..., 0] <= 95.5).all()
        assert (r["keypoints"][..., 1] >= -0.5).all() and (r["keypoints"][..., 1] <= 63.5).all()


def test_preprocess_accepts_hwc_and_chw():
    hwc = torch.full((1, 32, 32, 3), 255, dtype=torch.uint8)
    x = preprocess(hwc)
    assert x.shape == (1, 3, 32, 32)
    assert torch.allclose(x[0, 0, 0, 0], torch.tensor((1 - IMAGE_MEAN[0]) / 0.229))
    assert torch.equal(preprocess(hwc.permute(0, 3, 1, 2)), x)


def test_tiny_overfits_a_fixed_batch_and_finds_the_people():
    model = tiny(seed=1, centre_jitter=0).train()
    images, keypoints, targets = fixed_batch(model.config, batch=2, per_image=2, seed=3)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        loss = model.loss(model(images), {"targets": targets})["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.1 * sum(losses[:5]) / 5, (losses[:5], losses[-5:])
    results = model.predict(images)
    for result, truth in zip(results, keypoints):
        assert len(result["scores"]) >= 2
        # mean keypoint error (input px, 64-px input, stride 4) of the best prediction for each person
        error = (
            (result["keypoints"][:, None] - truth[None, :, :, :2]).norm(dim=-1).mean(dim=-1)
        )  # [pred, person]
        assert (error.min(dim=0).values < 6.0).all(), error  # 1.5 heatmap cells
        assert torch.equal(
            error.argmin(dim=0).sort().values, error.argmin(dim=0).unique()
        )  # distinct predictions


def test_config_round_trips_through_a_plain_dict():
    from poseops.models import build_from_config

    model = tiny(components="mffm", embed_dim=16, modules=(1, 1, 1))
    rebuilt = build_from_config("vmhpe", model.config.model_dump(mode="json"))
    assert rebuilt.config == model.config and n_params(rebuilt) == n_params(model)


def test_cid_is_cids_own():
    """`components: cid` is CID (Wang, Zhang, 2022): its gating channel attention and single spatial mask, a
    plain 1x1 reduction, no MFCM/MFFM, in-image contrastive loss at tau 0.05 with weight 1, E 32; a CID loss
    setting that is not CID's is refused."""
    from poseops.models import resolve_config
    from poseops.models.blocks.attention import CIDChannelAttention, CIDSpatialAttention

    assert resolve_config("vmhpe", None, components="cid").embed_dim == 32  # a preset's E stays
    model = tiny(components="cid")
    cfg = model.config
    assert (cfg.contrastive, cfg.temperature, cfg.contrastive_w) == ("image", 0.05, 1.0)
    assert isinstance(model.channel_attention, CIDChannelAttention)
    assert isinstance(model.spatial_attention, CIDSpatialAttention)
    assert (
        model.mfcm is None and model.mffm is None and isinstance(model.conv_down, torch.nn.Conv2d)
    )
    assert n_params(model) != n_params(tiny(components="none"))
    with pytest.raises(ConfigError, match="CID's own"):
        tiny(components="cid", contrastive="batch")
    # the loss differs from `none` with CID's loss settings: the attentions differ, not only the loss
    none_cid_loss, _ = eval_loss(
        tiny(components="none", contrastive="image", temperature=0.05, contrastive_w=1.0)
    )
    cid_loss, terms = eval_loss(model)
    assert abs(cid_loss - none_cid_loss) > 1e-6 and terms["loss_contrastive"] > 0


def test_mse_heatmap_loss_sums_per_eq_29():
    """MSE: squared errors summed over keypoints and cells, averaged over the maps (Eq. 29), not a per-pixel mean."""
    from poseops.models.vmhpe import heatmap_loss

    pred, target = torch.full((3, 2, 4, 4), 0.5), torch.zeros(3, 2, 4, 4)
    assert heatmap_loss(pred, target, torch.ones(3, 2, 1, 1), "mse").item() == pytest.approx(
        2 * 16 * 0.25
    )
    weight = torch.ones(3, 2, 1, 1)
    weight[:, 1] = 0
    assert heatmap_loss(pred, target, weight, "mse").item() == pytest.approx(16 * 0.25)


def test_paper_preset_uses_the_unet_ke():
    from poseops.models import resolve_config
    from poseops.models.vmhpe import UNetHead

    cfg = resolve_config("vmhpe", "paper")
    assert cfg.ke_type == "unet" and cfg.ke_widths == (64, 128, 256, 512)
    assert isinstance(tiny(ke_type="unet").ke, UNetHead)
