"""Reproduce every result: (optionally switch profile,) `dvc repro`, then a summary of every family's metrics.

    python flows/reproduce.py                 # the profile params.yaml holds
    python flows/reproduce.py --profile tiny  # write profiles/tiny.yaml into params.yaml first
On a cluster: ray job submit --address http://HEAD:8265 -- python flows/reproduce.py
"""

from __future__ import annotations

from typing import Annotated

import typer

from poseops.pipeline import dvc_repro
from poseops.profiles import write_profile
from poseops.reporting import metrics_summary_table


def main(
    profile: Annotated[
        str | None, typer.Option(help="profile to write into params.yaml first")
    ] = None,
) -> None:
    if profile:
        write_profile(profile, "params.yaml")
    dvc_repro()
    metrics_summary_table(print_it=True)


if __name__ == "__main__":
    typer.run(main)
