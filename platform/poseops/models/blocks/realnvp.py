"""RealNVP flow on R^2, as in RLE's official code (`rlepose/models/regression_nf.py`).

f maps a latent z ~ N(0, I_2) to a sample x; `log_prob(x) = log N(f^-1(x)) + log|det df^-1/dx|`.
Coupling i keeps the coordinates where mask[i] = 1 and updates the others:
    x = m*z + (1-m) * (z * exp(s(m*z)) + t(m*z)),   s, t: 2 -> 64 -> 64 -> 2 MLPs (s ends in Tanh).
Masks alternate [0,1], [1,0]; k couplings (k = 0: no flow, a plain standard normal).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_TWO_PI = math.log(2 * math.pi)


def _mlp(hidden: int, tanh: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, 2)]
    if tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RealNVP(nn.Module):
    """2D RealNVP with `couplings` coupling layers and a N(0, I) prior (about 9k parameters per coupling)."""

    def __init__(self, couplings: int = 6, hidden: int = 64):
        super().__init__()
        if couplings < 0:
            raise ValueError(f"flow couplings must be >= 0, got {couplings}")
        masks = torch.tensor([[0.0, 1.0] if i % 2 == 0 else [1.0, 0.0] for i in range(couplings)]).reshape(couplings, 2)
        self.register_buffer("mask", masks)
        self.s = nn.ModuleList([_mlp(hidden, tanh=True) for _ in range(couplings)])
        self.t = nn.ModuleList([_mlp(hidden, tanh=False) for _ in range(couplings)])
        for net in [*self.s, *self.t]:
            for layer in net:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight, gain=0.01)

    @property
    def couplings(self) -> int:
        return len(self.s)

    def forward(self, z: Tensor) -> Tensor:
        """f: latent z [N, 2] -> x [N, 2]."""
        x = z
        for mask, s_net, t_net in zip(self.mask, self.s, self.t):
            kept = x * mask
            s = s_net(kept) * (1 - mask)
            t = t_net(kept) * (1 - mask)
            x = kept + (1 - mask) * (x * torch.exp(s) + t)
        return x

    def forward_inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """f^-1: x [N, 2] -> (z [N, 2], log|det df^-1/dx| [N])."""
        z, log_det = x, x.new_zeros(x.shape[0])
        for i in reversed(range(self.couplings)):
            mask = self.mask[i]
            kept = z * mask
            s = self.s[i](kept) * (1 - mask)
            t = self.t[i](kept) * (1 - mask)
            z = kept + (1 - mask) * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(dim=1)
        return z, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) [N] for x [N, 2] under the flow with a standard-normal prior."""
        z, log_det = self.forward_inverse(x)
        return -0.5 * (z**2).sum(dim=1) - LOG_TWO_PI + log_det
