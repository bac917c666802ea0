"""Forward-facing sample (small-baseline capture of objects in front of a wall): ground truth consistency,
our SfM's accuracy on it (camera model chosen by BIC), and ``eval --compare-pycolmap``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spatialvid import _sample_scene as S
from spatialvid._sample_forward import build_forward_scene, forward_trajectory, make_forward_sample
from spatialvid.sample import intrinsics
from spatialvid.sfm import SfmConfig, load_poses, pose_errors, run_sfm


def test_forward_sample_ground_truth(tmp_path):
    info = make_forward_sample(tmp_path / "f", num_frames=4, width=64, height=48, seed=3, progress=False)
    out = info.out_dir
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"frame_{i:05d}.png" for i in range(4)]
    meta = json.loads((out / "sample.json").read_text())
    assert meta["mode"] == "forward_facing" and meta["num_frames"] == 4
    c2w = forward_trajectory(np.linspace(0, 1, 4), 3)
    cams = load_poses(out / "transforms.json")
    assert np.allclose(cams.centers().numpy(), c2w[:, :3, 3], atol=1e-5)
    # small baseline, all cameras facing +y (the wall), roughly the same way
    assert 0.3 < info.baseline < 0.6
    fwd = c2w[:, :3, 2]
    assert (fwd[:, 1] > 0.7).all() and np.degrees(np.arccos(np.clip(fwd @ fwd.mean(0) / np.linalg.norm(
        fwd.mean(0)), -1, 1))).max() < 15
    # depth of frame 0 re-projected into frame 3 agrees with frame 3's own depth where visible
    depth = np.load(out / "depth.npz")["depth"]
    fx, fy, cx, cy = intrinsics(64, 48)
    o, d = S.camera_rays(c2w[0], fx, fy, cx, cy, 64, 48)
    pts = o + depth[0].reshape(-1, 1) * d
    pc = (pts - c2w[3, :3, 3]) @ c2w[3, :3, :3]
    u = np.floor(fx * pc[:, 0] / pc[:, 2] + cx).astype(int)
    v = np.floor(fy * pc[:, 1] / pc[:, 2] + cy).astype(int)
    ok = (u >= 0) & (u < 64) & (v >= 0) & (v < 48)
    assert ok.mean() > 0.7
    rel = np.abs(depth[3][v[ok], u[ok]] - pc[ok, 2]) / pc[ok, 2]
    assert np.median(rel) < 0.01
    # the scene: objects stand between the camera and the +y wall
    lo, hi = build_forward_scene(3).objects_bounds()
    assert lo[1] > c2w[:, 1, 3].max() + 0.8 and hi[1] < S.ROOM_HI[1]


@pytest.fixture(scope="module")
def forward_scene(tmp_path_factory):
    base = tmp_path_factory.mktemp("forward")
    info = make_forward_sample(base / "sample", progress=False)  # the defaults: 24 frames at 480x360, as in the README
    scene = run_sfm(info.images_dir, base / "scene", SfmConfig(progress=False))
    return info, base / "scene", scene


@pytest.mark.slow
def test_forward_facing_poses_accurate(forward_scene):
    info, _, scene = forward_scene
    sfm = scene.metadata["sfm"]
    assert sfm["registered"] == sfm["keyframes"] == 24
    err = pose_errors(scene.cameras, load_poses(info.transforms))
    assert err.rot_median_deg < 0.5, err.summary()
    assert err.center_rmse_pct < 1.0, err.summary()
    # the synthetic camera is an exact centred pinhole: the BIC keeps the simplest model
    sel = sfm["camera_selection"]
    assert sel["chosen"] == "SIMPLE_RADIAL"
    bic = {k: v["bic"] for k, v in sel["candidates"].items()}
    assert min(bic, key=bic.get) == "SIMPLE_RADIAL" and len(bic) == 4


@pytest.mark.slow
def test_eval_compare_pycolmap(forward_scene, capsys):
    from spatialvid.cli import main

    info, scene_dir, _ = forward_scene
    assert main(["eval", str(scene_dir), "--poses", str(info.transforms), "--compare-pycolmap", "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["scene"]["registered"] == 24
    assert d["pycolmap"]["num_images"] == 24 and d["pycolmap"]["images"].endswith("keyframes")
    assert d["pycolmap"]["errors"]["registered"] <= d["scene"]["registered"]
    assert d["pycolmap"]["errors"]["rot_median_deg"] < 5.0  # plain pycolmap works here too
    # no folder to compare on: one plain error line, exit 2
    assert main(["eval", str(info.transforms), "--poses", str(info.transforms), "--compare-pycolmap"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sfm/keyframes" in err
