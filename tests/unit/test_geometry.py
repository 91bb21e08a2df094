"""Cameras, distortion, triangulation and Procrustes against independent references."""

import io
import os
import pickle

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from poseops.errors import DataError
from poseops.geometry import (
    Camera,
    camera_to_world,
    distort_pixels,
    h36m_camera_key,
    load_h36m_cameras,
    procrustes_align,
    procrustes_transform,
    project,
    project_world,
    triangulate,
    undistort_pixels,
    world_to_camera,
)
from poseops.paths import fixtures_dir

# Human3.6M-like lens: strong barrel distortion and small tangential terms.
LENS = dict(k=(-0.207, 0.248, -0.003), p=(-0.0014, -0.00098))


def ring_camera(rng, model="opencv", **lens) -> Camera:
    """A camera 3-5 m from the origin, 1-1.8 m high, looking at the origin (world z up, mm)."""
    angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(3000, 5000)
    centre = np.array([radius * np.cos(angle), radius * np.sin(angle), rng.uniform(1000, 1800)])
    z = -centre / np.linalg.norm(centre)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    return Camera(
        fx=rng.uniform(1100, 1200),
        fy=rng.uniform(1100, 1200),
        cx=rng.uniform(490, 510),
        cy=rng.uniform(490, 510),
        R=tuple(map(tuple, R)),
        t=tuple(-R @ centre),
        model=model,
        width=1000,
        height=1000,
        **(lens or LENS),
    )


def test_opencv_model_equals_cv2_project_points():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 17, 3)) * 400.0
    for _ in range(3):
        cam = ring_camera(
            rng, "opencv", k=tuple(rng.normal(0, 0.1, 3)), p=tuple(rng.normal(0, 1e-3, 2))
        )
        rvec, _ = cv2.Rodrigues(cam.rotation)
        ref, _ = cv2.projectPoints(
            points.reshape(-1, 1, 3), rvec, cam.translation, cam.K, cam.opencv_dist_coeffs
        )
        ours = project_world(points, cam)
        assert ours.shape == (50, 17, 2)
        assert np.abs(ours - ref.reshape(50, 17, 2)).max() <= 1e-6


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(1)
    cam = ring_camera(rng, "h36m")
    points = rng.normal(size=(4, 17, 3)) * 400.0
    ours = project_world(torch.from_numpy(points), cam)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float64
    assert np.abs(ours.numpy() - project_world(points, cam)).max() <= 1e-9


@pytest.mark.parametrize("model", ["opencv", "h36m"])
def test_undistort_distort_round_trip(model):
    cam = ring_camera(np.random.default_rng(2), model)
    grid = np.stack(
        np.meshgrid(np.linspace(0, 1000, 51), np.linspace(0, 1000, 51)), axis=-1
    )  # [51, 51, 2]
    assert np.abs(distort_pixels(undistort_pixels(grid, cam), cam) - grid).max() <= 1e-3
    assert np.abs(undistort_pixels(distort_pixels(grid, cam), cam) - grid).max() <= 1e-3
    assert np.abs(distort_pixels(grid, cam) - grid).max() > 10.0  # the lens does something


def test_models_differ():
    """The two models are not the same formula with renamed coefficients."""
    rng = np.random.default_rng(3)
    cam = ring_camera(rng, "opencv")
    points = rng.normal(size=(100, 3)) * 600.0
    gap = project_world(points, cam) - project_world(
        points, cam.model_copy(update={"model": "h36m"})
    )
    assert np.abs(gap).max() > 0.05


def test_world_camera_round_trip():
    rng = np.random.default_rng(4)
    cam = ring_camera(rng)
    points = rng.normal(size=(7, 17, 3)) * 500.0
    assert np.abs(camera_to_world(world_to_camera(points, cam), cam) - points).max() < 1e-9
    assert np.abs(world_to_camera(cam.center, cam)).max() < 1e-9  # the centre is the camera origin
    assert world_to_camera(np.zeros(3), cam)[2] > 0  # the cameras look at the origin


@pytest.mark.parametrize("model", ["opencv", "h36m"])
def test_triangulation_of_exact_projections_is_exact(model):
    rng = np.random.default_rng(5)
    cams = [ring_camera(rng, model) for _ in range(4)]
    points = rng.normal(size=(20, 17, 3)) * 400.0 + [0.0, 0.0, 900.0]
    uv = np.stack([project_world(points, c) for c in cams])  # [4, 20, 17, 2]
    assert np.abs(triangulate(uv, cams) - points).max() <= 1e-6
    from_torch = triangulate(torch.from_numpy(uv), cams)
    assert isinstance(from_torch, torch.Tensor)
    assert np.abs(from_torch.numpy() - points).max() <= 1e-6


def test_triangulation_weights():
    rng = np.random.default_rng(6)
    cams = [ring_camera(rng) for _ in range(4)]
    points = rng.normal(size=(5, 3)) * 400.0
    uv = np.stack([project_world(points, c) for c in cams])  # [4, 5, 2]
    weights = np.ones((4, 5))
    weights[0, :] = 0.0  # view 0 is wrong everywhere, and says so
    weights[1:, 4] = [0.0, 0.0, 0.5]  # point 4 is seen by one view only
    uv[0] += 80.0
    weights[1, 2] = 0.3  # a low, non-zero confidence still counts
    out = triangulate(uv, cams, weights)
    assert np.abs(out[:4] - points[:4]).max() <= 1e-6
    assert np.isnan(out[4]).all()
    assert (
        np.abs(triangulate(uv, cams)[:4] - points[:4]).max() > 1.0
    )  # without weights view 0 hurts


def test_procrustes_recovers_similarity_and_refuses_reflection():
    rng = np.random.default_rng(7)
    rotation = Rotation.random(8, random_state=7).as_matrix()  # [8, 3, 3]
    scale, shift = rng.uniform(0.5, 2.0, 8), rng.normal(size=(8, 3)) * 100.0
    source = rng.normal(size=(8, 17, 3)) * 300.0
    target = scale[:, None, None] * source @ rotation.transpose(0, 2, 1) + shift[:, None, :]
    assert np.abs(procrustes_align(source, target) - target).max() <= 1e-6
    s, r, t = procrustes_transform(source, target)
    assert np.allclose(s, scale) and np.allclose(r, rotation) and np.allclose(t, shift)
    aligned_t = procrustes_align(torch.from_numpy(source), torch.from_numpy(target))
    assert np.abs(aligned_t.numpy() - target).max() <= 1e-6

    mirrored = target * np.array([-1.0, 1.0, 1.0])
    _, r_m, _ = procrustes_transform(source, mirrored)
    assert np.allclose(np.linalg.det(r_m), 1.0)
    assert np.abs(procrustes_align(source, mirrored) - mirrored).max() > 10.0


def test_procrustes_weights_ignore_outliers():
    rng = np.random.default_rng(8)
    source = rng.normal(size=(17, 3)) * 300.0
    rotation = Rotation.random(random_state=8).as_matrix()
    target = 1.3 * source @ rotation.T + 50.0
    target_bad = target.copy()
    target_bad[3] += 500.0
    weights = np.ones(17)
    weights[3] = 0.0
    aligned = procrustes_align(source, target_bad, weights)
    keep = np.arange(17) != 3
    assert np.abs(aligned[keep] - target[keep]).max() < 1e-6
    assert np.abs(procrustes_align(source, target_bad)[keep] - target[keep]).max() > 1.0


def test_camera_record_validates_and_serialises():
    cam = ring_camera(np.random.default_rng(9), "h36m")
    assert Camera.model_validate_json(cam.model_dump_json()) == cam
    with pytest.raises(ValueError, match="rotation"):
        Camera(fx=1, fy=1, cx=0, cy=0, R=((1, 0, 0), (0, 1, 0), (0, 0, -1)))  # a reflection
    with pytest.raises(ValueError):
        Camera(fx=1, fy=1, cx=0, cy=0, model="fisheye")


def test_h36m_camera_key():
    name = "S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg"
    assert h36m_camera_key(name) == ("S1", "54138969")
    assert h36m_camera_key("S11_Walking.60457274_000123.jpg") == ("S11", "60457274")
    with pytest.raises(DataError, match="000001.png"):
        h36m_camera_key("frame_000001.png")


def test_camera_loader_refuses_foreign_classes(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "cameras.pkl"
    path.write_bytes(pickle.dumps({("S1", "1"): Evil()}))
    with pytest.raises(DataError, match="refusing to load"):
        load_h36m_cameras(path)


def test_camera_loader_names_bad_field(tmp_path):
    path = tmp_path / "cameras.pkl"
    buffer = io.BytesIO()
    pickle.dump({("S1", "1"): {"R": np.eye(3), "T": np.zeros((3, 1))}}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"'S1', '1'"):
        load_h36m_cameras(path)


@pytest.fixture(scope="module")
def h36m():
    root = fixtures_dir()
    if root is None:
        pytest.skip(
            "real fixtures not found (set POSEOPS_FIXTURES or provide ../shared/fixtures/real)"
        )
    return np.load(root / "h36m" / "test_h36m_body3d.npz"), load_h36m_cameras(
        root / "h36m" / "cameras.pkl"
    )


def test_h36m_fixture_reprojection(h36m):
    labels, cameras = h36m
    assert len(cameras) == 44
    for imgname, points_cam, part in zip(labels["imgname"], labels["S"], labels["part"]):
        cam = cameras[h36m_camera_key(str(imgname))]
        assert cam.model == "h36m" and cam.width == 1000
        uv = project(points_cam[:, :3], cam)
        assert np.abs(uv - part[:, :2]).max() <= 0.01, imgname
        # Same labels through the world frame (mm) and back: still exact.
        world = camera_to_world(points_cam[:, :3] * 1000.0, cam)
        assert np.abs(project_world(world, cam) - part[:, :2]).max() <= 0.01
        # OpenCV's formula with the same coefficients is measurably off, so the model matters.
        as_opencv = cam.model_copy(update={"model": "opencv"})
        assert np.abs(project(points_cam[:, :3], as_opencv) - part[:, :2]).max() > 0.03


def test_h36m_fixture_triangulation(h36m):
    """The 4 real cameras of one subject triangulate their own projections back to the labels."""
    labels, cameras = h36m
    cams = [cameras[("S1", cid)] for cid in ("54138969", "55011271", "58860488", "60457274")]
    world = camera_to_world(labels["S"][0, :, :3] * 1000.0, cams[0])  # [17, 3] mm
    assert 500.0 < world[0, 2] < 1300.0  # the pelvis is about a metre above the floor (world z up)
    for cam in cams:  # the subject stands in front of every camera of the studio, inside its image
        assert (world_to_camera(world, cam)[:, 2] > 2000.0).all()
        uv = project_world(world, cam)
        assert ((uv > 0) & (uv < [cam.width, cam.height])).all()
    uv = np.stack([project_world(world, c) for c in cams])
    assert np.abs(triangulate(uv, cams) - world).max() <= 1e-6
