"""Targets <-> outputs: pure tensor functions between labels and network outputs.

`integral`: soft-argmax (integral regression), argmax decoding, Gaussian target heatmaps and the
input-pixel <-> normalised ([-0.5, 0.5]) coordinate maps. `bottomup`: multi-person Gaussian and
centre targets, centre NMS, instance decoding and the input-pixel <-> heatmap-cell maps.

Pixel convention (the one frame of the whole package)
- The centre of pixel (column i, row j) is the point (x, y) = (i, j): OpenCV's convention, which
  `cv2.warpAffine` and therefore `poseops.datasets.transforms` (crops, letterboxing), the loaders,
  the stored labels and serving all use. Pixel i covers [i - 0.5, i + 0.5); an image of width S
  spans [-0.5, S - 0.5].
- A horizontal mirror of an S-wide image (`tensor.flip(-1)`, `cv2.flip(img, 1)`) maps pixel i to
  S - 1 - i, so a point x goes to S - 1 - x (`mirror_x`; the loader's `flip_affine`).
- A heatmap of width w over an S-wide input has stride s = S / w; cell c covers input
  [c s - 0.5, (c + 1) s - 0.5), so its centre is input x = (c + 0.5) s - 0.5 and a point at input x
  sits at the continuous cell coordinate c = (x + 0.5) / s - 0.5. Mirroring the map (cell c ->
  w - 1 - c) is then exactly the mirror of the input: heatmaps and inputs share one frame, and a
  flip-test average (`flip_back`) adds no shift.
- Normalised coordinates (`integral`) span the image: x_norm = (x + 0.5) / S - 0.5 in [-0.5, 0.5];
  the mirror is x_norm -> -x_norm.

Why it matters: mixing "centres at i + 0.5" in the codec with "centres at i" in the data pipeline
shifts every flip-tested keypoint by half an input pixel; Huang, Zhu, Guo, Huang, Du, 2020, "The
Devil Is in the Details: Delving into Unbiased Data Processing for Human Pose Estimation" (CVPR)
analyse this flip-test misalignment. `tests/unit/test_codecs_flip.py` encodes exact targets and decodes
them with and without the flip test, for every codec, within 0.05 px of the truth.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def mirror_x(xy: Tensor, width: int) -> Tensor:
    """Points [..., 2] (x, y) in pixels of a `width`-wide image -> their place in the mirrored image."""
    mirrored = xy.clone()
    mirrored[..., 0] = width - 1 - xy[..., 0]
    return mirrored


def flip_back(maps: Tensor, flip_permutation: Sequence[int] | None) -> Tensor:
    """Maps [..., K, h, w] computed on a mirrored image -> the original frame (mirror x, swap left/right).

    flip_permutation[k]: the channel that holds keypoint k in the mirrored image (None: no swap).
    """
    flipped = maps.flip(-1)
    return flipped if flip_permutation is None else flipped[..., list(flip_permutation), :, :]
