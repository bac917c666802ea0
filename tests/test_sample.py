"""The bundled synthetic sample: determinism, geometric consistency of the ground truth, hidden region,
video, ground-truth Gaussians and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatialvid import _sample_scene as S
from spatialvid.errors import SpatialvidError
from spatialvid.formats import nerfstudio, ply
from spatialvid.sample import heldout_views, intrinsics, make_sample, trajectory_pose

FRAMES, W, H = 20, 320, 240


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("sample") / "s", hidden_region=True, num_frames=FRAMES,
                       width=W, height=H, seed=0, progress=False)


def _img(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_layout_and_metadata(sample):
    out = sample.out_dir
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"frame_{i:05d}.png" for i in range(FRAMES)]
    assert _img(out / "images" / "frame_00000.png").shape == (H, W, 3)
    meta = json.loads((out / "sample.json").read_text())
    assert meta["up_axis"] == "+z" and meta["num_frames"] == FRAMES
    assert len(meta["heldout"]) == sample.num_heldout == 8
    lo, hi = np.array(meta["objects_bounds"]["min"]), np.array(meta["objects_bounds"]["max"])
    assert (hi - lo).max() < 4.0 and np.all(lo <= meta["scene_center"]) and np.all(meta["scene_center"] <= hi)
    assert np.linalg.norm(hi - lo) / 2 <= meta["scene_radius"] < 4.0
    tr = json.loads(sample.transforms.read_text())
    assert tr["camera_model"] == "OPENCV" and tr["w"] == W and tr["h"] == H
    assert tr["fl_x"] == pytest.approx(0.9 * W) and tr["k1"] == 0 == tr["p2"]
    assert tr["frames"][3]["file_path"] == "images/frame_00003.png"
    depth = np.load(sample.depth)["depth"]
    assert depth.shape == (FRAMES, H, W) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and 0.5 < depth.min() and depth.max() < 12.0  # closed room: always a hit


def test_video_decodes_to_the_frames(sample):
    import av
    with av.open(str(sample.video)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == FRAMES and frames[0].shape == (H, W, 3)
    # high-quality encode: close to the lossless PNGs, and frame order preserved
    for i in (0, FRAMES // 2, FRAMES - 1):
        png = _img(sample.images_dir / f"frame_{i:05d}.png").astype(np.float64)
        mse = np.mean((frames[i].astype(np.float64) - png) ** 2)
        assert 10 * np.log10(255**2 / mse) > 28
    other = _img(sample.images_dir / "frame_00000.png").astype(np.float64)
    assert np.mean((frames[FRAMES - 1] - other) ** 2) > 4 * np.mean((frames[0] - other) ** 2)


def test_deterministic_and_seed_dependent(tmp_path):
    kw = dict(hidden_region=True, num_frames=4, width=64, height=48, progress=False)
    a = make_sample(tmp_path / "a", seed=3, **kw)
    b = make_sample(tmp_path / "b", seed=3, **kw)
    c = make_sample(tmp_path / "c", seed=4, **kw)
    for rel in ("images/frame_00002.png", "depth.npz", "heldout/images/view_005.png", "heldout/hidden_masks.npz",
                "heldout/unseen_masks.npz", "gt_gaussians.ply", "transforms.json", "heldout/transforms.json",
                "video.mp4"):
        assert (a.out_dir / rel).read_bytes() == (b.out_dir / rel).read_bytes(), rel
    assert not np.array_equal(_img(a.images_dir / "frame_00000.png"), _img(c.images_dir / "frame_00000.png"))
    # the hidden-region variant renders identical video frames: the trajectory never sees the hidden objects
    d = make_sample(tmp_path / "d", seed=3, **{**kw, "hidden_region": False})
    for i in range(4):
        assert (a.images_dir / f"frame_{i:05d}.png").read_bytes() == (d.images_dir / f"frame_{i:05d}.png").read_bytes()
    assert d.hidden_masks is None and not (d.heldout_dir / "hidden_masks.npz").exists()


def test_small_sample_gaussians_render_close(tmp_path):
    """Small samples (anti-aliased 2x2) still have ground-truth Gaussians that match their images."""
    from spatialvid.render import render_gaussians

    info = make_sample(tmp_path / "s", hidden_region=True, num_frames=4, width=96, height=72, progress=False)
    assert json.loads(info.sample_json.read_text())["supersampling"] == 2
    g = ply.read_ply(info.gt_gaussians)
    cams = nerfstudio.read_transforms(info.heldout_transforms)
    for k in (0, 6):
        out = render_gaussians(g, cams[k], backend="auto")
        gt = _img(cams.image_paths[k]).astype(np.float32) / 255
        assert -10 * np.log10(float(((out.rgb.detach().numpy() - gt) ** 2).mean())) > 22, k


def test_depth_is_consistent_across_frames(sample):
    """Back-project pixels of frame 0 with GT depth + camera, re-project into frame FRAMES // 5: where the depth there
    agrees (visible), the colours agree too (Lambertian scene)."""
    cams = nerfstudio.read_transforms(sample.transforms)
    depth = np.load(sample.depth)["depth"]
    c2w = cams.c2w().double().numpy()  # OpenCV camera-to-world
    fx, fy, cx, cy = intrinsics(W, H)
    v, u = np.mgrid[4:H - 4:3, 4:W - 4:3]
    u, v = u.ravel(), v.ravel()
    z = depth[0, v, u].astype(np.float64)
    cam = np.stack([(u + 0.5 - cx) / fx * z, (v + 0.5 - cy) / fy * z, z], 1)
    world = cam @ c2w[0, :3, :3].T + c2w[0, :3, 3]
    j = FRAMES // 5
    uv, zj = cams[j].project(torch.from_numpy(world).float())
    uv, zj = uv[0].double().numpy(), zj[0].double().numpy()
    ui, vi = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (ui >= 1) & (ui < W - 1) & (vi >= 1) & (vi < H - 1) & (zj > 0)
    ui, vi, zj = ui[inside], vi[inside], zj[inside]
    visible = np.abs(depth[j, vi, ui] - zj) < 0.01 + 0.005 * zj
    assert visible.mean() > 0.7  # most of frame 0 is visible there (~25 degrees away)
    img0, imgj = _img(sample.images_dir / "frame_00000.png"), _img(sample.images_dir / f"frame_{j:05d}.png")
    c0 = img0[v[inside][visible], u[inside][visible]].astype(float)
    cj = imgj[vi[visible], ui[visible]].astype(float)
    diff = np.abs(c0 - cj).mean(1)
    assert np.median(diff) < 8 and np.mean(diff < 30) > 0.85
    # and a wrong correspondence (shifted by 7 px) would not match nearly as well
    cs = imgj[vi[visible], np.clip(ui[visible] + 7, 0, W - 1)].astype(float)
    assert np.median(np.abs(c0 - cs).mean(1)) > 2 * np.median(diff) + 5


def test_transforms_project_sphere_centre(sample):
    cams = nerfstudio.read_transforms(sample.transforms)
    assert len(cams) == FRAMES and Path(cams.image_paths[0]) == sample.images_dir / "frame_00000.png"
    # the poses are the generator's trajectory (OpenGL in the file, OpenCV in Cameras)
    expect = trajectory_pose(np.linspace(0, 1, FRAMES), 0)
    assert np.allclose(cams.c2w().double().numpy(), expect, atol=1e-4)
    meta = json.loads(sample.sample_json.read_text())
    ball = next(o for o in meta["objects"] if o["name"] == "yellow_ball")
    centre, r = torch.tensor([ball["center"]]), ball["radius"]
    depth = np.load(sample.depth)["depth"]
    uv, z = cams.project(centre)
    hits = 0
    for i in range(FRAMES):
        u, v = int(uv[i, 0, 0]), int(uv[i, 0, 1])
        if 0 <= u < W and 0 <= v < H and z[i, 0] > 0:
            # the image there shows the near side of the ball: depth between z - r and z - r/2
            assert float(z[i, 0]) - r - 0.02 < depth[i, v, u] < float(z[i, 0]) - 0.5 * r, i
            hits += 1
    assert hits >= FRAMES // 2


def test_hidden_region_never_in_video_but_in_heldout(sample):
    scene = S.build_scene(0, hidden_region=True)
    ids = scene.hidden_ids()
    assert len(ids) == 2
    # the default 60-frame trajectory at the default size never sees the hidden objects (ray cast, no shading)
    fx, fy, cx, cy = intrinsics(320, 240)
    for c2w in trajectory_pose(np.linspace(0, 1, 60), 0):
        _, _, prim = S.render(scene, c2w, fx, fy, cx, cy, 320, 240, need_rgb=False)
        assert not np.isin(prim, ids).any()
    data = np.load(sample.hidden_masks)
    masks, names = data["masks"], list(data["names"])
    assert masks.shape == (8, H, W) and masks.dtype == bool
    meta = json.loads(sample.sample_json.read_text())
    seen_by = meta["hidden"]["views"]
    assert len(seen_by) >= 3 and meta["hidden"]["video_pixels"] == 0
    for k, name in enumerate(names):
        assert masks[k].any() == (name in seen_by)
        if name in seen_by:
            assert masks[k].sum() > 1000
    # a hidden object is never seen by the video, so its pixels are all in the unseen mask
    unseen = np.load(sample.unseen_masks)["masks"]
    assert unseen[masks].mean() > 0.99
    kinds = {h["name"]: h["kind"] for h in meta["heldout"]}
    for k, name in enumerate(names):
        if kinds[name] == "between_frames":
            assert unseen[k].mean() < 0.01 and not masks[k].any()
    # masks agree with an independent ray cast of the held-out camera
    v = heldout_views(FRAMES, 0)[5]
    _, _, prim = S.render(scene, v["c2w"], *intrinsics(W, H), W, H, need_rgb=False)
    assert np.array_equal(np.isin(prim, ids), masks[5])


def test_gt_gaussians_render_close_to_images(sample):
    from spatialvid.render import render_gaussians

    g = ply.read_ply(sample.gt_gaussians)
    assert 20_000 < len(g) <= 150_000 and len(g) == sample.num_gaussians
    assert float(g.opacities.min()) > 0.95
    cams = nerfstudio.read_transforms(sample.heldout_transforms)
    for k in (1, 5):  # a view between frames and one from the far side (sees the hidden objects)
        out = render_gaussians(g, cams[k], backend="auto")
        gt = _img(cams.image_paths[k]).astype(np.float32) / 255
        mse = float(((out.rgb.detach().numpy() - gt) ** 2).mean())
        assert -10 * np.log10(mse) > 22, k
        assert float(out.alpha.mean()) > 0.97


def test_cli(tmp_path, capsys):
    from spatialvid.cli import main

    out = tmp_path / "tiny"
    assert main(["sample", str(out), "--frames", "3", "--width", "48", "--height", "32", "--quiet"]) == 0
    assert len(list((out / "images").iterdir())) == 3
    assert "3 frames 48x32" in capsys.readouterr().out
    # an existing sample is replaced; other non-empty folders are refused
    assert main(["sample", str(out), "--frames", "2", "--width", "48", "--height", "32", "--quiet"]) == 0
    assert len(list((out / "images").iterdir())) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["sample", str(other), "--quiet"]) == 2
    assert (other / "keep.txt").read_text() == "mine"
    assert "not a spatialvid sample" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "x"), "--width", "33"]) == 2
    assert "even" in capsys.readouterr().err


def test_bad_arguments(tmp_path):
    with pytest.raises(SpatialvidError, match="frames"):
        make_sample(tmp_path / "a", num_frames=1)
    with pytest.raises(SpatialvidError, match="height"):
        make_sample(tmp_path / "a", height=8)
    with pytest.raises(SpatialvidError, match="seed"):
        make_sample(tmp_path / "a", seed=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpatialvidError, match="not a folder"):
        make_sample(tmp_path / "file")
