"""`poseops`: configuration, data, the pipeline's stages, and serving.

User errors (`PoseopsError`) print as one red message and exit 1, without a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from poseops.cli.assess import assess_cmd
from poseops.cli.common import console, friendly
from poseops.cli.data import data_app
from poseops.cli.registry import registry_app
from poseops.cli.score import score_cmd
from poseops.cli.tune import tune_cmd
from poseops.errors import PoseopsError

app = typer.Typer(
    help="poseops: reproducible, distributed pose-estimation workflows.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
config_app = typer.Typer(help="Profiles and params.yaml.", no_args_is_help=True)
pipeline_app = typer.Typer(help="The DVC pipeline (dvc.yaml).", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")
app.command("assess")(assess_cmd)
app.command("tune")(tune_cmd)
app.command("score")(score_cmd)

STAGES = ("capture", "annotate", "derive", "train", "evaluate", "promote", "report")


# ---------------------------------------------------------------- config
@config_app.command("use")
@friendly
def config_use(
    profile: Annotated[str, typer.Argument(help="profile name (profiles/<name>.yaml) or a path")],
    out: Annotated[Path, typer.Option(help="params file to write")] = Path("params.yaml"),
) -> None:
    """Resolve a profile's presets and write the result to params.yaml (keeping the sources that
    `poseops data add` put in it)."""
    from poseops.config import read_yaml
    from poseops.profiles import added_sources, profile_path, write_profile

    kept, _ = added_sources(out, read_yaml(profile_path(profile)))
    path = write_profile(profile, out)
    console.print(f"wrote {path} from profile {profile!r}")
    for entry in kept:
        console.print(
            f"kept source {entry.get('name') or entry['file']!r} ({entry['format']}: {entry['file']})",
            highlight=False,
        )


@config_app.command("validate")
@friendly
def config_validate(
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Validate params.yaml against the schema and every family's model Config."""
    from poseops.families import load_params

    p = load_params(params)
    console.print(f"{params}: valid (profile {p.profile!r}, families: {', '.join(p.families)})")


# ---------------------------------------------------------------- pipeline
@pipeline_app.command("render")
@friendly
def pipeline_render(
    check: Annotated[
        bool, typer.Option(help="only check: exit 1 when dvc.yaml differs from its rendering")
    ] = False,
) -> None:
    """Render dvc.yaml's per-family stages from the family table and params.yaml (see poseops.dvc_yaml)."""
    from poseops.dvc_yaml import render_file
    from poseops.families import load_params
    from poseops.paths import repo_root

    root = repo_root()
    text = render_file(root, load_params(root / "params.yaml"))
    path = root / "dvc.yaml"
    if check:
        if not path.exists() or path.read_text() != text:
            console.print(f"{path}: stale; run `poseops pipeline render`")
            raise typer.Exit(1)
        console.print(f"{path}: up to date")
        return
    path.write_text(text)
    console.print(f"wrote {path}")


# ---------------------------------------------------------------- stages
def record_stage_time(root: Path, stage: str, seconds: float) -> None:
    """Append a stage's wall time to .poseops/logs/stage_times.jsonl (read by benchmarks and the demo)."""
    from poseops.paths import append_run_log

    append_run_log("stage_times", {"stage": stage, "seconds": round(seconds, 2)}, root)


def run_stage(
    stage: str,
    family: str | None = None,
    params_path: str | Path | None = None,
    **options: object,
) -> None:
    """Run one pipeline stage (what dvc.yaml's stages call); exit 1 on a PoseopsError. Ray's and
    MLflow's logs go to .poseops/logs/<stage>[@<family>].log, not the console (`library_logs_to_file`)."""
    from poseops.library_logs import library_logs_to_file

    with library_logs_to_file(stage if family is None else f"{stage}@{family}"):
        _run_stage(stage, family, params_path, **options)


def _run_stage(
    stage: str, family: str | None, params_path: str | Path | None, **options: object
) -> None:
    from poseops import pipeline
    from poseops.families import load_params

    @friendly
    def _run() -> None:
        where = pipeline.layout()
        started = time.perf_counter()
        params = load_params(params_path or where.root / "params.yaml")
        fn = getattr(pipeline, stage)
        if stage in ("capture", "annotate"):
            fn(params, where)
        else:
            if family is None:
                raise PoseopsError(f"stage {stage!r} needs a family")
            if family not in params.families:
                raise PoseopsError(f"params.yaml: families.{family}: no such family block")
            fn(family, params, where, **options)
        record_stage_time(
            where.root,
            stage if family is None else f"{stage}@{family}",
            time.perf_counter() - started,
        )

    try:
        _run()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)


@app.command("stage")
def stage_cmd(
    name: Annotated[str, typer.Argument(help=f"one of {', '.join(STAGES)}")],
    family: Annotated[str | None, typer.Argument(help="family, for per-family stages")] = None,
) -> None:
    """Run one pipeline stage by hand (dvc repro runs them in order)."""
    if name not in STAGES:
        console.print(f"[red]error:[/] unknown stage {name!r}; stages: {', '.join(STAGES)}")
        raise typer.Exit(2)
    run_stage(name, family)


@app.command("train")
def train_cmd(
    family: Annotated[str, typer.Argument(help="family to train")],
    resume: Annotated[
        bool,
        typer.Option(
            help="continue the family's newest run in its storage_path from the last checkpoint "
            "(after the driver was killed) instead of starting a new one"
        ),
    ] = False,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Train a family with Ray Train and publish models/<family>/ (the train stage)."""
    run_stage("train", family, params, resume=resume)


# ---------------------------------------------------------------- models and serving
@app.command("models")
def models_cmd() -> None:
    """List registered model families."""
    from poseops.families import families

    for fam in families().values():
        console.print(f"{fam.name:10s} model={fam.model:10s} task={fam.task:14s} {fam.description}")


@app.command("export")
@friendly
def export_cmd(
    family: Annotated[str, typer.Argument(help="family whose published checkpoint to export")],
    format: Annotated[str, typer.Option("--format", help="export format (onnx)")] = "onnx",
    checkpoint: Annotated[
        Path | None, typer.Option(help="checkpoint folder (default: models/<family>)")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="derived dataset the equivalence is measured on (default: data/derived/<family>)"
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(help="split of that dataset (test: the one evaluate scores)")
    ] = "test",
    limit: Annotated[
        int | None, typer.Option(help="at most this many samples of the split")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="export folder (default: exports/<family>/onnx)")
    ] = None,
) -> None:
    """Export a family's network (its tensor outputs; decoding stays in Python) and check it against torch."""
    from poseops.checkpoints import verify_checkpoint
    from poseops.onnx_models import export_checkpoint, split_inputs
    from poseops.pipeline import layout

    if format != "onnx":
        raise PoseopsError(f"--format {format!r}: the formats are: onnx")
    where = layout()
    checkpoint = checkpoint or where.model(family)
    data = data or str(where.derived(family))
    out = out or where.root / "exports" / family / "onnx"
    found = verify_checkpoint(checkpoint).get("family")
    if found != family:
        raise PoseopsError(f"{checkpoint}: a checkpoint of family {found!r}, not {family!r}")
    inputs = split_inputs(checkpoint, data, split, limit)
    manifest = export_checkpoint(checkpoint, out, inputs, f"split {split!r} of {data}")
    worst = manifest["equivalence"]["max_abs_diff"]
    console.print(
        f"{family}: wrote {out} ({', '.join(manifest['outputs'])}); max |onnxruntime - torch| on "
        f"{manifest['equivalence']['inputs']} inputs: "
        + ", ".join(f"{name} {value:.2e}" for name, value in worst.items())
    )


@app.command("serve")
@friendly
def serve_cmd(
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default: params.yaml serve.port)")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="bind address (default: params.yaml serve.host)")
    ] = None,
    family: Annotated[list[str] | None, typer.Option(help="serve only these families")] = None,
    alias: Annotated[str, typer.Option(help="registry alias to serve")] = "champion",
) -> None:
    """Serve each family's champion with Ray Serve, in the foreground; Ctrl-C or SIGTERM stops it."""
    from poseops.deploy import build_champion_app
    from poseops.families import load_params
    from poseops.pipeline import layout, restore_champions
    from poseops.serve.runner import run_foreground

    params = load_params()
    if alias == "champion":
        for name in restore_champions(params, layout()):
            console.print(
                f"{name}: champion restored in the registry from metrics/{name}/promotion.json"
            )
    app_, names = build_champion_app(params, families=family, alias=alias)
    code = run_foreground(
        app_,
        host or params.serve.host,
        port if port is not None else params.serve.port,
        request_timeout_s=params.serve.request_timeout_s,
    )
    raise typer.Exit(code or 0)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
