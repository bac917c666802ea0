"""Camera conventions: OpenCV world-to-camera <-> OpenGL/nerfstudio camera-to-world, projection, batching."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from spatialvid.cameras import GL_FROM_CV, Cameras
from spatialvid.errors import SpatialvidError


def random_c2w(n: int, seed: int = 0) -> torch.Tensor:
    m = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    m[:, :3, :3] = torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix())
    m[:, :3, 3] = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3)) * 4)
    return m


@pytest.mark.parametrize("opengl", [False, True])
def test_from_c2w_and_c2w_are_inverse(opengl):
    c2w = random_c2w(20)
    cams = Cameras.from_c2w(c2w, 300.0, 310.0, 160.0, 120.0, 320, 240, opengl=opengl)
    torch.testing.assert_close(cams.c2w(opengl=opengl).double(), c2w, atol=1e-5, rtol=0)
    # and the other way round: cameras -> c2w -> cameras
    again = Cameras.from_c2w(cams.c2w(opengl=opengl), cams.fx, cams.fy, cams.cx, cams.cy, cams.width,
                             cams.height, opengl=opengl)
    torch.testing.assert_close(again.R, cams.R, atol=1e-6, rtol=0)
    torch.testing.assert_close(again.t, cams.t, atol=1e-5, rtol=0)
    # the two conventions differ exactly by flipping the camera's y and z axes
    other = cams.c2w(opengl=not opengl).double()
    torch.testing.assert_close(other, c2w @ GL_FROM_CV, atol=1e-5, rtol=0)


def test_opengl_camera_projection_of_known_points():
    """A camera in nerfstudio/OpenGL convention looks down its -z axis with +y up."""
    c2w = random_c2w(1, seed=4)[0]
    cams = Cameras.from_c2w(c2w, 400.0, 400.0, 320.0, 240.0, 640, 480, opengl=True)
    origin, x_gl, y_gl, z_gl = c2w[:3, 3], c2w[:3, 0], c2w[:3, 1], c2w[:3, 2]
    pts = torch.stack([
        origin - 3 * z_gl,                      # straight ahead, 3 units
        origin - 3 * z_gl + 0.3 * x_gl,         # to the right
        origin - 3 * z_gl + 0.3 * y_gl,         # up
        origin + 3 * z_gl,                      # behind
    ]).float()
    uv, z = cams.project(pts)
    uv, z = uv[0], z[0]
    torch.testing.assert_close(uv[0], torch.tensor([320.0, 240.0]), atol=1e-3, rtol=0)
    assert float(z[0]) == pytest.approx(3.0, abs=1e-5)
    torch.testing.assert_close(uv[1], torch.tensor([320.0 + 400 * 0.1, 240.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(uv[2], torch.tensor([320.0, 240.0 - 400 * 0.1]), atol=1e-3, rtol=0)
    assert float(z[3]) < 0  # behind the camera
    torch.testing.assert_close(cams.centers()[0].double(), origin, atol=1e-5, rtol=0)


def test_projection_matches_opencv_with_distortion():
    rng = np.random.default_rng(7)
    R = Rotation.random(3, random_state=7).as_matrix()
    t = rng.normal(size=(3, 3))
    dist = np.array([[0.1, -0.05, 0.001, -0.002, 0.01], [0, 0, 0, 0, 0], [-0.2, 0.03, 0, 0.001, 0]])
    cams = Cameras(fx=[500.0, 600, 450], fy=[505.0, 600, 460], cx=[320.0, 300, 310], cy=[240.0, 200, 250],
                   width=640, height=480, R=R, t=t, dist=dist)
    # points in front of every camera: near each camera's optical axis
    pts = []
    for i in range(3):
        c = cams.centers()[i].double().numpy()
        for _ in range(10):
            pts.append(c + 4 * R[i][2] + rng.normal(size=3) * 0.8)
    pts = np.array(pts)
    uv, z = cams.project(torch.from_numpy(pts).float(), distort=True)
    for i in range(3):
        K = cams.Ks()[i].double().numpy()
        own = slice(10 * i, 10 * i + 10)  # the points placed in front of camera i
        ref, _ = cv2.projectPoints(pts[own], cv2.Rodrigues(R[i])[0], t[i], K, dist[i])
        assert (z[i, own] > 0).all()
        np.testing.assert_allclose(uv[i, own].numpy(), ref[:, 0], atol=2e-3)


def test_look_at_target_at_centre_and_up_is_up():
    cam = Cameras.look_at(eye=(4.0, 1.0, 2.0), target=(0.0, 0.0, 0.5), up=(0, 0, 1), fov_deg=60, width=320, height=240)
    uv, z = cam.project(torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 1.5]]))
    torch.testing.assert_close(uv[0, 0], torch.tensor([160.0, 120.0]), atol=1e-3, rtol=0)
    assert float(uv[0, 1, 1]) < 120.0  # a point above the target appears higher in the image (smaller v)
    assert float(z[0, 0]) == pytest.approx(math.dist((4, 1, 2), (0, 0, 0.5)), rel=1e-5)
    assert float(cam.fov_y()[0]) == pytest.approx(60.0, rel=1e-5)
    cam.validate()


def test_batching_scaling_and_validation():
    a = Cameras.look_at((1, 0, 0), (0, 0, 0), name="a", width=100, height=80)
    b = Cameras.look_at((0, 1, 0), (0, 0, 0), name="b", width=100, height=80)
    both = Cameras.cat([a, b, a])
    assert len(both) == 3 and both.names == ["a", "b", "a"]
    assert both[1].names == ["b"] and torch.equal(both[1].R, b.R)
    assert both[torch.tensor([False, True, True])].names == ["b", "a"]
    half = both.scaled(0.5)
    assert half.width.tolist() == [50] * 3 and half.height.tolist() == [40] * 3
    torch.testing.assert_close(half.fx, both.fx * 0.5)
    torch.testing.assert_close(half.cx, both.cx * 0.5)
    bad = both.clone()
    bad.t[0, 0] = float("nan")
    with pytest.raises(SpatialvidError, match="non-finite"):
        bad.validate()
    bad = both.clone()
    bad.R[1] = bad.R[1] * 2
    with pytest.raises(SpatialvidError, match="orthonormal"):
        bad.validate()
    bad = both.clone()
    bad.fx[2] = -1
    with pytest.raises(SpatialvidError, match="positive"):
        bad.validate()
    assert torch.equal(both.t, Cameras.cat([a, b, a]).t)  # clone() did not alias
