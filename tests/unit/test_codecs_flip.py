"""One pixel convention for every codec and the flip code (see `poseops.codecs`' docstring).

Exact targets are encoded, then decoded without and with the flip test (the mirrored image's
targets, made with the loader's own flip, mirrored back and averaged): both land within 0.05 px of
the truth. With the codec's pixel centres at i + 0.5 and the loader's at i, the flip-test average
was off by +0.5 px in x.
"""

import numpy as np
import pytest
import torch

from poseops.codecs import flip_back, mirror_x
from poseops.codecs.bottomup import decode_instances, encode_targets
from poseops.codecs.integral import argmax_decode, gaussian_heatmaps, integrate, to_norm, to_pixels
from poseops.datasets.loader import flip_affine
from poseops.datasets.transforms import apply_affine, warp
from poseops.skeletons import get_skeleton

TOLERANCE_PX = 0.05


def random_keypoints(
    people: int, keypoints: int, size: int, heatmap: int, seed: int
) -> torch.Tensor:
    """[P, K, 2] keypoints at sub-pixel positions, 5 sigma (10 cells) off the borders: whole Gaussians."""
    g = torch.Generator().manual_seed(seed)
    margin = 10 * size / heatmap
    return margin + torch.rand(people, keypoints, 2, generator=g) * (size - 1 - 2 * margin)


def loader_flip(xy: torch.Tensor, size: int, permutation) -> torch.Tensor:
    """What the training loader does to labels on a mirrored sample: its flip affine, then L/R swap."""
    flipped = apply_affine(xy.numpy().astype(np.float64), flip_affine(size))
    return torch.as_tensor(flipped, dtype=torch.float32)[..., list(permutation), :]


def test_the_loaders_flip_is_the_tensor_flip_used_at_test_time():
    size = 16
    image = np.zeros((size, size, 3), np.uint8)
    image[5, 3] = 255  # the pixel whose centre is (x, y) = (3, 5)
    mirrored = warp(image, flip_affine(size), size)
    assert np.array_equal(mirrored, image[:, ::-1])  # == torch's images.flip(-1)
    assert np.argwhere(mirrored[..., 0] == 255).tolist() == [[5, size - 1 - 3]]
    xy = torch.tensor([[3.0, 5.0], [0.25, 7.5]])
    assert torch.allclose(mirror_x(xy, size), loader_flip(xy[None], size, [0, 1])[0])


@pytest.mark.parametrize("size, heatmap", [(128, 32), (256, 64), (64, 16)])
def test_bottomup_codec_decodes_exact_targets_with_and_without_flip_test(size, heatmap):
    permutation = get_skeleton("coco17").flip_permutation()
    truth = random_keypoints(3, 17, size, heatmap, seed=size)
    labels = torch.cat([truth, torch.full((3, 17, 1), 2.0)], dim=-1)
    targets = encode_targets([labels], size, heatmap, min_person_area=0)
    flipped_labels = torch.cat([loader_flip(truth, size, permutation), labels[..., 2:]], dim=-1)
    flipped = encode_targets([flipped_labels], size, heatmap, min_person_area=0)
    assert targets["instance_image"].tolist() == flipped["instance_image"].tolist() == [0, 0, 0]
    scores = torch.ones(3)

    plain, _, _ = decode_instances(targets["instance_heatmaps"], scores, size)
    averaged = (
        targets["instance_heatmaps"] + flip_back(flipped["instance_heatmaps"], permutation)
    ) / 2
    with_flip, _, _ = decode_instances(averaged, scores, size)

    assert (plain - truth).abs().max() < TOLERANCE_PX
    assert (with_flip - truth).abs().max() < TOLERANCE_PX
    # the centre maps too: the flip test averages them the same way
    centre = targets["heatmaps"][0, 17]
    assert torch.allclose(flip_back(flipped["heatmaps"][0, 17:], None)[0], centre, atol=1e-5)


@pytest.mark.parametrize("size, heatmap", [(64, 64), (256, 64), (128, 32)])
def test_integral_codec_decodes_exact_targets_with_and_without_flip_test(size, heatmap):
    # a left/right pair, so the swap is exercised (a hand has none)
    permutation = [1, 0, *range(2, 21)]
    truth = random_keypoints(1, 21, size, heatmap, seed=size + heatmap)

    def probabilities(xy_px: torch.Tensor) -> torch.Tensor:
        maps = gaussian_heatmaps(to_norm(xy_px, size), heatmap, sigma_px=2.0)
        return maps / maps.sum(dim=(-2, -1), keepdim=True)

    probs = probabilities(truth)
    mirrored_back = flip_back(probabilities(loader_flip(truth, size, permutation)), permutation)
    plain = to_pixels(integrate(probs), size)
    with_flip = to_pixels(integrate((probs + mirrored_back) / 2), size)
    assert (plain - truth).abs().max() < TOLERANCE_PX
    assert (with_flip - truth).abs().max() < TOLERANCE_PX
    # the mirror in normalised coordinates is x_norm -> -x_norm
    norm, norm_flipped = to_norm(truth, size), to_norm(mirror_x(truth, size), size)
    assert torch.allclose(norm_flipped[..., 0], -norm[..., 0], atol=1e-6)
    # argmax decoding only reaches a quarter cell, but the flip test must not move it either
    stride = size / heatmap
    decoded, _ = argmax_decode(probs)
    decoded_flip, _ = argmax_decode((probs + mirrored_back) / 2)
    assert (to_pixels(decoded, size) - truth).abs().max() <= 0.5 * stride + 1e-3
    assert (to_pixels(decoded_flip, size) - truth).abs().max() <= 0.5 * stride + 1e-3
