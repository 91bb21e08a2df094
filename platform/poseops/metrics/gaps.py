"""Reading a measured gap between two rows against a paper's printed gap."""

from __future__ import annotations


def reproduced(difference: float | None, paper: float | None, exceeds: bool | None) -> str:
    """Whether a grid's gap reproduces the paper's: same sign and beyond 2 SD; says why not otherwise.

    difference: ours (a - b); paper: the paper's (a - b) in any scale (only its sign is read);
    exceeds: whether |difference| exceeds 2 pooled SD over seeds (None: fewer than two runs a row)."""
    if paper is None or difference is None:
        return "no paper gap"
    spread = {True: "> 2 SD", False: "within 2 SD", None: "one seed"}[exceeds]
    if (difference > 0) != (paper > 0):
        return f"not reproduced (opposite sign, {spread})"
    if exceeds is None:
        return "same sign, untested (one seed)"
    return f"reproduced (same sign, {spread})" if exceeds else f"not shown (same sign, {spread})"
