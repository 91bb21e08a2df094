"""The registered model format: an MLflow pyfunc around a published checkpoint folder.

The model is logged "from code" (a three-line script that imports `PoseopsModel`), so nothing is
pickled. The pyfunc's only artifact is the checkpoint (weights.safetensors + config.json + manifest.json,
see `poseops.checkpoints`); `load_context` rebuilds the network through `build_from_config` and
loads the weights; nothing depends on `torch.export`. Loading needs poseops importable.

    info = log_and_register("models/handmle", "handmle", run_id=run.info.run_id)
    promote("handmle", info["version"], metrics, gate)            # poseops.tracking.registry
    folder, version = download_version("handmle", "champion")     # serving: plain checkpoint back
    model = mlflow.pyfunc.load_model("models:/poseops-handmle@champion")  # or the pyfunc

Prediction input: a dict `{"image": <base64>, "box": [x, y, w, h]}`, a list of such dicts, a
DataFrame with those columns, or a float array `[N, C, H, W]` (raw network outputs come back).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib
import importlib.metadata
import io
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import torch
from mlflow.models import Model

from poseops.checkpoints import MANIFEST, WEIGHTS, build_model_from_checkpoint, verify_checkpoint
from poseops.errors import CheckpointError, PoseopsError, RequestError
from poseops.paths import state_dir
from poseops.tracking import registry, runs, store

ARTIFACT_KEY = "checkpoint"
MODEL_NAME_IN_RUN = "model"
_REQUIREMENTS = (
    "mlflow",
    "torch",
    "safetensors",
    "numpy",
    "pydantic",
    "pandas",
    "opencv-python-headless",
)


def pip_requirements() -> list[str]:
    """Pinned requirements of the installed environment (passed explicitly: inference costs ~6 s)."""
    pins = []
    for package in _REQUIREMENTS:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


# --- prediction ---------------------------------------------------------------------------------


def decode_image(data: str | bytes, where: str = "image") -> np.ndarray:
    """Base64 (or raw encoded bytes) of a JPEG/PNG -> BGR uint8 `[H, W, 3]` (OpenCV's order)."""
    import cv2

    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, f"{where}: not valid base64") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise RequestError(400, f"{where}: not a decodable image (JPEG or PNG expected)")
    return image


def _records(model_input: Any) -> list[dict[str, Any]] | None:
    """Image records `[{"image_bgr": uint8 [H, W, 3], "box": [x, y, w, h] | None}]`; None for raw arrays."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):  # pandas DataFrame
        if "image" not in model_input.columns:
            return None
        rows = model_input.to_dict(orient="records")
    elif isinstance(model_input, dict):
        if "image" not in model_input:
            raise RequestError(400, "input: a dict needs an 'image' field (base64 JPEG/PNG)")
        image = model_input["image"]
        if isinstance(image, (list, tuple)):  # columns: {"image": [...], "box": [...]}
            boxes = model_input.get("box") or [None] * len(image)
            rows = [{"image": i, "box": b} for i, b in zip(image, boxes, strict=True)]
        else:
            rows = [model_input]
    elif isinstance(model_input, list) and model_input and isinstance(model_input[0], dict):
        rows = model_input
    else:
        return None
    records = []
    for index, row in enumerate(rows):
        if "image" not in row:
            raise RequestError(400, f"input[{index}]: no 'image' field")
        box = row.get("box")
        box = (
            None
            if box is None or (isinstance(box, float) and np.isnan(box))
            else [float(v) for v in box]
        )
        if box is not None and len(box) != 4:
            raise RequestError(
                400, f"input[{index}].box: expected [x, y, w, h], got {len(box)} numbers"
            )
        records.append(
            {"image_bgr": decode_image(row["image"], f"input[{index}].image"), "box": box}
        )
    return records


def _to_numpy(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.detach().cpu().numpy()
    if isinstance(output, dict):
        return {k: _to_numpy(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return [_to_numpy(v) for v in output]
    return output


def _family_predictor(family: str, model: torch.nn.Module) -> Callable[[list[dict]], Any] | None:
    """`poseops.families.get_family(family).predictor(model)` if that module, family and attribute exist.

    The predictor is a callable `records -> predictions`, records as `_records` makes them.
    """
    try:
        families = importlib.import_module("poseops.families")
    except ModuleNotFoundError as exc:
        if exc.name != "poseops.families":  # the module exists but is broken: say so
            raise
        return None
    try:
        entry = families.get_family(family)
    except (PoseopsError, LookupError):  # e.g. a test model's family that has no row
        return None
    make = getattr(entry, "predictor", None)
    return make(model) if make is not None else None


_UNRESOLVED = object()


class PoseopsModel(mlflow.pyfunc.PythonModel):
    """pyfunc of a poseops checkpoint. After `load_context`: `.model` (eval), `.info`, `.family`."""

    def load_context(self, context) -> None:
        folder = context.artifacts[ARTIFACT_KEY]
        self.model = build_model_from_checkpoint(folder)
        self.info = self.model.checkpoint_info
        self.family = self.info["family"]
        self._predictor: Any = _UNRESOLVED

    @property
    def predictor(self) -> Callable[[list[dict]], Any] | None:
        """The family's predictor, looked up on first use (raw-array inputs never need it)."""
        if self._predictor is _UNRESOLVED:
            self._predictor = _family_predictor(self.family, self.model)
        return self._predictor

    # The hint is one MLflow infers no schema from: it keeps MLflow from validating or converting
    # inputs (dicts, lists and DataFrames of base64 images are accepted too, see the module doc).
    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None):
        """Image records -> the family's predictor; without one (or for float arrays `[N, C, H, W]`)
        the raw network outputs of the float batch (images: RGB `[N, 3, H, W]` in 0..1) as numpy."""
        records = _records(model_input)
        predictor = self.predictor if records is not None else None
        if predictor is not None:
            return predictor(records)
        if records is not None:
            if not records:
                raise RequestError(400, "input: no images")
            shapes = {r["image_bgr"].shape for r in records}
            if len(shapes) != 1:
                raise RequestError(
                    400,
                    f"input: images of different sizes {sorted(shapes)} need a family predictor",
                )
            rgb = np.stack([r["image_bgr"][..., ::-1] for r in records])  # [N, H, W, 3]
            batch = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255
        else:
            batch = torch.as_tensor(np.asarray(model_input), dtype=torch.float32)
        with torch.inference_mode():
            return _to_numpy(self.model(batch))


# --- registry -----------------------------------------------------------------------------------


@contextmanager
def _run_for(family: str, run_id: str | None) -> Iterator[Any]:
    """The run to log under: the active one, `run_id` (resumed), or a new `register` run."""
    active = mlflow.active_run()
    if active is not None and run_id in (None, active.info.run_id):
        yield active
    elif run_id is not None:
        runs.find_run(family, run_id)
        with mlflow.start_run(run_id=run_id, nested=active is not None) as run:
            yield run
    else:
        with runs.start_run(
            family, f"register-{family}", tags={"stage": "register"}, nested=active is not None
        ) as run:
            yield run


_MODEL_CODE = """\
# The pyfunc entry point of a poseops model (MLflow "models from code": nothing is pickled).
from mlflow.models import set_model

from poseops.packaging import PoseopsModel

set_model(PoseopsModel())
"""


def _metric_tags(extra: dict[str, Any]) -> dict[str, str]:
    metrics = runs.flatten(extra.get("metrics") or {})
    return {
        f"metric.{k}": f"{float(v):.6g}"
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def log_and_register(
    checkpoint_folder: str | os.PathLike, family: str, run_id: str | None = None
) -> dict[str, Any]:
    """Log the checkpoint as a pyfunc under the family's run and register it as `poseops-<family>`.

    Returns {"name", "version", "run_id", "model_uri" (models:/<name>/<version>), "logged_model_uri",
    "registered" (False when a version with the same weights existed: registering is idempotent)}.
    Registration moves no alias: promotion is `poseops.tracking.registry.promote`.
    """
    folder = Path(checkpoint_folder)
    manifest = verify_checkpoint(folder)
    if manifest.get("family") != family:
        raise CheckpointError(
            f"{folder / MANIFEST}: checkpoint of family {manifest.get('family')!r}, not {family!r}"
        )
    store.configure()
    name = registry.registered_name(family)
    existing = registry.find_version_by_weights(name, manifest["files"][WEIGHTS]["sha256"])
    if existing is not None:
        return {
            "name": name,
            "version": str(existing.version),
            "run_id": existing.run_id,
            "model_uri": f"models:/{name}/{existing.version}",
            "logged_model_uri": existing.source,
            "registered": False,
        }
    extra = manifest.get("extra") or {}
    with _run_for(family, run_id) as run, tempfile.TemporaryDirectory() as scratch:
        code_file = Path(scratch) / "poseops_pyfunc.py"
        code_file.write_text(_MODEL_CODE)
        logged = mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=str(code_file),
            artifacts={ARTIFACT_KEY: str(folder.resolve())},
            pip_requirements=pip_requirements(),
            metadata={
                "family": family,
                "model": manifest["model"],
                "format": manifest.get("format"),
            },
        )
        run_id = run.info.run_id
    tags = {
        "family": family,
        "model": manifest["model"],
        "run_id": run_id,
        "weights_sha256": manifest["files"][WEIGHTS]["sha256"],
        **_metric_tags(extra),
    }
    # MLflow prints "Successfully registered model ..." / "Created version ..." straight to stderr: they
    # go to its logger instead (the log file under `poseops.library_logs`); the caller reports the version.
    with contextlib.redirect_stderr(io.StringIO()) as chatter:
        version = mlflow.register_model(logged.model_uri, name, tags=tags)
    for line in chatter.getvalue().splitlines():
        logging.getLogger("mlflow").info(line)
    return {
        "name": name,
        "version": str(version.version),
        "run_id": run_id,
        "model_uri": f"models:/{name}/{version.version}",
        "logged_model_uri": logged.model_uri,
        "registered": True,
    }


def _checkpoint_in(model_folder: Path) -> Path:
    """The checkpoint folder inside a downloaded pyfunc (its path is recorded in MLmodel)."""
    flavor = Model.load(str(model_folder)).flavors.get("python_function", {})
    relative = (flavor.get("artifacts") or {}).get(ARTIFACT_KEY, {}).get("path")
    if relative is None:
        raise CheckpointError(
            f"{model_folder}: not a poseops model (no {ARTIFACT_KEY!r} artifact in MLmodel)"
        )
    return model_folder / relative


def download_version(
    family: str,
    alias_or_version: str | int = registry.CHAMPION,
    dst: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, str]]:
    """Fetch a registered version's checkpoint folder; returns (folder, {"name", "version"}).

    `dst` defaults to `.poseops/registry/poseops-<family>/v<version>/`, reused when its verified
    weights match the version's `weights_sha256` tag. The folder is replaced atomically.
    """
    name = registry.registered_name(family)
    version = registry.resolve_version(name, alias_or_version)
    ident = {"name": name, "version": version}
    target = Path(dst) if dst is not None else state_dir() / "registry" / name / f"v{version}"
    expected = registry.client().get_model_version(name, version).tags.get("weights_sha256")
    if dst is None and (target / MANIFEST).is_file():
        try:
            if verify_checkpoint(target)["files"][WEIGHTS]["sha256"] == expected:
                return target, ident
        except CheckpointError:
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.download-{uuid.uuid4().hex[:8]}")
    try:
        model_folder = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(staging)
            )
        )
        checkpoint = _checkpoint_in(model_folder)
        manifest = verify_checkpoint(checkpoint)
        if expected and manifest["files"][WEIGHTS]["sha256"] != expected:
            raise CheckpointError(
                f"{name} v{version}: downloaded weights differ from the registered weights_sha256"
            )
        fresh = target.with_name(f".{target.name}.new-{uuid.uuid4().hex[:8]}")
        os.replace(checkpoint, fresh)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(fresh, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, ident
