"""Look at labels: a grid of samples with keypoints, edges and visibility drawn.

Sources: an import folder (`poseops data import`) or an internal annotations JSON, a synthetic hand
capture folder, a synthetic body capture folder (both: manifest.json, told apart
by `manifest["kind"]`), a capture root holding `hands/` and/or `bodies/` capture folders (one
grid per part, stacked), or a derived dataset (card.json). Visible joints are filled, occluded ones (v = 1)
hollow grey, v = 0 not drawn; each cell is captioned with where its frame came from.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from poseops.annotations.internal import annotations_file, load_annotations
from poseops.capture import CAPTURE_PARTS
from poseops.capture.synthetic_bodies import read_sequences
from poseops.errors import DataError
from poseops.skeletons import COCO17, SKELETONS, Skeleton, get_skeleton, skeleton_from_coco_category
from poseops.storage import exists, filesystem, join, read_json

CELL = 192  # px, longer side of a drawn frame
CAPTION_HEIGHT = 16  # px strip under each frame
TITLE_HEIGHT = 22  # px strip above each part of a capture root


@dataclass
class Sample:
    """One frame to draw: image BGR [H, W, 3] uint8; per person keypoints [K, 2] px and visibility [K] (0/1/2)."""

    image: np.ndarray
    keypoints: list[np.ndarray] = field(default_factory=list)
    visibility: list[np.ndarray] = field(default_factory=list)
    caption: str = ""


# ---------------------------------------------------------------- choosing frames
def spread_picks(
    frames_per_sequence: list[int], views_per_sequence: list[list[str]], count: int
) -> list[tuple[int, str, int]]:
    """`count` (sequence index, view, frame) picks spread over sequences, then views, then frames.

    Sample i goes to sequence floor(i * S / count) when count <= S, else to i mod S (every sequence once
    before any twice);
    the j-th of the n picks of sequence s takes view (s + j) mod V (so a grid with one pick per sequence
    still shows every view) and frame floor((j + 0.5) * F / n)."""
    num = len(frames_per_sequence)
    if num == 0 or count <= 0:
        return []
    owners = [min(num - 1, i * num // count) if count <= num else i % num for i in range(count)]
    picks = []
    for s in sorted(set(owners)):
        n = owners.count(s)
        views, frames = views_per_sequence[s], frames_per_sequence[s]
        for j in range(n):
            picks.append(
                (s, views[(s + j) % len(views)], min(frames - 1, int((j + 0.5) * frames / n)))
            )
    return picks


# ---------------------------------------------------------------- reading samples
def hand_samples(folder: str, count: int) -> tuple[list[Sample], Skeleton]:
    """Frames of a hand capture folder, spread over sequences and frames."""
    from poseops.capture.common import read_frames
    from poseops.capture.synthetic_hands import read_hand_sequences

    manifest = read_json(join(folder, "manifest.json"))
    entries = manifest["sequences"]
    picks = spread_picks([e["frames"] for e in entries], [["-"]] * len(entries), count)
    picked_ids = {entries[s]["id"] for s, _, _ in picks}  # keep only the picked sequences' labels
    labels = {r["id"]: r["frames"] for r in read_hand_sequences(folder) if r["id"] in picked_ids}
    samples = []
    for s in sorted({s for s, _, _ in picks}):
        wanted = sorted(t for q, _, t in picks if q == s)
        entry = entries[s]
        frames = {}
        for t, image in enumerate(read_frames(join(folder, entry["file"]))):
            if t in wanted:
                frames[t] = image
            if t >= wanted[-1]:
                break
        records = labels.get(entry["id"])
        if records is None:
            raise DataError(
                f"{join(folder, manifest['labels']['file'])}: no labels for sequence {entry['id']!r}"
            )
        for t in wanted:
            if t not in frames:
                raise DataError(f"{join(folder, entry['file'])}: capture video has no frame {t}")
            kp = np.asarray(records[t]["keypoints"], dtype=np.float64)
            samples.append(
                Sample(frames[t], [kp[:, :2]], [kp[:, 2].astype(int)], f"{entry['id']} f{t}")
            )
    return samples, get_skeleton(manifest.get("skeleton", "hand21"))


def read_shard_member(shard_url: str, member: str) -> bytes:
    """The bytes of one member of a tar shard (read in place, nothing extracted)."""
    fs, path = filesystem(shard_url)
    with fs.open(path, "rb") as fh, tarfile.open(fileobj=fh, mode="r:") as tar:
        try:
            data = tar.extractfile(member)
        except KeyError:
            raise DataError(f"{shard_url}: no member {member}") from None
        return data.read()


def body_samples(folder: str, count: int) -> tuple[list[Sample], Skeleton]:
    """Frames of a body capture folder spread over sequences and views; every person's COCO-17 labels."""
    manifest = read_json(join(folder, "manifest.json"))
    entries = manifest["sequences"]
    picks = spread_picks(
        [e["frames"] for e in entries], [[v["name"] for v in e["views"]] for e in entries], count
    )
    wanted = {
        entries[s]["id"]: [(v, t) for q, v, t in picks if q == s] for s in {s for s, _, _ in picks}
    }
    located = []  # (sequence id, view, frame, shard, member, people labels)
    for record in read_sequences(
        folder
    ):  # one sequence at a time: keep only the picked frames' labels
        for view, t in wanted.get(record["id"], []):
            at = record["frames"][t]["views"][view]
            located.append(
                (record["id"], view, t, at["image"]["shard"], at["image"]["member"], at["people"])
            )
    samples = []
    for sequence_id, view, t, shard, member, people in located:
        data = read_shard_member(join(folder, shard), member)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{join(folder, shard)}: member {member} is not a decodable JPEG")
        kps = [np.asarray(p["keypoints"], dtype=np.float64) for p in people]
        samples.append(
            Sample(
                image,
                [kp[:, :2] for kp in kps],
                [kp[:, 2].astype(int) for kp in kps],
                f"{sequence_id} {view} f{t}",
            )
        )
    return samples, COCO17


def dataset_samples(url: str, count: int, split: str = "train") -> tuple[list[Sample], Skeleton]:
    """The first `count` rows of a derived dataset's split (rows with several people drawn per person)."""
    from poseops.datasets.loader import decode, read_card, read_row_group, row_groups

    card = read_card(url)
    meta = card["skeleton"]
    skeleton = (
        get_skeleton(meta["name"])
        if meta["name"] in SKELETONS
        else Skeleton(
            meta["name"],
            tuple(meta["keypoints"]),
            tuple(map(tuple, meta["edges"])),
            tuple(map(tuple, meta.get("flip_pairs", []))),
        )
    )
    k = len(skeleton.keypoints)
    samples = []
    for path, group in row_groups(url, split, card):
        for row in read_row_group(path, group):
            points = np.asarray(row["keypoints"], dtype=np.float64).reshape(-1, k, 2)
            vis = np.asarray(row["visibility"]).reshape(-1, k)
            samples.append(
                Sample(decode(row), list(points), list(vis), str(row.get("sample_id", ""))[:32])
            )
            if len(samples) >= count:
                return samples, skeleton
    return samples, skeleton


# ---------------------------------------------------------------- drawing
def draw_sample(sample: Sample, skeleton: Skeleton, cell: int = CELL) -> np.ndarray:
    """One cell [cell + CAPTION_HEIGHT, cell, 3]: the frame scaled so its longer side is `cell`, every
    person's keypoints drawn over it, and the caption below."""
    from poseops.viz.overlay import draw_keypoints

    h, w = sample.image.shape[:2]
    zoom = cell / max(h, w)
    tile = cv2.resize(
        np.ascontiguousarray(sample.image), (max(1, round(w * zoom)), max(1, round(h * zoom)))
    )
    for points, vis in zip(sample.keypoints, sample.visibility):
        draw_keypoints(tile, points * zoom, skeleton, vis)
    out = np.zeros((cell + CAPTION_HEIGHT, cell, 3), np.uint8)
    out[: tile.shape[0], : tile.shape[1]] = tile
    cv2.putText(
        out,
        sample.caption,
        (2, cell + CAPTION_HEIGHT - 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.38,
        (230, 230, 230),
        1,
        cv2.LINE_AA,
    )
    return out


def tile_grid(cells: list[np.ndarray], cols: int) -> np.ndarray:
    """Cells of one shape tiled row by row into [rows * h, min(n, cols) * w, 3]."""
    h, w = cells[0].shape[:2]
    rows = (len(cells) + cols - 1) // cols
    grid = np.zeros((rows * h, min(len(cells), cols) * w, 3), np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = cell
    return grid


def samples_grid(
    samples: list[Sample], skeleton: Skeleton, cols: int = 4, cell: int = CELL
) -> np.ndarray:
    return tile_grid([draw_sample(s, skeleton, cell) for s in samples], cols)


def stack_parts(parts: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Grids stacked top to bottom, each under a title strip, padded to the widest."""
    width = max(grid.shape[1] for _, grid in parts)
    blocks = []
    for title, grid in parts:
        block = np.zeros((TITLE_HEIGHT + grid.shape[0], width, 3), np.uint8)
        cv2.putText(
            block,
            title,
            (4, TITLE_HEIGHT - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        block[TITLE_HEIGHT:, : grid.shape[1]] = grid
        blocks.append(block)
    return np.vstack(blocks)


def annotation_samples(url: str, count: int) -> tuple[list[Sample], Skeleton]:
    """Images of an internal annotations file or an import folder (`poseops data import`), spread over the
    file, with every instance of its most common category drawn (stills and video frames alike)."""
    from poseops.datasets.shards import (
        FrameSource,  # pyarrow and the shard machinery: only for this source
    )

    path = annotations_file(url)
    data = load_annotations(path)
    if not data["annotations"]:
        raise DataError(f"{path}: no annotations to show")
    category_id = Counter(a["category_id"] for a in data["annotations"]).most_common(1)[0][0]
    category = next(c for c in data["categories"] if c["id"] == category_id)
    skeleton = skeleton_from_coco_category(category)
    people: dict = {}
    for ann in data["annotations"]:
        if ann["category_id"] == category_id:
            people.setdefault(ann["image_id"], []).append(
                np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            )
    images = [img for img in data["images"] if img["id"] in people]
    picked = [
        images[i * len(images) // min(count, len(images))] for i in range(min(count, len(images)))
    ]
    frames = FrameSource(Path(filesystem(path)[1]))
    samples = []
    for img in picked:
        kps = people[img["id"]]
        caption = f"{Path(str(img['file_name'])).name}" + (
            f" f{img['frame_index']}" if img.get("frame_index") is not None else ""
        )
        samples.append(
            Sample(
                frames.frame(img),
                [kp[:, :2] for kp in kps],
                [kp[:, 2].astype(int) for kp in kps],
                caption[-28:],
            )
        )
    return samples, skeleton


def capture_samples(folder: str, count: int) -> tuple[list[Sample], Skeleton]:
    """Samples of a hand or body capture folder, by the capture kind its manifest names (as annotate reads it),
    or of an import folder (kind "annotations")."""
    kind = read_json(join(folder, "manifest.json")).get("kind")
    readers = {"hand": hand_samples, "body": body_samples, "annotations": annotation_samples}
    if kind not in readers:
        raise DataError(
            f"{join(folder, 'manifest.json')}: capture kind {kind!r}: no labels to draw "
            f"(expected {' or '.join(readers)})"
        )
    return readers[kind](folder, count)


def label_grid(url: str, count: int = 16, cols: int = 4, part: str | None = None) -> np.ndarray:
    """A BGR grid of `count` labelled samples (per part) from a capture folder, a capture root (its `hands/`
    and `bodies/` stacked, or only `part`; `part` applies to roots only) or a derived dataset.

    Shape: [rows * (CELL + CAPTION_HEIGHT), min(count, cols) * CELL, 3] for one source; a capture root
    stacks one such grid per part, each under a TITLE_HEIGHT strip."""
    url = str(url)
    if url.endswith(".json") and exists(
        url
    ):  # an internal annotations file (e.g. data/annotations/labels.json)
        return samples_grid(*annotation_samples(url, count), cols)
    if part is not None and part not in CAPTURE_PARTS:
        raise DataError(f"part {part!r}: expected one of {', '.join(CAPTURE_PARTS)}")
    if exists(join(url, "card.json")) or exists(join(url, "manifest.json")):
        reader = dataset_samples if exists(join(url, "card.json")) else capture_samples
        samples, skeleton = reader(url, count)
        if not samples:
            raise DataError(f"{url}: no samples to show")
        return samples_grid(samples, skeleton, cols)
    present = [p for p in CAPTURE_PARTS if exists(join(url, p, "manifest.json"))]
    if not present:
        raise DataError(
            f"{url}: neither a derived dataset (card.json), a capture folder (manifest.json) "
            f"nor a capture root ({'/, '.join(CAPTURE_PARTS)}/ with manifest.json)"
        )
    if part is not None:
        if part not in present:
            raise DataError(
                f"{url}: capture root has no published {part}/ (has: {', '.join(present)})"
            )
        present = [part]
    grids = []
    for name in present:
        samples, skeleton = capture_samples(join(url, name), count)
        if not samples:
            raise DataError(f"{join(url, name)}: no samples to show")
        grids.append((name, samples_grid(samples, skeleton, cols)))
    return grids[0][1] if len(grids) == 1 else stack_parts(grids)
