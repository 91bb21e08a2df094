"""Round trips through the evaluation path: ground truth -> the training targets -> the evaluation decoder
-> the evaluation metric must score ~1.0, so a low score is the model's, not the decoding's.

A stand-in network ("oracle") returns, for each input it is given, the exact training targets of that input
(those of the mirrored labels for a mirrored input, as the loader's flip makes them), and the real
`predict` / `predict_crops` / `predict_split` / scoring code runs on it:

- hrnet_am (top-down): people drawn in a source frame, cut by the derive stage's `crop_sample`, loaded by
  `make_sample` as evaluation loads them, encoded as `train_losses` + `HRNetAM.loss` encode them, decoded
  by `HRNetAM.predict` (argmax + quarter shift or DARK, with and without the flip test), mapped to source
  pixels and scored by PCK@0.1 (person box) and COCO AP with ground-truth boxes.
- vmhpe (bottom-up): people in whole images, letterboxed, encoded by `encode_targets` with the model's
  `target_kwargs`, decoded by `VMHPE.predict` (centre NMS, instance maps, sub-cell refine, flip test) and
  scored by `score_people` (pycocotools).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poseops import metrics
from poseops.codecs import mirror_x
from poseops.codecs.bottomup import encode_targets
from poseops.codecs.integral import (
    argmax_decode,
    dark_decode,
    gaussian_heatmaps,
    to_norm,
    to_pixels,
)
from poseops.datasets.loader import make_sample
from poseops.datasets.shards import crop_sample
from poseops.datasets.transforms import apply_affine, invert_affine
from poseops.models import create_model
from poseops.skeletons import get_skeleton
from poseops.tasks.bottomup_image import predict_split, score_people, split_from_images
from poseops.tasks.topdown_crop import (
    coco_ap_ground_truth_boxes,
    predict_crops,
    score_predictions,
    to_source,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SKELETON = get_skeleton("coco17")
FLIP = list(SKELETON.flip_permutation())
# a standing person, height 1, x right and y down from the top of the head (COCO-17 order)
STANDING = np.array(
    [
        [0.00, 0.05], [-0.03, 0.03], [0.03, 0.03], [-0.06, 0.05], [0.06, 0.05],
        [-0.12, 0.18], [0.12, 0.18], [-0.16, 0.35], [0.16, 0.35], [-0.17, 0.50],
        [0.17, 0.50], [-0.08, 0.52], [0.08, 0.52], [-0.09, 0.75], [0.09, 0.75],
        [-0.09, 0.98], [0.09, 0.98],
    ]
)  # fmt: skip


def person(rng: np.random.Generator, height: float, x: float, y: float) -> np.ndarray:
    """[17,2] source px: the standing person scaled to `height`, top centre at (x, y), joints jittered."""
    return STANDING * height + [x, y] + rng.normal(0, 0.03 * height, STANDING.shape)


class Oracle:
    """Answers a network call on a batch with the targets stored for each of its inputs (by their bytes)."""

    def __init__(self):
        self.table: dict[bytes, object] = {}

    def add(self, image: torch.Tensor, answer) -> None:
        self.table[image.numpy().tobytes()] = answer

    def __call__(self, images: torch.Tensor) -> list:
        return [self.table[image.numpy().tobytes()] for image in images]


# ---------------------------------------------------------------- hrnet_am (top-down crops)
def topdown_split(size: int, count: int = 24, seed: int = 0) -> tuple[dict, np.ndarray]:
    """An evaluation split as `load_split_arrays` returns it, from people drawn in 640x480 frames and cut
    by the derive stage (`crop_sample`, margin 1.5; big people's crops are resized to 512), plus the
    true keypoints [N,17,2] in source px. A few keypoints are unlabelled."""
    rng = np.random.default_rng(seed)
    samples, truth = [], []
    for i in range(count):
        frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        height = rng.uniform(60, 460)
        points = person(
            rng, height, rng.uniform(0.3 * height, 640 - 0.3 * height), rng.uniform(0, 470 - height)
        )
        visibility = np.where(rng.random(17) < 0.1, 0, 2)
        lo, hi = points.min(0) - 0.04 * height, points.max(0) + 0.04 * height
        ann = {
            "id": i,
            "bbox": [*lo, *(hi - lo)],
            "keypoints": np.concatenate([points, visibility[:, None]], 1).ravel().tolist(),
        }
        row = crop_sample(frame, ann, 17, margin=1.5)
        row["sample_id"] = i
        samples.append(make_sample(row, size, 1.25))
        truth.append(points)
    return {key: np.stack([s[key] for s in samples]) for key in samples[0]}, np.stack(truth)


def hrnet_oracle(size: int, val: dict, **config) -> torch.nn.Module:
    """An hrnet_am whose network returns the training targets of each crop (`train_losses`: to_norm of the
    labels; `HRNetAM.loss`: gaussian_heatmaps at the output size), the mirrored crop getting the targets
    of the loader's flip (mirrored labels, left/right swapped)."""
    model = create_model("hrnet_am", "tiny", input_size=size, **config).eval()
    heatmap = (size // 4, size // 4)

    def targets(xy: np.ndarray) -> torch.Tensor:
        norm = to_norm(torch.as_tensor(xy, dtype=torch.float32), size)
        return gaussian_heatmaps(norm, heatmap, model.config.heatmap_sigma)

    labels = torch.as_tensor(val["keypoints_clean"], dtype=torch.float32)
    mirrored = mirror_x(labels, size)[:, FLIP]
    oracle = Oracle()
    images = model.preprocess(torch.from_numpy(val["image"]))
    for image, plain, flipped in zip(images, targets(labels), targets(mirrored)):
        oracle.add(image, plain)
        oracle.add(image.flip(-1), flipped)
    model.forward = lambda images: {"heatmaps": torch.stack(oracle(images))}
    return model


@pytest.mark.parametrize("decode, mean_px", [("argmax", 1.0), ("dark", 0.6)])
def test_hrnet_am_targets_decode_to_the_truth_in_source_pixels(decode, mean_px):
    size = 64  # the smoke recipe: 64-px crops, 16x16 heatmaps, sigma 2 cells
    val, truth = topdown_split(size)
    visible = val["visibility"] > 0
    # the evaluation's ground truth is the annotation, in the source frame
    assert np.abs(to_source(val["keypoints_clean"], val) - truth)[visible].max() < 0.02
    model = hrnet_oracle(size, val, decode=decode)

    answers = {}
    for flip in (False, True):
        model.config.flip_test = flip
        answers[flip] = predict_crops(model, val["image"])
    (pred, scores), (pred_flip, _) = answers[False], answers[True]
    # the flip test of exact targets moves nothing: mirrored maps of the mirrored crop are the same maps
    assert np.abs(pred_flip - pred).max() < 1e-4

    error = np.linalg.norm(pred - val["keypoints_clean"], axis=-1)[visible]  # input px, stride 4
    bias = (pred - val["keypoints_clean"])[visible].mean(0)
    assert error.mean() < mean_px and error.max() < 2.0, (error.mean(), error.max())
    assert np.abs(bias).max() < 0.3, bias  # no half-pixel / quarter-stride / x-y offset
    source_error = np.linalg.norm(to_source(pred, val) - truth, axis=-1)[visible]
    scale = np.hypot(*val["affine_to_source"][:, 0, :2].T)[:, None]  # source px per input px
    assert (source_error <= (error.max() + 0.02) * scale.repeat(17, 1)[visible]).all()

    names = list(SKELETON.keypoints)
    pck = score_predictions(pred, val, names, threshold=0.1, normaliser="bbox")["pck"].value
    ap = coco_ap_ground_truth_boxes(pred, scores, val, SKELETON)
    assert pck == 1.0
    assert ap["AP"] > 0.95 and ap["AP50"] == 1.0


def test_coco_ap_with_ground_truth_boxes_takes_source_pixels_and_box_areas(monkeypatch):
    size = 64
    val, truth = topdown_split(size, count=6)
    seen = {}

    def capture(gt, dets, sigmas=None, **kwargs):
        seen.update(gt=gt, dets=dets, sigmas=sigmas)
        return dict.fromkeys(("AP", "AP50", "AP75", "AR"), 1.0) | {"protocol": {}}

    monkeypatch.setattr(metrics, "coco_keypoint_ap", capture)
    coco_ap_ground_truth_boxes(val["keypoints_clean"], np.full((6, 17), 0.5), val, SKELETON)
    assert seen["sigmas"] is None  # pycocotools' COCO-17 sigmas
    annotations, dets = seen["gt"]["annotations"], seen["dets"]
    assert [a["image_id"] for a in annotations] == [d["image_id"] for d in dets] == list(range(6))
    for ann, det, points, vis, box in zip(
        annotations, dets, truth, val["visibility"], val["box_source"]
    ):
        gt = np.asarray(ann["keypoints"]).reshape(17, 3)
        assert np.abs(gt[vis > 0, :2] - points[vis > 0]).max() < 0.02  # source px
        assert (gt[:, 2] == np.where(vis > 0, 2, 0)).all()
        assert np.abs(np.asarray(det["keypoints"]).reshape(17, 3)[:, :2] - points).max() < 0.02
        # area = the person box's w*h in source px (COCO's is the segment's; these data have none)
        lo, hi = points.min(0), points.max(0)
        assert ann["area"] == pytest.approx(box[2] * box[3], rel=1e-6)
        assert box[2] * box[3] >= (hi - lo).prod()
        assert det["score"] == pytest.approx(0.5)


def test_dark_is_no_worse_than_argmax_anywhere_on_a_small_map():
    """16x16 maps of sigma-2 Gaussians (the smoke recipe): a third of a crop's keypoints lie within 2.5
    cells of the border, where a blur padded by replication and a Newton step on replicated cells moved
    DARK's answer by up to 1.3 cells (mean 2.2 px against argmax's 0.9 px over the whole crop)."""
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(4000, 1, 2, generator=g) * 63
    maps = gaussian_heatmaps(to_norm(truth, 64), 16, 2.0)
    noisy = maps + 0.02 * torch.randn(maps.shape, generator=g)
    for heatmaps in (maps, noisy):
        dark = (to_pixels(dark_decode(heatmaps)[0], 64) - truth).norm(dim=-1)
        argmax = (to_pixels(argmax_decode(heatmaps)[0], 64) - truth).norm(dim=-1)
        assert dark.mean() < 0.8 * argmax.mean()
        assert dark.max() <= argmax.max() + 0.5


# ---------------------------------------------------------------- vmhpe (bottom-up images)
def bottomup_truth(seed: int = 0) -> tuple[list[np.ndarray], list[dict]]:
    """Six noise images (landscape and portrait) with 1-3 people each, inside the image, ~10% unlabelled."""
    rng = np.random.default_rng(seed)
    images, truth = [], []
    for i in range(6):
        width, height = (320, 240) if i % 2 else (240, 320)
        people, visibility, boxes = [], [], []
        for _ in range(rng.integers(1, 4)):
            tall = rng.uniform(60, 0.9 * min(width, height))
            points = person(
                rng,
                tall,
                rng.uniform(0.25 * tall, width - 0.25 * tall),
                rng.uniform(0, height - 1.05 * tall),
            )
            lo, hi = points.min(0) - 0.04 * tall, points.max(0) + 0.04 * tall
            people.append(points)
            visibility.append(np.where(rng.random(17) < 0.1, 0, 2).astype(np.float32))
            boxes.append([*lo, *(hi - lo)])
        images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        truth.append(
            {
                "keypoints": np.stack(people),
                "visibility": np.stack(visibility),
                "boxes": np.array(boxes),
            }
        )
    return images, truth


def vmhpe_oracle(size: int, data: dict, truth: list[dict]) -> torch.nn.Module:
    """A vmhpe whose network returns `encode_targets` of each letterboxed image (multi-person and centre
    maps; each proposal's instance maps are those of the person whose centre cell is nearest)."""
    model = create_model(
        "vmhpe", "tiny", input_size=size, sigma=2.0, centre_sigma=2.0, min_person_area=256.0
    )
    model.eval()
    oracle = Oracle()
    images = model.preprocess(torch.from_numpy(data["images_rgb"]))
    for image, to_source_affine, item in zip(images, data["affine_to_source"], truth):
        xy = apply_affine(item["keypoints"], invert_affine(to_source_affine))
        people = torch.as_tensor(
            np.concatenate([xy, item["visibility"][..., None]], -1), dtype=torch.float32
        )
        mirrored = torch.cat([mirror_x(people[..., :2], size), people[..., 2:]], -1)[:, FLIP]
        oracle.add(image, encode_targets([people], **model.target_kwargs()))
        oracle.add(image.flip(-1), encode_targets([mirrored], **model.target_kwargs()))

    def forward(images, targets=None):
        answers = oracle(images)
        maps = torch.cat([a["heatmaps"] for a in answers]).clamp(1e-4, 1 - 1e-4)
        features = torch.zeros(len(answers), 1, *maps.shape[-2:])
        return {"heatmaps": maps, "features": features, "targets": answers}

    def instance_heatmaps(out, image, centres, features):
        maps = []
        for b, centre in zip(image.tolist(), centres):
            target = out["targets"][b]
            nearest = int((target["instance_coords"] - centre).abs().sum(-1).argmin())
            maps.append(target["instance_heatmaps"][nearest])
        return torch.stack(maps).clamp(1e-4, 1 - 1e-4), None

    model.forward, model.instance_heatmaps = forward, instance_heatmaps
    return model


@pytest.mark.parametrize("refine, min_ap", [("quadratic", 0.999), ("quarter", 0.98)])
def test_vmhpe_targets_decode_to_the_truth_and_score_ap_1(refine, min_ap):
    size = 256  # the vmhpe family's input: 64x64 heatmaps
    images, truth = bottomup_truth()
    data = split_from_images(images, size, truth)
    model = vmhpe_oracle(size, data, truth)
    model.config.refine = refine
    plain, flipped = predict_split(model, data, False), predict_split(model, data, True)
    people = sum(len(item["keypoints"]) for item in truth)
    assert sum(len(found["scores"]) for found in plain) == people
    for a, b in zip(plain, flipped):
        assert np.abs(a["keypoints"] - b["keypoints"]).max() < 1e-3
    errors = []
    for found, item in zip(plain, truth):
        for points, visibility in zip(item["keypoints"], item["visibility"]):
            labelled = visibility > 0
            nearest = np.argmin([np.abs(p - points)[labelled].mean() for p in found["keypoints"]])
            errors.append(np.linalg.norm(found["keypoints"][nearest] - points, axis=-1)[labelled])
    error = np.concatenate(errors)  # source px (1.25 source px per input px)
    assert error.mean() < (0.2 if refine == "quadratic" else 1.5), error.mean()
    report = score_people(plain, truth, "coco17")
    assert report["ap"] >= min_ap and report["ap50"] == 1.0 and report["pck_0.1"] == 1.0
    assert report["count_accuracy"] == 1.0
