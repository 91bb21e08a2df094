"""Portable CPU numerics: the same inputs give the same bytes on every x86-64 machine.

BLAS and vectorised kernels choose their code path by the CPU they find: OpenBLAS's SkylakeX or Haswell
kernels, ATen's AVX-512 or AVX2 kernels, MKL's and oneDNN's dispatch. Each path sums in its own order, so
a camera calibration or a training step differs in the last bits from one CPU to the next, and a versioned
output's hash with it (measured: the synthetic capture's `cameras.json` differs between an AVX-512 and an
AVX2 machine with the OpenBLAS default, and is byte-identical with `OPENBLAS_CORETYPE=Haswell`).

Pinning every library to the AVX2 level, which every x86-64 server of the last decade has, makes the
pipeline's outputs the same wherever it runs. The variables are read when each library loads, so the pins
go into the environment before numpy or torch is imported (the stage scripts and the `poseops` command do
it first) and into the environment of Ray workers (`ray_env_vars`). A variable the user has set is kept;
`POSEOPS_NATIVE_NUMERICS=1` turns the pins off (faster on AVX-512 machines, not byte-portable).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Mapping

PORTABLE_X86_ENV: dict[str, str] = {
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's OpenBLAS: the AVX2 kernels
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's vectorised ATen kernels
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # torch's BLAS (MKL) dispatch
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # torch's convolutions (oneDNN)
}
OPT_OUT = "POSEOPS_NATIVE_NUMERICS"


def opted_out(environ: Mapping[str, str]) -> bool:
    return environ.get(OPT_OUT, "") not in ("", "0")


def portable_env(
    environ: Mapping[str, str] | None = None, machine: str | None = None
) -> dict[str, str]:
    """The pins this process should add: none off x86-64 or when opted out, and never one the user set."""
    environ = os.environ if environ is None else environ
    machine = (machine or platform.machine()).lower()
    if opted_out(environ) or machine not in ("x86_64", "amd64"):
        return {}
    return {name: value for name, value in PORTABLE_X86_ENV.items() if name not in environ}


def pin_portable_numerics() -> list[str]:
    """Put the pins into os.environ; returns the libraries already loaded (too late for them to see it)."""
    os.environ.update(portable_env())
    return [name for name in ("numpy", "torch") if name in sys.modules]


def ray_env_vars() -> dict[str, str]:
    """The pins in force in this process, for Ray workers on a cluster this process attaches to."""
    if opted_out(os.environ):
        return {}
    return {name: os.environ[name] for name in PORTABLE_X86_ENV if name in os.environ}


@functools.cache
def fingerprint() -> str:
    """A digest of the bits this process computes for a seeded convolution, matrix products, a softmax and
    their gradients (torch) and a matrix product and solve (numpy): two machines whose digests agree
    compute a training run to the same bits; where they differ, results agree only to rounding. Computed
    once a process (about a second with the imports)."""
    import hashlib

    import numpy as np
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 32, 32, generator=generator, requires_grad=True)
    weight = torch.randn(16, 8, 3, 3, generator=generator, requires_grad=True)
    project = torch.randn(16 * 32 * 32, 64, generator=generator) / 128
    features = torch.nn.functional.conv2d(x, weight, padding=1).relu()
    logits = features.flatten(1) @ project
    loss = (torch.softmax(logits, dim=1) * logits).sum()
    loss.backward()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256))
    digest = hashlib.sha256()
    for array in (
        features.detach().numpy(),
        logits.detach().numpy(),
        x.grad.numpy(),
        weight.grad.numpy(),
        a @ a,
        np.linalg.solve(a, a[:, 0]),
    ):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]
