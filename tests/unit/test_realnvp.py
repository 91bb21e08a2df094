"""RealNVP: invertibility, exact log-determinant, density normalisation."""

import math

import pytest
import torch

from poseops.models.blocks.realnvp import RealNVP


def randomised_flow(couplings, seed=0, scale=0.3):
    """A flow with non-trivial weights (the 0.01-gain init is almost the identity)."""
    torch.manual_seed(seed)
    flow = RealNVP(couplings).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return flow


def test_rle_layout_and_parameter_count():
    flow = RealNVP(6)
    assert flow.mask.tolist() == [[0, 1], [1, 0]] * 3
    assert sum(p.numel() for p in flow.parameters()) == 6 * 2 * (
        2 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2
    )
    assert isinstance(flow.s[0][-1], torch.nn.Tanh) and not isinstance(flow.t[0][-1], torch.nn.Tanh)


@pytest.mark.parametrize("couplings", [1, 2, 6])
def test_inverse_of_forward_is_identity(couplings):
    flow = randomised_flow(couplings)
    z = torch.randn(64, 2, dtype=torch.float64)
    x = flow(z)
    assert not torch.allclose(x, z, atol=1e-3)
    z_back, _ = flow.forward_inverse(x)
    assert torch.allclose(z_back, z, atol=1e-5)


@pytest.mark.parametrize("couplings", [2, 6])
def test_log_det_matches_autograd_jacobian(couplings):
    flow = randomised_flow(couplings, seed=1)
    x = torch.randn(8, 2, dtype=torch.float64)
    _, log_det = flow.forward_inverse(x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(
            lambda v: flow.forward_inverse(v[None])[0][0], x[i]
        )
        assert abs(torch.linalg.slogdet(jac).logabsdet.item() - log_det[i].item()) < 1e-4


def test_zero_couplings_is_standard_normal():
    flow = RealNVP(0)
    x = torch.randn(5, 2)
    expected = -0.5 * (x**2).sum(1) - math.log(2 * math.pi)
    assert torch.allclose(flow.log_prob(x), expected)


def test_density_integrates_to_one():
    flow = randomised_flow(4, seed=2, scale=0.1)
    grid = torch.linspace(-10, 10, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    points = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    with torch.no_grad():
        mass = flow.log_prob(points).exp().sum() * (grid[1] - grid[0]) ** 2
    assert abs(mass.item() - 1) < 1e-2
