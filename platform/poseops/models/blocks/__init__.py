"""Reusable network blocks: `resnet` (torchvision-layout ResNet trunks), `realnvp` (2D RealNVP flow).

Import the submodule you need, e.g. `from poseops.models.blocks.resnet import ResNetTrunk`.
"""
