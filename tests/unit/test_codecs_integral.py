"""Integral-regression codec: coordinate frames, soft-argmax, argmax decoding, Gaussian targets."""

import torch

from poseops.codecs.integral import (
    argmax_decode,
    gaussian_heatmaps,
    soft_argmax,
    spatial_softmax,
    to_norm,
    to_pixels,
)


def test_pixel_norm_roundtrip_and_frame():
    # pixel centres at integers (poseops.codecs): a 256-px input spans [-0.5, 255.5], its centre is 127.5
    xy = torch.tensor([[[-0.5, 255.5], [127.5, 63.5]]])
    norm = to_norm(xy, 256)
    assert torch.allclose(norm, torch.tensor([[[-0.5, 0.5], [0.0, -0.25]]]))
    assert torch.allclose(to_pixels(norm, 256), xy)
    assert torch.allclose(to_norm(torch.tensor([99.5, 49.5]), (200, 100)), torch.tensor([0.0, 0.0]))


def test_soft_argmax_of_peaked_logits_hits_cell_centre():
    logits = torch.full((2, 3, 64, 64), -1e4)
    logits[0, 1, 10, 40] = 0  # y = 10, x = 40
    coords = soft_argmax(logits)
    assert torch.allclose(
        coords[0, 1], torch.tensor([(40 + 0.5) / 64 - 0.5, (10 + 0.5) / 64 - 0.5])
    )
    # the same point in input pixels of a 256 crop: cell c covers pixels 4c .. 4c+3, centre 4c + 1.5
    assert torch.allclose(to_pixels(coords[0, 1], 256), torch.tensor([40 * 4 + 1.5, 10 * 4 + 1.5]))
    assert torch.allclose(coords[1], torch.zeros(3, 2), atol=1e-6)  # uniform map -> centre


def test_soft_argmax_is_differentiable_and_in_range():
    logits = torch.randn(2, 21, 16, 16, requires_grad=True)
    coords = soft_argmax(logits * 5)
    assert coords.shape == (2, 21, 2) and coords.abs().max() <= 0.5
    coords.sum().backward()
    assert logits.grad.abs().sum() > 0
    assert torch.allclose(spatial_softmax(logits).sum(dim=(-2, -1)), torch.ones(2, 21))


def test_gaussian_targets_decode_back_to_their_centres():
    target = torch.tensor([[[0.1, -0.2], [-0.33, 0.27]]])
    maps = gaussian_heatmaps(target, 64, sigma_px=2.0)
    assert maps.shape == (1, 2, 64, 64) and abs(maps.max().item() - 1) < 0.1
    probs = maps / maps.sum(dim=(-2, -1), keepdim=True)
    from poseops.codecs.integral import integrate

    assert torch.allclose(integrate(probs), target, atol=1e-4)
    decoded, peaks = argmax_decode(maps)
    assert (decoded - target).abs().max() < 0.5 / 64 + 1e-6  # within half a cell (quarter shift)
    assert peaks.min() > 0.8


def test_gaussian_sigma_is_in_heatmap_cells():
    maps = gaussian_heatmaps(torch.zeros(1, 1, 2), (32, 16), sigma_px=2.0)  # (width, height)
    assert maps.shape == (1, 1, 16, 32)
    row = maps[0, 0, 8]  # centre between cells 15 and 16 (x), row 8 is 0.5 cells from centre (y)
    assert torch.allclose(
        row[16] / row[18], torch.exp(torch.tensor((2.5**2 - 0.5**2) / 8)), rtol=1e-4
    )
