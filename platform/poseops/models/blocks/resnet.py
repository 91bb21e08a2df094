"""ResNet-18/34/50 trunk with torchvision's exact layout and state-dict names, no avgpool/fc.

    trunk = ResNetTrunk(depth=50)            # 318 state-dict entries, 23,508,032 parameters
    features = trunk(images)                 # [B, 3, S, S] -> [B, 2048, S/32, S/32]
    report = load_pretrained(trunk, "resnet50.pth")   # a local torchvision-layout file

Knobs for small nets (same code): `width` = base channels (64 in torchvision; stage widths are
width, 2w, 4w, 8w, times 4 for Bottleneck) and `stages` = how many of layer1..layer4 to keep
(stride 4 * 2**(stages-1): 4 stages -> 32, 3 -> 16).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from poseops.errors import CheckpointError

log = logging.getLogger(__name__)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# depth -> (block, blocks per layer)
LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNetTrunk(nn.Module):
    """conv1/bn1/relu/maxpool + layer1..layer{stages}: [B, 3, S, S] -> [B, out_channels, S/stride, S/stride]."""

    def __init__(self, depth: int = 50, width: int = 64, stages: int = 4):
        super().__init__()
        if depth not in LAYOUTS:
            raise ValueError(f"backbone depth must be one of {sorted(LAYOUTS)}, got {depth}")
        if not 1 <= stages <= 4:
            raise ValueError(f"backbone stages must be in 1..4, got {stages}")
        block, counts = LAYOUTS[depth]
        self.depth, self.width, self.stages = depth, width, stages
        self.stride = 4 * 2 ** (stages - 1)

        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = width
        for index in range(stages):
            channels = width * 2**index
            layer, in_channels = _make_layer(block, in_channels, channels, counts[index], stride=1 if index == 0 else 2)
            self.add_module(f"layer{index + 1}", layer)
        self.out_channels = in_channels
        init_conv_bn(self)

    def forward(self, images: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        for index in range(self.stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return x


def _make_layer(block, in_channels: int, channels: int, count: int, stride: int) -> tuple[nn.Sequential, int]:
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, channels, stride, downsample)]
    blocks += [block(out_channels, channels) for _ in range(count - 1)]
    return nn.Sequential(*blocks), out_channels


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming (fan_out) convolutions, BatchNorm 1/0: torchvision's initialisation."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a local `.pth`/`.pt` (torch.load, weights_only) or `.safetensors` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: the user's input
        raise CheckpointError(f"cannot read pretrained weights {str(path)!r}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"pretrained weights {str(path)!r} hold no flat state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pretrained(trunk: ResNetTrunk, path: str | Path) -> dict[str, list[str]]:
    """Load a torchvision-layout ResNet file into `trunk` (non-strict) and say what did not fit.

    Returns dict(missing=trunk keys absent from the file, unexpected=file keys the trunk does not
    know, unused=file keys that are known to be dropped: `fc.*` and layers beyond `trunk.stages`).
    A key whose shape differs (e.g. another width or depth) raises CheckpointError naming it.
    """
    state = read_state_dict(path)
    own = trunk.state_dict()
    dropped_layers = tuple(f"layer{i}." for i in range(trunk.stages + 1, 5))
    unused = sorted(k for k in state if k.startswith("fc.") or k.startswith(dropped_layers))
    unexpected = sorted(k for k in state if k not in own and k not in unused)
    missing = sorted(k for k in own if k not in state)
    wrong_shape = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if wrong_shape:
        raise CheckpointError(
            f"pretrained weights {str(path)!r} do not fit ResNet-{trunk.depth} width {trunk.width}: "
            + "; ".join(wrong_shape[:5])
            + (f" (+{len(wrong_shape) - 5} more)" if len(wrong_shape) > 5 else "")
        )
    trunk.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    if missing:
        log.warning("pretrained %s: %d trunk keys missing from the file: %s", path, len(missing), ", ".join(missing))
    if unexpected:
        log.warning("pretrained %s: %d unexpected keys ignored: %s", path, len(unexpected), ", ".join(unexpected))
    log.info("pretrained %s: loaded %d tensors, %d unused (fc/dropped layers)", path, len(own) - len(missing), len(unused))
    return {"missing": missing, "unexpected": unexpected, "unused": unused}
