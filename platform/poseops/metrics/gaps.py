"""Reading a measured gap between two rows against a paper's printed gap."""

from __future__ import annotations


def reproduced(difference: float | None, paper: float | None, exceeds: bool | None) -> str:
    """Whether a grid's gap reproduces the paper's: same sign and beyond 2 SD; says why not otherwise.

    difference: ours (a - b); paper: the paper's (a - b) in any scale (only its sign is read);
    exceeds: whether |difference| exceeds 2 pooled SD over seeds (None: fewer than two runs a row)."""
    if paper is None or difference is None:
        return "no paper gap"
    if (difference > 0) != (paper > 0):
        return "not reproduced (opposite sign)"
    if exceeds is None:
        return "same sign, untested (one seed)"
    return "reproduced (same sign, > 2 SD)" if exceeds else "not shown (same sign, within 2 SD)"
