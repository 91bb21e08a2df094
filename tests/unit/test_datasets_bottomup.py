"""bottomup_image: derive (one row per image, every person), BottomUpDataset (letterbox, augmentation with
left/right swap, padding, shares) and load_bottomup_split (affine back to source pixels).

The images are drawn here: each person's keypoint k is a disk of colour COLOURS[k], so a test can read
which keypoint sits under a label after augmentation.
"""

from __future__ import annotations

import json
import uuid

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from poseops.config import AugmentParams, SplitParams
from poseops.datasets.bottomup import BottomUpDataset, load_bottomup_split
from poseops.datasets.derive import derive_dataset
from poseops.datasets.transforms import apply_affine
from poseops.errors import DataError
from poseops.skeletons import get_skeleton
from poseops.storage import filesystem
from poseops.tasks import get_task

SK = get_skeleton("coco17")
K = SK.num_keypoints
W, H = 320, 200
RADIUS = 8
COLOURS = np.array(
    [((37 * k) % 256, (255 - 53 * k) % 256, (90 + 71 * k) % 256) for k in range(K)], np.uint8
)
SPLIT = SplitParams(val_fraction=0.34, seed=0)
FAMILY = get_task("bottomup_image").Options()


def draw_image(rng: np.random.Generator, people: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A W x H image with `people` persons side by side; each a 4 x 5 grid of keypoint disks. Returns
    the image and per person keypoints [K,3] (x, y, v): v 2 drawn, 1 drawn but 'occluded', 0 not drawn."""
    image = np.full((H, W, 3), 40, np.uint8)
    persons = []
    for p in range(people):
        x0, y0 = 12 + 104 * p + rng.integers(0, 14), 10 + rng.integers(0, 80)
        kp = np.zeros((K, 3))
        for k in range(K):
            kp[k] = (x0 + 22 * (k % 4), y0 + 22 * (k // 4), 2)
        kp[rng.integers(0, K), 2] = 1
        kp[rng.integers(0, K), 2] = 0
        for k in range(K):
            if kp[k, 2] > 0:
                cv2.circle(image, (int(kp[k, 0]), int(kp[k, 1])), RADIUS, COLOURS[k].tolist(), -1)
        persons.append(kp)
    return image, persons


@pytest.fixture(scope="module")
def annotations(tmp_path_factory):
    """12 PNG images in 6 sequences, 2-3 persons each, plus a crowd box and an ignore region."""
    root = tmp_path_factory.mktemp("bu")
    rng = np.random.default_rng(3)
    images, anns = [], []
    for i in range(12):
        image, persons = draw_image(rng, 2 + i % 2)
        name = f"img_{i:03d}.png"
        cv2.imwrite(str(root / name), image)
        images.append(
            {
                "id": i + 1,
                "file_name": name,
                "frame_index": None,
                "width": W,
                "height": H,
                "sequence": f"seq{i // 2}",
                "subject": "",
                "source": "synthetic",
                **({"ignore_regions": [[1, 2, 30, 40]]} if i == 0 else {}),
            }
        )
        for kp in persons:
            labelled = kp[kp[:, 2] > 0]
            x0, y0 = labelled[:, :2].min(0) - RADIUS
            x1, y1 = labelled[:, :2].max(0) + RADIUS
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "keypoints": kp.ravel().tolist(),
                    "num_keypoints": int((kp[:, 2] > 0).sum()),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "area": float((x1 - x0) * (y1 - y0)),
                    "iscrowd": 0,
                }
            )
    anns.append(
        {
            "id": len(anns) + 1,
            "image_id": 2,
            "category_id": 1,
            "keypoints": [0.0] * (3 * K),
            "num_keypoints": 0,
            "bbox": [5.0, 6.0, 20.0, 30.0],
            "area": 600.0,
            "iscrowd": 1,
        }
    )
    category = {
        "id": 1,
        "name": "person",
        "keypoints": list(SK.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in SK.edges],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [category]}))
    return path


@pytest.fixture(scope="module")
def dataset(annotations, tmp_path_factory):
    url = str(tmp_path_factory.mktemp("ds") / "bu")
    card = derive_dataset(
        get_task("bottomup_image").rows,
        annotations,
        url,
        FAMILY,
        SPLIT,
        skeleton="coco17",
        chunk_samples=2,
    )
    return url, card


def rows(url: str, split: str, card: dict) -> list[dict]:
    out = []
    for shard in card["splits"][split]["shards"]:
        fs, path = filesystem(f"{url}/{split}/{shard['file']}")
        with fs.open(path, "rb") as f:
            out += pq.read_table(f).to_pylist()
    return out


def test_one_row_per_image_with_every_person(annotations, dataset):
    url, card = dataset
    form = json.loads(annotations.read_text())
    people = {}
    for a in form["annotations"]:
        if not a["iscrowd"]:
            people.setdefault(a["image_id"], []).append(a)
    assert card["kind"] == "bottomup_image" and card["max_people"] == 3
    assert sum(card["counts"].values()) == len(form["images"])
    seen = {}
    for split in ("train", "val"):
        for row in rows(url, split, card):
            anns = people[row["image_id"]]
            assert row["num_people"] == len(anns) and row["annotation_ids"] == [
                a["id"] for a in anns
            ]
            kp = np.asarray([a["keypoints"] for a in anns]).reshape(-1, K, 3)
            assert np.allclose(np.reshape(row["keypoints"], (-1, K, 2)), kp[..., :2])
            assert (
                np.reshape(row["visibility"], (-1, K)).tolist() == kp[..., 2].astype(int).tolist()
            )
            assert np.allclose(np.reshape(row["boxes"], (-1, 4)), [a["bbox"] for a in anns])
            image = form["images"][row["image_id"] - 1]
            assert (
                row["image"] == (annotations.parent / image["file_name"]).read_bytes()
            )  # the source's bytes
            assert row["image_format"] == "png" and (row["width"], row["height"]) == (W, H)
            assert (
                seen.setdefault(image["sequence"], split) == split
            )  # a sequence never spans splits
    ignore = {
        r["image_id"]: r["ignore_boxes"] for s in ("train", "val") for r in rows(url, s, card)
    }
    assert ignore[1] == [1, 2, 30, 40] and ignore[2] == [5, 6, 20, 30] and ignore[3] == []


def test_dataset_pads_people_and_letterboxes(dataset):
    url, card = dataset
    samples = list(BottomUpDataset(url, "train", 96, seed=0))
    assert len(samples) == card["counts"]["train"]
    for s in samples:
        assert tuple(s["image"].shape) == (3, 96, 96) and str(s["image"].dtype) == "torch.uint8"
        assert (
            tuple(s["keypoints"].shape) == (3, K, 2)
            and str(s["keypoints"].dtype) == "torch.float32"
        )
        assert tuple(s["visibility"].shape) == (3, K)
        n = int(s["num_people"])
        assert n in (2, 3) and float(s["visibility"][n:].abs().sum()) == 0.0
        assert float(s["visibility"][:n].sum()) > 0
        # W > H: the letterbox leaves zero rows above and below the picture
        assert int(s["image"][:, :5].max()) == 0 and int(s["image"][:, -5:].max()) == 0
        assert int(s["image"][:, 48].max()) > 0
    assert sorted(int(s["sample_id"]) for s in samples) == sorted(
        r["sample_id"] for r in rows(url, "train", card)
    )


def colour_under(image_chw: np.ndarray, xy: np.ndarray) -> int:
    """Index of the keypoint colour nearest to the pixel at xy (image RGB [3,S,S])."""
    x, y = int(round(float(xy[0]))), int(round(float(xy[1])))
    rgb = image_chw[:, y, x].astype(int)
    return int(np.argmin(np.abs(COLOURS[:, ::-1].astype(int) - rgb).sum(1)))


def test_augmented_labels_sit_on_their_pixels_and_flip_swaps_left_right(dataset):
    """Rotation, scale, shift and flip move labels with pixels; a flipped sample's label j sits on the
    disk drawn for keypoint flip_permutation[j] (left and right swapped), an unflipped one on disk j."""
    url, _ = dataset
    augment = AugmentParams(
        rotation_deg=30, scale=(0.8, 1.2), shift=0.05, color_jitter=0.0, flip=True
    )
    perm = np.asarray(SK.flip_permutation())
    flipped = plain = 0
    for epoch in range(3):
        ds = BottomUpDataset(url, "train", 160, augment=augment, seed=11)
        ds.set_epoch(epoch)
        for s in ds:
            image = s["image"].numpy()
            found, same, swapped = 0, 0, 0
            for p in range(int(s["num_people"])):
                for j in range(K):
                    if s["visibility"][p, j] > 0:
                        under = colour_under(image, s["keypoints"][p, j].numpy())
                        found += 1
                        same += under == j
                        swapped += under == perm[j]
            assert found > 10
            # keypoints that are their own mirror (nose) count for both
            assert same == found or swapped == found, (same, swapped, found)
            is_flip = swapped == found and same < found
            flipped += is_flip
            plain += not is_flip
    assert flipped > 0 and plain > 0


def test_training_windows_keep_the_input_scale_and_a_person(dataset):
    """window=64 of a 160 input: 64-px squares holding a labelled person, labels on their pixels, each
    window a whole-number shift of the whole 160 input (same scale), the shift differing across samples,
    and affine_to_source still mapping back to the source's pixels."""
    url, card = dataset
    augment = AugmentParams(rotation_deg=0, scale=(1, 1), shift=0, color_jitter=0.0, flip=False)
    whole = {int(s["sample_id"]): s for s in BottomUpDataset(url, "train", 160, seed=4)}
    source = {
        r["sample_id"]: np.reshape(r["keypoints"], (-1, K, 2)) for r in rows(url, "train", card)
    }
    shifts = set()
    for s in BottomUpDataset(url, "train", 160, augment=augment, seed=4, window=64):
        image, n = s["image"].numpy(), int(s["num_people"])
        assert image.shape == (3, 64, 64)
        visible = s["visibility"].numpy()[:n] > 0
        assert visible.any()
        kp = s["keypoints"].numpy()[:n]
        for p, j in zip(*np.nonzero(visible)):
            assert colour_under(image, kp[p, j]) == j
        shift = whole[int(s["sample_id"])]["keypoints"].numpy()[:n] - kp
        assert np.allclose(shift, shift[0, 0], atol=1e-3) and np.allclose(
            shift[0, 0], np.round(shift[0, 0])
        )
        shifts.add(tuple(np.round(shift[0, 0]).astype(int)))
        # each person's centre and box area are the whole input's, shifted: the window's border cuts nothing off them
        full = whole[int(s["sample_id"])]["whole_people"].numpy()[:n]
        np.testing.assert_allclose(
            s["whole_people"].numpy()[:n], full - np.append(shift[0, 0], 0.0), atol=1e-3
        )
        back = apply_affine(kp.reshape(-1, 2), s["affine_to_source"].numpy()).reshape(n, K, 2)
        np.testing.assert_allclose(back, source[int(s["sample_id"])][:n], atol=1e-2)
    assert len(shifts) > 1


def test_colour_jitter_and_geometry_draws(dataset):
    url, _ = dataset
    base = AugmentParams(rotation_deg=0, scale=(1, 1), shift=0, color_jitter=0.0, flip=False)
    jitter = base.model_copy(update={"color_jitter": 0.3})
    rotate = base.model_copy(update={"rotation_deg": 40})
    a = next(iter(BottomUpDataset(url, "train", 64, augment=base, seed=2)))
    b = next(iter(BottomUpDataset(url, "train", 64, augment=jitter, seed=2)))
    c = next(iter(BottomUpDataset(url, "train", 64, augment=rotate, seed=2)))
    assert int(a["sample_id"]) == int(b["sample_id"]) == int(c["sample_id"])
    assert np.array_equal(
        a["keypoints"].numpy(), b["keypoints"].numpy()
    )  # jitter moves no keypoint
    assert not np.array_equal(a["image"].numpy(), b["image"].numpy())
    assert not np.allclose(a["keypoints"].numpy(), c["keypoints"].numpy())


def test_shares_epochs_and_seeds(dataset):
    url, card = dataset

    def ids(epoch=0, seed=0, rank=0, world=1):
        ds = BottomUpDataset(url, "train", 32, seed=seed, rank=rank, world_size=world)
        ds.set_epoch(epoch)
        return [int(s["sample_id"]) for s in ds]

    everything = sorted(r["sample_id"] for r in rows(url, "train", card))
    shares = [ids(rank=r, world=2) for r in range(2)]
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == everything
    e0 = ids(0)
    assert ids(0) == e0 and sorted(ids(1)) == sorted(e0)
    assert any(ids(e) != e0 for e in (1, 2, 3))


def test_evaluation_split_maps_back_to_source_pixels(annotations, dataset):
    url, card = dataset
    form = json.loads(annotations.read_text())
    anns = {a["id"]: a for a in form["annotations"]}
    samples = load_bottomup_split(url, "val", 128)
    assert len(samples) == card["counts"]["val"]
    for s in samples:
        assert s["image"].shape == (128, 128, 3) and s["keypoints"].shape == (s["num_people"], K, 2)
        back = apply_affine(s["keypoints"], s["affine_to_source"])
        truth = np.asarray([anns[i]["keypoints"] for i in s["annotation_ids"]]).reshape(-1, K, 3)
        assert np.allclose(back, truth[..., :2], atol=0.02)
        assert np.allclose(s["keypoints_source"], truth[..., :2])
        assert (s["width"], s["height"]) == (W, H)
        # the pixel under each visible label shows its own keypoint's colour (no augmentation)
        image = s["image"].transpose(2, 0, 1)
        for p in range(s["num_people"]):
            for j in np.flatnonzero(s["visibility"][p] > 0):
                assert colour_under(image, s["keypoints"][p, j]) == j
    assert len(load_bottomup_split(url, "val", 64, limit=1)) == 1
    order = [r["image_id"] for r in rows(url, "train", card)]
    for limit in (
        2,
        3,
        len(order) - 1,
    ):  # exactly `limit` images, spread: the first, then every count/limit-th
        spread = load_bottomup_split(url, "train", 32, limit=limit)
        assert [s["image_id"] for s in spread] == [
            order[i * len(order) // limit] for i in range(limit)
        ]
    assert len(load_bottomup_split(url, "train", 32, limit=len(order) + 5)) == len(order)


def test_ray_refuses_memory_urls_and_local_path_serves_them(annotations):
    url = f"memory://poseops-bu-{uuid.uuid4().hex}/bu"
    with pytest.raises(DataError, match="memory://.*Ray"):
        derive_dataset(
            get_task("bottomup_image").rows,
            annotations,
            url,
            FAMILY,
            SPLIT,
            skeleton="coco17",
            executor="ray",
        )
    card = derive_dataset(
        get_task("bottomup_image").rows,
        annotations,
        url,
        FAMILY,
        SPLIT,
        skeleton="coco17",
        executor="local",
    )
    assert sum(1 for _ in BottomUpDataset(url, "val", 32)) == card["counts"]["val"]


def test_crop_dataset_is_refused_by_the_bottomup_loader(annotations, tmp_path):
    url = str(tmp_path / "crops")
    derive_dataset(
        get_task("topdown_crop").rows,
        annotations,
        url,
        get_task("topdown_crop").Options(),
        SPLIT,
        skeleton="coco17",
    )
    with pytest.raises(DataError, match="not bottomup_image"):
        BottomUpDataset(url, "train", 32)
