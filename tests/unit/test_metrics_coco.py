"""`coco_keypoint_ap` against pycocotools run directly (real COCO fixture, and a 14-keypoint skeleton)."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from poseops.errors import DataError
from poseops.metrics import COCO17_SIGMAS, coco_keypoint_ap
from poseops.paths import fixtures_dir

STATS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
CROWDPOSE_SIGMAS = [
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
    0.079,
    0.079,
]


def _pycocotools_stats(gt: dict, dets: list[dict], sigmas=None) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.array(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)


def _assert_same(ours: dict, reference: list[float]) -> None:
    for name, ref in zip(STATS, reference):
        assert (ours[name] is None) == (ref < 0), name
        if ref >= 0:
            assert ours[name] == pytest.approx(ref, abs=1e-9), name


def _perturbed_dets(gt: dict, rng, noise_px: float, drop: float = 0.0) -> list[dict]:
    dets = []
    for ann in gt["annotations"]:
        if ann.get("num_keypoints", 1) == 0 or rng.random() < drop:
            continue
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        xy = kp[:, :2] + rng.normal(0, noise_px, (len(kp), 2))
        dets.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "keypoints": np.column_stack([xy, np.ones(len(kp))]).ravel().tolist(),
                "score": float(rng.uniform(0.3, 1.0)),
            }
        )
    return dets


@pytest.fixture(scope="module")
def coco_gt_path():
    root = fixtures_dir()
    if root is None or not (root / "coco" / "test_coco.json").exists():
        pytest.skip("real COCO fixture not available")
    return root / "coco" / "test_coco.json"


@pytest.mark.parametrize("noise_px,drop", [(0.0, 0.0), (3.0, 0.0), (8.0, 0.2), (20.0, 0.1)])
def test_real_coco_fixture_matches_pycocotools(coco_gt_path, noise_px, drop):
    gt = json.loads(coco_gt_path.read_text())
    dets = _perturbed_dets(gt, np.random.default_rng(int(noise_px * 10)), noise_px, drop)
    ours = coco_keypoint_ap(str(coco_gt_path), dets)
    _assert_same(ours, _pycocotools_stats(gt, dets))
    assert ours["protocol"]["sigmas"] == pytest.approx(list(COCO17_SIGMAS))
    assert ours["protocol"]["area"] == "from ground truth"
    if noise_px == 0:
        assert ours["AP"] == pytest.approx(1.0)


def test_does_not_print_or_modify_inputs(coco_gt_path, capsys):
    gt = json.loads(coco_gt_path.read_text())
    dets = _perturbed_dets(gt, np.random.default_rng(1), 4.0)
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(dets)
    coco_keypoint_ap(gt, dets)
    assert capsys.readouterr().out == ""
    assert gt == gt_before and dets == dets_before


def _synthetic14(rng, num_images=6, people=3):
    images, anns = [], []
    for i in range(num_images):
        images.append({"id": i + 1, "width": 640, "height": 480})
        for _person in range(people):
            centre = rng.uniform(80, 400, 2)
            size = rng.uniform(30, 160)
            xy = centre + rng.normal(0, size / 3, (14, 2))
            v = rng.choice([0, 1, 2], 14, p=[0.1, 0.2, 0.7])
            xy[v == 0] = 0
            lo, hi = xy[v > 0].min(0), xy[v > 0].max(0)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": np.column_stack([xy, v]).ravel().tolist(),
                    "num_keypoints": int((v > 0).sum()),
                    "bbox": [*lo.tolist(), *(hi - lo).tolist()],
                    "area": float(np.prod(hi - lo)) * 0.8,
                }
            )
    cats = [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(14)], "skeleton": []}]
    return {"images": images, "annotations": anns, "categories": cats}


def test_fourteen_keypoints_with_custom_sigmas_match_pycocotools():
    rng = np.random.default_rng(7)
    gt = _synthetic14(rng)
    dets = _perturbed_dets(gt, rng, 6.0, drop=0.1)
    ours = coco_keypoint_ap(gt, dets, sigmas=CROWDPOSE_SIGMAS)
    _assert_same(ours, _pycocotools_stats(gt, dets, CROWDPOSE_SIGMAS))
    assert ours["protocol"]["sigmas_source"] == "custom"
    wider = coco_keypoint_ap(gt, dets, sigmas=[s * 3 for s in CROWDPOSE_SIGMAS])
    assert wider["AP"] > ours["AP"]  # the sigmas are really used
    with pytest.raises(DataError, match="sigmas"):
        coco_keypoint_ap(gt, dets)  # 14 keypoints need their own sigmas


def test_missing_area_refused_or_filled_from_bbox():
    rng = np.random.default_rng(3)
    gt = _synthetic14(rng, num_images=3)
    dets = _perturbed_dets(gt, rng, 5.0)
    del gt["annotations"][2]["area"]
    with pytest.raises(DataError, match=r"annotations\[2\].*area"):
        coco_keypoint_ap(gt, dets, sigmas=CROWDPOSE_SIGMAS)
    ours = coco_keypoint_ap(gt, dets, sigmas=CROWDPOSE_SIGMAS, missing_area="bbox")
    assert "1 annotation" in ours["protocol"]["area"]
    filled = copy.deepcopy(gt)
    bbox = filled["annotations"][2]["bbox"]
    filled["annotations"][2]["area"] = bbox[2] * bbox[3]
    _assert_same(ours, _pycocotools_stats(filled, dets, CROWDPOSE_SIGMAS))


def test_bad_detections_raise_data_error_naming_the_record():
    rng = np.random.default_rng(5)
    gt = _synthetic14(rng, num_images=2)
    dets = _perturbed_dets(gt, rng, 5.0)
    wrong_k = copy.deepcopy(dets)
    wrong_k[1]["keypoints"] = wrong_k[1]["keypoints"][:-3]
    with pytest.raises(DataError, match=r"dets\[1\].*42 numbers.*got 39"):
        coco_keypoint_ap(gt, wrong_k, sigmas=CROWDPOSE_SIGMAS)
    with_nan = copy.deepcopy(dets)
    with_nan[2]["keypoints"][4] = float("nan")
    with pytest.raises(DataError, match=r"dets\[2\].*NaN"):
        coco_keypoint_ap(gt, with_nan, sigmas=CROWDPOSE_SIGMAS)
    unknown = copy.deepcopy(dets)
    unknown[0]["image_id"] = 999
    with pytest.raises(DataError, match=r"dets\[0\].*unknown image_id 999"):
        coco_keypoint_ap(gt, unknown, sigmas=CROWDPOSE_SIGMAS)
    no_score = copy.deepcopy(dets)
    del no_score[3]["score"]
    with pytest.raises(DataError, match=r"dets\[3\].*score"):
        coco_keypoint_ap(gt, no_score, sigmas=CROWDPOSE_SIGMAS)
    with pytest.raises(DataError, match="not found"):
        coco_keypoint_ap("/nonexistent/gt.json", dets)


def test_no_detections_score_zero():
    gt = _synthetic14(np.random.default_rng(0), num_images=2)
    result = coco_keypoint_ap(gt, [], sigmas=CROWDPOSE_SIGMAS)
    assert result["AP"] == 0.0 and result["AR"] == 0.0
