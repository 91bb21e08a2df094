"""Still multi-person images (poseops.capture.people): shapes, determinism, visibility from drawn masks."""

import numpy as np

from poseops.capture.body_render import draw_scene, visibility
from poseops.capture.people import people_images, render_people_image


def test_shapes_and_ranges():
    out = people_images(seed=3, count=6, size=128, people_per_image=(1, 3))
    assert len(out) == 6
    counts = set()
    for image, people in out:
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert 1 <= len(people) <= 3
        counts.add(len(people))
        for person in people:
            assert person["keypoints"].shape == (17, 2) and person["keypoints"].dtype == np.float32
            assert person["visibility"].shape == (17,)
            assert set(np.unique(person["visibility"])) <= {0, 1, 2}
            x, y, w, h = person["bbox"]
            assert w > 0 and h > 0 and x >= -0.5 and y >= -0.5 and x + w <= 127.5 and y + h <= 127.5
            inside = person["visibility"] > 0
            kp = person["keypoints"][inside]
            assert np.all(kp >= -0.5) and np.all(kp < 127.5)
    assert len(counts) > 1  # the count of people varies


def test_deterministic_and_prefix_stable():
    a = people_images(seed=7, count=3, size=96)
    b = people_images(seed=7, count=5, size=96)
    c = people_images(seed=8, count=3, size=96)
    for (ia, pa), (ib, pb) in zip(a, b[:3]):
        assert np.array_equal(ia, ib)
        for qa, qb in zip(pa, pb):
            assert np.array_equal(qa["keypoints"], qb["keypoints"])
            assert np.array_equal(qa["visibility"], qb["visibility"])
    assert not np.array_equal(a[0][0], c[0][0])


def test_visibility_is_one_exactly_where_the_joint_pixel_shows_something_else():
    """Independent of the owner mask: draw each person alone and compare the joint's pixel with the scene."""
    checked, occluded = 0, 0
    for i in range(25):
        rng = np.random.default_rng(1000 + i)
        _, _, views, occluders, background, canvas = render_people_image(rng, 128, 3)
        for p, view in enumerate(views):
            vis = visibility(view.uv, view.depth, canvas.mask, owner=p + 1)
            alone = draw_scene(background, views, occluders, only=p).image
            px = np.floor(view.uv + 0.5).astype(int)
            for k in np.flatnonzero(vis > 0):
                x, y = px[k]
                covered = bool(np.any(canvas.image[y, x] != alone[y, x]))
                assert (vis[k] == 1) == covered, (i, p, k)
                checked += 1
                occluded += covered
    assert checked > 500 and occluded > 20


def test_people_stand_apart_so_centres_can_be_counted():
    import numpy as np

    from poseops.capture.people import spread_positions

    rng = np.random.default_rng(0)
    for count in (1, 2, 3):
        for _ in range(50):
            u = np.sort(spread_positions(rng, count))
            assert u.min() >= 0.12 and u.max() <= 0.88
            assert (np.diff(u) >= 0.2 - 1e-12).all()
