"""Image batches as the backbones take them: uint8 RGB in, ImageNet-normalised float out."""

from __future__ import annotations

from torch import Tensor

IMAGE_MEAN = (0.485, 0.456, 0.406)  # ImageNet, RGB in [0, 1]
IMAGE_STD = (0.229, 0.224, 0.225)


def preprocess(images: Tensor) -> Tensor:
    """uint8 RGB [B,H,W,3] or [B,3,H,W] -> float [B,3,H,W] normalised with IMAGE_MEAN / IMAGE_STD."""
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images [B,H,W,3] or [B,3,H,W], got shape {tuple(images.shape)}")
    if images.shape[1] != 3 and images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    x = images.float() / 255.0
    mean = x.new_tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGE_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()
