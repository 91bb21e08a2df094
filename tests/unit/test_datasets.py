"""Transforms (pixel exactness), derive (splits, shard bounds, publish-last) and the streaming loader."""

from __future__ import annotations

import json
import shutil
import uuid

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from poseops.annotations.internal import build_annotations, load_annotations, resolve_image_path
from poseops.capture.common import read_video
from poseops.capture.synthetic_hands import write_hand_captures
from poseops.config import AugmentParams, CaptureParams, HandCaptureParams, SplitParams
from poseops.datasets.derive import dataset_checksum
from poseops.datasets.loader import CropDataset, load_split_arrays, read_card
from poseops.datasets.shards import derive_dataset
from poseops.datasets.transforms import apply_affine, box_affine, compose, invert_affine, warp
from poseops.errors import DataError
from poseops.storage import filesystem
from poseops.tasks.topdown_crop import TopdownCrop, TopdownCropData

K = 21


# ---------------------------------------------------------------- transforms
@pytest.mark.parametrize(
    "scale,shift", [(1.0, (0.0, 0.0)), (1.13, (0.07, -0.11)), (0.8, (-0.2, 0.05))]
)
def test_padding_by_integers_gives_the_same_crop(scale, shift):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 110, 3), dtype=np.uint8)
    box = (30.3, 20.7, 40.2, 35.9)
    dx, dy = 7, 13
    padded = cv2.copyMakeBorder(image, dy, 4, dx, 9, cv2.BORDER_CONSTANT, value=0)
    a = warp(image, box_affine(box, 1.25, 64, 0.0, scale, shift), 64)
    b = warp(
        padded,
        box_affine((box[0] + dx, box[1] + dy, box[2], box[3]), 1.25, 64, 0.0, scale, shift),
        64,
    )
    assert np.array_equal(a, b)
    rot_a = warp(image, box_affine(box, 1.25, 64, 33.0, scale, shift), 64)
    rot_b = warp(
        padded,
        box_affine((box[0] + dx, box[1] + dy, box[2], box[3]), 1.25, 64, 33.0, scale, shift),
        64,
    )
    assert np.array_equal(rot_a, rot_b)


def test_points_move_like_pixels():
    image = np.zeros((80, 100), np.float32)
    image[31, 57] = 1.0  # a dot at (x, y) = (57, 31)
    M = box_affine((40, 20, 30, 24), 1.5, 96, rotation_deg=25.0, scale=1.1, shift=(0.05, 0.0))
    out = warp(image, M, 96)
    y, x = np.unravel_index(np.argmax(out), out.shape)
    centre = (
        np.array([(out * np.arange(96)[None, :]).sum(), (out * np.arange(96)[:, None]).sum()])
        / out.sum()
    )
    assert np.allclose(centre, apply_affine(np.array([57.0, 31.0]), M), atol=0.25)
    assert abs(x - centre[0]) <= 1 and abs(y - centre[1]) <= 1


def test_box_centre_maps_to_crop_centre_and_inverse_composes():
    box = (10.0, 20.0, 30.0, 50.0)
    M = box_affine(box, 1.25, 64)
    corner_span = apply_affine(np.array([[10.0, 20.0], [10.0, 70.0]]), M)
    assert corner_span[1, 1] - corner_span[0, 1] == pytest.approx(
        64 / 1.25
    )  # side = margin * max(w, h)
    ident = compose(invert_affine(M), M)
    assert np.allclose(ident, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    pts = np.random.default_rng(1).uniform(0, 100, (5, 7, 2))
    assert np.allclose(apply_affine(apply_affine(pts, M), invert_affine(M)), pts)


# ---------------------------------------------------------------- derive
@pytest.fixture(scope="module")
def annotations(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    params = CaptureParams(
        seed=5, hands=HandCaptureParams(sequences=6, frames_per_sequence=8, image_size=224)
    )
    write_hand_captures(root / "raw", params)
    build_annotations(root / "raw", [], root / "labels" / "annotations.json")
    return root / "labels" / "annotations.json"


FAMILY = TopdownCropData()
SPLIT = SplitParams(val_fraction=0.34, seed=0)


@pytest.fixture(scope="module")
def dataset(annotations, tmp_path_factory):
    url = str(tmp_path_factory.mktemp("ds") / "hand")
    card = derive_dataset(TopdownCrop.rows, annotations, url, FAMILY, SPLIT)
    return url, card


def _rows(url: str, split: str, card: dict) -> list[dict]:
    rows = []
    for shard in card["splits"][split]["shards"]:
        fs, path = filesystem(f"{url}/{split}/{shard['file']}")
        with fs.open(path, "rb") as f:
            rows += pq.read_table(f).to_pylist()
    return rows


def test_card_counts_and_split_by_sequence_and_subject(annotations, dataset):
    url, card = dataset
    assert read_card(url) == card
    form = load_annotations(annotations)
    images = {i["id"]: i for i in form["images"]}
    assert sum(card["counts"].values()) == len(form["annotations"])
    assert all(card["counts"][split] > 0 for split in ("train", "val", "test"))
    seen = {}
    for split in ("train", "val", "test"):
        rows = _rows(url, split, card)
        assert len(rows) == card["counts"][split]
        for r in rows:
            img = images[r["image_id"]]
            for key in ("sequence", "subject"):
                assert seen.setdefault((key, img[key]), split) == split, (
                    f"{key} {img[key]} in two splits"
                )


def test_splits_are_disjoint_and_deterministic():
    """Train / validation / test share no unit, the same inputs give the same split, and the test units
    do not move when val_fraction changes (the test set stays what it was)."""
    from poseops.datasets.shards import split_keys, split_units

    units = [f"subject:synthetic:hand_{i:03d}" for i in range(40)]
    split = SplitParams(test_fraction=0.25, val_fraction=0.1, seed=3)
    first = split_keys(units, split)
    assert first == split_keys(list(reversed(units)), split)
    assert sorted(first.values()).count("test") == 10 and sorted(first.values()).count("val") == 4
    wider = split_keys(units, SplitParams(test_fraction=0.25, val_fraction=0.3, seed=3))
    assert {u for u, s in first.items() if s == "test"} == {
        u for u, s in wider.items() if s == "test"
    }
    assert split_keys(units, SplitParams(seed=4)) != split_keys(units, SplitParams(seed=3))
    # by subject, a subject's sequences stay together; by sequence, they may part
    images = [
        {"id": i, "source": "synthetic", "subject": f"s{i % 4}", "sequence": f"q{i}"}
        for i in range(16)
    ]
    by_subject = split_units(images, SplitParams(seed=0))
    assert len(by_subject) == 4 and set(by_subject.values()) == {"train", "val", "test"}
    by_sequence = split_units(images, SplitParams(by="sequence", seed=0))
    assert len(by_sequence) == 16
    with pytest.raises(ValueError, match="leave no training units"):
        SplitParams(test_fraction=0.6, val_fraction=0.4)


def test_crops_copy_source_pixels_and_labels_follow(annotations, dataset):
    url, card = dataset
    form = load_annotations(annotations)
    images = {i["id"]: i for i in form["images"]}
    anns = {a["id"]: a for a in form["annotations"]}
    row = _rows(url, "val", card)[3]
    crop = cv2.imdecode(np.frombuffer(row["image"], np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (row["crop_h"], row["crop_w"], 3)
    A = np.asarray(row["affine"]).reshape(2, 3)
    assert np.allclose(A[:, :2], np.eye(2))  # no resampling below 512 px
    x0, y0 = int(A[0, 2]), int(A[1, 2])
    image = images[row["image_id"]]
    frame = read_video(resolve_image_path(annotations, image))[image["frame_index"]]
    h, w = frame.shape[:2]
    ys, xs = (
        slice(max(0, y0), min(h, y0 + crop.shape[0])),
        slice(max(0, x0), min(w, x0 + crop.shape[1])),
    )
    assert np.array_equal(
        crop[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0], frame[ys, xs]
    )
    kp_src = np.asarray(anns[row["sample_id"]]["keypoints"]).reshape(K, 3)
    kp_crop = np.asarray(row["keypoints"]).reshape(K, 2)
    assert np.allclose(apply_affine(kp_crop, A), kp_src[:, :2], atol=1e-3)
    assert list(row["visibility"]) == kp_src[:, 2].astype(int).tolist()


def test_loader_input_matches_endpoint_crop(annotations, dataset):
    """Evaluation on shards and the endpoint (crop from the full frame) see the same pixels."""
    url, card = dataset
    arrays = load_split_arrays(url, "val", 64, 1.25, limit=4)
    form = load_annotations(annotations)
    images = {i["id"]: i for i in form["images"]}
    anns = {a["id"]: a for a in form["annotations"]}
    for i, sid in enumerate(arrays["sample_id"]):
        ann = anns[int(sid)]
        image = images[ann["image_id"]]
        frame = read_video(resolve_image_path(annotations, image))[image["frame_index"]]
        M = box_affine(ann["bbox"], 1.25, 64)
        endpoint = warp(frame, M, 64)[..., ::-1]
        mine = arrays["image"][i]
        mine = mine if mine.shape[-1] == 3 else mine.transpose(1, 2, 0)
        assert np.abs(endpoint.astype(int) - mine).mean() < 0.5
        back = apply_affine(arrays["keypoints"][i], arrays["affine_to_source"][i])
        kp = np.asarray(ann["keypoints"]).reshape(K, 3)
        labelled = kp[:, 2] > 0
        assert np.allclose(back[labelled], kp[labelled, :2], atol=0.05)


def test_shards_stay_under_the_byte_bound(annotations, tmp_path):
    small = FAMILY.model_copy(update={"max_shard_bytes": 1 << 20})
    card = derive_dataset(TopdownCrop.rows, annotations, str(tmp_path / "ds"), small, SPLIT)
    files = list((tmp_path / "ds").rglob("*.parquet"))
    assert len(files) >= 3
    assert max(f.stat().st_size for f in files) <= 1.1e6
    assert max(f.stat().st_size for f in files) <= 1 << 20
    assert sum(s["rows"] for sh in card["splits"].values() for s in sh["shards"]) == sum(
        card["counts"].values()
    )
    # rewriting into the same folder clears the old shards
    derive_dataset(TopdownCrop.rows, annotations, str(tmp_path / "ds"), FAMILY, SPLIT)
    assert len(list((tmp_path / "ds").rglob("*.parquet"))) == 3  # one per split


def test_max_samples_caps_each_split(annotations, tmp_path):
    card = derive_dataset(
        TopdownCrop.rows,
        annotations,
        str(tmp_path / "ds"),
        FAMILY.model_copy(update={"max_samples": 5}),
        SPLIT,
    )
    assert card["counts"] == {"train": 5, "val": 5, "test": 5}


def test_memory_url(annotations):
    url = f"memory://poseops-test-{uuid.uuid4().hex}/hand"
    card = derive_dataset(TopdownCrop.rows, annotations, url, FAMILY, SPLIT)
    assert read_card(url)["counts"] == card["counts"]
    ids = [int(s["sample_id"]) for s in CropDataset(url, "train", 48, 1.25)]
    assert len(ids) == card["counts"]["train"]


def test_bad_input_leaves_nothing(annotations, tmp_path):
    form = json.loads(annotations.read_text())
    victim = form["images"][-1]["file_name"]
    form["images"] = [
        {**i, "file_name": i["file_name"].replace("seq_", "gone_")}
        if i["file_name"] == victim
        else i
        for i in form["images"]
    ]
    bad = tmp_path / "labels" / "annotations.json"
    bad.parent.mkdir()
    # keep the other videos reachable from the new location
    shutil.copytree(annotations.parent.parent / "raw", tmp_path / "raw")
    bad.write_text(json.dumps(form))
    out = tmp_path / "ds"
    with pytest.raises(DataError, match="gone_"):
        derive_dataset(TopdownCrop.rows, bad, str(out), FAMILY, SPLIT)
    assert not (out / "card.json").exists()
    assert not list(out.rglob("*.parquet")) if out.exists() else True
    with pytest.raises(DataError, match="card.json"):
        read_card(str(out))


# ---------------------------------------------------------------- loader
def test_loader_yields_tensors_with_the_contract_shapes(dataset):
    url, _ = dataset
    sample = next(iter(CropDataset(url, "train", 64, 1.25, augment=AugmentParams(), seed=1)))
    assert (
        tuple(sample["image"].shape) == (3, 64, 64) and str(sample["image"].dtype) == "torch.uint8"
    )
    assert (
        tuple(sample["keypoints"].shape) == (K, 2)
        and str(sample["keypoints"].dtype) == "torch.float32"
    )
    assert tuple(sample["visibility"].shape) == (K,)
    assert tuple(sample["affine_to_source"].shape) == (2, 3)
    assert float(sample["norm_size"]) > 1.0
    assert str(sample["sample_id"].dtype) == "torch.int64"


def test_loader_ranks_are_disjoint_and_cover_the_split(dataset):
    url, card = dataset
    shares = [
        [
            int(s["sample_id"])
            for s in CropDataset(url, "train", 32, 1.25, seed=0, rank=r, world_size=2)
        ]
        for r in range(2)
    ]
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(
        int(r["sample_id"]) for r in _rows(url, "train", card)
    )


def test_loader_epochs_shuffle_deterministically(dataset):
    url, _ = dataset

    def order(epoch: int, seed: int = 0) -> list[int]:
        ds = CropDataset(url, "train", 32, 1.25, seed=seed)
        ds.set_epoch(epoch)
        return [int(s["sample_id"]) for s in ds]

    e0, e1 = order(0), order(1)
    assert e0 != e1 and sorted(e0) == sorted(e1)
    assert order(0) == e0
    assert order(0, seed=7) != e0


def test_load_split_arrays_is_deterministic(dataset):
    url, card = dataset
    a = load_split_arrays(url, "val", 48, 1.25)
    b = load_split_arrays(url, "val", 48, 1.25, limit=3)
    assert len(a["sample_id"]) == card["counts"]["val"]
    assert np.array_equal(a["sample_id"][:3], b["sample_id"])
    assert np.array_equal(a["image"][:3], b["image"])
    assert a["keypoints"].shape == (card["counts"]["val"], K, 2)


def test_shuffle_buffer_mixes_across_a_thousand_rows(tmp_path):
    """Rows are read in row-group order; the buffer holds SHUFFLE_BUFFER (>= 1000) of them, so the first
    sample yielded can be any of the first 1000 read, and an epoch moves samples far beyond a row group."""
    import pyarrow as pa

    from poseops.datasets.loader import SHUFFLE_BUFFER, ShardStream
    from poseops.datasets.shards import ShardWriter
    from poseops.storage import write_json_atomic

    assert SHUFFLE_BUFFER >= 1000
    writer = ShardWriter(
        str(tmp_path / "ds" / "train"), 1 << 20, pa.schema([("sample_id", pa.int64())])
    )
    for i in range(2500):
        writer.add({"sample_id": i})
    shards = [
        {"file": s["file"].rsplit("/", 1)[-1], "rows": s["rows"], "row_groups": s["row_groups"]}
        for s in writer.close()
    ]
    write_json_atomic(
        tmp_path / "ds" / "card.json", {"kind": "ids", "splits": {"train": {"shards": shards}}}
    )

    class Ids(ShardStream):
        def _tensors(self, row, rng):
            return row["sample_id"]

    def read_order(stream: ShardStream) -> list[int]:
        """Ids in the order the stream reads them (its row groups' order)."""
        from poseops.datasets.loader import read_row_group

        return [
            r["sample_id"] for path, group in stream.my_units() for r in read_row_group(path, group)
        ]

    firsts = []
    for seed in range(8):
        stream = Ids(str(tmp_path / "ds"), "train", seed=seed)
        position = {sample: i for i, sample in enumerate(read_order(stream))}
        got = list(stream)
        assert sorted(got) == list(range(2500))
        firsts.append(position[got[0]])
        moved = np.abs(np.arange(2500) - np.array([position[i] for i in got]))
        assert moved.max() > 500  # far beyond one row group (64 rows)
    assert max(firsts) > 500 and min(firsts) < 500


def test_executor_choice(monkeypatch):
    """auto: in-process for memory:// and small jobs; Ray when a cluster is named or the job is large;
    an explicit Ray run refuses memory:// (it lives in one process)."""
    from poseops.datasets.derive import AUTO_RAY_MIN_SAMPLES, choose_executor

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert choose_executor("auto", "/tmp/x", 10) == "local"
    assert choose_executor("auto", "/tmp/x", AUTO_RAY_MIN_SAMPLES) == "ray"
    assert choose_executor("auto", "memory://x", AUTO_RAY_MIN_SAMPLES) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert choose_executor("auto", "s3://bucket/x", 10) == "ray"
    assert choose_executor("local", "s3://bucket/x", 10) == "local"
    with pytest.raises(DataError, match="memory://"):
        choose_executor("ray", "memory://x", 10)
    with pytest.raises(DataError, match="executor"):
        choose_executor("spark", "/tmp/x", 10)


def test_one_chunk_per_task_writes_its_own_shards(annotations, tmp_path):
    """Chunks of at most chunk_samples items, each written to its own part-<chunk>-NNNN files; the card
    lists them in order with row and row-group counts and checksums of the bytes on disk."""
    from poseops.storage import sha256_file

    facts: list[dict] = []
    card = derive_dataset(
        TopdownCrop.rows,
        annotations,
        str(tmp_path / "ds"),
        FAMILY,
        SPLIT,
        executor="local",
        chunk_samples=7,
        run_log=facts.append,
    )
    for split, body in card["splits"].items():
        names = [s["file"] for s in body["shards"]]
        assert names == sorted(names) and len({n.split("-")[1] for n in names}) == -(
            -card["counts"][split] // 7
        )
        assert sum(s["rows"] for s in body["shards"]) == card["counts"][split]
        for shard in body["shards"]:
            path = tmp_path / "ds" / split / shard["file"]
            assert sha256_file(path) == shard["sha256"]
            assert pq.ParquetFile(path).num_row_groups == shard["row_groups"]
    assert "executor" not in card and "seconds" not in card  # run facts are not content
    assert len(facts) == 1 and facts[0]["executor"] == "local"
    assert facts[0]["tasks"] == sum(-(-n // 7) for n in card["counts"].values())
    assert facts[0]["dataset_checksum"] == dataset_checksum(card)


def test_visibility_follows_clean_labels():
    """With label noise, the clean labels decide which keypoints count: a noisy label pushed out of the
    crop keeps its keypoint, a clean one outside drops it whatever its noisy label says."""
    from poseops.datasets.loader import make_sample

    crop = np.full((64, 64, 3), 128, np.uint8)
    ok, png = cv2.imencode(".png", crop)
    clean = np.tile([32.0, 32.0], (K, 1))
    clean[1] = [80.0, 32.0]  # truly outside the input
    noisy = clean.copy()
    noisy[0] = [200.0, 32.0]  # noise moved it outside
    noisy[1] = [30.0, 30.0]  # noise moved it inside
    row = {
        "image": png.tobytes(),
        "keypoints": noisy.ravel().tolist(),
        "keypoints_clean": clean.ravel().tolist(),
        "visibility": [2] * K,
        "box_in_crop": [16.0, 16.0, 32.0, 32.0],
        "affine": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        "sample_id": 7,
    }
    sample = make_sample(row, 32, 2.0)
    assert sample["visibility"][0] == 2 and sample["visibility"][1] == 0
    assert (sample["visibility"][2:] == 2).all()
