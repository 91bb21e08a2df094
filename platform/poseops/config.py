"""The schema of `params.yaml`, validated once at the edge; code below gets typed objects.

`params.yaml` holds the resolved values DVC tracks. Profiles (`profiles/<name>.yaml`) have the same
shape, except that a family's `model` block may say `preset: <name>` (plus overrides): `poseops config
use <profile>` resolves it through the model file's presets and writes the result to `params.yaml`.

Each family's `model` block is validated by that model's own pydantic `Config`, and its `data` block by
its task's options (a `FamilyData` subclass); this module knows nothing of models or tasks, so the caller
passes `model_schemas` and `data_schemas` (see `poseops.families.load_params`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import limits
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from poseops.errors import ConfigError
from poseops.skeletons import TASK_CHAINS


class Strict(BaseModel):
    """Base of every config block: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- data
class HandCaptureParams(Strict):
    sequences: int = Field(12, ge=2, description="synthetic hand sequences")
    frames_per_sequence: int = Field(40, ge=1)
    image_size: int = Field(160, ge=32, description="square frame side, px")
    # Label noise on the training labels only (`keypoints`); `keypoints_clean` keeps the truth for evaluation.
    label_noise_px: float = Field(0.0, ge=0, description="jitter sigma, px")
    label_noise: Literal["gaussian", "laplace"] = "gaussian"
    outlier_rate: float = Field(0.0, ge=0, le=1, description="share of keypoints moved far")
    outlier_box_fraction: float = Field(
        0.3, ge=0, description="outlier displacement sigma / hand box side"
    )


class BodyCaptureParams(Strict):
    """Synthetic multi-view body captures (poseops.capture.synthetic_bodies)."""

    sequences: int = Field(
        20, ge=1, description="sequences; kinds cycle over tasks x performers, then actions"
    )
    frames_per_sequence: int | None = Field(
        None, ge=2, description="kept frames; None: Table 2 durations (actions 20)"
    )
    frame_step: int = Field(10, ge=1, description="capture frames (30 fps) per kept frame")
    image_size: int = Field(256, ge=64, multiple_of=2, description="render height, px")
    views: int = Field(5, ge=1, le=5, description="front (Kinect-like) + up to 4 Human3.6M cameras")
    zoom: float = Field(
        1.0,
        ge=1.0,
        le=4.0,
        description="focal lengths x zoom: people fill more of each view "
        "(1: the real calibrations, at which Tables 1-2 hold)",
    )
    people: tuple[int, int] = Field((1, 3), description="people per sequence (low, high)")
    tasks: list[Literal["TO", "PF", "CR", "CT", "PC"]] = ["TO", "PF", "CR", "CT", "PC"]
    performers: list[Literal["expert", "trainee"]] = ["expert", "trainee"]
    actions: list[Literal["walk", "squat", "reach", "turn"]] = ["walk", "squat", "reach", "turn"]
    occluders: tuple[int, int] = Field((0, 2), description="occluders per view (low, high)")
    jpeg_quality: int = Field(95, ge=50, le=100)
    shard_images: int = Field(500, ge=1, description="JPEGs per image shard (tar)")
    # Label noise on the training labels only (`keypoints`); `keypoints_clean` keeps the truth.
    label_noise_px: float = Field(0.0, ge=0, description="jitter sigma, px")
    label_noise: Literal["gaussian", "laplace"] = "gaussian"
    outlier_rate: float = Field(0.0, ge=0, le=1, description="share of keypoints moved far")
    outlier_box_fraction: float = Field(
        0.3, ge=0, description="outlier displacement sigma / person box side"
    )
    swap_rate: float = Field(
        0.0, ge=0, le=1, description="share of person labels with left/right swapped"
    )

    @field_validator("people", "occluders")
    @classmethod
    def _low_high(cls, value: tuple[int, int], info) -> tuple[int, int]:
        least = 1 if info.field_name == "people" else 0
        if not least <= value[0] <= value[1]:
            raise ValueError(f"must be (low, high) with {least} <= low <= high, got {value}")
        return value


class SequenceCaptureParams(Strict):
    """Long labels-only motion sequences for lifting (poseops.capture.synthetic_sequences)."""

    count: int = Field(22, ge=1, description="sequences; subjects cycle as the bodies' do")
    frames: int = Field(300, ge=2, description="kept frames per sequence")
    views: int = Field(4, ge=1, le=5, description="front camera + up to 4 Human3.6M cameras")
    frame_step: int | None = Field(
        None,
        ge=1,
        description="capture frames (30 fps) per kept frame; None: the bodies' frame_step",
    )


class CaptureParams(Strict):
    generator: Literal["synthetic"] = "synthetic"
    seed: int = 0
    hands: HandCaptureParams | None = Field(
        HandCaptureParams(), description="hand sequences (null: none)"
    )
    bodies: BodyCaptureParams | None = Field(
        None, description="multi-view body sequences (null: none)"
    )
    sequences: SequenceCaptureParams | None = Field(
        None, description="long labels-only sequences for lifting (null: none)"
    )

    @model_validator(mode="after")
    def _something_to_render(self) -> CaptureParams:
        if self.hands is None and self.bodies is None:
            raise ValueError("set hands, bodies or both: there is nothing to render")
        return self


class AnnotationSource(Strict):
    format: str = Field(
        description="coco, mpii, posetrack, interhand, h36m, freihand, panoptic, or an importer "
        "plug-in's name (checked when the source is read)"
    )
    file: str
    images: str | None = None
    views: list[str] | None = Field(
        None, description="panoptic: camera views to import (default: five HD views)"
    )
    cameras: str | None = Field(None, description="h36m: cameras.pkl (default: beside the npz)")
    name: str | None = Field(
        None, description="the source's name in datasets and weights (default: format:file name)"
    )
    keypoint_map: dict[str, str] | None = Field(
        None, description="the file's keypoint names -> a known set's names"
    )
    strict: bool = Field(
        False, description="refuse repairs, warnings and categories no family takes"
    )


class SplitParams(Strict):
    """Train / validation / test by unit (a subject, or a sequence): a unit's samples all land in one split.

    Validation picks checkpoints and stops on plateaus; test is what metrics.json, reports and the
    promotion gate score, and nothing else reads it. The test units are the first round(n *
    test_fraction) of a seeded permutation of the units, so the test set does not move when
    val_fraction changes (tests/unit/test_datasets.py::test_splits_are_disjoint_and_deterministic).
    """

    by: Literal["subject", "sequence"] = Field(
        "subject",
        description="split unit: subject (all of a person's or hand identity's sequences together, "
        "else its sequence) or sequence",
    )
    test_fraction: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="share of units held out for testing (metrics.json, reports, gates); "
        "needs 3 or more units",
    )
    val_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="share of units held out for validation (checkpoint selection, plateau stops)",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _leaves_training(self) -> SplitParams:
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"test_fraction {self.test_fraction} + val_fraction {self.val_fraction} leave no "
                "training units (their sum must be below 1)"
            )
        return self

    def describe(self) -> str:
        """One line a report states beside its numbers."""
        return (
            f"split by {self.by} (test_fraction {self.test_fraction}, val_fraction "
            f"{self.val_fraction}, split seed {self.seed}); train, validation and test share no {self.by}"
        )


class DataParams(Strict):
    capture: CaptureParams = CaptureParams()
    annotations: list[AnnotationSource] = []
    split: SplitParams = SplitParams()
    weights: dict[str, float] = Field(
        {},
        description="source (an image's `source`: synthetic, a source's name, ...) -> share of its training "
        "samples kept, 0..1 (default 1); validation keeps every source",
    )

    @field_validator("weights")
    @classmethod
    def _shares(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in weights.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"weights must lie in [0, 1] (got {bad})")
        return weights


# ---------------------------------------------------------------- families
class AugmentParams(Strict):
    rotation_deg: float = Field(30.0, ge=0, le=180)
    scale: tuple[float, float] = (0.75, 1.25)
    shift: float = Field(0.1, ge=0, le=0.5, description="fraction of the crop side")
    color_jitter: float = Field(0.2, ge=0, le=1)
    flip: bool = False


class FamilyData(Strict):
    """What every task's data options share. Each task (`poseops.tasks.<kind>`) subclasses this with its
    own fields and `kind: Literal["<kind>"]`; `poseops.tasks.FamilyData` is their union, discriminated on
    `kind`. A family's `data` block in params.yaml names no kind: its row's task supplies it."""

    kind: str
    shard_margin: float = Field(
        1.5, ge=1.0, le=3.0, description="stored crop side / box's longer side"
    )
    max_shard_bytes: int = Field(64 << 20, ge=1 << 16)
    max_samples: int | None = Field(
        None,
        ge=1,
        description="cap per split (tiny profiles); each source keeps the same share of its samples, "
        "at least one where the cap has room (the card's source.cap counts the kept and dropped)",
    )

    def derive_options(self) -> dict[str, Any]:
        """The settings the task's row plan reads (`derive_dataset(options=...)`)."""
        return {}


class FamilyTrain(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="global batch, split over the workers")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_milestones: list[int] = []
    lr_gamma: float = Field(0.1, gt=0, le=1)
    num_workers: int = Field(1, ge=1, description="Ray Train workers")
    cpus_per_worker: float = Field(1.0, gt=0)
    loader_workers: int = Field(0, ge=0)
    use_gpu: bool = Field(
        False, description="one GPU share per worker; DDP over NCCL (gloo on CPU)"
    )
    gpus_per_worker: float = Field(1.0, gt=0, description="GPUs per worker when use_gpu")
    bf16: bool = Field(False, description="bfloat16 autocast for forward and loss")
    accumulate: int = Field(1, ge=1, description="micro-batches per optimiser step")
    compile: bool = Field(False, description="torch.compile the model")
    max_failures: int = Field(
        0, ge=-1, description="worker-group restarts from the latest checkpoint (-1: no limit)"
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK",
        description="how Ray places the workers' bundles on nodes (STRICT_SPREAD: one per node)",
    )
    storage_path: str | None = Field(
        None,
        description="Ray Train storage (a folder or an fsspec/pyarrow URL such as s3://bucket/path) "
        "for per-epoch checkpoints; None: .poseops/ray_results",
    )
    seed: int = 0
    # Stop early at a validation plateau: the last `plateau_window` evaluations lie within
    # `plateau_min_delta` of each other (None: always run `epochs`, which stays the cap).
    plateau_window: int | None = Field(None, ge=2)
    plateau_min_delta: float = Field(0.005, gt=0)
    plateau_min_epochs: int = Field(
        0, ge=0, description="epochs before a plateau may stop training"
    )


class FamilyEvaluate(Strict):
    max_images: int | None = Field(
        None,
        ge=1,
        description="bottom-up: score at most this many validation images, spread evenly over "
        "the split (None: all of them)",
    )


class FamilyPredict(Strict):
    """predict@<family>: which frames of the labels-only long sequences a 2D family predicts tracks for
    (the families that declare it as an input lift them); a subsample keeps the smoke profile cheap."""

    sequences: int | None = Field(
        None, ge=1, description="the first n sequences (in id order); None: all of them"
    )
    views: list[str] | None = Field(
        None, description="view names (e.g. front, cam_54138969); None: every view"
    )
    batch_size: int = Field(64, ge=1, description="crops per forward pass")
    flip_test: bool | None = Field(
        None, description="average with the mirrored crop; None: the checkpoint's setting"
    )


class ServeAutoscaling(Strict):
    """Serve's autoscaling for one family: replicas between min and max, aiming at this many requests in
    flight per replica (Serve's `autoscaling_config`)."""

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(
        4.0, gt=0, description="requests in flight per replica that Serve scales towards"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ServeAutoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class FamilyServe(Strict):
    """One family's Serve deployment: resources, replicas, request batching (`@serve.batch`)."""

    num_cpus: float = Field(0.25, gt=0, description="fractional CPUs per replica")
    num_replicas: int = Field(
        1, ge=1, description="replicas (the initial count when autoscaling is set)"
    )
    autoscaling: ServeAutoscaling | None = Field(
        None, description="scale between min and max replicas (None: a fixed num_replicas)"
    )
    max_batch_size: int = Field(
        8, ge=1, le=256, description="most requests one forward pass takes (1: no batching)"
    )
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, le=1, description="longest wait for a batch to fill after its first request"
    )
    max_ongoing_requests: int = Field(
        32, ge=1, description="requests a replica accepts at once (Serve queues the rest)"
    )
    runtime: Literal["torch", "onnx"] = Field(
        "torch",
        description="the network's forward in torch, or exported to ONNX and run by onnxruntime "
        "(decoding stays in Python either way; needs the `onnx` extra)",
    )

    @field_validator("runtime")
    @classmethod
    def _runtime_installed(cls, runtime: str) -> str:
        if runtime == "onnx":
            missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if find_spec(m) is None]
            if missing:
                raise ValueError(
                    f"runtime 'onnx' needs {', '.join(missing)} installed (pip install 'poseops[onnx]')"
                )
        return runtime

    @model_validator(mode="after")
    def _consistent(self) -> FamilyServe:
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) is below max_batch_size "
                f"({self.max_batch_size}): a batch could never fill"
            )
        scaling = self.autoscaling
        if scaling and not scaling.min_replicas <= self.num_replicas <= scaling.max_replicas:
            raise ValueError(
                f"num_replicas ({self.num_replicas}) is outside autoscaling's "
                f"[{scaling.min_replicas}, {scaling.max_replicas}]"
            )
        return self


class GateParams(BaseModel):
    """The promotion gate: absolute thresholds `min_<metric>` / `max_<metric>` on metrics.json, plus

    min_delta: a challenger must beat the champion's primary metric by at least this much, on the same
        evaluation data (same dataset checksum and split); 0 means "not worse".
    strict: a refusal fails the promote stage (exit 1, for CI gates) instead of being recorded.

    Reads like the mapping of thresholds (`"min_ap" in gate`, `gate["min_ap"]`)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    min_delta: float = Field(
        0.0, description="a challenger's primary metric must exceed the champion's by this"
    )
    strict: bool = Field(False, description="a refused promotion exits 1 instead of being recorded")

    @model_validator(mode="after")
    def _threshold_keys(self) -> GateParams:
        for key, value in (self.model_extra or {}).items():
            if not key.startswith(("min_", "max_")) or len(key) < 5:
                raise ValueError(
                    f"gate key {key!r} must be min_<metric> or max_<metric> (or min_delta, strict)"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"gate key {key!r}: threshold {value!r} is not a number")
        return self

    def thresholds(self) -> dict[str, float]:
        return {key: float(value) for key, value in (self.model_extra or {}).items()}

    def __contains__(self, key: object) -> bool:
        return key in self.thresholds()

    def __getitem__(self, key: str) -> float:
        return self.thresholds()[key]


class FamilyParams(Strict):
    model: Any  # validated by the family's model Config (see validate_params)
    data: Any  # validated by the family's task options, a FamilyData subclass (see validate_params)
    train: FamilyTrain = FamilyTrain()
    evaluate: FamilyEvaluate = FamilyEvaluate()
    predict: FamilyPredict = FamilyPredict()
    gate: GateParams = GateParams()
    serve: FamilyServe = FamilyServe()


# ---------------------------------------------------------------- serving
class ServeParams(Strict):
    """The HTTP service: address, request limits, model-version polling, access control, logs."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(10_000_000, ge=1)
    max_pixels: int = Field(16_000_000, ge=1)
    alias_poll_s: float = Field(
        2.0,
        gt=0,
        le=10,
        description="how often the service re-reads a registry alias (a promotion is served "
        "within this)",
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="Serve's end-to-end limit on one HTTP request"
    )
    api_keys_env: str | None = Field(
        None,
        description="environment variable holding accepted X-API-Key values, comma-separated "
        "(with api_keys_file: either; neither: no key needed)",
    )
    api_keys_file: str | None = Field(
        None, description="file of accepted X-API-Key values, one a line"
    )
    rate_limit: str | None = Field(
        None,
        description="requests per client (its API key, else its address) in the `limits` "
        "notation, e.g. '20/second' or '600/minute'; None: no limit",
    )
    log_encoding: Literal["JSON", "TEXT"] = Field(
        "JSON", description="Serve's log lines: one JSON object each (with request_id) or text"
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:  # the rate limiter's own parser: what it accepts is what is valid
                limits.parse(value)
            except ValueError:
                raise ValueError(
                    f"rate_limit {value!r}: expected '<count>/<second|minute|hour>'"
                ) from None
        return value


# ---------------------------------------------------------------- action assessment
AssessTask = Literal["TO", "PF", "CR", "CT", "PC"]


class OneEuroParams(Strict):
    """One-Euro filter settings (Casiez, Roussel, Vogel 2012, CHI): cutoffs in Hz at `rate_hz` frames a second."""

    min_cutoff: float = Field(1.0, gt=0)
    beta: float = Field(0.0, ge=0)
    d_cutoff: float = Field(1.0, gt=0)
    rate_hz: float = Field(3.0, gt=0, description="frames per second of the scored sequences")


class ScoringParams(Strict):
    """How `poseops.assess.assess` scores a trial against a reference (its `**options`)."""

    sigma_deg: float = Field(15.0, gt=0, description="per-angle similarity exp(-d^2 / (2 sigma^2))")
    weights: dict[AssessTask, dict[str, float]] = Field(
        default_factory=lambda: {
            task: dict.fromkeys(chains, 1.0) for task, chains in TASK_CHAINS.items()
        },
        description="per task: chain -> relative weight (a task left out: its chains, equal weights)",
    )
    smoothing: Literal["none", "moving_average", "one_euro"] = "none"
    smoothing_window: int = Field(3, ge=1, description="moving_average: frames")
    one_euro: OneEuroParams = OneEuroParams()
    bone_weight: float = Field(
        0.0, ge=0, le=1, description="share of the score from bone-direction cosines"
    )
    fluctuation: Literal["max_min", "p5_p95"] = "max_min"
    # Table 8's "key angle chain fluctuation range": of the trial's deviation from the aligned reference
    # (default), or of the trial's chain angle itself (Table 7's professionals vary by +-9.8 to 14.2 deg,
    # so that range exceeds 10 deg for them too).
    fluctuation_of: Literal["deviation", "angle"] = "deviation"
    cap_by_fluctuation: bool = Field(
        False, description="fluctuation may lower the grade (Table 8 limits)"
    )
    allow_mirror: bool = Field(
        True,
        description="symmetric tasks: score the left/right mirrored trial too, keep the better",
    )
    min_score: float = Field(
        0.0, ge=0, description="[T,K,3] inputs: a joint counts as missing at or below this"
    )
    min_coverage: float = Field(
        0.5, gt=0, le=1, description="share of frames a chain needs to be scored"
    )
    dtw_window: int | None = Field(
        None, ge=1, description="Sakoe-Chiba band, frames (None: unconstrained)"
    )


class AssessVideoParams(Strict):
    """MP4 inputs: the vmhpe checkpoint that predicts keypoints, on every `frame_step`-th frame."""

    checkpoint: str = "models/vmhpe"
    frame_step: int = Field(1, ge=1)
    min_score: float = Field(
        0.05, ge=0, description="predicted keypoints at or below this score are missing"
    )


class AssessSyntheticParams(Strict):
    """The `assess` stage's synthetic expert and trainee performances (labels only)."""

    seed: int = 0
    performers: int = Field(3, ge=1, description="experts and trainees per task")
    trainee_offset_deg: float | None = Field(
        None,
        description="trainees' offset on the task's chain (None: Table 7's ordinary minus professional mean)",
    )
    label_noise_px: float = Field(0.5, ge=0)


class AssessParams(Strict):
    scoring: ScoringParams = ScoringParams()
    video: AssessVideoParams = AssessVideoParams()
    synthetic: AssessSyntheticParams = AssessSyntheticParams()
    max_frames: int = Field(
        5000, ge=2, description="longest sequence the CLI and the endpoint accept"
    )


class Params(Strict):
    profile: str = "smoke"
    seed: int = 0
    data: DataParams = DataParams()
    serve: ServeParams = ServeParams()
    assess: AssessParams = AssessParams()
    families: dict[str, FamilyParams] = {}


# ---------------------------------------------------------------- loading
ModelSchemas = Mapping[str, type[BaseModel]]


def _allowed_keys(schema: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the block at `loc` inside `schema` (walking nested models and dict values)."""
    model: Any = schema
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part))
        if field is None:  # a key of a dict-valued field, e.g. families.<name>
            continue
        model = _model_in(field.annotation)
        if model is None:
            return []
        if part == "families":
            model = FamilyParams
    return (
        list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []
    )


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(exc: ValidationError, source: str, schema: type[BaseModel], prefix: str = "") -> str:
    """One line per problem: `<file>: <dotted.key>: <what>`, naming the allowed keys for unknown ones."""
    lines = []
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(schema, err["loc"][:-1])
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{source}: {loc}: unknown key{hint}")
        else:
            lines.append(f"{source}: {loc}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def validate_params(
    raw: Mapping[str, Any],
    model_schemas: ModelSchemas,
    source: str = "params.yaml",
    data_schemas: ModelSchemas | None = None,
) -> Params:
    """Validate a params mapping; each family's `model` block goes through `model_schemas[family]` and its
    `data` block through `data_schemas[family]` (its task's options; `kind` comes from the schema)."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, Params)) from None
    families = {}
    for name, fam in params.families.items():
        if name not in model_schemas:
            raise ConfigError(
                f"{source}: families.{name}: no such family; families: {', '.join(sorted(model_schemas))}"
            )
        if not isinstance(fam.model, Mapping):
            raise ConfigError(
                f"{source}: families.{name}.model: must be a mapping of the model's config values"
            )
        schema = model_schemas[name]
        try:
            model_config = schema.model_validate(dict(fam.model))
        except ValidationError as exc:
            raise ConfigError(
                _describe(exc, source, schema, prefix=f"families.{name}.model.")
            ) from None
        data = _validate_data(name, fam.data, (data_schemas or {}).get(name), source)
        families[name] = fam.model_copy(update={"model": model_config, "data": data})
    return params.model_copy(update={"families": families})


def _validate_data(name: str, raw: Any, schema: type[BaseModel] | None, source: str) -> FamilyData:
    if isinstance(raw, FamilyData):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: families.{name}.data: must be a mapping of the task's data options"
        )
    if schema is None:
        raise ConfigError(
            f"{source}: families.{name}.data: no task options known for family {name!r}"
        )
    kind = schema.model_fields["kind"].default
    given = raw.get("kind", kind)
    if given != kind:
        raise ConfigError(
            f"{source}: families.{name}.data.kind: {given!r}, but family {name!r} is a {kind} "
            "family (its row in the family table names its task; drop the key)"
        )
    try:
        return schema.model_validate({**raw, "kind": kind})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, schema, prefix=f"families.{name}.data.")) from None


def load_params(
    path: str | os.PathLike, model_schemas: ModelSchemas, data_schemas: ModelSchemas | None = None
) -> Params:
    return validate_params(
        read_yaml(path), model_schemas, source=str(path), data_schemas=data_schemas
    )
