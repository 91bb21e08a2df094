"""Loader throughput: Parquet crop shards against the naive path and against a folder of the same crops.

    naive:  1,000 synthetic 1920x1080 JPEGs (quality 90, one person each); each sample reads its JPEG and
            cuts its crop from the full frame (the augmentation's warp straight from the source)
    folder: the very crop bytes the shards hold, one file per sample, plus the labels in memory
    shards: poseops.datasets.loader.CropDataset over the derived dataset (row groups + shuffle buffer)
Both crop formats of derive are measured: PNG (the default, lossless) and JPEG quality 95.

All three run the same augmentation (poseops.datasets.loader.make_sample: rotation, scale, shift, flip with
left/right swap, colour jitter) through a torch DataLoader with 2 workers, batch 32, and are timed in steady
state (after a warm-up) for --seconds each. Figures: samples/s side by side; target shards >= 3x naive,
shards ~ 1x folder (so the gain is visibly the smaller, pre-cut images, not the file format).

    python benchmarks/bench_loader.py [--seconds 30] [--images 1000]
Data is generated once under .poseops/bench/loader_data (reused); JSON to .poseops/bench/loader.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from poseops.config import AugmentParams, SplitParams
from poseops.datasets.derive import derive_dataset
from poseops.datasets.loader import CropDataset, make_sample, read_card, read_row_group, row_groups
from poseops.paths import state_dir
from poseops.skeletons import get_skeleton
from poseops.storage import write_json_atomic
from poseops.tasks import get_task

WIDTH, HEIGHT = 1920, 1080
INPUT_SIZE = 256
CROP_MARGIN = 1.25
AUGMENT = AugmentParams(
    rotation_deg=30, scale=(0.75, 1.25), shift=0.05, color_jitter=0.2, flip=True
)
SK = get_skeleton("coco17")
# a standing person, unit height, x relative to the body's centre line (coco17 order)
POSE = np.array(
    [
        [0, 0.06],
        [-0.03, 0.04],
        [0.03, 0.04],
        [-0.06, 0.05],
        [0.06, 0.05],
        [-0.12, 0.2],
        [0.12, 0.2],
        [-0.16, 0.36],
        [0.16, 0.36],
        [-0.18, 0.5],
        [0.18, 0.5],
        [-0.08, 0.52],
        [0.08, 0.52],
        [-0.09, 0.74],
        [0.09, 0.74],
        [-0.1, 0.96],
        [0.1, 0.96],
    ]
)


# ---------------------------------------------------------------- synthetic data
def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth colour field with mild noise (photo-like JPEG size)."""
    small = rng.integers(30, 225, (9, 16, 3), dtype=np.uint8)
    field = cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-6, 7, (HEIGHT, WIDTH, 1), dtype=np.int16)
    return np.clip(field.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def synthetic_person(rng: np.random.Generator) -> np.ndarray:
    """keypoints [17,3] (x, y, v=2) of one person 350-800 px tall inside the frame."""
    height = rng.uniform(350, 800)
    cx, top = rng.uniform(250, WIDTH - 250), rng.uniform(20, HEIGHT - height - 20)
    xy = POSE * height + [cx, top] + rng.normal(0, height * 0.01, POSE.shape)
    return np.column_stack([xy, np.full(len(xy), 2.0)])


def draw_person(image: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator) -> None:
    colour = rng.integers(0, 256, 3).tolist()
    for a, b in SK.edges:
        cv2.line(
            image,
            tuple(int(v) for v in keypoints[a, :2]),
            tuple(int(v) for v in keypoints[b, :2]),
            colour,
            14,
        )
    for x, y, _ in keypoints:
        cv2.circle(image, (int(x), int(y)), 9, (255 - np.array(colour)).tolist(), -1)


def synthetic_jpegs(folder: Path, count: int, people: int = 1, seed: int = 0) -> Path:
    """`count` 1920x1080 JPEGs (quality 90) with `people` persons each, and their internal annotations
    (folder/annotations.json; one sequence per image). Reused when already there."""
    labels = folder / "annotations.json"
    if labels.exists() and len(json.loads(labels.read_text())["images"]) == count:
        return labels
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tiles = [background(rng) for _ in range(6)]
    images, anns = [], []
    for i in range(count):
        name = f"frame_{i:05d}.jpg"
        image = np.roll(tiles[i % len(tiles)], int(rng.integers(0, WIDTH)), axis=1)
        persons = [synthetic_person(rng) for _ in range(people)]
        for kp in persons:
            draw_person(image, kp, rng)
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(
            {
                "id": i + 1,
                "file_name": name,
                "frame_index": None,
                "width": WIDTH,
                "height": HEIGHT,
                "sequence": f"img{i}",
                "subject": "",
                "source": "synthetic",
            }
        )
        for kp in persons:
            (x0, y0), (x1, y1) = kp[:, :2].min(0) - 15, kp[:, :2].max(0) + 15
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "keypoints": kp.ravel().tolist(),
                    "num_keypoints": 17,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    category = {
        "id": 1,
        "name": "person",
        "keypoints": list(SK.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in SK.edges],
    }
    labels.write_text(json.dumps({"images": images, "annotations": anns, "categories": [category]}))
    return labels


# ---------------------------------------------------------------- the three datasets
class NaiveJpegCrops(Dataset):
    """Reads the full JPEG of each sample and warps its crop from the frame (same augmentation)."""

    def __init__(self, labels: Path, annotation_ids: list[int]):
        form = json.loads(labels.read_text())
        images = {img["id"]: img for img in form["images"]}
        anns = {a["id"]: a for a in form["annotations"]}
        self.samples = [
            (labels.parent / images[anns[i]["image_id"]]["file_name"], anns[i])
            for i in annotation_ids
        ]
        self.flip = np.asarray(SK.flip_permutation())

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        path, ann = self.samples[index]
        kp = np.asarray(ann["keypoints"]).reshape(-1, 3)
        row = {
            "keypoints": kp[:, :2].ravel(),
            "keypoints_clean": kp[:, :2].ravel(),
            "visibility": kp[:, 2],
            "box_in_crop": ann["bbox"],
            "affine": [1, 0, 0, 0, 1, 0],
            "sample_id": ann["id"],
        }
        rng = np.random.default_rng([index, int(time.perf_counter_ns() % 1000)])
        sample = make_sample(
            row, INPUT_SIZE, CROP_MARGIN, AUGMENT, rng, self.flip, pixels=cv2.imread(str(path))
        )
        return to_tensors(sample)


class CropFolder(Dataset):
    """The shards' own crop bytes, one PNG file per sample, labels held in memory."""

    def __init__(self, folder: Path, rows: list[dict]):
        self.folder, self.rows = folder, rows
        self.flip = np.asarray(SK.flip_permutation())

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = dict(self.rows[index])
        row["image"] = (self.folder / f"{row['sample_id']}.png").read_bytes()
        rng = np.random.default_rng([index, int(time.perf_counter_ns() % 1000)])
        return to_tensors(make_sample(row, INPUT_SIZE, CROP_MARGIN, AUGMENT, rng, self.flip))


def to_tensors(sample: dict) -> dict:
    sample["image"] = sample["image"].transpose(2, 0, 1).copy()
    return {k: torch.as_tensor(v) for k, v in sample.items()}


def one_thread(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def samples_per_second(
    dataset, seconds: float, warmup: float, workers: int = 2, batch: int = 32
) -> dict:
    """Steady-state throughput: batches after `warmup` s are counted for at least `seconds` s."""
    shuffle = not isinstance(dataset, torch.utils.data.IterableDataset)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        shuffle=shuffle or None,
        worker_init_fn=one_thread,
        persistent_workers=True,
        prefetch_factor=4,
        multiprocessing_context="spawn",
    )  # forked workers deadlock in OpenCV's pool used here
    start, counted, began = time.perf_counter(), 0, None
    while True:
        for batch_ in loader:
            now = time.perf_counter()
            if began is None:
                if now - start >= warmup:
                    began = now
                continue
            counted += len(batch_["sample_id"])
            if now - began >= seconds:
                return {
                    "samples_per_s": counted / (now - began),
                    "samples": counted,
                    "seconds": now - began,
                }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--data", default=str(state_dir() / "bench" / "loader_data"))
    parser.add_argument("--out", default=str(state_dir() / "bench" / "loader.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)

    started = time.perf_counter()
    labels = synthetic_jpegs(data / "jpegs", args.images)
    generated = time.perf_counter() - started
    datasets: dict[str, Dataset] = {}
    sizes = {}
    rows: list[dict] = []
    for crop_format in ("png", "jpeg"):
        url = str(data / f"shards_{crop_format}")
        card = read_card(url) if (data / f"shards_{crop_format}" / "card.json").exists() else None
        if card is None or card["counts"]["train"] + card["counts"]["val"] != args.images:
            card = derive_dataset(
                get_task("topdown_crop").rows,
                labels,
                url,
                get_task("topdown_crop").Options(),
                SplitParams(val_fraction=0.02),
                skeleton="coco17",
                executor="local",
                options={"crop_format": crop_format},
            )
        rows = [
            r for path, group in row_groups(url, "train", card) for r in read_row_group(path, group)
        ]
        crops = data / f"crops_{crop_format}"
        crops.mkdir(exist_ok=True)
        for r in rows:
            target = (
                crops / f"{r['sample_id']}.png"
            )  # the name's suffix does not matter to imdecode
            if not target.exists() or target.stat().st_size != len(r["image"]):
                target.write_bytes(r["image"])
        sizes[crop_format] = sum(len(r["image"]) for r in rows) / 1e6
        metadata = [{k: v for k, v in r.items() if k != "image"} for r in rows]
        datasets[f"folder_{crop_format}"] = CropFolder(crops, metadata)
        datasets[f"shards_{crop_format}"] = CropDataset(
            url, "train", INPUT_SIZE, CROP_MARGIN, augment=AUGMENT, seed=0, skeleton="coco17"
        )
    datasets = {
        "naive_jpeg": NaiveJpegCrops(labels, [int(r["annotation_id"]) for r in rows]),
        **datasets,
    }
    jpeg_mb = sum(p.stat().st_size for p in (data / "jpegs").glob("*.jpg")) / 1e6
    print(
        f"data: {args.images} JPEGs {WIDTH}x{HEIGHT} q90 ({jpeg_mb:.0f} MB, made in {generated:.0f} s); "
        f"train split {len(rows)} crops (<= 512 px side): PNG {sizes['png']:.0f} MB, JPEG q95 {sizes['jpeg']:.0f} MB",
        flush=True,
    )

    results = {}
    for name, dataset in datasets.items():
        results[name] = samples_per_second(dataset, args.seconds, args.warmup)
        print(
            f"  {name:12s} {results[name]['samples_per_s']:8.1f} samples/s "
            f"({results[name]['samples']} in {results[name]['seconds']:.1f} s)",
            flush=True,
        )
    rate = {name: r["samples_per_s"] for name, r in results.items()}
    ratios = {
        "shards_png_over_naive": rate["shards_png"] / rate["naive_jpeg"],
        "shards_jpeg_over_naive": rate["shards_jpeg"] / rate["naive_jpeg"],
        "shards_png_over_folder_png": rate["shards_png"] / rate["folder_png"],
        "shards_jpeg_over_folder_jpeg": rate["shards_jpeg"] / rate["folder_jpeg"],
    }
    print("side by side (samples/s): " + ", ".join(f"{k} {v:.1f}" for k, v in rate.items()))
    print(
        "ratios (target shards/naive >= 3x; shards/folder ~1x): "
        + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
    )
    print(
        f"input {INPUT_SIZE}px, 2 loader workers (spawn), batch 32, steady state {args.seconds:.0f} s each"
    )
    write_json_atomic(
        args.out,
        {
            "results": results,
            "ratios": ratios,
            "images": args.images,
            "train_samples": len(rows),
            "input_size": INPUT_SIZE,
            "workers": 2,
            "jpeg_mb": jpeg_mb,
            "crop_mb": sizes,
            "steady_seconds": args.seconds,
        },
    )


if __name__ == "__main__":
    main()
