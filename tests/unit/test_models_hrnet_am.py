"""hrnet_am model family: paper size, AM placements, shapes, decoding, flip test, overfitting a batch."""

import pytest
import torch

from poseops.codecs.integral import (
    argmax_decode,
    dark_decode,
    gaussian_heatmaps,
    to_norm,
    to_pixels,
)
from poseops.errors import ConfigError
from poseops.models import create_model, list_models
from poseops.models.hrnet_am import AM_LAYOUTS, AttentionModule
from poseops.skeletons import get_skeleton

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return create_model("hrnet_am", "tiny", **overrides)


def test_registered_and_config_checks():
    assert "hrnet_am" in list_models()
    with pytest.raises(ConfigError):
        create_model("hrnet_am", "tiny", input_size=48)  # not a multiple of 32
    with pytest.raises(ConfigError):
        create_model("hrnet_am", "tiny", am_layout="5")


@pytest.mark.parametrize(("preset", "paper_millions"), [("paper", 28.5), ("w48", 63.6)])
def test_paper_sizes_without_attention(preset, paper_millions):
    """Sun et al., 2019, Table 1 (and the lifting paper's Table I, HRNet rows): W32 28.5M, W48 63.6M at
    256x192. Those counts are the plain pose_hrnet: am_layout none."""
    model = create_model("hrnet_am", preset, am_layout="none")
    assert abs(n_params(model) / 1e6 - paper_millions) <= 0.03 * paper_millions
    heatmaps = model.eval()(torch.zeros(1, 3, 256, 192))["heatmaps"] if preset == "paper" else None
    if heatmaps is not None:
        assert heatmaps.shape == (1, 17, 64, 48)


def test_each_placement_changes_the_parameter_count():
    counts = {layout: n_params(tiny(am_layout=layout)) for layout in AM_LAYOUTS}
    assert counts["none"] < counts["4"] < counts["9"]
    assert len(tiny(am_layout="4").attention) == 4 and len(tiny(am_layout="9").attention) == 9
    # CAM C -> C/16 -> C with biases, SAM two 3x3 convs 1 -> 1 with biases
    assert n_params(AttentionModule(64, 16)) == (64 * 4 + 4) + (4 * 64 + 64) + 2 * 10


@pytest.mark.parametrize("layout", list(AM_LAYOUTS))
def test_output_shapes_and_every_layout_changes_the_output(layout):
    model = tiny(am_layout=layout).eval()
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    assert model(images)["heatmaps"].shape == (2, 17, 16, 24)
    keypoints, scores = model.predict(images)
    assert keypoints.shape == (2, 17, 2) and scores.shape == (2, 17)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_placements_change_the_output():
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    outputs = {layout: tiny(am_layout=layout).eval()(images)["heatmaps"] for layout in AM_LAYOUTS}
    assert not torch.allclose(outputs["none"], outputs["4"])
    assert not torch.allclose(outputs["4"], outputs["9"])


@pytest.mark.parametrize("decoder", [argmax_decode, dark_decode])
def test_decoders_recover_a_gaussian_peak(decoder):
    # input px of a 64x96 (w x h) crop, away from the border (near it: test_decode_round_trip.py)
    truth = torch.tensor([[[30.2, 50.9], [40.0, 37.7], [25.6, 60.3]]])
    maps = gaussian_heatmaps(to_norm(truth, (64, 96)), (16, 24), 2.0)
    decoded, peaks = decoder(maps)
    error = (to_pixels(decoded, (64, 96)) - truth).abs().max().item()
    assert error < (1.2 if decoder is argmax_decode else 0.05)  # argmax: a quarter cell is 1 px
    assert peaks.min() > 0.8


def test_loss_respects_visibility_weights():
    model = tiny()
    images = torch.randn(2, 3, 32, 32)
    target = torch.rand(2, 17, 2) - 0.5
    out = model(images)
    full = model.loss(out, {"target_norm": target, "weight": torch.ones(2, 17)})["loss"]
    moved = target.clone()
    moved[:, 3] = -moved[:, 3]
    weight = torch.ones(2, 17)
    weight[:, 3] = 0
    a = model.loss(out, {"target_norm": target, "weight": weight})["loss"]
    b = model.loss(out, {"target_norm": moved, "weight": weight})["loss"]
    assert torch.isclose(a, b) and not torch.isclose(a, full)


def test_a_tiny_model_overfits_a_fixed_batch():
    """~4 s: 100 Adam steps are what a heatmap MSE needs before the peaks stand out of the background."""
    model = tiny(seed=0, width=8, stem_width=16)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 32, 32, generator=g)
    target = (torch.rand(2, 17, 2, generator=g) - 0.5) * 0.8
    batch = {"target_norm": target, "weight": torch.ones(2, 17)}
    all_zero = model.loss({"heatmaps": torch.zeros(2, 17, 8, 8)}, batch)[
        "loss"
    ].item()  # predicting no peak at all
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(100):
        loss = model.loss(model(images), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # train mode (BN batch statistics): the function that was fitted
        xy, _ = argmax_decode(model(images)["heatmaps"])
    assert loss.item() < 0.25 * all_zero
    error_px = ((xy - target) * 32).norm(dim=-1).mean().item()
    assert error_px < 5.0  # 8x8 heatmaps (a cell is 4 px); a guess at the centre is ~9 px off


def test_flip_test_gives_the_mirrored_result():
    """A mirrored crop's flip-tested prediction is the original's, mirrored with left/right swapped."""
    model = tiny(seed=3).eval()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    permutation = list(get_skeleton("coco17").flip_permutation())
    maps = model.heatmaps(images, flip_test=True)
    maps_mirrored = model.heatmaps(images.flip(-1), flip_test=True)
    assert torch.allclose(maps_mirrored, maps.flip(-1)[:, permutation], atol=1e-6)
    xy, _ = model.predict(images, flip_test=True)
    xy_mirrored, _ = model.predict(images.flip(-1), flip_test=True)
    expected = xy[:, permutation].clone()
    expected[..., 0] = 31 - expected[..., 0]
    # the quarter-cell shift follows the neighbours, which mirror too: equal up to ties
    assert ((xy_mirrored - expected).abs() < 1e-4).float().mean() > 0.9
    assert not torch.allclose(model.heatmaps(images, flip_test=False), maps)
