"""ONNX export of a checkpoint's network, and an onnxruntime forward for the family's predictor.

What is exported is the network's `forward(images)`: its tensor outputs, by name (handmle: `mu`,
`sigma`, `heatmaps`; vmhpe: `heatmaps`, `features`, `global`, `fused`). Everything data-dependent
stays in Python: decoding, and for bottom-up families the per-person instance heads, which run on the
centres the decoder finds (Wang et al. 2022, "Contextual Instance Decoupling", Sec. 3). The batch
axis is dynamic; the spatial size is the predictor's input size, recorded in the manifest.

    manifest = export_checkpoint("models/handmle", "exports/handmle/onnx", inputs)
    predictor = load_onnx_predictor("models/handmle")   # same decoding, forward on onnxruntime

An export folder holds `model.onnx` and `manifest.json` (written last): the checkpoint's weights
checksum, input and output names, and the equivalence figure: the largest absolute difference between
onnxruntime's and torch's outputs on the given inputs, per output.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from poseops.checkpoints import WEIGHTS, build_model_from_checkpoint, verify_checkpoint
from poseops.errors import PoseopsError
from poseops.families import Family, get_family, inference_settings
from poseops.paths import state_dir
from poseops.storage import sha256_file

ONNX_FILE = "model.onnx"
MANIFEST = "manifest.json"
FORMAT = "poseops-onnx/1"
INPUT_NAME = "images"
OPSET = 18
# Outputs must agree within 1e-4 absolute where they are at most 1 in magnitude (heatmaps,
# normalised coordinates, scales); larger outputs (backbone features) within 1e-4 of their largest
# magnitude. tests/unit/test_onnx_export.py measures both families.
TOLERANCE = 1e-4


class ExportError(PoseopsError):
    """An export that cannot be made or does not match torch; the message names the file or output."""


class _TensorOutputs(nn.Module):
    """forward(images) -> the model's tensor outputs as a tuple, in `names` order (ONNX needs a tuple)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(images)
        return tuple(outputs[name] for name in self.names)


def input_size(family: Family, model: nn.Module) -> int:
    """The square input side the family's predictor feeds the network (checkpoint settings)."""
    return int(family.make_predictor(model).input_size)


def tensor_output_names(model: nn.Module, size: int) -> list[str]:
    with torch.no_grad():
        outputs = model(model.preprocess(torch.zeros(1, size, size, 3, dtype=torch.uint8)))
    if not isinstance(outputs, dict):
        raise ExportError(
            f"{type(model).__name__}.forward returns {type(outputs).__name__}, not a dict of tensors"
        )
    return sorted(name for name, value in outputs.items() if isinstance(value, torch.Tensor))


def export_network(model: nn.Module, path: Path, size: int, opset: int = OPSET) -> list[str]:
    """Write `model.forward` at input [B, 3, size, size] (B dynamic) to `path`; returns output names."""
    model = model.eval()
    names = tensor_output_names(model, size)
    example = model.preprocess(torch.zeros(2, size, size, 3, dtype=torch.uint8))
    try:
        program = torch.onnx.export(
            _TensorOutputs(model, names).eval(),
            (example,),
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=4096)}},
            opset_version=opset,
            dynamo=True,
            # onnxscript's graph optimiser triples the export time; onnxruntime optimises the
            # graph itself when a session loads it
            optimize=False,
            verbose=False,
        )
    except Exception as exc:  # the exporter raises many kinds; the user needs the model named
        raise ExportError(
            f"{type(model).__name__}: torch.onnx.export failed: {str(exc).splitlines()[0]}"
        ) from exc
    program.save(str(path))
    return names


def session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with `threads` intra-op threads (default: torch's thread count)."""
    import onnxruntime  # optional extra `onnx`: only exports and the onnx runtime need it

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxForward:
    """Callable like `model.forward(images)`: runs the session and returns its outputs as tensors."""

    def __init__(self, onnx_session, names: list[str]):
        self.session = onnx_session
        self.names = names

    def __call__(self, images: torch.Tensor, targets: Any = None) -> dict[str, torch.Tensor]:
        if targets is not None:
            raise ExportError("an ONNX network is for inference: it takes no training targets")
        arrays = self.session.run(
            self.names, {INPUT_NAME: images.detach().cpu().numpy().astype(np.float32)}
        )
        return {name: torch.from_numpy(array) for name, array in zip(self.names, arrays)}


def with_forward(model: nn.Module, forward: OnnxForward) -> nn.Module:
    """A shallow copy of `model` (same submodules and weights) whose `forward` is `forward`.

    The family's `predict` and its task's predictor call `model(images)` and then decode in Python
    (and, for bottom-up families, run the instance heads on the decoded centres), so they run
    unchanged over the ONNX forward.
    """
    twin = copy.copy(model)
    object.__setattr__(twin, "forward", forward)
    return twin


def compare(
    model: nn.Module, forward: OnnxForward, inputs_rgb: np.ndarray, batch_size: int = 8
) -> dict[str, Any]:
    """Max |onnxruntime - torch| per output over inputs_rgb [N, S, S, 3] uint8 (the network's inputs)."""
    if len(inputs_rgb) == 0:
        raise ExportError("no inputs to compare torch and onnxruntime on")
    worst = dict.fromkeys(forward.names, 0.0)
    scale = dict.fromkeys(forward.names, 0.0)
    model = model.eval()
    with torch.no_grad():
        for start in range(0, len(inputs_rgb), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(inputs_rgb[start : start + batch_size]))
            images = model.preprocess(chunk)
            expected, got = model(images), forward(images)
            for name in forward.names:
                reference = expected[name].float()
                worst[name] = max(worst[name], float((got[name] - reference).abs().max()))
                scale[name] = max(scale[name], float(reference.abs().max()))
    limits = {name: TOLERANCE * max(1.0, scale[name]) for name in forward.names}
    return {
        "inputs": int(len(inputs_rgb)),
        "max_abs_diff": worst,
        "max_abs_value": scale,
        "tolerance": limits,
        "within_tolerance": all(worst[name] <= limits[name] for name in forward.names),
    }


def export_checkpoint(
    checkpoint_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    inputs_rgb: np.ndarray,
    inputs_source: str,
    opset: int = OPSET,
) -> dict[str, Any]:
    """Export a checkpoint's network to `out_dir` (model.onnx + manifest.json, written last).

    inputs_rgb [N, S, S, 3] uint8: what the predictor would feed the network (e.g. the evaluation
    split's inputs); inputs_source says what they are, in the manifest. Refuses (ExportError, nothing
    left at out_dir) when onnxruntime and torch differ by more than the tolerance.
    """
    checkpoint = Path(checkpoint_dir)
    checkpoint_manifest = verify_checkpoint(checkpoint)
    model = build_model_from_checkpoint(checkpoint)
    family = get_family(checkpoint_manifest["family"])
    size = input_size(family, model)
    if inputs_rgb.shape[1:] != (size, size, 3):
        raise ExportError(
            f"{inputs_source}: inputs of shape {tuple(inputs_rgb.shape[1:])}, the network takes "
            f"({size}, {size}, 3)"
        )
    target = Path(out_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        names = export_network(model, staging / ONNX_FILE, size, opset)
        forward = OnnxForward(session(staging / ONNX_FILE), names)
        equivalence = compare(model, forward, inputs_rgb)
        equivalence["inputs_source"] = inputs_source
        if not equivalence["within_tolerance"]:
            bad = [
                f"{n}: {equivalence['max_abs_diff'][n]:.3g} > {equivalence['tolerance'][n]:.3g}"
                for n in names
                if equivalence["max_abs_diff"][n] > equivalence["tolerance"][n]
            ]
            raise ExportError(
                f"{checkpoint}: onnxruntime differs from torch on {inputs_source}: {'; '.join(bad)}"
            )
        manifest = {
            "format": FORMAT,
            "family": family.name,
            "model": checkpoint_manifest["model"],
            "weights_sha256": checkpoint_manifest["files"][WEIGHTS]["sha256"],
            "onnx": {"file": ONNX_FILE, "sha256": sha256_file(staging / ONNX_FILE)},
            "opset": opset,
            "input": {"name": INPUT_NAME, "shape": ["batch", 3, size, size], "dtype": "float32"},
            "preprocess": f"{type(model).__name__}.preprocess (uint8 RGB -> normalised float)",
            "outputs": names,
            "equivalence": equivalence,
            "onnxruntime": _version("onnxruntime"),
            "torch": torch.__version__,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def read_export(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a complete export whose model.onnx matches its checksum."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportError(f"{path}: no manifest: not a finished ONNX export")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    onnx_file = folder / manifest["onnx"]["file"]
    if not onnx_file.is_file() or sha256_file(onnx_file) != manifest["onnx"]["sha256"]:
        raise ExportError(f"{onnx_file}: missing or differs from its manifest's sha256")
    return manifest


def split_inputs(
    checkpoint_dir: str | os.PathLike, dataset_url: str, split: str, limit: int | None = None
) -> np.ndarray:
    """A derived dataset's split as the checkpoint's predictor feeds it to the network [N, S, S, 3]."""
    model = build_model_from_checkpoint(checkpoint_dir)
    family = get_family(model.checkpoint_info["family"])
    return family.task_module.network_inputs(
        model, dataset_url, split, inference_settings(model, family.model), limit
    )


def random_inputs(size: int, count: int = 4, seed: int = 0) -> np.ndarray:
    """count uint8 RGB inputs [count, size, size, 3] of uniform noise (when no data split is at hand)."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def cached_export(checkpoint_dir: str | os.PathLike) -> Path:
    """The export of a checkpoint under `.poseops/onnx/<family>/<weights sha256>/`, made on first use
    (equivalence checked on noise inputs: serving has no data split)."""
    checkpoint_manifest = verify_checkpoint(checkpoint_dir)
    sha = checkpoint_manifest["files"][WEIGHTS]["sha256"]
    folder = state_dir() / "onnx" / checkpoint_manifest["family"] / sha[:16]
    try:
        if read_export(folder)["weights_sha256"] == sha:
            return folder
    except ExportError:
        pass
    model = build_model_from_checkpoint(checkpoint_dir)
    size = input_size(get_family(checkpoint_manifest["family"]), model)
    export_checkpoint(checkpoint_dir, folder, random_inputs(size), "4 uniform-noise images")
    return folder


def onnx_model(checkpoint_dir: str | os.PathLike, export_dir: str | os.PathLike | None = None):
    """(the checkpoint's model with its forward on onnxruntime, the export's manifest)."""
    folder = Path(export_dir) if export_dir is not None else cached_export(checkpoint_dir)
    manifest = read_export(folder)
    model = build_model_from_checkpoint(checkpoint_dir)
    sha = model.checkpoint_info["weights_sha256"]
    if manifest["weights_sha256"] != sha:
        raise ExportError(
            f"{folder / MANIFEST}: exported from weights {manifest['weights_sha256'][:12]}, "
            f"not the checkpoint's {sha[:12]}"
        )
    forward = OnnxForward(session(folder / manifest["onnx"]["file"]), manifest["outputs"])
    return with_forward(model, forward), manifest


def load_onnx_predictor(
    checkpoint_dir: str | os.PathLike,
    version: str = "local",
    export_dir: str | os.PathLike | None = None,
):
    """The family's predictor (same preprocessing and Python decoding) over the ONNX forward."""
    model, manifest = onnx_model(checkpoint_dir, export_dir)
    predictor = get_family(manifest["family"]).make_predictor(model, version=version)
    predictor.runtime = "onnx"
    return predictor
