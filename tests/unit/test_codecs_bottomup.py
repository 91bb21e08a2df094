"""Bottom-up codec: targets, centre NMS and decoding round-trip, flip-back, sub-cell refinement."""

import pytest
import torch

from poseops.codecs.bottomup import (
    centre_nms_kernel,
    decode_instances,
    encode_targets,
    find_centres,
    flip_back,
    gaussian_maps,
    peak_mask,
    person_centres,
    to_heatmap_frame,
    to_input_frame,
)


def people(count, size, seed=0, spread=0.18):
    """[P,17,3] random people at separate spots: keypoints within +-spread*size of a person centre."""
    g = torch.Generator().manual_seed(seed)
    anchors = torch.tensor([[0.25, 0.3], [0.72, 0.35], [0.4, 0.75], [0.78, 0.78]])[:count] * size
    offsets = (torch.rand(count, 17, 2, generator=g) - 0.5) * 2 * spread * size
    xy = anchors[:, None, :] + offsets
    return torch.cat([xy, torch.full((count, 17, 1), 2.0)], dim=-1)


def test_frames_are_inverse_and_cell_centres_map_to_the_middle_of_their_pixels():
    xy = torch.tensor([[1.5, 1.5], [6.0, 10.0], [13.3, 0.7]])
    hm = to_heatmap_frame(xy, 64, 16)
    assert torch.allclose(
        hm[0], torch.zeros(2)
    )  # cell 0 covers pixels 0..3 (centres at integers): middle 1.5
    assert torch.allclose(to_input_frame(hm, 64, 16), xy)
    assert torch.allclose(
        to_input_frame(torch.tensor([[3.0, 5.0]]), (64, 32), (16, 8)), torch.tensor([[13.5, 21.5]])
    )


def test_encode_targets_shapes_centres_and_small_people():
    size = 128
    batch = [people(3, size, 0), people(2, size, 1), torch.zeros(0, 17, 3)]
    small = people(1, size, 2, spread=0.01)  # box ~2.5 px square: no centre
    batch[1] = torch.cat([batch[1], small])
    t = encode_targets(batch, size, 32, min_person_area=16**2)
    assert t["heatmaps"].shape == (3, 18, 32, 32) and t["heatmap_weight"].shape == (3, 1, 32, 32)
    assert t["instance_image"].tolist() == [0, 0, 0, 1, 1]
    assert t["instance_heatmaps"].shape == (5, 17, 32, 32) and t["instance_weight"].shape == (5, 17)
    assert t["heatmaps"][2].abs().sum() == 0  # an image without people
    assert (
        t["heatmaps"][1, :17].amax() > 0.9
    )  # the small person's keypoints are still in the multi maps
    centres, _ = person_centres(batch[0])
    cells = to_heatmap_frame(centres, size, 32).round().long().flip(-1)  # (y, x)
    assert torch.equal(t["instance_coords"][:3], cells)


def test_unlabelled_and_outside_keypoints_get_no_gaussian():
    kpts = people(1, 64)
    kpts[0, 3, 2] = 0
    kpts[0, 4, :2] = torch.tensor([200.0, 10.0])
    t = encode_targets([kpts], 64, 16, min_person_area=0)
    assert t["instance_heatmaps"][0, 3].sum() == 0 and t["instance_heatmaps"][0, 4].sum() == 0
    assert (
        t["instance_weight"][0, 3] == 0
        and t["instance_weight"][0, 4] == 0
        and t["instance_weight"][0, 5] == 1
    )


def test_whole_people_keep_a_cut_persons_true_centre_and_drop_outside_ones():
    """Input: the top-left 64 px of a larger picture. Person 0's centre is inside but the border cuts
    it; person 1's centre is outside, a few of its keypoints inside. With whole_people, person 0 keeps
    its true centre and person 1 gets no centre or instance; without, both get the mean of the
    keypoints left inside."""
    size = 64
    whole = people(2, 128, 3)
    whole[0, :, :2] += torch.tensor([34.0, 0.0])  # centre ~(60, 35): cut by the right border
    whole[1, :, :2] -= torch.tensor([12.0, 0.0])  # centre ~(78, 41): outside, left keypoints inside
    stats = torch.cat([person_centres(whole)[0], torch.full((2, 1), 1e4)], dim=1)
    inside = ((whole[..., :2] >= 0) & (whole[..., :2] <= size - 1)).all(-1)
    assert inside[0].any() and not inside[0].all() and inside[1].any() and stats[1, 0] > size
    cut = whole.clone()
    cut[..., 2] = torch.where(
        inside, cut[..., 2], torch.zeros_like(cut[..., 2])
    )  # as the loader hands it over
    plain = encode_targets([cut], size, 16, min_person_area=0)
    fixed = encode_targets([cut], size, 16, min_person_area=0, whole_people=[stats])

    def cells(xy):  # (y, x) cells
        return to_heatmap_frame(xy, size, 16).round().long().flip(-1)

    assert torch.equal(fixed["instance_coords"], cells(stats[:1, :2]))
    assert torch.equal(plain["instance_coords"], cells(person_centres(cut)[0]))
    assert not torch.equal(plain["instance_coords"][:1], fixed["instance_coords"])
    assert fixed["heatmaps"][0, 17].amax() > 0.9 and torch.equal(
        fixed["heatmaps"][0, :17], plain["heatmaps"][0, :17]
    )


def test_peak_mask_marks_one_cell_per_subcell_gaussian():
    points = torch.tensor([[[3.3, 4.7], [10.4, 10.2]]])
    maps = gaussian_maps(points, torch.ones(1, 2, dtype=torch.bool), 16, 2.0)
    mask = peak_mask(maps)
    assert mask.sum(dim=(-2, -1)).tolist() == [[1.0, 1.0]]
    assert mask[0, 0, 5, 3] == 1  # nearest cell (y=round(4.7), x=round(3.3))


@pytest.mark.parametrize(
    "size, heatmap, count", [(128, 32, 3), (256, 64, 4), ((160, 96), (40, 24), 2)]
)
def test_round_trip_targets_as_predictions_recover_people_within_1px(size, heatmap, count):
    width = size if isinstance(size, int) else size[0]
    kpts = people(count, width, seed=count)
    if not isinstance(size, int):
        kpts[..., 1] *= size[1] / size[0]
    t = encode_targets([kpts], size, heatmap, min_person_area=0)
    coords, scores = find_centres(t["heatmaps"][0, 17])
    assert len(coords) == count  # every person, nobody else
    # use the targets as predictions: each proposal's instance heatmaps are its person's targets
    match = [int(((t["instance_coords"] - c).abs().sum(dim=1) == 0).nonzero()[0]) for c in coords]
    assert sorted(match) == list(range(count))
    keypoints, keypoint_scores, pose_scores = decode_instances(
        t["instance_heatmaps"][match], scores, size
    )
    error = (keypoints - t["instance_keypoints"][match, :, :2]).norm(dim=-1)
    assert error.max() < 1.0, error.max()
    assert (
        keypoint_scores.shape == (count, 17)
        and pose_scores.shape == (count,)
        and (pose_scores > 0.5).all()
    )


def test_quarter_refinement_is_coarser_than_quadratic():
    kpts = people(2, 128, seed=5)
    t = encode_targets([kpts], 128, 32, min_person_area=0)
    errors = {}
    for refine in ("quadratic", "quarter", "none"):
        keypoints, _, _ = decode_instances(t["instance_heatmaps"], torch.ones(2), 128, refine)
        errors[refine] = (keypoints - kpts[..., :2]).norm(dim=-1).mean()
    assert errors["quadratic"] < 0.3 < errors["quarter"] < errors["none"]


def test_centre_nms_keeps_top_k_above_threshold():
    assert [centre_nms_kernel(s, s) for s in (128, 250, 400)] == [3, 5, 7]
    centre = torch.zeros(32, 32)
    for i, (y, x) in enumerate([(4, 4), (4, 20), (20, 4), (20, 20), (28, 12)]):
        centre[y, x] = 0.9 - 0.1 * i
    coords, scores = find_centres(centre, max_people=3, threshold=0.01)
    assert coords.tolist() == [[4, 4], [4, 20], [20, 4]] and torch.all(scores[:-1] >= scores[1:])
    coords, _ = find_centres(centre, max_people=30, threshold=0.3)  # smoothed peaks: 0.556 * value
    assert len(coords) == 4


def test_flip_back_mirrors_and_swaps_left_right():
    maps = torch.zeros(1, 3, 4, 5)
    maps[0, 1, 2, 0] = 1  # "left" channel at x=0 in the mirrored image
    back = flip_back(maps, (0, 2, 1))
    assert back[0, 2, 2, 4] == 1 and back.sum() == 1
