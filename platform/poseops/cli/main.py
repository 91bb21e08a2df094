"""`poseops`: configuration, data, the pipeline's stages, and serving.

User errors (`PoseopsError`) print as one red message and exit 1, without a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console

from poseops.errors import PoseopsError

app = typer.Typer(
    help="poseops: reproducible, distributed pose-estimation workflows.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
config_app = typer.Typer(help="Profiles and params.yaml.", no_args_is_help=True)
data_app = typer.Typer(help="Captures, annotations and derived datasets.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
console = Console(stderr=True)

STAGES = ("capture", "annotate", "derive", "train", "evaluate", "promote")


def friendly(fn: Callable) -> Callable:
    """Turn PoseopsError into a clear message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PoseopsError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(1) from None

    return wrapper


# ---------------------------------------------------------------- config
@config_app.command("use")
@friendly
def config_use(
    profile: Annotated[str, typer.Argument(help="profile name (profiles/<name>.yaml) or a path")],
    out: Annotated[Path, typer.Option(help="params file to write")] = Path("params.yaml"),
) -> None:
    """Resolve a profile's presets and write the result to params.yaml."""
    from poseops.profiles import write_profile

    path = write_profile(profile, out)
    console.print(f"wrote {path} from profile {profile!r}")


@config_app.command("validate")
@friendly
def config_validate(params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml")) -> None:
    """Validate params.yaml against the schema and every family's model Config."""
    from poseops.families import load_params

    p = load_params(params)
    console.print(f"{params}: valid (profile {p.profile!r}, families: {', '.join(p.families)})")


# ---------------------------------------------------------------- stages
def record_stage_time(root: Path, stage: str, seconds: float) -> None:
    """Append a stage's wall time to .poseops/logs/stage_times.jsonl (read by benchmarks and the demo)."""
    from poseops.paths import state_dir

    logs = state_dir(root) / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "stage_times.jsonl", "a") as f:
        f.write(json.dumps({"stage": stage, "seconds": round(seconds, 2), "at": time.time()}) + "\n")


def run_stage(stage: str, family: str | None = None, params_path: str | Path | None = None) -> None:
    """Run one pipeline stage (what dvc.yaml's stages call); exit 1 on a PoseopsError."""
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
            fn(family, params, where)
        record_stage_time(where.root, stage if family is None else f"{stage}@{family}", time.perf_counter() - started)

    try:
        _run()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)


@app.command("stage")
def stage_cmd(
    name: Annotated[str, typer.Argument(help=f"one of {', '.join(STAGES)}")],
    family: Annotated[Optional[str], typer.Argument(help="family, for per-family stages")] = None,
) -> None:
    """Run one pipeline stage by hand (dvc repro runs them in order)."""
    if name not in STAGES:
        console.print(f"[red]error:[/] unknown stage {name!r}; stages: {', '.join(STAGES)}")
        raise typer.Exit(2)
    run_stage(name, family)


# ---------------------------------------------------------------- data
@data_app.command("synth")
@friendly
def data_synth(
    out: Annotated[str, typer.Option(help="output folder or URL")],
    seed: Annotated[int, typer.Option(help="generator seed")] = 0,
    sequences: Annotated[int, typer.Option(help="hand sequences")] = 12,
    frames: Annotated[int, typer.Option(help="frames per sequence")] = 40,
) -> None:
    """Render seeded synthetic captures (same seed, same bytes)."""
    from poseops.capture.synthetic_hands import write_hand_captures
    from poseops.config import CaptureParams, HandCaptureParams

    params = CaptureParams(seed=seed, hands=HandCaptureParams(sequences=sequences, frames_per_sequence=frames))
    manifest = write_hand_captures(out, params)
    console.print(f"wrote {len(manifest['sequences'])} sequences to {out}")


@data_app.command("show")
@friendly
def data_show(
    url: Annotated[str, typer.Argument(help="a capture folder (manifest.json) or a derived dataset (card.json)")],
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("grid.png"),
    count: Annotated[int, typer.Option(help="samples to draw")] = 16,
) -> None:
    """Draw samples with keypoints, edges and visibility (hollow grey = occluded), to check labels."""
    import cv2

    from poseops.browse import label_grid

    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), label_grid(url, count))
    console.print(f"wrote {out}")


@data_app.command("derive")
@friendly
def data_derive(
    family: Annotated[str, typer.Argument(help="family whose dataset kind to derive")],
    out: Annotated[str, typer.Option(help="output folder or fsspec URL")],
    annotations: Annotated[Path, typer.Option(help="internal annotations JSON")] = Path("data/annotations/labels.json"),
) -> None:
    """Derive a family's shards from annotations and raw captures."""
    from poseops.datasets.shards import derive_dataset
    from poseops.families import get_family, load_params

    params, fam = load_params(), get_family(family)
    card = derive_dataset(fam.dataset_kind, annotations, out, params.families[family].data, params.data.split,
                          skeleton=fam.skeleton)
    console.print(f"derived {card.get('counts')} -> {out}")


# ---------------------------------------------------------------- models and serving
@app.command("models")
def models_cmd() -> None:
    """List registered model families."""
    from poseops.families import FAMILIES

    for fam in FAMILIES.values():
        console.print(f"{fam.name:10s} model={fam.model:10s} data={fam.dataset_kind:12s} {fam.description}")


@app.command("serve")
@friendly
def serve_cmd(
    port: Annotated[Optional[int], typer.Option(help="HTTP port (default: params.yaml serve.port)")] = None,
    host: Annotated[Optional[str], typer.Option(help="bind address (default: params.yaml serve.host)")] = None,
    family: Annotated[Optional[list[str]], typer.Option(help="serve only these families")] = None,
    alias: Annotated[str, typer.Option(help="registry alias to serve")] = "champion",
) -> None:
    """Serve each family's champion with Ray Serve, in the foreground; Ctrl-C or SIGTERM stops it."""
    from poseops.deploy import build_champion_app
    from poseops.families import load_params
    from poseops.serve.runner import run_foreground

    params = load_params()
    app_, names = build_champion_app(params, families=family, alias=alias)
    code = run_foreground(app_, host or params.serve.host, port if port is not None else params.serve.port)
    raise typer.Exit(code or 0)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
