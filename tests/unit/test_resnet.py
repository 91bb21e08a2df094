"""ResNet trunk: torchvision layout/counts, knobs, and local pretrained loading."""

import logging

import pytest
import torch
from safetensors.torch import save_file

from poseops.errors import CheckpointError
from poseops.models.blocks.resnet import ResNetTrunk, load_pretrained


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_resnet50_matches_torchvision_counts_and_names():
    trunk = ResNetTrunk(depth=50)
    state = trunk.state_dict()
    assert len(state) == 318
    assert n_params(trunk) == 23_508_032
    for name in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.weight",
        "layer4.2.conv3.weight",
        "layer4.2.bn3.num_batches_tracked",
    ]:
        assert name in state
    assert not any(k.startswith(("fc.", "avgpool")) for k in state)
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)


@pytest.mark.parametrize(
    "depth, width, stages, channels, stride",
    [
        (18, 64, 4, 512, 32),
        (34, 64, 4, 512, 32),
        (50, 64, 4, 2048, 32),
        (18, 16, 3, 64, 16),
        (50, 8, 2, 64, 8),
    ],
)
def test_output_shape_follows_knobs(depth, width, stages, channels, stride):
    trunk = ResNetTrunk(depth, width, stages).eval()
    out = trunk(torch.randn(1, 3, 64, 64))
    assert trunk.out_channels == channels and trunk.stride == stride
    assert out.shape == (1, channels, 64 // stride, 64 // stride)


def test_resnet18_and_34_parameter_counts():
    # torchvision resnet18 / resnet34 totals minus fc (512*1000 + 1000)
    assert n_params(ResNetTrunk(18)) == 11_689_512 - 513_000
    assert n_params(ResNetTrunk(34)) == 21_797_672 - 513_000


def _file_with_fc(trunk, path, fmt):
    state = {k: v.clone() for k, v in trunk.state_dict().items()}
    state["fc.weight"] = torch.randn(1000, trunk.out_channels)
    state["fc.bias"] = torch.randn(1000)
    if fmt == "pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    return state


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_load_pretrained_roundtrip_reports_fc_unused(tmp_path, fmt):
    source = ResNetTrunk(18, width=16)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / f"resnet.{fmt}"
    _file_with_fc(source, path, fmt)
    target = ResNetTrunk(18, width=16)
    report = load_pretrained(target, path)
    assert report == {"missing": [], "unexpected": [], "unused": ["fc.bias", "fc.weight"]}
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_load_pretrained_resnet50_file_with_318_entries_plus_fc(tmp_path):
    source = ResNetTrunk(50)
    path = tmp_path / "r50.pth"
    state = _file_with_fc(source, path, "pth")
    assert len(state) == 320
    report = load_pretrained(ResNetTrunk(50), path)
    assert report["missing"] == [] and report["unexpected"] == []


def test_load_pretrained_reports_missing_unexpected_and_dropped_layers(tmp_path, caplog):
    full = ResNetTrunk(18, width=8)
    state = {k: v for k, v in full.state_dict().items() if k != "bn1.weight"}
    state["module.extra.weight"] = torch.zeros(3)  # DataParallel prefix is stripped
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    short = ResNetTrunk(18, width=8, stages=3)
    with caplog.at_level(logging.WARNING):
        report = load_pretrained(short, path)
    assert report["missing"] == ["bn1.weight"]
    assert report["unexpected"] == ["extra.weight"]
    assert report["unused"] and all(k.startswith("layer4.") for k in report["unused"])
    assert "bn1.weight" in caplog.text and "extra.weight" in caplog.text


def test_load_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth"):
        load_pretrained(ResNetTrunk(18, width=8), tmp_path / "nope.pth")
    path = tmp_path / "wide.pth"
    torch.save(ResNetTrunk(18, width=16).state_dict(), path)
    with pytest.raises(CheckpointError, match="wide.pth.*conv1.weight"):
        load_pretrained(ResNetTrunk(18, width=8), path)
