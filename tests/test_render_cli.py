"""`spatialvid render`, the rendering API, video writing and colour maps."""

from __future__ import annotations

import json
import math
import sys
import types
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from spatialvid.cameras import Cameras
from spatialvid.cli import main
from spatialvid.gaussians import Gaussians
from spatialvid.paths import CameraPath, orbit, read_camera_path, write_camera_path
from spatialvid.render.api import render_scene
from spatialvid.render.colormap import apply_colormap
from spatialvid.render.video import VideoWriter, read_video_info
from spatialvid.scene import Scene


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def blob_scene(tmp_path_factory):
    """A small random Gaussian blob seen by 8 cameras on a ring (z up), saved as a scene folder."""
    torch.manual_seed(0)
    g = Gaussians.from_points(torch.randn(2000, 3) * 0.5, torch.rand(2000, 3), scale=0.08, opacity=0.8)
    cams = Cameras.cat([Cameras.look_at([3 * math.cos(a), 3 * math.sin(a), 1.0], [0, 0, 0], up=(0, 0, 1),
                                        fov_deg=50, width=64, height=48) for a in np.linspace(0, 6, 8)])
    d = tmp_path_factory.mktemp("blob") / "scene"
    Scene(g, cams, {"up": [0, 0, 1]}).save(d)
    return d


def test_cli_mp4_has_right_frames_size_fps_and_stated_depth_range(blob_scene, tmp_path, capsys):
    out = tmp_path / "orbit.mp4"
    rc = main(["render", str(blob_scene), "--path", "orbit", "-o", str(out), "--frames", "12", "--fps", "24",
               "--resolution", "64x48", "--outputs", "rgb,depth,alpha,coverage", "--quiet",
               "--save-path", str(tmp_path / "orbit_path.json")])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in ("orbit.mp4", "orbit_depth.mp4", "orbit_alpha.mp4", "orbit_coverage.mp4"):
        info = read_video_info(tmp_path / name)
        assert (info["frames"], info["width"], info["height"], info["codec"]) == (12, 64, 48, "h264")
        assert info["fps"] == Fraction(24)
    side = json.loads((tmp_path / "orbit.render.json").read_text())
    near, far = side["depth"]["min"], side["depth"]["max"]
    # the blob (std 0.5) is centred 3.16 m from every orbit camera: its visible front lies in front of that
    assert 1.5 < near < far < 3.3 and far - near > 0.3
    assert f"{near:.4g}" in printed and f"{far:.4g}" in printed
    assert side["depth"]["colormap"] == "turbo" and side["frames"] == 12
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    # the saved path is a nerfstudio camera path with exactly those frames
    saved = read_camera_path(tmp_path / "orbit_path.json")
    assert len(saved) == 12 and (saved.width, saved.height, saved.fps) == (64, 48, 24.0)


def test_cli_png_folder_from_path_file_matches_api(blob_scene, tmp_path):
    scene = Scene.load(blob_scene)
    path = orbit(scene.cameras, 4, up=(0, 0, 1), width=40, height=30)
    write_camera_path(tmp_path / "p.json", path)
    out = tmp_path / "frames"
    assert main(["render", str(blob_scene), "--path", str(tmp_path / "p.json"), "-o", str(out),
                 "--outputs", "rgb,alpha", "--quiet"]) == 0
    pngs = sorted((out / "rgb").glob("*.png"))
    assert [p.name for p in pngs] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    assert (out / "render.json").exists() and len(list((out / "alpha").glob("*.png"))) == 4
    cams = path.cameras()
    for i in (0, 3):  # PNGs are lossless: identical to the API's uint8 image
        ref = render_scene(scene, cams[i]).rgb_uint8()
        np.testing.assert_array_equal(np.asarray(Image.open(pngs[i]).convert("RGB")), ref)


def test_render_api_outputs_and_background(blob_scene):
    scene = Scene.load(blob_scene)
    cam = Cameras.look_at([3, 0, 1], [0, 0, 0], up=(0, 0, 1), fov_deg=50, width=48, height=32)
    black = scene.render(cam)
    white = scene.render(cam, background="white")
    assert black.rgb.shape == (32, 48, 3) and black.rgb.dtype == np.float32
    assert black.depth.shape == black.alpha.shape == black.coverage.shape == (32, 48)
    assert black.coverage.dtype == np.int32 and black.coverage.max() > 0 and black.coverage.min() == 0
    empty = black.alpha < 1e-4  # corners see nothing: background shows through
    assert empty.any() and (black.rgb[empty] < 1e-3).all() and (white.rgb[empty] > 1 - 1e-3).all()
    np.testing.assert_allclose(white.rgb - black.rgb, (1 - black.alpha)[..., None].repeat(3, -1), atol=1e-5)


def test_render_api_depth_of_a_flat_disc():
    """One opaque flat Gaussian (a disc in the z=0 plane) seen head-on from 3 m: depth is 3 m, colour exact."""
    g = Gaussians.from_points(torch.zeros(1, 3), torch.tensor([[0.2, 0.6, 0.4]]), scale=0.5, opacity=0.99)
    g.log_scales = torch.log(torch.tensor([[0.5, 0.5, 1e-4]]))
    cam = Cameras.look_at([0, 0, 3], [0, 0, 0], up=(0, 1, 0), fov_deg=40, width=32, height=32)
    out = render_scene(g, cam, backend="torch")
    centre = (slice(14, 18), slice(14, 18))
    np.testing.assert_allclose(out.depth[centre], 3.0, atol=1e-3)
    assert (out.coverage[centre] == 1).all()
    # alpha = opacity * exp(-d^2 / 2 sigma^2), sigma = f * 0.5 / 3 px (+0.3 px^2 screen-space dilation)
    f = 16 / math.tan(math.radians(20))
    ys, xs = np.mgrid[12:20, 12:20] + 0.5
    expected = 0.99 * np.exp(-((xs - 16) ** 2 + (ys - 16) ** 2) / (2 * ((f * 0.5 / 3) ** 2 + 0.3)))
    np.testing.assert_allclose(out.alpha[12:20, 12:20], expected, atol=2e-3)
    np.testing.assert_allclose(out.rgb[centre] / out.alpha[centre][..., None], np.broadcast_to([0.2, 0.6, 0.4], (4, 4, 3)),
                               atol=2e-3)
    assert out.alpha[0, 0] < out.alpha[16, 16]


def test_temporal_stability_static_is_exactly_zero_and_slow_orbit_small(blob_scene):
    """Rendering must be deterministic: a static camera gives bit-identical frames (no sort-order flicker)."""
    scene = Scene.load(blob_scene)
    cam0 = Cameras.look_at([3, 0, 1], [0, 0, 0], up=(0, 0, 1), fov_deg=50, width=64, height=48)
    static = CameraPath(c2w=np.repeat(cam0.c2w(opengl=True).double().numpy(), 5, 0), fov=50, width=64, height=48)
    frames = [render_scene(scene, c).rgb for c in (static.cameras()[i] for i in range(5))]
    static_diff = max(float(np.abs(a - b).mean()) for a, b in zip(frames, frames[1:]))
    assert static_diff == 0.0
    slow = orbit(scene.cameras, 720, up=(0, 0, 1), width=64, height=48)  # 0.5 degree per frame
    cams = slow.cameras()
    frames = [render_scene(scene, cams[i]).rgb for i in range(4)]
    slow_diff = np.mean([np.abs(a - b).mean() for a, b in zip(frames, frames[1:])])
    assert 0.0 < slow_diff < 0.02


def test_bad_path_file_is_one_clear_line(blob_scene, tmp_path, capsys):
    path = CameraPath(c2w=np.stack([np.eye(4)] * 2), fov=50, width=32, height=32)
    data = path.to_json()
    data["camera_path"][1]["camera_to_world"][3] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(data))
    del data["camera_path"]
    (tmp_path / "missing.json").write_text(json.dumps(data))
    for name, needle in (("nan.json", "non-finite"), ("missing.json", "missing field 'camera_path'")):
        rc = main(["render", str(blob_scene), "--path", str(tmp_path / name), "-o", str(tmp_path / "x.mp4")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and needle in err and name in err
    assert not (tmp_path / "x.mp4").exists()
    for argv, needle in ((["--path", "circle"], "not a file and not one of"),
                         (["--outputs", "rgb,normals"], "unknown normals"),
                         (["--resolution", "65x48"], "even width and height")):
        rc = main(["render", str(blob_scene), "-o", str(tmp_path / "y.mp4"), *argv])
        assert rc == 2 and needle in capsys.readouterr().err


def test_fill_flag_without_fill_module_is_a_clear_error(blob_scene, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "spatialvid.generate", types.ModuleType("spatialvid.generate"))
    rc = main(["render", str(blob_scene), "-o", str(tmp_path / "f.mp4"), "--fill", "--frames", "2"])
    assert rc == 2 and "--fill is unavailable" in capsys.readouterr().err


def test_fill_flag_fills_each_frame_for_real_and_leaves_the_scene(blob_scene, tmp_path):
    """`render --fill` with the real fill pipeline (classical backends): every frame of the filled render
    covers what the plain render leaves empty, and the scene folder on disk is not changed."""
    before = {p.name: p.read_bytes() for p in blob_scene.iterdir() if p.is_file()}
    runs = {}
    for name, extra in (("plain", []), ("filled", ["--fill"])):
        out = tmp_path / name
        assert main(["render", str(blob_scene), "--path", "orbit", "-o", str(out), "--frames", "3",
                     "--resolution", "32x24", "--outputs", "rgb,alpha", "--quiet", *extra]) == 0
        runs[name] = [np.asarray(Image.open(p), np.float32) / 255 for p in sorted((out / "alpha").glob("*.png"))]
    assert len(runs["plain"]) == len(runs["filled"]) == 3
    for plain, filled in zip(runs["plain"], runs["filled"]):
        plain, filled = plain.reshape(24, 32, -1)[..., 0], filled.reshape(24, 32, -1)[..., 0]
        empty = plain < 0.5
        assert empty.mean() > 0.2  # the blob leaves much of each view empty
        assert (filled[empty] >= 0.5).mean() > 0.9  # ... which the fill covers
    assert {p.name: p.read_bytes() for p in blob_scene.iterdir() if p.is_file()} == before


def test_scene_renders_with_its_trained_background_and_antialiasing(blob_scene):
    """A scene trained with a white background and antialiasing renders, fills and views that way."""
    from spatialvid.generate.fill import FillConfig, fill_view
    from spatialvid.render import render_gaussians

    scene = Scene.load(blob_scene)
    cam = Cameras.look_at([0.0, 4.0, 2.5], [0, 0, 0], up=(0, 0, 1), fov_deg=70, width=48, height=36)
    plain = render_scene(scene, cam).rgb
    scene.metadata.update({"background": [1.0, 1.0, 1.0], "antialiased": True})
    got = render_scene(scene, cam).rgb
    with torch.no_grad():
        want = render_gaussians(scene.gaussians, cam, background=torch.ones(3), antialiased=True).rgb.numpy()
        no_aa = render_gaussians(scene.gaussians, cam, background=torch.ones(3), antialiased=False).rgb.numpy()
    np.testing.assert_array_equal(got, want)
    assert np.abs(got - no_aa).max() > 1e-3 and np.abs(got - plain).max() > 0.5  # both settings matter
    res = fill_view(scene, cam, inpainter="mean", config=FillConfig(fit_iters=0))
    cfg = scene.history[-1]["info"]["config"]
    assert res.added > 0 and cfg["background"] == (1.0, 1.0, 1.0) and cfg["antialiased"] is True


def test_video_writer_is_atomic_and_checks_sizes(tmp_path):
    target = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError), VideoWriter(target, fps=10) as w:
        w.write(np.zeros((16, 16, 3), np.float32))
        raise RuntimeError("boom")
    assert not target.exists() and not list(tmp_path.iterdir())  # nothing half-written
    with VideoWriter(target, fps=Fraction(30000, 1001)) as w:
        for i in range(5):
            w.write(np.full((16, 24), i / 4, np.float32))  # grey frames are accepted
    info = read_video_info(target)
    assert info["frames"] == 5 and (info["width"], info["height"]) == (24, 16)
    assert info["fps"] == Fraction(30000, 1001)
    w = VideoWriter(tmp_path / "w.mp4")
    w.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(Exception, match="8x8"):
        w.write(np.zeros((10, 8, 3), np.uint8))
    w.abort()
    assert not (tmp_path / "w.mp4").exists()


def test_colormaps_match_matplotlib_tables():
    import matplotlib as mpl
    x = np.linspace(0, 1, 1001)
    for name in ("turbo", "viridis"):
        ref = np.asarray(mpl.colormaps[name](x))[:, :3]
        assert np.abs(apply_colormap(x, name) - ref).max() < 0.03
    assert apply_colormap(np.array([-1.0, 2.0, np.nan]), "gray").tolist() == [[0, 0, 0], [1, 1, 1], [0, 0, 0]]


# ---- the bundled sample's ground truth -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from spatialvid.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample") / "s", num_frames=12, width=160, height=120)


def _image(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def test_gt_scene_renders_heldout_views_close_to_ground_truth(sample):
    """The sample's ground-truth Gaussians, rendered at the held-out GT cameras, match the GT images."""
    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.formats.ply import read_ply

    cams = read_transforms(sample.heldout_transforms)
    scene = Scene(read_ply(sample.gt_gaussians), cams, {"up": [0, 0, 1]})
    renders = [scene.render(cams[i]).rgb for i in range(len(cams))]
    gts = [_image(p) for p in cams.image_paths]
    psnrs = [_psnr(r, g) for r, g in zip(renders, gts)]
    assert min(psnrs) > 20.0, psnrs
    # control: the same renders against the wrong views score far lower
    wrong = [_psnr(r, g) for r, g in zip(renders, gts[1:] + gts[:1])]
    assert np.mean(psnrs) > np.mean(wrong) + 4.0


def test_cli_renders_gt_camera_path_file_like_the_video(sample, tmp_path):
    """GT video cameras -> camera_path.json (nerfstudio conventions) -> `spatialvid render` -> PNGs == GT frames."""
    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.formats.ply import read_ply

    cams = read_transforms(sample.transforms)
    scene_dir = tmp_path / "gt_scene"
    Scene(read_ply(sample.gt_gaussians), cams, {"up": [0, 0, 1]}).save(scene_dir)
    idx = [0, 5, 11]
    write_camera_path(tmp_path / "gt_path.json", CameraPath.from_cameras(cams[idx], fps=30))
    out = tmp_path / "frames"
    assert main(["render", str(scene_dir), "--path", str(tmp_path / "gt_path.json"), "-o", str(out), "--quiet"]) == 0
    pngs = sorted((out / "rgb").glob("*.png"))
    assert len(pngs) == 3
    for png, i in zip(pngs, idx):
        assert _psnr(_image(png), _image(cams.image_paths[i])) > 20.0
