"""Deploy the registry's champions: one Ray Serve application for every family that has one.

Each family is served from a `RegistrySource`: the service resolves `champion` (or the alias or
version a request names) in the MLflow registry and loads that version in the replicas, so a
`poseops registry promote` / `rollback` is served within `serve.alias_poll_s` without a restart.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from poseops.config import Params
from poseops.errors import DataError, PoseopsError, RequestError
from poseops.serve import DEFAULT_ALIAS


def load_registered_predictor(
    family: str,
    alias: str,
    tracking_uri: str,
    dst: str | Path | None = None,
    runtime: str = "torch",
):
    """Fetch the version's (or the aliased version's) checkpoint and build its predictor, whose
    forward runs in torch or (runtime "onnx") on onnxruntime over the checkpoint's ONNX export.
    `dst`: the folder to download into (default: the project's registry cache)."""
    import mlflow

    from poseops.families import load_predictor
    from poseops.onnx_models import load_onnx_predictor
    from poseops.packaging import download_version

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    folder, version = download_version(family, alias, dst=dst)
    load = load_onnx_predictor if runtime == "onnx" else load_predictor
    predictor = load(folder, version=str(version["version"]))
    predictor.name = version["name"]
    return predictor


class RegistrySource:
    """A family's versions in the MLflow registry at `tracking_uri` (picklable: it goes to replicas).

    `default_alias` is what a request without version headers gets (`poseops serve --alias`);
    `runtime` runs the network in torch or onnxruntime (`families.<name>.serve.runtime`)."""

    def __init__(
        self,
        family: str,
        tracking_uri: str,
        default_alias: str = DEFAULT_ALIAS,
        runtime: str = "torch",
    ):
        self.family, self.tracking_uri, self.default_alias = family, tracking_uri, default_alias
        self.runtime = runtime

    def _configure(self) -> None:
        """Point this process's MLflow at the source's store. The registry functions read
        MLFLOW_TRACKING_URI (`poseops.tracking.store`), and a replica does not inherit the deploying
        shell's environment, so it is set here, in the process that uses the source."""
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri

    def resolve(self, alias_or_version: str) -> str:
        from poseops.tracking.registry import registered_name, resolve_version

        self._configure()
        if alias_or_version == DEFAULT_ALIAS:
            alias_or_version = self.default_alias
        try:
            return resolve_version(registered_name(self.family), alias_or_version)
        except DataError as exc:  # no such version or alias: the request's fault
            raise RequestError(404, f"family {self.family!r}: {exc}") from None

    def load(self, version: str):
        """Download into a private temporary folder (replicas may share a disk and load the same
        version at once), build the predictor, drop the folder: the weights are in memory."""
        self._configure()
        with tempfile.TemporaryDirectory(prefix=f"poseops-{self.family}-v{version}-") as tmp:
            return load_registered_predictor(
                self.family,
                version,
                self.tracking_uri,
                dst=Path(tmp) / "checkpoint",
                runtime=self.runtime,
            )


def build_champion_app(params: Params, families: list[str] | None = None, alias: str = "champion"):
    """(Serve application, served family names) for every family whose `alias` exists in the registry.

    A request without version headers is answered by the version `alias` points at when it arrives.
    """
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
        loaders[name] = RegistrySource(name, uri, alias, params.families[name].serve.runtime)
        serve_params[name] = params.families[name].serve
    if not loaders:
        raise PoseopsError(
            f"no family has a model with alias {alias!r} in the registry at {uri}; run `dvc repro` (promote) first"
        )
    return build_app(loaders, serve_params, params.serve, params.assess), sorted(loaders)
