"""Deploy the registry's champions: one Ray Serve application for every family that has one."""

from __future__ import annotations

import functools

from poseops.config import Params
from poseops.errors import PoseopsError


def load_registered_predictor(family: str, alias: str, tracking_uri: str, runtime: str = "torch"):
    """Inside a Serve replica: fetch the aliased version's checkpoint and build its predictor, whose
    forward runs in torch or (runtime "onnx") on onnxruntime over the checkpoint's ONNX export."""
    import mlflow

    from poseops.families import load_predictor
    from poseops.onnx_models import load_onnx_predictor
    from poseops.packaging import download_version

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    folder, version = download_version(family, alias)
    load = load_onnx_predictor if runtime == "onnx" else load_predictor
    predictor = load(folder, version=str(version["version"]))
    predictor.name = version["name"]
    return predictor


def build_champion_app(params: Params, families: list[str] | None = None, alias: str = "champion"):
    """(Serve application, served family names) for every family whose `alias` exists in the registry."""
    from poseops.serve.app import build_app
    from poseops.tracking.registry import get_alias_version
    from poseops.tracking.store import configure, tracking_uri

    configure()
    uri = tracking_uri()
    wanted = families or list(params.families)
    loaders, serve_params = {}, {}
    for name in wanted:
        if name not in params.families:
            raise PoseopsError(f"params.yaml: families.{name}: no such family to serve")
        if get_alias_version(f"poseops-{name}", alias) is None:
            continue
        runtime = params.families[name].serve.runtime
        loaders[name] = functools.partial(load_registered_predictor, name, alias, uri, runtime)
        serve_params[name] = params.families[name].serve
    if not loaders:
        raise PoseopsError(
            f"no family has a model with alias {alias!r} in the registry at {uri}; run `dvc repro` (promote) first"
        )
    return build_app(loaders, serve_params, params.serve, params.assess), sorted(loaders)
