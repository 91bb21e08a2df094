"""DVC over derived datasets: in a temporary git + DVC repository a `derive` stage writes shards and a card,
dvc.lock records the output (no output above 1,000 files), and the dataset goes to and comes back from a
local remote and an S3 remote on a local moto server, byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tests.s3server import s3_environment, s3_filesystem

from poseops.storage import sha256_file

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
MAX_FILES = 1000
OUT = "data/derived/toy"

DERIVE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, cv2
    from pathlib import Path
    from poseops.config import SplitParams
    from poseops.tasks import get_task
    from poseops.datasets.derive import derive_dataset
    from poseops.skeletons import get_skeleton

    sk = get_skeleton("coco17")
    rng = np.random.default_rng(0)
    folder = Path("data/images"); folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(10):
        cv2.imwrite(str(folder / f"{i}.jpg"), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": f"images/{i}.jpg", "frame_index": None, "width": 160,
                       "height": 120, "sequence": f"s{i % 4}", "subject": "", "source": "synthetic"})
        for p in range(2):
            kp = np.column_stack([rng.uniform(20, 140, 17), rng.uniform(20, 100, 17), np.full(17, 2.0)])
            x0, y0 = kp[:, :2].min(0); x1, y1 = kp[:, :2].max(0)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "keypoints": kp.ravel().tolist(),
                         "num_keypoints": 17, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": 1.0, "iscrowd": 0})
    cat = {"id": 1, "name": "person", "keypoints": list(sk.keypoints), "skeleton": [[a + 1, b + 1] for a, b in sk.edges]}
    Path("data/labels.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [cat]}))
    derive_dataset(get_task("bottomup_image").rows, "data/labels.json", sys.argv[1], get_task("bottomup_image").Options(max_shard_bytes=1 << 16),
                   SplitParams(val_fraction=0.25), skeleton="coco17", executor="local", chunk_samples=2)
    """
)


def outputs_over(lock: dict, limit: int = MAX_FILES) -> dict[str, int]:
    """path -> file count of every dvc.lock output (stage outs) holding more than `limit` files."""
    over = {}
    for stage in lock.get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("nfiles", 1) > limit:
                over[out["path"]] = out["nfiles"]
    return over


def test_no_dvc_output_of_the_project_holds_over_1000_files():
    lock = REPO / "dvc.lock"
    if not lock.exists():
        pytest.skip("the project has no dvc.lock yet (run dvc repro)")
    assert outputs_over(yaml.safe_load(lock.read_text())) == {}
    assert outputs_over({"stages": {"x": {"outs": [{"path": "loose", "nfiles": 1001}]}}}) == {
        "loose": 1001
    }


def dvc(repo: Path, *args: str, env: dict | None = None) -> str:
    run = subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=repo,
        env=env or os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"dvc {' '.join(args)}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    return run.stdout


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    """git + DVC repository whose `derive` stage has run (dvc repro) and whose dvc.lock is written."""
    repo = tmp_path_factory.mktemp("dvcrepo")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    (repo / "derive.py").write_text(DERIVE)
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "derive": {
                        "cmd": f"{sys.executable} derive.py {OUT}",
                        "deps": ["derive.py"],
                        "outs": [OUT],
                    }
                }
            }
        )
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    dvc(repo, "repro", "-q", env=env)
    return repo


def published_files(repo: Path) -> dict[str, str]:
    """relative path -> sha256 of every file of the derived dataset."""
    root = repo / OUT
    return {
        str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def add_remote(repo: Path, name: str, url: str, **options: str) -> None:
    """`dvc remote add` without a dvc process (each costs about a second): a section of .dvc/config."""
    lines = [
        f"['remote \"{name}\"']",
        f"    url = {url}",
        *[f"    {k} = {v}" for k, v in options.items()],
    ]
    with open(repo / ".dvc" / "config", "a") as config:
        config.write("\n".join(lines) + "\n")


def forget_local_copies(repo: Path) -> None:
    shutil.rmtree(repo / OUT)
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)


def check_pulled(repo: Path, before: dict[str, str]) -> None:
    from poseops.datasets.bottomup import load_bottomup_split
    from poseops.datasets.loader import read_card

    assert published_files(repo) == before
    card = read_card(str(repo / OUT))
    for split, body in card["splits"].items():
        for shard in body["shards"]:
            assert before[f"{split}/{shard['file']}"] == shard["sha256"]
    assert len(load_bottomup_split(str(repo / OUT), "val", 64)) == card["counts"]["val"]


def test_dvc_lock_counts_the_dataset_files_and_stays_under_the_limit(dvc_repo):
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    (out,) = lock["stages"]["derive"]["outs"]
    files = published_files(dvc_repo)
    assert out["path"] == OUT and out["nfiles"] == len(files) >= 4  # several shards and the card
    assert "card.json" in files
    assert outputs_over(lock) == {}


def test_push_and_pull_through_a_local_remote(dvc_repo, tmp_path):
    before = published_files(dvc_repo)
    add_remote(dvc_repo, "localstore", str(tmp_path / "remote"))
    dvc(dvc_repo, "push", "-r", "localstore")
    assert sum(1 for p in (tmp_path / "remote").rglob("*") if p.is_file()) >= len(before)
    forget_local_copies(dvc_repo)
    dvc(dvc_repo, "pull", "-r", "localstore")
    check_pulled(dvc_repo, before)


def test_push_and_pull_through_an_s3_remote(dvc_repo, s3_server):
    server = s3_server
    with s3_environment(server):
        s3_filesystem().mkdir("dvc-remote")
        before = published_files(dvc_repo)
        add_remote(dvc_repo, "s3store", "s3://dvc-remote/store", endpointurl=server.endpoint)
        dvc(dvc_repo, "push", "-r", "s3store")
        stored = list(s3_filesystem().find("dvc-remote/store"))
        assert len(stored) >= len(before), stored
        forget_local_copies(dvc_repo)
        dvc(dvc_repo, "pull", "-r", "s3store")
        check_pulled(dvc_repo, before)
