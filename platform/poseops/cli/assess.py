"""`poseops assess`: grade a trial against an expert reference and write a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from poseops.cli.common import console, friendly


def read_assess_params(params: Path):
    """params.yaml's `assess` block, validated (defaults when the file or the block is absent)."""
    from pydantic import ValidationError

    from poseops.config import AssessParams, read_yaml
    from poseops.errors import ConfigError

    raw = read_yaml(params).get("assess") or {} if params.exists() else {}
    try:
        return AssessParams.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"assess.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{params}: {problems}") from None


@friendly
def assess_cmd(
    task: Annotated[str, typer.Option(help="TO, PF, CR, CT or PC")],
    reference: Annotated[Path, typer.Option(help="expert: keypoints JSON or a video (.mp4)")],
    trial: Annotated[Path, typer.Option(help="trainee: keypoints JSON or a video (.mp4)")],
    out: Annotated[
        Path | None, typer.Option(help="report.html or report.json (PNGs beside it)")
    ] = None,
    skeleton: Annotated[
        str, typer.Option(help="keypoint set of JSON inputs that do not name one")
    ] = "coco17",
    sigma: Annotated[
        float | None, typer.Option(help="per-angle sigma, degrees (default: params)")
    ] = None,
    cap_by_fluctuation: Annotated[
        bool | None,
        typer.Option(
            "--cap-by-fluctuation/--no-cap-by-fluctuation",
            help="let fluctuation lower the grade (default: params)",
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="pose model for videos (default: params assess.video)")
    ] = None,
    frame_step: Annotated[
        int | None, typer.Option(help="videos: predict every Nth frame (default: params)")
    ] = None,
    params: Annotated[Path, typer.Option(help="params file with the assess block")] = Path(
        "params.yaml"
    ),
) -> None:
    """Score a trial against a reference on a maintenance task: similarity, grade, what to work on."""
    from poseops.assess import TASKS, assess
    from poseops.assess.core import AssessInputError
    from poseops.assess.report import write_report
    from poseops.assess.sequences import check_same_skeleton, load_sequence

    if task not in TASKS:  # before any video is read
        raise AssessInputError(f"--task {task!r}: unknown; tasks: {', '.join(TASKS)}")
    settings = read_assess_params(params)
    video = settings.video.model_copy(
        update={
            k: v
            for k, v in (
                ("checkpoint", str(checkpoint) if checkpoint else None),
                ("frame_step", frame_step),
            )
            if v is not None
        }
    )
    cache: dict = {}

    def predictor():
        from poseops.assess.sequences import load_video_predictor

        if "model" not in cache:
            cache["model"] = load_video_predictor(video.checkpoint)
        return cache["model"]

    ref_points, ref_skeleton = load_sequence(reference, settings.max_frames, video, predictor)
    trial_points, trial_skeleton = load_sequence(trial, settings.max_frames, video, predictor)
    name = check_same_skeleton(ref_skeleton, trial_skeleton, skeleton)
    options = settings.scoring.model_dump()
    options.pop("sigma_deg")
    if cap_by_fluctuation is not None:
        options["cap_by_fluctuation"] = cap_by_fluctuation
    result = assess(
        ref_points,
        trial_points,
        task,
        skeleton=name,
        sigma_deg=sigma if sigma is not None else settings.scoring.sigma_deg,
        **options,
    )

    table = Table(title=f"{task}: similarity {result.similarity:.1f} -> {result.grade}")
    for column in ("chain", "similarity", "mean delta", "worst frame", "fluctuation"):
        table.add_column(column)
    for chain in result.chains:
        table.add_row(
            chain.name,
            f"{chain.similarity:.1f}",
            f"{chain.mean_delta_deg:+.1f} deg",
            str(chain.worst_frame),
            f"{chain.fluctuation_deg:.1f} deg",
        )
    console.print(table)
    for line in result.advice():
        console.print(f"- {line}", highlight=False)
    if out is not None:
        written = write_report(result, ref_points, trial_points, out)
        console.print(f"wrote {', '.join(str(p) for p in written)}")
    print(f"{result.similarity:.2f} {result.grade}")


def run_study_stage(
    params: Path = Path("params.yaml"),
    out_dir: Path = Path("reports"),
    metrics_file: Path = Path("metrics/assess/metrics.json"),
) -> None:
    """The `assess` DVC stage: the synthetic expert/trainee study -> reports/assessment.{json,png,md} and
    metrics/assess/metrics.json."""
    import sys

    from poseops.assess.study import write_study

    @friendly
    def _run() -> None:
        for path in write_study(read_assess_params(params), out_dir, metrics_file):
            console.print(f"assess: wrote {path}")

    try:
        _run()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
