"""The `lifting_sequence` task: windows of T frames of one person seen by one camera, for 2D->3D lifting.

Row (LIFTING_SCHEMA): keypoints_2d [T*K*2] source px, visibility [T*K] (COCO 0/1/2), keypoints_3d_cam
[T*K*3] camera-space mm relative to the root joint (joint `root`, 0 = the pelvis of h36m17), root_cam [T*3]
the root in camera space mm, valid_3d [T*K] (0 where the annotation has no 3D for the joint; its 3D is NaN),
intrinsics [fx, fy, cx, cy], the camera as JSON (poseops.geometry.Camera fields), and the ids.

From internal annotations that carry keypoints_3d (world mm) on images with a camera_id. A track is one
(sequence, camera, person) in frame order (person: person_id, else track_id, else the only one); windows
start every `stride` frames (default T: no overlap) and hold exactly T frames (shorter tracks are left out).
No targets beyond the 3D itself: training and evaluation normalise after loading.

Derive reads the annotate stage's `sequences.json` (the labels-only long sequences); with input_2d
`predicted` it also reads a 2D family's predict stage tracks (`poseops.datasets.tracks`, mapped to the
family's skeleton through poseops.skeletons) into keypoints_2d_input / scores_input (null otherwise).
After loading, the windows of one (sequence, camera) are put back together as a track, and every frame of a track is a
sample: the T frames around it, edge-replicated at the track's ends (VideoPose3D: Pavllo et al. 2019,
"3D human pose estimation in video with temporal convolutions and semi-supervised training"), 2D
normalised as x' = 2x/w - 1, y' = 2y/w - h/w, targets the frame's root-relative camera-frame 3D in mm.
The 2D input is the ground truth, a "detected track" (`DetectedTrackParams`: Gaussian jitter, outliers,
dropped joints filled by interpolation over time), or a 2D family's predicted tracks.
Scores: MPJPE, P-MPJPE (Procrustes) and MPJVE over every frame of the split's tracks
(poseops.metrics.pose3d), against the training set's mean pose and the untrained model.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import Field, model_validator
from torch import nn

from poseops import metrics
from poseops.config import FamilyData, FamilyParams, Strict
from poseops.datasets.derive import RowPlan, dataset_checksum
from poseops.datasets.shards import instances, unit_of
from poseops.errors import ConfigError, DataError
from poseops.geometry import Camera
from poseops.models import build_from_config
from poseops.skeletons import COCO17, H36M17, Skeleton, get_skeleton, map_keypoints
from poseops.tasks import Artefact, Evaluation, Task, register_task
from poseops.viz.curves import plot_bars

DEFAULT_WINDOW = 27

LIFTING_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("sequence", pa.string()),
        ("subject", pa.string()),
        ("person", pa.string()),
        ("camera_id", pa.int64()),
        ("view", pa.string()),
        ("frame_indices", pa.list_(pa.int64())),  # T
        ("image_ids", pa.list_(pa.int64())),  # T
        ("annotation_ids", pa.list_(pa.int64())),  # T
        ("keypoints_2d", pa.list_(pa.float32())),  # T*K*2 source px
        ("visibility", pa.list_(pa.int8())),  # T*K
        ("keypoints_3d_cam", pa.list_(pa.float32())),  # T*K*3 camera mm, root-relative
        ("root_cam", pa.list_(pa.float32())),  # T*3 camera mm
        ("valid_3d", pa.list_(pa.int8())),  # T*K
        ("intrinsics", pa.list_(pa.float64())),  # fx, fy, cx, cy
        ("camera", pa.string()),  # JSON of poseops.geometry.Camera
        ("keypoints_2d_input", pa.list_(pa.float32())),  # T*K*2 predicted px, null unless predicted
        ("scores_input", pa.list_(pa.float32())),  # T*K, null unless predicted
    ]
)


def camera_of(record: dict) -> Camera:
    """A poseops.geometry.Camera from an annotations `cameras` record (extra keys such as id, subject dropped)."""
    return Camera(**{k: v for k, v in record.items() if k in Camera.model_fields})


def world_points(ann: dict, num_keypoints: int) -> np.ndarray:
    """keypoints_3d of an annotation as [K,3] world mm, NaN where a joint (or the whole field) is null."""
    raw = ann.get("keypoints_3d")
    if raw is None:
        return np.full((num_keypoints, 3), np.nan)
    values = [np.nan if v is None else float(v) for v in raw]
    return np.asarray(values, dtype=np.float64).reshape(num_keypoints, 3)


def person_key(ann: dict) -> str:
    if ann.get("person_id") not in (None, ""):
        return str(ann["person_id"])
    if ann.get("track_id") is not None:
        return f"track:{ann['track_id']}"
    return ""


def plan_windows(labels: dict, skeleton: Skeleton, options: dict) -> list[dict]:
    """One item per window: {"unit", "sample_id", "camera", "frames": [(image, annotation)] * T, ids}."""
    T = int(options.get("window", DEFAULT_WINDOW))
    stride = int(options.get("stride") or T)
    if T < 1 or stride < 1:
        raise DataError(f"derive: lifting window {T} and stride {stride} must be >= 1")
    cameras = {c["id"]: c for c in labels.get("cameras") or []}
    tracks: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for image, ann in instances(labels, skeleton):
        if ann.get("keypoints_3d") is None or image.get("camera_id") is None:
            continue
        if image["camera_id"] not in cameras:
            raise DataError(
                f"image {image['id']}: camera_id {image['camera_id']} is not in the annotations' cameras"
            )
        tracks[(str(image.get("sequence") or ""), image["camera_id"], person_key(ann))].append(
            (image, ann)
        )
    items: list[dict] = []
    for (sequence, camera_id, person), frames in tracks.items():
        frames.sort(key=lambda pair: (pair[0].get("frame_index") or 0, pair[0]["id"]))
        for start in range(0, len(frames) - T + 1, stride):
            window = frames[start : start + T]
            first = window[0][0]
            items.append(
                {
                    "unit": unit_of(first),
                    "sequence_unit": unit_of(first, "sequence"),
                    "sample_id": len(items),
                    "source": first.get("source"),
                    "camera": cameras[camera_id],
                    "camera_id": int(camera_id),
                    "person": person,
                    "sequence": sequence,
                    "subject": str(first.get("subject") or ""),
                    "view": str(first.get("view") or ""),
                    "frames": [
                        {
                            "image_id": img["id"],
                            "frame_index": img.get("frame_index"),
                            "annotation": ann,
                        }
                        for img, ann in window
                    ],
                }
            )
    if options.get("input_tracks"):
        attach_predictions(items, str(options["input_tracks"]), skeleton)
    return items


def window_rows(items: list[dict], context) -> Iterator[dict]:
    """Shard rows (LIFTING_SCHEMA); context: poseops.datasets.derive.RowContext (options: root)."""
    K = context.num_keypoints
    root = int(context.options.get("root", 0))
    for item in items:
        camera = camera_of(item["camera"])
        predicted = item.get("input_2d")
        anns = [f["annotation"] for f in item["frames"]]
        kp = np.stack(
            [np.asarray(a["keypoints"], dtype=np.float64).reshape(K, 3) for a in anns]
        )  # [T,K,3]
        world = np.stack([world_points(a, K) for a in anns])  # [T,K,3]
        cam = world @ camera.rotation.T + camera.translation
        root_cam = cam[:, root]  # [T,3]
        yield {
            "sample_id": item["sample_id"],
            "sequence": item["sequence"],
            "subject": item["subject"],
            "person": item["person"],
            "camera_id": item["camera_id"],
            "view": item["view"],
            "frame_indices": [
                -1 if f["frame_index"] is None else int(f["frame_index"]) for f in item["frames"]
            ],
            "image_ids": [int(f["image_id"]) for f in item["frames"]],
            "annotation_ids": [int(a["id"]) for a in anns],
            "keypoints_2d": kp[..., :2].astype(np.float32).ravel().tolist(),
            "visibility": kp[..., 2].astype(np.int8).ravel().tolist(),
            "keypoints_3d_cam": (cam - root_cam[:, None]).astype(np.float32).ravel().tolist(),
            "root_cam": root_cam.astype(np.float32).ravel().tolist(),
            "valid_3d": np.isfinite(cam).all(-1).astype(np.int8).ravel().tolist(),
            "intrinsics": [camera.fx, camera.fy, camera.cx, camera.cy],
            "camera": camera.model_dump_json(),
            "keypoints_2d_input": None if predicted is None else predicted["keypoints"],
            "scores_input": None if predicted is None else predicted["scores"],
        }


def card_fields(items: list[dict], context) -> dict[str, Any]:
    T = len(items[0]["frames"])
    fields = {
        "window": T,
        "stride": int(context.options.get("stride") or T),
        "root_joint": int(context.options.get("root", 0)),
        "cameras": len({item["camera_id"] for item in items}),
    }
    if items[0].get("input_2d") is not None:
        fields["input_2d"] = items[0]["input_2d_source"]
    return fields


def attach_predictions(items: list[dict], folder: str, skeleton: Skeleton) -> None:
    """Give every window its predicted 2D (keypoints [T*K*2] px and scores [T*K], mapped from the
    tracks' skeleton to `skeleton` through poseops.skeletons) from a predict stage's tracks folder
    (relative to the project root); a window whose (sequence, view, frame) has no prediction is a
    DataError naming the tracks file."""
    from pathlib import Path

    from poseops.datasets.tracks import PredictedTracks
    from poseops.paths import repo_root

    path = Path(folder)
    tracks = PredictedTracks(path if path.is_absolute() else repo_root() / path)
    source = get_skeleton(tracks.skeleton)
    if len(tracks.manifest["keypoints"]) != source.num_keypoints:
        raise DataError(f"{tracks.folder / 'manifest.json'}: keypoints do not match {source.name}")
    summary = {
        "tracks": str(folder),
        "family": tracks.manifest.get("family"),
        "skeleton": source.name,
        "tracks_sha256": tracks.manifest["tracks"]["sha256"],
        "protocol": tracks.manifest.get("protocol"),
    }
    for item in items:
        frames = [f["frame_index"] for f in item["frames"]]
        keypoints, scores = tracks.at(item["sequence"], item["view"], frames)
        if source.name != skeleton.name:
            keypoints, _ = map_keypoints(keypoints, source, skeleton)
            scores = map_keypoints(scores[..., None], source, skeleton)[0][..., 0]
        item["input_2d"] = {
            "keypoints": np.asarray(keypoints, np.float32).ravel().tolist(),
            "scores": np.asarray(scores, np.float32).ravel().tolist(),
        }
        item["input_2d_source"] = summary


def load_lifting_split(url: str, split: str) -> dict[str, np.ndarray]:
    """A lifting split as stacked arrays in card order: keypoints_2d [N,T,K,2] px, visibility [N,T,K],
    keypoints_3d_cam [N,T,K,3] mm root-relative, root_cam [N,T,3], valid_3d [N,T,K], intrinsics [N,4],
    sample_id [N]; cameras: list of N poseops.geometry.Camera."""
    from poseops.datasets.loader import read_card, read_row_group, row_groups

    card = read_card(url, "lifting_sequence")
    T, K = card["window"], len(card["skeleton"]["keypoints"])
    rows = [r for path, group in row_groups(url, split, card) for r in read_row_group(path, group)]
    if not rows:
        raise DataError(f"{url}: split {split!r} is empty")

    def stack(key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.asarray([r[key] for r in rows], dtype=dtype).reshape(len(rows), *shape)

    predicted = all(r.get("keypoints_2d_input") is not None for r in rows)
    return {
        "keypoints_2d_input": stack("keypoints_2d_input", (T, K, 2), np.float32)
        if predicted
        else None,
        "sequence": [str(r["sequence"]) for r in rows],
        "camera_id": stack("camera_id", (), np.int64),
        "frame_indices": stack("frame_indices", (T,), np.int64),
        "keypoints_2d": stack("keypoints_2d", (T, K, 2), np.float32),
        "visibility": stack("visibility", (T, K), np.float32),
        "keypoints_3d_cam": stack("keypoints_3d_cam", (T, K, 3), np.float32),
        "root_cam": stack("root_cam", (T, 3), np.float32),
        "valid_3d": stack("valid_3d", (T, K), np.int8),
        "intrinsics": stack("intrinsics", (4,), np.float64),
        "sample_id": stack("sample_id", (), np.int64),
        "cameras": [Camera.model_validate(json.loads(r["camera"])) for r in rows],
    }


class DetectedTrackParams(Strict):
    """A "detected track" made from ground-truth 2D (per window: a jitter SD and an outlier rate drawn
    from the ranges; dropped joints are filled by linear interpolation over time, as a tracker would)."""

    sigma_px: tuple[float, float] = Field((2.0, 5.0), description="Gaussian jitter SD range, px")
    outlier_rate: tuple[float, float] = Field((0.01, 0.03), description="share of joints moved far")
    outlier_px: float = Field(40.0, ge=0, description="outlier displacement SD, px")
    drop_rate: float = Field(
        0.02, ge=0, le=0.5, description="share of joints dropped (interpolated)"
    )


class LiftingSequenceData(FamilyData):
    kind: Literal["lifting_sequence"] = "lifting_sequence"
    sequence_window: int = Field(DEFAULT_WINDOW, ge=1, description="frames per window (T)")
    sequence_stride: int | None = Field(None, ge=1, description="window step (default T)")
    input_2d: Literal["gt", "noisy", "predicted"] = Field(
        "gt",
        description="2D input: ground truth, a detected-track model of it, or a 2D family's tracks",
    )
    input_family: str | None = Field(
        None, description="the 2D family whose predict stage's tracks feed input_2d = predicted"
    )
    input_tracks: str | None = Field(
        None,
        description="predicted tracks folder (relative to the project root, or absolute); "
        "None: data/predicted/<input_family>, the predict stage's output",
    )
    noise: DetectedTrackParams = DetectedTrackParams()
    train_stride: int = Field(
        1, ge=1, description="training uses every n-th frame of each track per epoch"
    )

    @model_validator(mode="after")
    def _predicted_needs_family(self) -> LiftingSequenceData:
        if (self.input_2d == "predicted") != (self.input_family is not None):
            raise ValueError("input_family is set exactly when input_2d is 'predicted'")
        if self.input_tracks is not None and self.input_2d != "predicted":
            raise ValueError("input_tracks is set only when input_2d is 'predicted'")
        return self

    def derive_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"window": self.sequence_window}
        if self.sequence_stride is not None:
            options["stride"] = self.sequence_stride
        if self.input_2d == "predicted":
            options["input_tracks"] = self.input_tracks or f"data/predicted/{self.input_family}"
        return options


# ---------------------------------------------------------------- tracks
@dataclass
class Track:
    """One (sequence, camera) in frame order: keypoints_2d [N,J,2] px, pose_3d [N,J,3] root-relative
    camera mm, valid_3d [N,J], and the image size the 2D lives in."""

    sequence: str
    camera_id: int
    frames: np.ndarray
    keypoints_2d: np.ndarray
    pose_3d: np.ndarray
    valid_3d: np.ndarray
    width: float
    height: float
    input_2d: np.ndarray | None = None  # [N,J,2] px: a 2D family's predictions (input_2d predicted)


def load_tracks(url: str, split: str) -> list[Track]:
    """The split's windows put back together per (sequence, camera), frames deduplicated and sorted."""
    arrays = load_lifting_split(url, split)
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (seq, cam) in enumerate(zip(arrays["sequence"], arrays["camera_id"])):
        groups[(seq, int(cam))].append(i)
    tracks = []
    for (seq, cam), rows in groups.items():
        frames = arrays["frame_indices"][rows].reshape(-1)
        order = np.unique(frames, return_index=True)[1]

        def take(key: str, rows=rows, order=order) -> np.ndarray:
            return arrays[key][rows].reshape(-1, *arrays[key].shape[2:])[order]

        camera = arrays["cameras"][rows[0]]
        if not camera.width or not camera.height:
            raise DataError(f"{url}: camera {cam} of sequence {seq!r} has no image size")
        tracks.append(
            Track(
                seq,
                cam,
                frames[order],
                take("keypoints_2d"),
                take("keypoints_3d_cam"),
                take("valid_3d"),
                float(camera.width),
                float(camera.height),
                None if arrays["keypoints_2d_input"] is None else take("keypoints_2d_input"),
            )
        )
    return tracks


def normalize_screen(xy: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixels [..., 2] -> x' = 2x/w - 1, y' = 2y/w - h/w (VideoPose3D's normalize_screen_coordinates)."""
    return np.stack([2 * xy[..., 0] / width - 1, 2 * xy[..., 1] / width - height / width], -1)


def window_indices(num_frames: int, centres: np.ndarray, T: int) -> np.ndarray:
    """[len(centres), T] frame indices of the windows around `centres`, edge-replicated at the ends."""
    half = (T - 1) // 2
    return np.clip(centres[:, None] + np.arange(-half, T - half)[None], 0, num_frames - 1)


def detected_track(
    rng: np.random.Generator, keypoints: np.ndarray, noise: DetectedTrackParams
) -> np.ndarray:
    """A detector-like 2D track [N,J,2] from exact 2D: jitter, outliers, dropped joints interpolated."""
    n, j, _ = keypoints.shape
    sigma = rng.uniform(*noise.sigma_px)
    out = keypoints + rng.normal(0.0, sigma, keypoints.shape)
    outliers = rng.random((n, j)) < rng.uniform(*noise.outlier_rate)
    out[outliers] += rng.normal(0.0, noise.outlier_px, (int(outliers.sum()), 2))
    dropped = rng.random((n, j)) < noise.drop_rate
    for k in range(j):
        gone = dropped[:, k]
        if gone.any() and not gone.all():
            kept = np.flatnonzero(~gone)
            for d in range(2):
                out[gone, k, d] = np.interp(np.flatnonzero(gone), kept, out[kept, k, d])
    return out


def track_inputs(
    tracks: Sequence[Track], data: LiftingSequenceData, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Each track's normalised 2D input [N,J,2] (float32) for the options' `input_2d`."""
    out = []
    for track in tracks:
        xy = track.keypoints_2d.astype(np.float64)
        if data.input_2d == "predicted":
            if track.input_2d is None:
                raise DataError(
                    f"sequence {track.sequence!r} camera {track.camera_id}: the derived data holds no "
                    f"predicted 2D; derive with input_2d 'predicted' ({data.input_family}'s tracks)"
                )
            xy = track.input_2d.astype(np.float64)
        elif data.input_2d == "noisy":
            xy = detected_track(
                rng if rng is not None else np.random.default_rng(0), xy, data.noise
            )
        out.append(normalize_screen(xy, track.width, track.height).astype(np.float32))
    return out


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def lift_frames(
    model: nn.Module,
    inputs: np.ndarray,
    centres: np.ndarray,
    flip_test: bool,
    batch_size: int = 512,
) -> np.ndarray:
    """Root-relative 3D mm [len(centres), J, 3] of one track's normalised 2D inputs [N,J,2] at `centres`
    (the centre frame of each window; seq2seq models give their window's middle frame)."""
    core = unwrap(model).eval()
    T = core.config.frames
    out = []
    for start in range(0, len(centres), batch_size):
        idx = window_indices(len(inputs), centres[start : start + batch_size], T)
        pred = core.predict(torch.from_numpy(inputs[idx]), flip_test=flip_test)
        if pred.dim() == 4:
            pred = pred[:, (T - 1) // 2]
        out.append(pred.numpy())
    return np.concatenate(out) if out else np.zeros((0, core.config.num_joints, 3))


# ---------------------------------------------------------------- training data
class TrackWindows:
    """Training batches of windows around every `stride`-th frame of each track (a random phase per
    epoch), shuffled per epoch and split across Ray Train ranks; with the model's `flip_augment`, half the
    windows are mirrored with left/right swapped (2D and 3D). Iterating yields dicts: input [B,T,J,2],
    target [B,J,3] (or [B,T,J,3] for seq2seq) in model units, weight [B,J] (or [B,T,J])."""

    def __init__(
        self,
        tracks: list[Track],
        data: LiftingSequenceData,
        model_cfg,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ):
        if not tracks:
            raise DataError("lifting: the training split has no tracks")
        self.tracks, self.data, self.cfg = tracks, data, model_cfg
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.epoch = 0
        self.flip = np.asarray(model_cfg_flip(model_cfg))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        inputs = track_inputs(self.tracks, self.data, rng)
        stride = self.data.train_stride
        samples = np.concatenate(
            [
                np.stack(
                    [
                        np.full(len(range(p, len(t.frames), stride)), i),
                        np.arange(p, len(t.frames), stride),
                    ],
                    1,
                )
                for i, (t, p) in enumerate((t, int(rng.integers(stride))) for t in self.tracks)
            ]
        )
        samples = samples[rng.permutation(len(samples))][self.rank :: self.world]
        T, scale = self.cfg.frames, self.cfg.target_scale_mm
        seq2seq = self.cfg.head == "seq2seq"
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start : start + self.batch_size]
            xs, ys, ws = [], [], []
            for i, c in chunk:
                track = self.tracks[i]
                idx = window_indices(len(track.frames), np.array([c]), T)[0]
                xs.append(inputs[i][idx])
                frames = idx if seq2seq else c
                ys.append(np.nan_to_num(track.pose_3d[frames]) / scale)
                ws.append(track.valid_3d[frames])
            x, y, w = (torch.from_numpy(np.stack(a).astype(np.float32)) for a in (xs, ys, ws))
            if self.cfg.flip_augment:
                mirror = torch.from_numpy(rng.random(len(x)) < 0.5)
                x[mirror] = x[mirror][..., self.flip, :] * torch.tensor([-1.0, 1.0])
                y[mirror] = y[mirror][..., self.flip, :] * torch.tensor([-1.0, 1.0, 1.0])
                w[mirror] = w[mirror][..., self.flip]
            yield {"input": x, "target": y, "weight": w}


def model_cfg_flip(cfg) -> tuple[int, ...]:
    return (
        H36M17.flip_permutation()
        if cfg.num_joints == H36M17.num_keypoints
        else tuple(range(cfg.num_joints))
    )


def mean_pose(tracks: Sequence[Track]) -> np.ndarray:
    """[J,3]: the mean root-relative training pose (joints with 3D only)."""
    poses = np.concatenate([t.pose_3d for t in tracks])
    valid = np.concatenate([t.valid_3d for t in tracks]).astype(bool)
    return np.where(valid[..., None], poses, 0.0).sum(0) / np.maximum(valid.sum(0), 1)[:, None]


# ---------------------------------------------------------------- serving
COCO_TO_H36M = "coco17"


class LifterPredictor:
    """Lifts one 2D track: `lift(keypoints [T,K,3] (x, y, score), image_size (w, h), skeleton)` -> the
    centre frame's root-relative 3D in mm (every frame for a seq2seq model). COCO-17 input is mapped to
    H36M-17 through poseops.skeletons (pelvis = mid-hips, thorax = mid-shoulders, ...); a track shorter
    or longer than the model's T is edge-padded or centre-cropped to it."""

    def __init__(self, model: nn.Module, name: str, version: str, flip_test: bool):
        self.model = unwrap(model).eval()
        self.name, self.version, self.flip_test = name, version, flip_test

    def predict(self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None = None) -> dict:
        """A lifter takes 2D tracks, not images (POST its predict route with JSON; serve/lift.py)."""
        from poseops.errors import RequestError

        raise RequestError(
            415,
            f"{self.name} lifts 2D tracks: send JSON {{keypoints, image_size, skeleton}}, not an image",
        )

    def lift(
        self, keypoints: np.ndarray, image_size: Sequence[float], skeleton: str = "h36m17"
    ) -> dict:
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if skeleton == "coco17":
            xy, _ = map_keypoints(keypoints[..., :2], COCO17, H36M17)
        elif skeleton == "h36m17":
            xy = keypoints[..., :2]
        else:
            raise DataError(f"skeleton {skeleton!r}: expected coco17 or h36m17")
        width, height = float(image_size[0]), float(image_size[1])
        inputs = normalize_screen(xy, width, height).astype(np.float32)
        cfg = self.model.config
        n, T = len(inputs), cfg.frames
        centre = (n - 1) // 2
        idx = window_indices(n, np.array([centre]), T)[0]
        with torch.no_grad():
            pred = self.model.predict(
                torch.from_numpy(inputs[idx])[None], flip_test=self.flip_test
            )[0]
        names = list(H36M17.keypoints)
        if pred.dim() == 3:  # seq2seq: the window's frames that are the request's own
            half = (T - 1) // 2
            own = [k for k, f in enumerate(range(centre - half, centre - half + T)) if 0 <= f < n]
            frames = [[[float(v) for v in joint] for joint in pred[k]] for k in own]
            return {"joints": names, "frames": frames, "units": "mm, root-relative, camera frame"}
        return {
            "joints": names,
            "keypoints_3d": [[float(v) for v in joint] for joint in pred],
            "frame": centre,
            "units": "mm, root-relative, camera frame",
        }


@register_task
class LiftingSequence(Task):
    name = "lifting_sequence"
    Options = LiftingSequenceData
    rows = RowPlan("lifting_sequence", LIFTING_SCHEMA, plan_windows, window_rows, card_fields)
    annotations_file = "sequences.json"
    artefacts = (
        Artefact("metrics.json", "metrics"),
        Artefact(
            "per_joint.json", "plot", {"x": "joint", "y": "mpjpe", "template": "bar_horizontal"}
        ),
        Artefact("per_joint_mpjpe.png"),
    )
    headline = (("mpjpe", "MPJPE mm"), ("p_mpjpe", "P-MPJPE mm"), ("mpjve", "MPJVE mm"))
    count_key = "num_frames"

    # ------------------------------------------------------------ training
    def train_loader(self, cfg: dict, model: nn.Module, rank: int, world: int):
        data = LiftingSequenceData(**cfg["data"])
        core = unwrap(model)
        if data.sequence_window != core.config.frames:
            raise ConfigError(
                f"family {cfg['family']}: data.sequence_window {data.sequence_window} != model.frames "
                f"{core.config.frames}"
            )
        windows = TrackWindows(
            load_tracks(cfg["dataset_url"], "train"),
            data,
            core.config,
            max(1, cfg["batch_size"] // world),
            cfg["seed"],
            rank,
            world,
        )
        return windows, windows

    def load_validation(self, cfg: dict):
        data = LiftingSequenceData(**cfg["data"])
        tracks = load_tracks(cfg["dataset_url"], "val")
        return {"tracks": tracks, "inputs": track_inputs(tracks, data, np.random.default_rng(1))}

    def train_losses(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Loss terms on a TrackWindows batch: input [B,T,J,2] normalised, target, weight (the optimiser
        step is the train workload's; Task.train_step is the plain one)."""
        core = unwrap(model)
        model.train()
        return core.loss(model(core.preprocess(batch["input"])), batch)

    def validate(self, model: nn.Module, val: dict, stride: int = 4) -> dict[str, float]:
        """MPJPE (mm, no flip test) at every `stride`-th frame of the validation tracks."""
        errors = []
        for track, inputs in zip(val["tracks"], val["inputs"]):
            centres = np.arange(0, len(track.frames), stride)
            pred = lift_frames(model, inputs, centres, flip_test=False)
            err = np.linalg.norm(pred - track.pose_3d[centres], axis=-1)
            errors.append(err[track.valid_3d[centres] > 0])
        return {"val_mpjpe": float(np.concatenate(errors).mean())}

    def inference(self, fam: FamilyParams, model_defaults: dict[str, Any]) -> dict[str, Any]:
        return {
            "flip_test": bool(model_defaults.get("flip_test", True)),
            "input_2d": fam.data.input_2d,
        }

    # ------------------------------------------------------------ evaluation
    def evaluate(
        self,
        family,
        fam: FamilyParams,
        model: nn.Module,
        dataset_url: str,
        split: str,
        card: dict,
        settings: dict[str, Any],
    ) -> Evaluation:
        data: LiftingSequenceData = fam.data
        flip_test = bool(settings.get("flip_test", True))
        tracks = load_tracks(dataset_url, split)
        inputs = track_inputs(tracks, data, np.random.default_rng(1))
        gt = np.concatenate([t.pose_3d for t in tracks])
        valid = np.concatenate([t.valid_3d for t in tracks]).all(-1)
        ids = np.concatenate([np.full(len(t.frames), i) for i, t in enumerate(tracks)])

        def lift_all(m: nn.Module) -> np.ndarray:
            return np.concatenate(
                [
                    lift_frames(m, x, np.arange(len(t.frames)), flip_test)
                    for t, x in zip(tracks, inputs)
                ]
            )

        pred = lift_all(model)
        torch.manual_seed(fam.train.seed)
        predictions = {
            "trained": pred,
            "untrained": lift_all(build_from_config(family.model, fam.model)),
        }
        if "train" in card.get("splits", {}) and split != "train":
            pose = mean_pose(load_tracks(dataset_url, "train"))
            predictions["mean_pose"] = np.broadcast_to(pose, gt.shape).copy()
        keep = valid  # frames whose every joint has 3D
        scores = {
            name: metrics.mpjpe(p[keep], gt[keep], root=0, sequence_ids=ids[keep])
            for name, p in predictions.items()
        }
        p_mpjpe = metrics.p_mpjpe(pred[keep], gt[keep], sequence_ids=ids[keep])
        # velocity needs two frames of a track: a split of stills (Human3.6M frames sampled one per
        # sequence, say) has no MPJVE, reported as null rather than refusing the whole evaluation
        moving = bool((np.bincount(ids[keep]) >= 2).any()) if keep.any() else False
        mpjve = metrics.mpjve(pred[keep], gt[keep], sequence_ids=ids[keep]) if moving else None
        per_joint = np.linalg.norm(pred[keep] - gt[keep], axis=-1).mean(0)
        names = list(get_skeleton(family.skeleton).keypoints)
        baselines = {f"{name}_mpjpe": r.value for name, r in scores.items() if name != "trained"}
        report = {
            "family": family.name,
            "split": split,
            "data": card.get("source", {}).get("kind", "synthetic"),
            "input_2d": data.input_2d,
            "dataset_checksum": dataset_checksum(card),
            "num_frames": int(keep.sum()),
            "num_tracks": len(tracks),
            "mpjpe": scores["trained"].value,
            "p_mpjpe": p_mpjpe.value,
            "mpjve": None if mpjve is None else mpjve.value,
            "baselines": baselines,
            # lower is better: how far below the best (lowest) baseline the model's MPJPE lies
            "margin_over_best_baseline": min(baselines.values(), default=float("nan"))
            - scores["trained"].value,
            "per_joint_mpjpe": dict(zip(names, map(float, per_joint))),
            "protocol": {
                "mpjpe": scores["trained"].protocol,
                "p_mpjpe": p_mpjpe.protocol,
                "mpjve": mpjve.protocol
                if mpjve is not None
                else "undefined: every track of the split is a single frame (velocity needs two)",
                "frames": "every frame of every (sequence, camera) track of the split; windows edge-replicated "
                "at track ends",
                "flip_test": flip_test,
                "input_2d": data.input_2d,
            },
        }
        files = {
            "per_joint.json": [{"joint": n, "mpjpe": float(v)} for n, v in zip(names, per_joint)],
            "per_joint_mpjpe.png": lambda path: plot_bars(
                path,
                names,
                [float(v) for v in per_joint],
                "MPJPE mm",
                f"{family.name}: per-joint MPJPE",
            ),
        }
        return Evaluation(report, files)

    # ------------------------------------------------------------ serving
    def predictor(self, model: nn.Module, name: str, version: str, settings: dict[str, Any]):
        return LifterPredictor(model, name, version, bool(settings.get("flip_test", True)))
