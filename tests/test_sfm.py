"""Structure from motion: Sim3/metrics, normalisation, pairing, and end-to-end accuracy on the bundled sample
video and the real fox photos (references: the sample's analytic ground truth, fox's own COLMAP poses)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.sfm import (
    SfmConfig,
    load_poses,
    normalization_transform,
    pose_errors,
    run_sfm,
    scene_from_known_poses,
    transform_cameras,
    transform_points,
    umeyama,
)
from spatialvid.sfm.align import sim3_matrix
from spatialvid.sfm.colmap_sfm import loop_pairs, sequential_pairs


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = math.radians(deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def _ring(n=12, radius=3.0):
    cams = [Cameras.look_at((radius * math.cos(a), radius * math.sin(a), 1.0 + 0.2 * math.sin(3 * a)), (0, 0, 0.5),
                            width=64, height=48, name=f"frame_{i:05d}.png")
            for i, a in enumerate(np.linspace(0, 2 * math.pi, n, endpoint=False))]
    return Cameras.cat(cams)


# ---------------------------------------------------------------------------------------------------
# unit tests (fast)
# ---------------------------------------------------------------------------------------------------
def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    R = _rot([0.3, -1, 0.5], 37)
    y = 2.5 * x @ R.T + np.array([1.0, -2.0, 0.5])
    s, R2, t2 = umeyama(x, y)
    assert abs(s - 2.5) < 1e-9 and np.allclose(R2, R, atol=1e-9) and np.allclose(t2, [1, -2, 0.5], atol=1e-9)
    with pytest.raises(SpatialvidError):
        umeyama(x[:2], y[:2])


def test_pose_errors_zero_after_sim3_and_detects_perturbation():
    ref = _ring()
    M = sim3_matrix(0.37, _rot([1, 2, 3], 70), np.array([5.0, -1.0, 2.0]))
    est = transform_cameras(ref, M)
    est.names = [f"images/{n}" for n in ref.names]  # path prefix ignored, stems match
    e = pose_errors(est, ref)
    assert e.registered == 12 and e.rot_max_deg < 1e-3 and e.center_rmse_pct < 1e-4
    assert abs(e.scale - 1 / 0.37) < 1e-4
    # rotate one camera by 2 degrees about its own centre
    bad = est.clone()
    bad.R[3] = torch.from_numpy(_rot([0, 1, 0], 2.0)).float() @ bad.R[3]
    bad.t[3] = -(bad.R[3] @ est.centers()[3])
    e2 = pose_errors(bad, ref)
    assert abs(e2.rot_max_deg - 2.0) < 0.01 and e2.rot_median_deg < 1e-3
    with pytest.raises(SpatialvidError, match="match"):
        other = ref.clone()
        other.names = [f"x{i}.png" for i in range(len(other))]
        pose_errors(other, ref)


def test_transform_cameras_keeps_projections():
    cams = _ring(6)
    pts = np.random.default_rng(1).normal(scale=0.3, size=(50, 3)) + [0, 0, 0.5]
    M = sim3_matrix(3.0, _rot([0.2, 1, 0], 25), np.array([0.5, 0.1, -2]))
    uv0, z0 = cams.project(torch.from_numpy(pts).float())
    uv1, z1 = transform_cameras(cams, M).project(torch.from_numpy(transform_points(pts, M)).float())
    assert torch.allclose(uv0, uv1, atol=1e-3) and torch.allclose(3.0 * z0, z1, rtol=1e-4)


def test_normalization_centres_scales_and_levels():
    ref = _ring()
    tilt = sim3_matrix(7.0, _rot([1, 0.4, 0], 60), np.array([10.0, 3.0, -4.0]))
    cams = transform_cameras(ref, tilt)  # a tilted, shifted, scaled world like SfM gives
    T = normalization_transform(cams)
    n = transform_cameras(cams, T)
    c = n.centers().double().numpy()
    assert np.allclose(c.mean(0), 0, atol=1e-5)
    assert abs(np.linalg.norm(c, axis=1).max() - 1.0) < 1e-5
    up = -n.R.double().numpy()[:, 1, :].mean(0)  # cameras' mean up (OpenCV -y) is now +z
    assert np.allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-5)
    # in the original ring the cameras look slightly down at z=0.5 from z~1: their up is close to +z,
    # so T undoes the 60-degree tilt: normalised centres match the ring's up to a rotation about z
    assert np.allclose(np.sort(c[:, 2]), np.sort((ref.centers().double().numpy()[:, 2] - 1.0) / 3.0),
                       atol=0.02)


def test_load_poses_transforms_and_colmap(tmp_path):
    from spatialvid.formats.colmap import write_colmap_text
    from spatialvid.formats.nerfstudio import write_transforms

    ring = _ring(5)
    write_transforms(tmp_path / "transforms.json", ring)
    write_colmap_text(tmp_path / "colmap", ring)
    for src in (tmp_path / "transforms.json", tmp_path / "colmap"):
        cams = load_poses(src)
        e = pose_errors(cams, ring)
        assert e.registered == 5 and e.rot_max_deg < 1e-3 and e.center_rmse_pct < 1e-3
    with pytest.raises(SpatialvidError, match="not found"):
        load_poses(tmp_path / "nope.json")


def test_pairing():
    seq = sequential_pairs(40, overlap=3)
    assert (0, 1) in seq and (0, 3) in seq and (0, 4) in seq and (0, 8) in seq and (0, 5) not in seq
    assert all(i < j for i, j in seq)
    sim = np.eye(10)
    sim[0, 9] = sim[9, 0] = 0.9  # a loop: the last frame sees the first frame's view again
    lp = loop_pairs(sim, overlap=2, candidates=1)
    assert (0, 9) in lp and all(j - i > 2 for i, j in lp)


# ---------------------------------------------------------------------------------------------------
# end to end on the bundled sample (shared, module scope)
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from spatialvid.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample") / "sample")


@pytest.fixture(scope="module")
def sample_scene(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("scene") / "scene"
    scene = run_sfm(sample.video, out, SfmConfig(progress=False))
    return out, scene


@pytest.mark.slow
def test_sample_video_accuracy(sample, sample_scene):
    out, scene = sample_scene
    sfm = scene.metadata["sfm"]
    assert sfm["registered"] == sfm["keyframes"] >= 30  # every keyframe registered
    ref = load_poses(sample.transforms)
    err = pose_errors(scene.cameras, ref)
    assert err.registered == len(scene.cameras)
    assert err.rot_median_deg < 0.5, err.summary()
    assert err.center_rmse_pct < 1.0, err.summary()


@pytest.mark.slow
def test_sample_scene_folder(sample_scene):
    from spatialvid.scene import Scene

    out, scene = sample_scene
    loaded = Scene.load(out)
    assert len(loaded.cameras) == len(scene.cameras) and len(loaded.gaussians) == len(scene.gaussians) > 500
    assert (loaded.gaussians.step == 0).all()
    tj = json.loads((out / "transforms.json").read_text())
    paths = [f["file_path"] for f in tj["frames"]]
    assert all(p.startswith("images/frame_") and p.endswith(".png") for p in paths)
    assert all((out / p).exists() for p in paths)
    for p in paths[:3]:  # undistorted images have the pinhole cameras' size
        assert Image.open(out / p).size == (tj.get("w") or tj["frames"][0]["w"], tj.get("h") or tj["frames"][0]["h"])
    assert (loaded.cameras.dist == 0).all()
    # frame bookkeeping: keyframe name -> decoded frame index
    frames = loaded.metadata["sfm"]["frames"]
    assert all(frames[n]["index"] == int(n[6:11]) for n in loaded.cameras.names)
    # normalised: cameras in the unit sphere, mean up = +z, T maps the original SfM model onto the scene
    c = loaded.cameras.centers().numpy()
    assert abs(np.linalg.norm(c, axis=1).max() - 1) < 1e-3 and np.allclose(c.mean(0), 0, atol=1e-3)
    T = np.array(loaded.metadata["normalization"])
    assert T.shape == (4, 4) and loaded.metadata["up"] == [0.0, 0.0, 1.0]
    from spatialvid.formats.colmap import read_colmap

    orig, _, _ = read_colmap(out / "sfm" / "sparse_original")
    back = transform_cameras(orig, T)
    assert torch.allclose(back.centers(), loaded.cameras.centers()[[loaded.cameras.names.index(n)
                                                                     for n in back.names]], atol=1e-4)
    # sparse/0 is consistent: undistorted observations reproject onto the sparse points (pixels)
    import pycolmap

    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    errs = []
    for im in list(rec.images.values())[:10]:
        cam = rec.cameras[im.camera_id]
        assert cam.model_name == "PINHOLE"
        for p in im.points2D:
            if p.has_point3D():
                proj = cam.img_from_cam(im.cam_from_world() * rec.points3D[p.point3D_id].xyz)
                errs.append(np.linalg.norm(proj - p.xy))
    assert len(errs) > 100 and np.median(errs) < 1.0


@pytest.mark.slow
def test_eval_cli_prints_figures(sample, sample_scene, capsys):
    from spatialvid.cli import main

    out, _ = sample_scene
    assert main(["eval", str(out), "--poses", str(sample.transforms), "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["registered"] >= 30 and d["rot_median_deg"] < 0.5 and d["center_rmse_pct"] < 1.0
    assert main(["eval", str(out), "--poses", str(sample.transforms)]) == 0
    text = capsys.readouterr().out
    assert "registered:" in text and "median" in text and "% of the trajectory extent" in text


@pytest.mark.slow
def test_known_poses_from_sample(sample, tmp_path):
    out = tmp_path / "known"
    scene = scene_from_known_poses(sample.video, sample.transforms, out, SfmConfig(progress=False, resolution=240))
    ref = load_poses(sample.transforms)
    assert len(scene.cameras) == len(ref)
    err = pose_errors(scene.cameras, ref)
    assert err.rot_max_deg < 0.01 and err.center_rmse_pct < 0.01
    assert scene.metadata["sfm"]["known_poses"] and scene.metadata["sfm"]["num_points"] > 300
    # triangulated points lie in front of the cameras and project inside the images
    uv, z = scene.cameras.project(scene.gaussians.means)
    inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < 320) & (uv[..., 1] >= 0) & (uv[..., 1] < 240)
    assert inside.any(0).float().mean() > 0.99
    # names that do not match the input's frames: a plain error before any work
    bad = json.loads(Path(sample.transforms).read_text())
    for i, f in enumerate(bad["frames"]):
        f["file_path"] = f"images/IMG_{i:04d}.png"
    shutil.copytree(Path(sample.images_dir), tmp_path / "badposes" / "images")
    (tmp_path / "badposes" / "transforms.json").write_text(json.dumps(bad))
    with pytest.raises(SpatialvidError, match="do not match any frame"):
        scene_from_known_poses(sample.video, tmp_path / "badposes" / "transforms.json", tmp_path / "x",
                               SfmConfig(progress=False))


@pytest.mark.slow
def test_partial_and_failed_registration(sample, tmp_path):
    """Frames unrelated to the scene are dropped with a note; mostly-unrelated input fails listing them."""
    rng = np.random.default_rng(0)
    good = sorted(Path(sample.images_dir).glob("frame_*.png"))[::3][:14]

    def noise(path):  # a different "scene": smooth random blobs, nothing in common with the sample
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((320, 240), Image.BICUBIC).save(path)

    part = tmp_path / "partial"
    part.mkdir()
    for p in good:
        shutil.copy(p, part / p.name)
    for i in range(2):
        noise(part / f"zz_noise_{i}.png")
    with pytest.warns(UserWarning, match="2 of 16 frames could not be registered"):
        scene = run_sfm(part, tmp_path / "s1", SfmConfig(progress=False))
    assert len(scene.cameras) == 14 and sorted(scene.metadata["sfm"]["dropped"]) == ["zz_noise_0.png",
                                                                                    "zz_noise_1.png"]
    fail = tmp_path / "mostly_noise"
    fail.mkdir()
    for p in good[:4]:
        shutil.copy(p, fail / p.name)
    for i in range(6):
        noise(fail / f"zz_noise_{i}.png")
    with pytest.raises(SpatialvidError, match=r"registered only \d+ of 10 frames.*zz_noise_0.png.*--max-frames"):
        run_sfm(fail, tmp_path / "s2", SfmConfig(progress=False))


@pytest.mark.slow
def test_pure_rotation_is_reported(tmp_path):
    """A camera that only turns on the spot: no parallax, a plain error that says so."""
    from spatialvid import _sample_scene as S
    from spatialvid.sample import intrinsics

    scene = S.build_scene(0)
    w, h = 160, 120
    fx, fy, cx, cy = intrinsics(w, h)
    eye = np.array([0.0, -2.4, 1.45])
    folder = tmp_path / "turn"
    folder.mkdir()
    for i, yaw in enumerate(np.linspace(-20, 20, 10)):
        d = np.array(S.SCENE_CENTER) - eye
        R = _rot([0, 0, 1], yaw)
        c2w = S.look_at_c2w(eye, eye + R @ d)
        rgb, _, _ = S.render(scene, c2w, fx, fy, cx, cy, w, h)
        Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    with pytest.raises(SpatialvidError, match="rotat"):
        run_sfm(folder, tmp_path / "out", SfmConfig(progress=False))


# ---------------------------------------------------------------------------------------------------
# real photos: fox (shared data)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.shared_data
def test_fox_accuracy(fox_dir, tmp_path):
    out = tmp_path / "fox"
    scene = run_sfm(fox_dir / "images", out, SfmConfig(resolution=480, progress=False))
    ref = load_poses(fox_dir / "transforms.json")
    err = pose_errors(scene.cameras, ref)
    assert err.registered >= math.ceil(0.95 * len(ref)), err.summary()
    assert err.rot_median_deg < 1.0, err.summary()
    assert err.center_rmse_pct < 2.0, err.summary()
    # transforms.json frames end in the input photos' own file names
    tj = json.loads((out / "transforms.json").read_text())
    inputs = {p.name for p in (fox_dir / "images").iterdir()}
    assert all(Path(f["file_path"]).name in inputs for f in tj["frames"])
    assert (out / "sparse" / "0").is_dir()


@pytest.mark.slow
def test_poses_cli_on_image_folder(sample, tmp_path, capsys):
    from spatialvid.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(Path(sample.images_dir).glob("frame_*.png"))[::4]:
        shutil.copy(p, folder / f"shot_{p.stem[6:]}.png")  # own names: shot_00000.png ...
    out = tmp_path / "scene"
    assert main(["poses", str(folder), "-o", str(out), "--no-progress"]) == 0
    assert "registered: 15/15 keyframes" in capsys.readouterr().out
    tj = json.loads((out / "transforms.json").read_text())
    assert sorted(Path(f["file_path"]).name for f in tj["frames"]) == sorted(p.name for p in folder.iterdir())
    assert (out / "sparse" / "0").is_dir() and (out / "scene.json").exists()
    # plain one-line errors, exit 2
    assert main(["poses", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err and "Traceback" not in err


def test_poses_refuses_to_overwrite_its_input(tmp_path, capsys):
    from spatialvid.cli import main

    imgs = tmp_path / "scene" / "images"
    imgs.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(imgs / f"{i}.png")
    assert main(["poses", str(imgs), "-o", str(tmp_path / "scene")]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert len(list(imgs.glob("*.png"))) == 3
    # a data folder that is not a scene (e.g. the sample itself) is not overwritten either
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "transforms.json").write_text("{}")
    assert main(["poses", str(imgs), "-o", str(tmp_path / "data")]) == 2
    assert "not a spatialvid scene" in capsys.readouterr().err
