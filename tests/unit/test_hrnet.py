"""HRNet trunk: the official HRNetV2-W32 layout/counts, knobs, and local pretrained loading."""

import logging

import pytest
import torch

from poseops.errors import CheckpointError
from poseops.models.blocks.hrnet import HRNetTrunk, concat_branches, load_pretrained


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def w32():
    torch.manual_seed(0)
    return HRNetTrunk(width=32)


def test_w32_matches_the_official_layout_counts_and_names(w32):
    state = w32.state_dict()
    assert len(state) == 1830
    assert n_params(w32) == 29_305_536
    assert sum(k.endswith("num_batches_tracked") for k in state) == 305  # one per BatchNorm
    shapes = {
        "conv1.weight": (64, 3, 3, 3),
        "conv2.weight": (64, 64, 3, 3),
        "bn2.running_var": (64,),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.3.conv3.weight": (256, 64, 1, 1),
        "transition1.0.0.weight": (32, 256, 3, 3),
        "transition1.1.0.0.weight": (64, 256, 3, 3),
        "transition2.2.0.0.weight": (128, 64, 3, 3),
        "transition3.3.0.0.weight": (256, 128, 3, 3),
        "stage2.0.branches.1.3.conv2.weight": (64, 64, 3, 3),
        "stage2.0.fuse_layers.0.1.0.weight": (32, 64, 1, 1),
        "stage3.3.fuse_layers.2.0.1.0.weight": (128, 32, 3, 3),
        "stage4.2.branches.3.3.bn2.bias": (256,),
        "stage4.0.fuse_layers.3.0.2.0.weight": (256, 32, 3, 3),
        "stage4.0.fuse_layers.3.0.1.0.weight": (32, 32, 3, 3),
        "stage4.2.fuse_layers.0.3.1.running_mean": (32,),
    }
    for name, shape in shapes.items():
        assert tuple(state[name].shape) == shape, name
    assert not any(
        k.startswith(("transition1.0.1.0", "transition2.0", "transition2.1", "incre", "classifier"))
        for k in state
    )
    assert [len(getattr(w32, f"stage{s}")) for s in (2, 3, 4)] == [1, 4, 3]
    assert w32.out_channels == (32, 64, 128, 256)


@pytest.mark.parametrize("width, size", [(4, (64, 64)), (8, (96, 64)), (4, (72, 100))])
def test_branch_shapes_and_concat_follow_knobs(width, size):
    trunk = HRNetTrunk(width=width, stem_width=8, blocks=1, modules=(1, 1, 1)).eval()
    with torch.no_grad():
        maps = trunk(torch.randn(1, 3, *size))
    assert [m.shape[1] for m in maps] == [width, 2 * width, 4 * width, 8 * width]
    assert maps[0].shape[-2:] == (-(-size[0] // 4), -(-size[1] // 4))
    assert concat_branches(maps).shape == (1, 15 * width, *maps[0].shape[-2:])


def _official_file(trunk, path, with_counters=False):
    """The trunk's tensors (optionally without num_batches_tracked, as in old official files) plus the
    classification heads' keys."""
    state = {
        k: v.clone()
        for k, v in trunk.state_dict().items()
        if with_counters or not k.endswith("num_batches_tracked")
    }
    extra = {
        "incre_modules.0.0.conv1.weight": torch.randn(32, 32, 1, 1),
        "incre_modules.3.0.downsample.1.running_var": torch.randn(1024),
        "downsamp_modules.0.0.weight": torch.randn(256, 128, 3, 3),
        "final_layer.0.weight": torch.randn(2048, 1024, 1, 1),
        "classifier.weight": torch.randn(1000, 2048),
        "classifier.bias": torch.randn(1000),
    }
    state.update(extra)
    torch.save(state, path)
    return state, sorted(extra)


def test_load_official_w32_file_with_classifier_keys_has_nothing_missing(w32, tmp_path):
    state, extra = _official_file(w32, tmp_path / "hrnetv2_w32.pth")
    assert len(state) == 1830 - 305 + len(extra)
    target = HRNetTrunk(width=32)
    report = load_pretrained(target, tmp_path / "hrnetv2_w32.pth")
    assert report == {"missing": [], "unexpected": [], "unused": extra}
    for key in (
        "conv1.weight",
        "stage4.0.fuse_layers.3.0.2.0.weight",
        "stage4.2.branches.3.3.bn2.running_var",
    ):
        assert torch.equal(target.state_dict()[key], w32.state_dict()[key]), key


def test_load_reports_missing_unexpected_and_strips_backbone_prefix(tmp_path, caplog):
    source = HRNetTrunk(width=4, stem_width=8, blocks=1, modules=(1, 1, 1))
    state = {f"backbone.{k}": v for k, v in source.state_dict().items() if k != "conv1.weight"}
    state["backbone.mystery.weight"] = torch.zeros(3)
    state["backbone.final_layers.0.weight"] = torch.zeros(17, 4, 1, 1)
    torch.save({"state_dict": state}, tmp_path / "cid.pth")
    with caplog.at_level(logging.WARNING):
        report = load_pretrained(
            HRNetTrunk(width=4, stem_width=8, blocks=1, modules=(1, 1, 1)), tmp_path / "cid.pth"
        )
    assert report == {
        "missing": ["conv1.weight"],
        "unexpected": ["mystery.weight"],
        "unused": ["final_layers.0.weight"],
    }
    assert "missing" in caplog.text and "unexpected" in caplog.text


def test_load_wrong_width_names_the_key(tmp_path):
    torch.save(
        HRNetTrunk(width=4, stem_width=8, blocks=1, modules=(1, 1, 1)).state_dict(),
        tmp_path / "w4.pth",
    )
    with pytest.raises(CheckpointError, match="transition1.0.0.weight"):
        load_pretrained(
            HRNetTrunk(width=8, stem_width=8, blocks=1, modules=(1, 1, 1)), tmp_path / "w4.pth"
        )
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(
            HRNetTrunk(width=8, stem_width=8, blocks=1, modules=(1, 1, 1)), tmp_path / "nope.pth"
        )
