"""Derived datasets on S3 (a local moto server): `poseops data derive` on Ray writes bounded shards and a
card; a derivation killed between its first shard object and its card leaves nothing readable and a re-run
publishes; two Ray Train workers stream disjoint shares whose union is the split.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from tests.s3server import s3_filesystem

from poseops.errors import DataError
from poseops.storage import sha256_bytes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "poseops-derived"
MB = 1 << 20


@pytest.fixture(scope="module", autouse=True)
def bucket(s3):
    s3_filesystem().mkdir(BUCKET)
    return BUCKET


@pytest.fixture(scope="module")
def hand_project(tmp_path_factory):
    """A project folder: params.yaml (handmle only, 1 MB shards) and synthetic hand annotations."""
    from poseops.annotations.internal import build_annotations
    from poseops.capture.synthetic_hands import write_hand_captures
    from poseops.config import CaptureParams, HandCaptureParams

    root = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["families"] = {"handmle": params["families"]["handmle"]}
    params["families"]["handmle"]["data"]["max_shard_bytes"] = MB
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    capture = CaptureParams(
        seed=1, hands=HandCaptureParams(sequences=8, frames_per_sequence=12, image_size=256)
    )
    write_hand_captures(root / "data/raw/synthetic", capture)
    build_annotations(root / "data/raw/synthetic", [], root / "data/annotations/labels.json")
    return root


def objects(fs, prefix: str) -> dict[str, int]:
    """key -> size of every object under s3://prefix."""
    return {path: info["size"] for path, info in fs.find(prefix, detail=True).items()}


def test_cli_derives_to_s3_on_ray_in_bounded_shards(s3, s3_ray_address, hand_project):
    url = f"s3://{BUCKET}/derived/handmle"
    env = {**os.environ, "RAY_ADDRESS": s3_ray_address, "RAY_AUTH_MODE": "token"}
    run = subprocess.run(
        [str(BIN / "poseops"), "data", "derive", "handmle", "--out", url, "--executor", "ray"],
        cwd=hand_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    from poseops.datasets.loader import CropDataset, read_card

    card = read_card(url)
    facts = json.loads((hand_project / ".poseops/logs/derive.jsonl").read_text().splitlines()[-1])
    assert facts["executor"] == "ray" and facts["tasks"] >= 2  # run facts: in the log, not the card
    fs = s3_filesystem()
    found = objects(fs, f"{BUCKET}/derived/handmle")
    shards = {k: v for k, v in found.items() if k.endswith(".parquet")}
    assert len(shards) >= 3 and max(shards.values()) <= 1.1e6, shards
    listed = {
        f"{BUCKET}/derived/handmle/{split}/{s['file']}": s
        for split, body in card["splits"].items()
        for s in body["shards"]
    }
    assert set(listed) == set(shards)
    for key, shard in listed.items():
        assert sha256_bytes(fs.cat_file(key)) == shard["sha256"]
    ids = [int(s["sample_id"]) for s in CropDataset(url, "val", 32, 1.25)]
    assert len(ids) == len(set(ids)) == card["counts"]["val"]

    # the same chunks in this process publish the very same shards (names, rows, bytes)
    from poseops.datasets.derive import derive_dataset
    from poseops.families import load_params
    from poseops.tasks import get_task

    params = load_params(hand_project / "params.yaml")
    local = derive_dataset(
        get_task("topdown_crop").rows,
        hand_project / "data/annotations/labels.json",
        str(hand_project / "local"),
        params.families["handmle"].data,
        params.data.split,
        executor="local",
    )
    assert local == card  # the whole card, not only the shards: a pure function of the inputs
    assert (hand_project / "local/card.json").read_bytes() == fs.cat_file(
        f"{BUCKET}/derived/handmle/card.json"
    )


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from poseops.config import SplitParams
    from poseops.tasks import get_task
    from poseops.datasets.derive import derive_dataset
    derive_dataset(get_task("bottomup_image").rows, sys.argv[1], sys.argv[2], get_task("bottomup_image").Options(max_shard_bytes=1 << 20),
                   SplitParams(val_fraction=0.25), skeleton="coco17", executor="local")
    """
)


def noisy_annotations(folder: Path, images: int = 28) -> Path:
    """Still PNGs of noise (they do not compress: ~0.35 MB each) with one labelled person each."""
    rng = np.random.default_rng(0)
    records, anns = [], []
    for i in range(images):
        cv2.imwrite(
            str(folder / f"noise_{i}.png"), rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
        )
        records.append(
            {
                "id": i + 1,
                "file_name": f"noise_{i}.png",
                "frame_index": None,
                "width": 400,
                "height": 300,
                "sequence": f"s{i % 7}",
                "subject": "",
                "source": "synthetic",
            }
        )
        kp = np.column_stack(
            [rng.uniform(100, 300, 17), rng.uniform(50, 250, 17), np.full(17, 2.0)]
        )
        x0, y0 = kp[:, :2].min(0)
        x1, y1 = kp[:, :2].max(0)
        anns.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "keypoints": kp.ravel().tolist(),
                "num_keypoints": 17,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
        )
    from poseops.skeletons import get_skeleton

    sk = get_skeleton("coco17")
    category = {
        "id": 1,
        "name": "person",
        "keypoints": list(sk.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in sk.edges],
    }
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": records, "annotations": anns, "categories": [category]}))
    return path


def test_killed_derivation_leaves_nothing_readable_and_a_rerun_publishes(s3, tmp_path):
    from poseops.config import SplitParams
    from poseops.datasets.bottomup import BottomUpDataset
    from poseops.datasets.derive import derive_dataset
    from poseops.datasets.loader import read_card
    from poseops.tasks import get_task

    labels = noisy_annotations(tmp_path)
    prefix = f"{BUCKET}/killed/bu"
    url = f"s3://{prefix}"
    fs = s3_filesystem()
    script = tmp_path / "derive.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(labels), url],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(k.endswith(".parquet") for k in objects(fs, prefix)):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the derivation ended before any shard object was polled"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    left = objects(fs, prefix)
    assert any(k.endswith(".parquet") for k in left), left
    assert not any(k.endswith("card.json") for k in left)
    with pytest.raises(DataError, match="card.json"):
        read_card(url)
    with pytest.raises(DataError, match="card.json"):
        BottomUpDataset(url, "train", 64)

    card = derive_dataset(
        get_task("bottomup_image").rows,
        labels,
        url,
        get_task("bottomup_image").Options(max_shard_bytes=MB),
        SplitParams(val_fraction=0.25),
        skeleton="coco17",
        executor="local",
    )
    assert read_card(url) == card
    after = objects(fs, prefix)
    listed = {
        f"{prefix}/{split}/{s['file']}"
        for split, body in card["splits"].items()
        for s in body["shards"]
    }
    assert set(after) == listed | {f"{prefix}/card.json"}  # the killed run's shards are gone
    assert max(after[k] for k in listed) <= 1.1e6
    assert sum(1 for _ in BottomUpDataset(url, "val", 64)) == card["counts"]["val"]


def share_loop(config: dict) -> None:
    """A Ray Train worker: stream its share of the split and write the ids it saw."""
    import ray.train

    from poseops.datasets.loader import CropDataset

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    dataset = CropDataset(config["url"], "train", 32, 1.25, seed=3, rank=rank, world_size=world)
    ids = [int(s["sample_id"]) for s in dataset]
    Path(config["out"], f"rank{rank}.json").write_text(json.dumps(ids))
    ray.train.report({"seen": len(ids)})


def test_two_ray_train_workers_get_disjoint_shares_covering_the_split(s3, s3_ray_address, tmp_path):
    """Two real Ray Train workers read a dataset from S3: disjoint ids whose union is the split."""
    import ray
    import ray.cloudpickle
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from poseops.config import SplitParams
    from poseops.datasets.derive import derive_dataset
    from poseops.datasets.loader import read_row_group, row_groups
    from poseops.tasks import get_task

    url = f"s3://{BUCKET}/shares/crops"
    labels = noisy_annotations(tmp_path, images=12)
    derive_dataset(
        get_task("topdown_crop").rows,
        labels,
        url,
        get_task("topdown_crop").Options(max_shard_bytes=1 << 18),
        SplitParams(val_fraction=0.25),
        skeleton="coco17",
        executor="local",
        chunk_samples=2,
    )
    everything = sorted(
        int(r["sample_id"]) for p, g in row_groups(url, "train") for r in read_row_group(p, g)
    )

    ray.cloudpickle.register_pickle_by_value(
        sys.modules[__name__]
    )  # workers cannot import this test module
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    assert ray.is_initialized()
    TorchTrainer(
        share_loop,
        train_loop_config={"url": url, "out": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="shares", storage_path=str(tmp_path / "ray")),
    ).fit()
    shares = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert shares[0] and shares[1]
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == everything
