"""Camera paths: nerfstudio camera_path.json, keyframe splines, generators."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from spatialvid.cameras import Cameras
from spatialvid.errors import FormatError
from spatialvid.paths import (
    CameraPath,
    Keyframe,
    KeyframeSpline,
    interpolate_poses,
    orbit,
    path_from_keyframes,
    read_camera_path,
    spiral,
    train,
    write_camera_path,
)
from spatialvid.paths.generators import look_at_c2w


def ring_cameras(n=12, radius=3.0, height=1.5, arc=2 * math.pi, w=64, h=48, fov=50.0):
    angles = np.linspace(0, arc, n, endpoint=False)
    return Cameras.cat([Cameras.look_at([radius * math.cos(a), radius * math.sin(a), height], [0, 0, 0],
                                        up=(0, 0, 1), fov_deg=fov, width=w, height=h) for a in angles])


def random_keyframes(k=5, seed=0):
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (k, 1, 1))
    c2w[:, :3, :3] = Rotation.random(k, random_state=seed).as_matrix()
    c2w[:, :3, 3] = rng.normal(size=(k, 3)) * 2
    return c2w, rng.uniform(30, 80, k)


# ---- camera_path.json ----------------------------------------------------------------------------------
def test_round_trip_uses_nerfstudio_names_and_opengl_row_major(tmp_path):
    eye, target = np.array([2.0, -1.0, 0.5]), np.array([0.0, 0.5, 0.2])
    c2w = np.stack([look_at_c2w(eye + [0, 0, 0.1 * i], target, [0, 0, 1]) for i in range(4)])
    kf = [Keyframe(c2w=c2w[0], fov=40.0, aspect=1.5, extra={"override_transition_sec": None})]
    path = CameraPath(c2w=c2w, fov=[40, 45, 50, 55], width=96, height=64, fps=24, keyframes=kf,
                      smoothness_value=0.3, is_cycle=False)
    f = write_camera_path(tmp_path / "camera_path.json", path)
    raw = json.loads(f.read_text())
    for key in ("camera_type", "render_height", "render_width", "fps", "seconds", "smoothness_value", "is_cycle",
                "keyframes", "camera_path"):
        assert key in raw
    assert raw["camera_type"] == "perspective" and raw["render_width"] == 96 and raw["render_height"] == 64
    assert raw["seconds"] == pytest.approx(4 / 24)
    fr = raw["camera_path"][2]
    assert set(fr) == {"camera_to_world", "fov", "aspect"} and len(fr["camera_to_world"]) == 16
    m = np.array(fr["camera_to_world"]).reshape(4, 4)  # row-major: translation in the last column
    np.testing.assert_allclose(m[:3, 3], eye + [0, 0, 0.2])
    np.testing.assert_allclose(m[3], [0, 0, 0, 1])
    # OpenGL: the camera looks down its -z axis, y is up
    fwd = -m[:3, 2]
    np.testing.assert_allclose(fwd, (target - m[:3, 3]) / np.linalg.norm(target - m[:3, 3]), atol=1e-12)
    assert m[2, 1] > 0  # camera y axis points up in a z-up world
    assert raw["keyframes"][0]["override_transition_sec"] is None
    back = read_camera_path(f)
    np.testing.assert_allclose(back.c2w, path.c2w)
    np.testing.assert_allclose(back.fov, path.fov)
    assert (back.width, back.height, back.fps, back.smoothness_value) == (96, 64, 24.0, 0.3)
    np.testing.assert_allclose(back.keyframes[0].c2w, c2w[0])


def test_nerfstudio_file_gives_expected_cameras(tmp_path):
    """A file as nerfstudio's viewer writes it: row-major lists, legacy column-major string keyframes."""
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]  # camera at (1,2,3) looking down -z (OpenGL)
    legacy = json.dumps(c2w.T.reshape(-1).tolist())  # three.js Matrix4.elements: column-major
    data = {"camera_type": "perspective", "render_height": 100, "render_width": 200, "fps": 10, "seconds": 0.2,
            "smoothness_value": 0.5, "is_cycle": False,
            "keyframes": [{"matrix": legacy, "fov": 60, "aspect": 2.0},
                          {"matrix": c2w.reshape(-1).tolist(), "fov": 60, "aspect": 2.0}],
            "camera_path": [{"camera_to_world": c2w.reshape(-1).tolist(), "fov": 60.0, "aspect": 2.0}] * 2}
    (tmp_path / "p.json").write_text(json.dumps(data))
    path = read_camera_path(tmp_path / "p.json")
    assert len(path) == 2  # exactly the frames in camera_path
    np.testing.assert_allclose(path.keyframes[0].c2w, c2w)
    np.testing.assert_allclose(path.keyframes[1].c2w, c2w)
    cams = path.cameras()
    f = 50.0 / math.tan(math.radians(30))  # render_height / 2 / tan(fov / 2)
    assert float(cams.fx[0]) == pytest.approx(f, rel=1e-5) and float(cams.fy[0]) == pytest.approx(f, rel=1e-5)
    pts = torch.tensor([[1.0, 2.0, 1.0], [1.0, 2.5, 1.0], [1.5, 2.0, 1.0]])  # 2 m in front; above; right
    uv, z = cams[0].project(pts)
    np.testing.assert_allclose(uv[0, 0].numpy(), [100, 50], atol=1e-3)
    np.testing.assert_allclose(z[0].numpy(), [2, 2, 2], atol=1e-5)
    assert uv[0, 1, 1] < 50 and uv[0, 2, 0] > 100  # world up is image up, world +x is image right


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.pop("camera_path"), "missing field 'camera_path'"),
    (lambda d: d.pop("render_height"), "missing field 'render_height'"),
    (lambda d: d["camera_path"][1].pop("fov"), "camera_path[1]: missing field 'fov'"),
    (lambda d: d["camera_path"][0].__setitem__("camera_to_world", [float("nan")] * 16), "non-finite"),
    (lambda d: d["camera_path"][0].__setitem__("camera_to_world", [1.0] * 9), "expected 16 numbers"),
    (lambda d: d["camera_path"][0].__setitem__("fov", 200), "fov"),
    (lambda d: d.__setitem__("camera_type", "fisheye"), "not supported"),
])
def test_bad_files_give_clear_errors(tmp_path, mutate, needle):
    path = CameraPath(c2w=np.stack([np.eye(4)] * 2), fov=50, width=32, height=32)
    data = path.to_json()
    mutate(data)
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(data))  # NaN is written as the JSON extension token NaN, as Python/JS tools do
    with pytest.raises(FormatError) as e:
        read_camera_path(f)
    assert str(f) in str(e.value) and needle in str(e.value)


def test_not_json_is_a_format_error(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        read_camera_path(f)


# ---- interpolation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("uniform", [True, False])
def test_spline_passes_through_keyframes_exactly(closed, uniform):
    c2w, fov = random_keyframes(5)
    times = None if uniform else np.cumsum([0.0, 0.7, 1.9, 0.4, 1.2, 0.9][: 5 + closed])
    s = KeyframeSpline(c2w, fov, times, closed=closed)
    p, f = s.evaluate(s.grid[:5])
    np.testing.assert_allclose(p, c2w, atol=1e-9)
    np.testing.assert_allclose(f, fov, atol=1e-9)
    if closed:  # and returns to the first keyframe at the end
        p_end, _ = s.evaluate([s.grid[-1]])
        np.testing.assert_allclose(p_end[0], c2w[0], atol=1e-9)


def test_dense_path_contains_keyframes_when_frames_align():
    c2w, fov = random_keyframes(4, seed=3)
    out, f = interpolate_poses(c2w, fov, num_frames=3 * 10 + 1, alpha=0)  # uniform: keyframe i at frame 10 i
    np.testing.assert_allclose(out[::10], c2w, atol=1e-9)
    np.testing.assert_allclose(f[::10], fov, atol=1e-9)


def _one_sided_derivatives(s, t, h=1e-5):
    (a1, b0, b1), fovs = s.evaluate([t - h, t, t + h])
    left = (b0 - a1) / h
    right = (b1 - b0) / h
    return left, right, (fovs[1] - fovs[0]) / h, (fovs[2] - fovs[1]) / h


@pytest.mark.parametrize("closed", [False, True])
def test_spline_is_c1_at_keyframes(closed):
    """Finite differences: left and right derivatives of the pose (translation and rotation matrix) and of
    the fov agree at every keyframe (non-uniform times); a C0-only spline fails the same check."""
    c2w, fov = random_keyframes(6, seed=1)
    times = np.cumsum([0.0, 1.0, 0.5, 2.0, 1.3, 0.8, 1.1][: 6 + closed])
    s = KeyframeSpline(c2w, fov, times, closed=closed)
    inner = s.grid[1:-1]
    for t in inner:
        dl, dr, fl, fr = _one_sided_derivatives(s, t)
        scale = max(1.0, np.abs(dl).max())
        assert np.abs(dl - dr).max() < 1e-3 * scale, t
        assert abs(fl - fr) < 1e-3 * max(1.0, abs(fl))
    if closed:  # C1 across the seam: derivative at the end equals derivative at the start
        h = 1e-5
        e = s.evaluate([s.grid[-1] - h, s.grid[-1]])[0]
        b = s.evaluate([s.grid[0], s.grid[0] + h])[0]
        assert np.abs((e[1] - e[0]) / h - (b[1] - b[0]) / h).max() < 1e-3 * max(1.0, np.abs((b[1] - b[0]) / h).max())
    # control: the same check detects a kink (piecewise slerp rotations are only C0)
    kinked = KeyframeSpline(c2w, fov, times, closed=closed, rotation="slerp")
    jumps = [np.abs(np.subtract(*_one_sided_derivatives(kinked, t)[:2])).max() for t in inner]
    assert max(jumps) > 0.05


def test_constant_speed_option():
    c2w = np.tile(np.eye(4), (4, 1, 1))
    c2w[:, :3, 3] = [[0, 0, 0], [0.5, 0.1, 0], [4, 0.8, 0], [4.6, 1.0, 0.2]]  # uneven keyframe spacing
    fov = [50, 50, 60, 50]
    fast, _ = interpolate_poses(c2w, fov, 200, constant_speed=False)
    even, _ = interpolate_poses(c2w, fov, 200, constant_speed=True)
    step = lambda p: np.linalg.norm(np.diff(p[:, :3, 3], axis=0), axis=1)  # noqa: E731
    assert step(fast).std() / step(fast).mean() > 0.3
    assert step(even).std() / step(even).mean() < 0.01
    np.testing.assert_allclose(even[[0, -1]], c2w[[0, -1]], atol=1e-9)  # same curve, same ends


def test_path_from_keyframes_uses_nerfstudio_timing():
    c2w, fov = random_keyframes(3, seed=2)
    kfs = [Keyframe(c2w=c2w[i], fov=fov[i]) for i in range(3)]
    p = path_from_keyframes(kfs, 64, 48, fps=20, seconds=2.0)
    assert len(p) == 40 and p.seconds == pytest.approx(2.0) and p.keyframes == kfs
    np.testing.assert_allclose(p.c2w[0], c2w[0], atol=1e-9)
    np.testing.assert_allclose(p.c2w[-1], c2w[-1], atol=1e-9)
    loop = path_from_keyframes(kfs, 64, 48, fps=20, num_frames=30, is_cycle=True)
    np.testing.assert_allclose(loop.c2w[0], c2w[0], atol=1e-9)
    assert np.abs(loop.c2w[-1] - c2w[0]).max() > 1e-3  # the loop's last frame is one step before the first


# ---- generators ------------------------------------------------------------------------------------------
def test_orbit_circles_scene_centre_at_mean_height_and_radius():
    cams = ring_cameras(n=8, radius=3.0, height=1.5, arc=math.pi)  # half ring: the centre is still found
    path = orbit(cams, 36, up=(0, 0, 1))
    c = path.cameras()
    centres = c.centers().double().numpy()
    np.testing.assert_allclose(np.linalg.norm(centres[:, :2], axis=1), 3.0, atol=1e-4)
    np.testing.assert_allclose(centres[:, 2], 1.5, atol=1e-4)
    uv, _ = c.project(torch.zeros(1, 3))  # every frame looks at the centre
    np.testing.assert_allclose(uv[:, 0].numpy(), np.tile([32, 24], (36, 1)), atol=1e-2)
    ang = np.unwrap(np.arctan2(centres[:, 1], centres[:, 0]))
    np.testing.assert_allclose(np.diff(ang), 2 * math.pi / 36, atol=1e-6)  # a full loop, no repeated frame
    assert path.is_cycle and (path.width, path.height) == (64, 48)
    np.testing.assert_allclose(path.fov, 50.0, atol=1e-3)


def test_spiral_stays_forward_facing_and_looks_at_focus():
    # front-facing capture: a 3x3 grid of cameras looking along +y at a wall of points 4 m away
    cams = Cameras.cat([Cameras.look_at([x, 0, z], [x, 1, z], up=(0, 0, 1), fov_deg=60, width=64, height=48)
                        for x in (-0.3, 0, 0.3) for z in (-0.2, 0, 0.2)])
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(-2, 2, 500), rng.uniform(2, 6, 500), rng.uniform(-2, 2, 500)], 1)
    path = spiral(cams, 40, points=pts)
    c = path.cameras()
    centres = c.centers().double().numpy()
    assert np.abs(centres[:, 0]).max() <= 0.3 + 1e-6 and np.abs(centres[:, 2]).max() <= 0.2 + 1e-6
    fwd = -path.c2w[:, :3, 2]
    assert (fwd[:, 1] > 0.9).all()  # still facing the scene
    focus = path.extra["spatialvid_generator"]["focus_depth"]
    assert 2.0 < focus < 6.0
    uv, _ = c.project(torch.tensor([[0.0, focus, 0.0]]))
    np.testing.assert_allclose(uv[:, 0].numpy(), np.tile([32, 24], (40, 1)), atol=1e-2)


def test_train_path_passes_through_training_cameras():
    cams = ring_cameras(n=10, arc=math.pi)
    path = train(cams, 28, max_keyframes=4)  # keyframes: cameras 0, 3, 6, 9 at frames 0, 9, 18, 27
    gl = cams.c2w(opengl=True).double().numpy()
    np.testing.assert_allclose(path.c2w[[0, 9, 18, 27]], gl[[0, 3, 6, 9]], atol=1e-5)
    assert path.extra["spatialvid_generator"]["keyframe_cameras"] == [cams.names[i] for i in (0, 3, 6, 9)]
