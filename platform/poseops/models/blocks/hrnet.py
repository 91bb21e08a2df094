"""HRNetV2 trunk with the official layout and state-dict names (HRNet-Image-Classification), no heads.

    trunk = HRNetTrunk(width=32)             # HRNet-W32: 1,830 state-dict entries, 29,305,536 parameters
    maps = trunk(images)                     # [B,3,H,W] -> [B,32,H/4,W/4], [B,64,H/8,W/8], [B,128,H/16,..], [B,256,H/32,..]
    features = concat_branches(maps)         # HRNetV2 head: all upsampled to 1/4 and concatenated -> [B,480,H/4,W/4]
    report = load_pretrained(trunk, "hrnetv2_w32_imagenet_pretrained.pth")

Layout (official, W32): conv1/bn1/conv2/bn2 (3->64->64, two stride-2 3x3s); layer1 = 4 Bottlenecks
64->256; transition1; stage2 (1 module, branches 32/64); transition2; stage3 (4 modules, +128);
transition3; stage4 (3 modules, +256). Every module holds 4 BasicBlocks per branch and fuse layers.
The classifier's incre_modules/downsamp_modules/final_layer/classifier are not built (they are
"unused" when loading). Knobs for small nets (same code): `width` (branch widths w, 2w, 4w, 8w),
`stem_width` (64: stem convs and layer1 planes), `blocks` (per branch and in layer1, 4) and
`modules` (per stage 2..4, (1, 4, 3)).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from poseops.errors import CheckpointError
from poseops.models.blocks.resnet import BasicBlock, Bottleneck, conv1x1, init_conv_bn, read_state_dict
from poseops.skeletons import get_skeleton

log = logging.getLogger(__name__)

# Keys of the official classification checkpoint that this trunk deliberately does not build.
UNUSED_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.",
                   "final_layers.", "deconv_layers.")  # last two: HigherHRNet/CID pose heads


class HRNetConfig(BaseModel):
    """The fields and checks every family on `HRNetTrunk` shares (hrnet_am, vmhpe): square input side, keypoint
    set and the trunk's knobs. Families subclass it with their own fields (and defaults)."""

    model_config = ConfigDict(extra="forbid")

    input_size: int = Field(256, ge=32, description="square crop side S (px); heatmaps are S/4")
    skeleton: str = Field("coco17", description="keypoint set (names, flip pairs)")
    width: int = Field(32, ge=1, description="HRNet branch widths w, 2w, 4w, 8w (W32, W48)")
    stem_width: int = Field(64, ge=1, description="stem convs and layer1 Bottleneck planes")
    blocks: int = Field(4, ge=1, description="blocks per branch (and in layer1)")
    modules: tuple[int, int, int] = Field(
        (1, 4, 3), description="HighResolutionModules in stages 2, 3, 4"
    )
    pretrained: str | None = Field(
        None, description="local official-layout HRNet .pth/.safetensors, or None"
    )

    @model_validator(mode="after")
    def _check_trunk(self) -> "HRNetConfig":
        get_skeleton(self.skeleton)
        if self.input_size % 32:
            raise ValueError(
                f"input_size {self.input_size} must be a multiple of 32 (HRNet's lowest branch is 1/32)"
            )
        return self

    @property
    def num_keypoints(self) -> int:
        return get_skeleton(self.skeleton).num_keypoints

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
                               nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def make_blocks(block, in_channels: int, channels: int, count: int) -> nn.Sequential:
    """`count` blocks at stride 1; a 1x1 conv+BN shortcut on the first when channels change."""
    out_channels = channels * block.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels), nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, channels, 1, downsample)]
    blocks += [block(out_channels, channels) for _ in range(count - 1)]
    return nn.Sequential(*blocks)


class FuseUp(nn.Module):
    """Low-resolution branch j -> branch i (j > i): 1x1 conv + BN, then upsample to i's size.

    Official: nn.Upsample(scale_factor=2**(j-i), nearest); resizing to the target size instead gives
    the same result on multiples of 32 and also works on other input sizes. Keys: `.0` conv, `.1` BN.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.add_module("0", conv1x1(in_channels, out_channels))
        self.add_module("1", nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        x = getattr(self, "1")(getattr(self, "0")(x))
        return F.interpolate(x, size=size, mode="nearest")


def fuse_down(in_channels: int, out_channels: int, steps: int) -> nn.Sequential:
    """High-resolution branch -> a branch `steps` halvings lower: stride-2 3x3 conv+BN(+ReLU except the last)."""
    convs = [conv_bn(in_channels, in_channels, 3, 2, relu=True) for _ in range(steps - 1)]
    convs.append(conv_bn(in_channels, out_channels, 3, 2, relu=False))
    return nn.Sequential(*convs)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every branch output = ReLU(sum of all branches resampled to it)."""

    def __init__(self, channels: list[int], blocks: int, multi_scale_output: bool = True):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList([make_blocks(BasicBlock, c, c, blocks) for c in channels])
        self.fuse_layers = None
        if n > 1:
            self.fuse_layers = nn.ModuleList()
            # multi_scale_output=False (pose_hrnet's last module): only the highest-resolution output is fused
            for i in range(n if multi_scale_output else 1):
                row: list[nn.Module | None] = []
                for j in range(n):
                    if j > i:
                        row.append(FuseUp(channels[j], channels[i]))
                    elif j == i:
                        row.append(None)
                    else:
                        row.append(fuse_down(channels[j], channels[i], i - j))
                self.fuse_layers.append(nn.ModuleList(row))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for i, row in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            y = xs[i]
            for j, layer in enumerate(row):
                if j < i:
                    y = y + layer(xs[j])
                elif j > i:
                    y = y + layer(xs[j], size)
            fused.append(self.relu(y))
        return fused


def make_transition(previous: list[int], current: list[int]) -> nn.ModuleList:
    """Official transition: 3x3 conv+BN+ReLU where a kept branch changes width (else None);
    each new branch = stride-2 3x3 convs from the lowest previous branch (keys `<i>.0.0`...)."""
    layers: list[nn.Module | None] = []
    for i, channels in enumerate(current):
        if i < len(previous):
            layers.append(conv_bn(previous[i], channels, 3, 1, relu=True) if previous[i] != channels else None)
        else:
            steps = i + 1 - len(previous)
            convs = [conv_bn(previous[-1], channels if s == steps - 1 else previous[-1], 3, 2, relu=True) for s in range(steps)]
            layers.append(nn.Sequential(*convs))
    return nn.ModuleList(layers)


class HRNetTrunk(nn.Module):
    """HRNetV2 trunk: [B,3,H,W] -> 4 maps at strides 4, 8, 16, 32 with `out_channels` = (w, 2w, 4w, 8w).

    multi_scale_output=False is the pose_hrnet layout (Sun, Xiao, Liu, Wang, 2019, "Deep High-Resolution
    Representation Learning for Human Pose Estimation"): the last module of stage 4 fuses into the 1/4
    branch only, so the trunk returns one map [B,w,H/4,W/4] (HRNet-W32: 28,535,552 parameters).
    """

    def __init__(self, width: int = 32, stem_width: int = 64, blocks: int = 4, modules: tuple[int, int, int] = (1, 4, 3),
                 multi_scale_output: bool = True):
        super().__init__()
        if width < 1 or stem_width < 1 or blocks < 1 or len(modules) != 3 or min(modules) < 1:
            raise ValueError(f"bad HRNet layout width={width} stem_width={stem_width} blocks={blocks} modules={modules}")
        self.width, self.stem_width, self.blocks, self.modules_per_stage = width, stem_width, blocks, tuple(modules)
        self.conv1 = nn.Conv2d(3, stem_width, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.conv2 = nn.Conv2d(stem_width, stem_width, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_blocks(Bottleneck, stem_width, stem_width, blocks)

        previous = [stem_width * Bottleneck.expansion]
        for stage, count in zip((2, 3, 4), modules):
            channels = [width * 2**b for b in range(stage)]
            self.add_module(f"transition{stage - 1}", make_transition(previous, channels))
            last = stage == 4 and not multi_scale_output  # pose_hrnet: stage 4 ends in the 1/4 branch only
            self.add_module(f"stage{stage}", nn.Sequential(*[
                HighResolutionModule(channels, blocks, multi_scale_output=not (last and m == count - 1))
                for m in range(count)
            ]))
            previous = channels
        self.out_channels = tuple(previous) if multi_scale_output else (previous[0],)
        init_conv_bn(self)  # Kaiming as torchvision (the official code draws N(0, 0.001))

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in (2, 3, 4):
            transition = getattr(self, f"transition{stage - 1}")
            new = []
            for i, layer in enumerate(transition):
                source = xs[i] if i < len(xs) else xs[-1]
                new.append(source if layer is None else layer(source))
            xs = getattr(self, f"stage{stage}")(new)
        return xs


def concat_branches(maps: list[Tensor]) -> Tensor:
    """HRNetV2 representation: every map bilinearly resized to the first's size, concatenated on channels."""
    size = maps[0].shape[-2:]
    up = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
    return torch.cat(up, dim=1)


def load_pretrained(trunk: HRNetTrunk, path: str | Path) -> dict[str, list[str]]:
    """Load an official-layout HRNet file into `trunk` (non-strict) and say what did not fit.

    Returns dict(missing=trunk keys absent from the file (BN `num_batches_tracked` counters, which old
    files lack, are not counted), unexpected=file keys the trunk does not know, unused=file keys known
    to be dropped: the classifier's incre_modules/downsamp_modules/final_layer/classifier and pose heads).
    A `backbone.` prefix (CID/HigherHRNet checkpoints) is stripped. A key whose shape differs raises
    CheckpointError naming it.
    """
    state = read_state_dict(path)
    own = trunk.state_dict()
    if not any(k in own for k in state) and any(k.startswith("backbone.") for k in state):
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    unused = sorted(k for k in state if k.startswith(UNUSED_PREFIXES))
    unexpected = sorted(k for k in state if k not in own and k not in unused)
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    wrong_shape = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if wrong_shape:
        raise CheckpointError(
            f"pretrained weights {str(path)!r} do not fit HRNet-W{trunk.width} (stem {trunk.stem_width}, "
            f"blocks {trunk.blocks}, modules {trunk.modules_per_stage}): " + "; ".join(wrong_shape[:5])
            + (f" (+{len(wrong_shape) - 5} more)" if len(wrong_shape) > 5 else "")
        )
    trunk.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    if missing:
        log.warning("pretrained %s: %d trunk keys missing from the file: %s", path, len(missing), ", ".join(missing[:20]))
    if unexpected:
        log.warning("pretrained %s: %d unexpected keys ignored: %s", path, len(unexpected), ", ".join(unexpected[:20]))
    log.info("pretrained %s: loaded %d tensors, %d unused (classifier/pose heads)", path,
             sum(k in state for k in own), len(unused))
    return {"missing": missing, "unexpected": unexpected, "unused": unused}
