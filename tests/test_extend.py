"""`spatialvid extend`: a sample split into clips A and B; A reconstructed, then extended with B."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatialvid.cli import main
from spatialvid.scene import Scene
from spatialvid.sfm.pipeline import load_poses
from spatialvid.train.extend import _in_view, new_camera_errors


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def split_sample(tmp_path_factory):
    """The sample (48 frames, 192x144) split into clips A (frames 0-27) and B (28-47), and scene A made from
    clip A by `spatialvid poses` (SfM, Gaussians on its sparse points). Tests work on copies of the scene."""
    from spatialvid.sample import make_sample

    base = tmp_path_factory.mktemp("extend")
    s = make_sample(base / "sample", num_frames=48, width=192, height=144, progress=False)
    ims = sorted(s.images_dir.glob("*.png"))
    dirs = {}
    for name, sel in (("A", ims[:28]), ("B", ims[28:])):
        d = base / name
        d.mkdir()
        for p in sel:
            shutil.copy(p, d / p.name)
        dirs[name] = d
    scene_a = base / "scene_A"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["poses", str(dirs["A"]), "-o", str(scene_a), "--camera-model", "SIMPLE_RADIAL",
                     "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    return base, s, dirs, scene_a


def _copy_scene(scene_a: Path, dst: Path) -> Path:
    shutil.copytree(scene_a, dst, symlinks=True)
    return dst


def _mean_psnr(scene: Scene, ref, names: list[str], ref_images: dict[str, Path]) -> float:
    """PSNR of the reference views ``names`` rendered from ``scene`` at the true poses mapped into it (Sim3
    on the scene's cameras)."""
    from spatialvid.cameras import Cameras
    from spatialvid.metrics import psnr
    from spatialvid.sfm.align import match_by_name, sim3_matrix, transform_cameras, umeyama
    from spatialvid.train.data import load_image

    ei, ri = match_by_name(scene.cameras, ref)
    s_, R, t = umeyama(ref[ri].centers().double().numpy(), scene.cameras[ei].centers().double().numpy())
    M = sim3_matrix(s_, R, t)
    c0 = scene.cameras[[0]]
    idx = {n: i for i, n in enumerate(ref.names)}
    vals = []
    for n in names:
        r = transform_cameras(ref[[idx[n]]], M)
        cam = Cameras(fx=c0.fx, fy=c0.fy, cx=c0.cx, cy=c0.cy, width=c0.width, height=c0.height, R=r.R, t=r.t)
        out = scene.render(cam)
        gt = load_image(str(ref_images[n]), int(c0.width[0]), int(c0.height[0]))
        vals.append(psnr(torch.as_tensor(out.rgb).clamp(0, 1), gt))
    return float(np.mean(vals))


@pytest.mark.slow
def test_extend_registers_in_scene_frame_and_undo_is_exact(split_sample, tmp_path, capsys):
    base, s, dirs, scene_a = split_sample
    scene_dir = _copy_scene(scene_a, tmp_path / "scene")
    before = _digest(scene_dir)
    old = Scene.load(scene_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        capsys.readouterr()
        assert main(["extend", str(scene_dir), str(dirs["B"]), "--steps", "150", "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "20 new cameras" in capsys.readouterr().out
    ext = Scene.load(scene_dir)
    n_old = len(old.cameras)
    assert len(ext.cameras) == n_old + 20
    assert ext.cameras.names[:n_old] == old.cameras.names
    assert torch.equal(ext.cameras.R[:n_old], old.cameras.R)  # old cameras untouched
    assert torch.equal(ext.cameras.t[:n_old], old.cameras.t)
    h = ext.history[-1]
    assert h["kind"] == "extend" and h["info"]["registered"] == 20 and h["info"]["dropped"] == {}
    assert h["info"]["added"] > 0 and len(ext.gaussians) > len(old.gaussians)
    assert all((scene_dir / "images" / n).is_file() for n in ext.cameras.names)
    # Gaussians no new frame sees keep their values bit for bit (they come first, in their order)
    keep = ~_in_view(old.gaussians.means, ext.cameras[list(range(n_old, len(ext.cameras)))], margin=0.02)
    assert 0 < int(keep.sum()) < len(old.gaussians)

    def rows(g, sel=slice(None)):
        t = torch.cat([g.means, g.log_scales, g.quats, g.opacity_logits[:, None], g.sh0.reshape(len(g), -1)], 1)
        return {tuple(r) for r in t[sel].numpy().tolist()}

    assert rows(old.gaussians, keep) <= rows(ext.gaussians)
    # the extended scene has SH degree 3: the kept Gaussians' old bands as they were, the added bands zero
    assert ext.gaussians.sh_degree == 3
    at = {tuple(m): i for i, m in enumerate(ext.gaussians.means.numpy().tolist())}
    idx = [at[tuple(m)] for m in old.gaussians.means[keep].numpy().tolist()]
    nb = old.gaussians.shN.shape[1]
    assert torch.equal(ext.gaussians.shN[idx, :nb], old.gaussians.shN[keep])
    assert (ext.gaussians.shN[idx, nb:] == 0).all()
    # the new cameras are posed in the scene's frame and scale: compared with ground truth mapped into the
    # scene by a similarity fitted on the *old* cameras only
    ref = load_poses(s.transforms)
    rot, cen, _ = new_camera_errors(ext.cameras, ref, set(old.cameras.names))
    # (at 192x144 the scene's own SfM is good to ~0.8 deg / 0.2%; the far end of B extrapolates A's frame)
    assert np.median(rot) < 0.5, rot
    assert np.median(cen) < 1.0 and cen.max() < 2.0, cen
    # B's views, rendered at their true poses, are far better after the extend than from scene A alone
    ref_images = {p.name: p for p in sorted(s.images_dir.glob("*.png"))}
    b_names = [p.name for p in sorted(dirs["B"].glob("*.png"))][::4]
    p_old, p_ext = _mean_psnr(old, ref, b_names, ref_images), _mean_psnr(ext, ref, b_names, ref_images)
    assert p_ext > p_old + 3.0, (p_old, p_ext)
    # undo restores the scene exactly (Gaussians, cameras, metadata; history records the undo)
    assert main(["extend", str(scene_dir), "--undo", "--quiet"]) == 0
    after = _digest(scene_dir)
    for name in ("gaussians.ply", "transforms.json"):
        assert after[name] == before[name]
    assert {k for k in after if k.startswith("images/")} == {k for k in before if k.startswith("images/")}
    back = Scene.load(scene_dir)
    assert back.metadata == old.metadata
    assert back.history[: len(old.history)] == old.history and back.history[-1]["kind"] == "undo"
    assert torch.equal(back.gaussians.means, old.gaussians.means)
    capsys.readouterr()
    assert main(["extend", str(scene_dir), "--undo"]) == 2  # nothing left to undo
    assert "nothing to undo" in capsys.readouterr().err


@pytest.mark.slow
def test_extend_with_known_poses(split_sample, tmp_path, capsys):
    """--poses: the new frames' true poses (the file also holds A's frames) are aligned to the scene by a
    Sim3 on the shared frames; the new cameras then agree with ground truth as well as the scene's own
    cameras do."""
    base, s, dirs, scene_a = split_sample
    scene_dir = _copy_scene(scene_a, tmp_path / "scene")
    old = Scene.load(scene_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        capsys.readouterr()
        assert main(["extend", str(scene_dir), str(dirs["B"]), "--poses", str(s.transforms), "--steps", "60",
                     "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "20 new cameras" in capsys.readouterr().out
    ext = Scene.load(scene_dir)
    n_old = len(old.cameras)
    assert len(ext.cameras) == n_old + 20 and ext.cameras.names[:n_old] == old.cameras.names
    assert torch.equal(ext.cameras.R[:n_old], old.cameras.R)
    h = ext.history[-1]
    assert h["kind"] == "extend" and h["info"]["poses"] == str(s.transforms)
    assert any("Sim3" in n for n in h["info"]["notes"])
    ref = load_poses(s.transforms)
    # the new cameras are the given poses mapped by the similarity fitted on the poses of the shared frames
    # (A's), not refined: ground truth mapped the same way matches them to round-off
    from spatialvid.sfm.align import match_by_name, pose_sim3, rotation_angle_deg, transform_cameras

    ei, ri = match_by_name(ext.cameras, ref)
    old_m = [(e, r) for e, r in zip(ei, ri) if e < n_old]
    new = [(e, r) for e, r in zip(ei, ri) if e >= n_old]
    assert len(old_m) == n_old and len(new) == 20
    M = pose_sim3(ref[[r for _, r in old_m]], ext.cameras[[e for e, _ in old_m]])
    gt = transform_cameras(ref[[r for _, r in new]], M)
    est = ext.cameras[[e for e, _ in new]]
    ang = rotation_angle_deg(est.R.double().numpy(), gt.R.double().numpy())
    extent = float(np.linalg.norm(np.ptp(ext.cameras.centers().double().numpy(), 0)))
    dc = np.linalg.norm((est.centers() - gt.centers()).double().numpy(), axis=1) / extent
    assert ang.max() < 0.01 and dc.max() < 1e-4, (ang, dc)
    # and relative to the scene's own (estimated) cameras they are as good as those are (~0.8 deg here)
    rot, cen, _ = new_camera_errors(ext.cameras, ref, set(old.cameras.names))
    assert np.median(rot) < 1.0, rot
    assert np.median(cen) < 1.0 and cen.max() < 2.0, cen
    rel = []  # relative rotations between consecutive new cameras equal the given ones
    for (e0, r0), (e1, r1) in zip(new, new[1:]):
        a = ext.cameras.R[e1].double().numpy() @ ext.cameras.R[e0].double().numpy().T
        b = ref.R[r1].double().numpy() @ ref.R[r0].double().numpy().T
        rel.append(float(rotation_angle_deg(a[None], b[None])[0]))
    assert max(rel) < 1e-3, rel


@pytest.mark.slow
def test_extend_errors_leave_scene_unchanged(split_sample, tmp_path, capsys):
    base, s, dirs, scene_a = split_sample
    scene_dir = _copy_scene(scene_a, tmp_path / "scene")
    before = _digest(scene_dir)
    # a clip of another place: random texture that matches nothing in the scene
    other = tmp_path / "other"
    other.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (144, 192, 3), dtype=np.uint8)).save(other / f"o_{i}.png")
    assert main(["extend", str(scene_dir), str(other), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "same place" in err
    # a damaged video
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    assert main(["extend", str(scene_dir), str(bad), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert _digest(scene_dir) == before
    assert not list(tmp_path.glob(".scene.extend.*"))  # no work folder left behind
    # a scene without its SfM model: says how to make one
    bare = tmp_path / "bare"
    bare.mkdir()
    for n in ("gaussians.ply", "transforms.json", "scene.json"):
        shutil.copy(scene_dir / n, bare / n)
    shutil.copytree(scene_dir / "images", bare / "images")
    b0 = _digest(bare)
    assert main(["extend", str(bare), str(dirs["B"]), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no SfM model" in err and "spatialvid poses" in err
    assert _digest(bare) == b0


def test_extend_camera_draw_follows_new_per_old():
    """Each training step draws a new camera with probability new_per_old / (new_per_old + 1), else an old
    one; the draws are reproducible from the seed."""
    from types import SimpleNamespace

    from spatialvid.train.extend import ExtendTrainer

    for npo, want in ((1.0, 0.5), (3.0, 0.75), (0.5, 1 / 3)):
        t = SimpleNamespace(cfg=SimpleNamespace(seed=0), new_per_old=npo, new_pos=[10, 11, 12], old_pos=[0, 1])
        draws = [ExtendTrainer._draw(t, k) for k in range(4000)]
        share = np.mean([d >= 10 for d in draws])
        assert abs(share - want) < 0.03, (npo, share)
        assert set(draws) == {0, 1, 10, 11, 12}
        assert draws == [ExtendTrainer._draw(t, k) for k in range(4000)]


def test_extend_refine_poses_with_known_poses_is_refused(tmp_path, capsys):
    scene = tmp_path / "scene"
    scene.mkdir()
    (tmp_path / "new").mkdir()
    poses = tmp_path / "transforms.json"
    poses.write_text("{}")
    assert main(["extend", str(scene), str(tmp_path / "new"), "--poses", str(poses), "--refine-poses"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--refine-poses" in err


def _wall(z: float, n: int = 40, half: float = 3.0, scale: float = 0.06):
    """A dense opaque grid of Gaussians on the plane z = ``z`` (world = camera frame of :func:`_front_cam`)."""
    from spatialvid.gaussians import Gaussians

    xs = torch.linspace(-half, half, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="ij")
    means = torch.stack([gx.flatten(), gy.flatten(), torch.full((n * n,), z)], 1)
    m = len(means)
    quats = torch.zeros(m, 4)
    quats[:, 0] = 1
    return Gaussians.from_arrays(means, torch.full((m, 3), float(np.log(scale))), quats,
                                 torch.full((m,), 4.0), torch.full((m, 3), 0.5))


def _front_cam(w: int = 64, h: int = 48):
    from spatialvid.cameras import Cameras

    return Cameras(fx=[60.0], fy=[60.0], cx=[w / 2], cy=[h / 2], width=[w], height=[h],
                   R=torch.eye(3)[None], t=torch.zeros(1, 3))


def test_free_space_flags_points_in_front_of_what_an_old_view_saw():
    """A point an old view sees in front of its solid surface (nearer than 0.9 x the rendered depth) is in
    observed free space; points behind the surface, just in front of it (within the margin), outside the
    view or where the view saw nothing solid are not."""
    from spatialvid.train.extend import in_observed_free_space

    wall = _wall(5.0)
    cam = _front_cam()
    pts = torch.tensor([[0.0, 0.0, 2.0],     # in front of the wall, in view: free space
                        [0.5, -0.3, 4.0],    # in front, in view
                        [0.0, 0.0, 7.0],     # behind the wall
                        [0.2, 0.1, 4.8],     # within 10 % of the surface
                        [30.0, 0.0, 2.0],    # outside the image
                        [0.0, 0.0, -2.0]])   # behind the camera
    got = in_observed_free_space(pts, wall, cam)
    assert got.tolist() == [True, True, False, False, False, False]
    # a wall covering only the left half of the image: in front of the empty right half nothing is flagged
    left = wall[wall.means[:, 0] < -0.5]
    got = in_observed_free_space(torch.tensor([[-1.0, 0.0, 2.0], [1.5, 0.0, 2.0]]), left, cam)
    assert got.tolist() == [True, False]


def test_new_point_gaussians_keep_clear_of_the_existing_ones():
    """Gaussians on new sparse points far from the scene: only points farther than the gap are kept, and no
    new Gaussian's initial size exceeds its distance to the nearest existing centre (sparse points are far
    apart; the plain 3-nearest-neighbour size would spread them over what the old views fit)."""
    from scipy.spatial import cKDTree

    from spatialvid.train.extend import new_point_gaussians

    existing = _wall(5.0, n=30, half=1.0).means
    rng = np.random.default_rng(0)
    far = np.c_[rng.uniform(-4, 4, (60, 2)), rng.uniform(5.3, 9.0, 60)]  # sparse, 0.3-4 behind the wall
    near = np.array([[0.0, 0.0, 5.01], [0.3, 0.3, 4.99]])               # on the existing structure
    g = new_point_gaussians(np.r_[far, near], np.full((62, 3), 0.5), existing, sh_degree=0)
    d_exist, _ = cKDTree(existing.double().numpy()).query(g.means.double().numpy())
    assert 0 < len(g) <= 60 and (d_exist > 0.1).all()
    size = torch.exp(g.log_scales).amax(1).double().numpy()
    assert (size <= d_exist + 1e-6).all()
    # without the cap the 3-NN size of these sparse points is larger than the gap for some of them
    from spatialvid.train.trainer import knn_scales

    assert (knn_scales(g.means).double().numpy() > d_exist).any()


def test_extend_config_sh_degree():
    """An extend trains at SH degree 3 unless told otherwise, never below the scene's degree."""
    from types import SimpleNamespace

    from spatialvid.errors import SpatialvidError
    from spatialvid.train.extend import extend_config

    low = SimpleNamespace(history=[], gaussians=_wall(5.0, n=4).with_sh_degree(1))
    assert extend_config(low).sh_degree == 3
    assert extend_config(low, sh_degree=2).sh_degree == 2
    assert extend_config(low, sh_degree=1).sh_degree == 1
    high = SimpleNamespace(history=[], gaussians=_wall(5.0, n=4).with_sh_degree(3))
    assert extend_config(high).sh_degree == 3
    for bad in (1, 4, -1):
        with pytest.raises(SpatialvidError, match="sh_degree"):
            extend_config(high, sh_degree=bad)
