"""The geometry terms of training (for meshes): depth normals and depth-normal consistency against analytic
values, the sparse SfM depth term (its observations and its effect)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatialvid.cameras import Cameras
from spatialvid.train.losses import depth_normals, normal_consistency_loss


def _K(f=40.0, w=32, h=24):
    return torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])


def _plane_depth(n, c, K, w=32, h=24):
    """Camera-z depth of the plane n.X = c seen by a camera at the origin (OpenCV axes)."""
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    ray = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
    return c / (ray @ n)


def test_depth_normals_of_a_tilted_plane_are_its_normal():
    K = _K()
    n = torch.nn.functional.normalize(torch.tensor([0.3, -0.2, -1.0]), dim=0)  # faces the camera (n.z < 0)
    depth = _plane_depth(n, -2.0, K)
    assert (depth > 0).all()
    nd = depth_normals(depth, K)
    inner = nd[1:-1, 1:-1].reshape(-1, 3)
    assert torch.allclose(inner, n.expand_as(inner), atol=1e-4)
    assert (nd[0] == 0).all() and (nd[:, -1] == 0).all()  # no neighbours on the border
    # flipping the plane's normal gives the same (camera-facing) answer
    assert torch.allclose(depth_normals(_plane_depth(-n, 2.0, K), K)[1:-1, 1:-1].reshape(-1, 3), inner, atol=1e-4)


def test_normal_consistency_is_one_minus_the_cosine():
    K = _K()
    n = torch.tensor([0.0, 0.0, -1.0])
    depth = _plane_depth(n, -3.0, K)
    alpha = torch.ones_like(depth)
    same = n.expand(*depth.shape, 3).clone()
    assert float(normal_consistency_loss(same, depth, alpha, K)) == pytest.approx(0.0, abs=1e-6)
    t = math.radians(30)
    tilted = torch.tensor([math.sin(t), 0.0, -math.cos(t)]).expand(*depth.shape, 3) * 0.7  # length is ignored
    assert float(normal_consistency_loss(tilted, depth, alpha, K)) == pytest.approx(1 - math.cos(t), abs=1e-5)
    # pixels that are not solid do not count
    assert float(normal_consistency_loss(tilted, depth, torch.zeros_like(alpha), K)) == 0.0


def _toy_scene_data():
    from tests.test_train import _toy_data

    return _toy_data()


def test_sparse_observations_project_the_model_points(tmp_path):
    from spatialvid.train.data import sparse_observations

    cams = Cameras.cat([Cameras.look_at((3, 0, 0.5), (0, 0, 0), fov_deg=50, width=64, height=48, name="a.png"),
                        Cameras.look_at((0, 3, 0.5), (0, 0, 0), fov_deg=50, width=64, height=48, name="b.png")])
    pts = np.array([[0.1, 0.2, 0.0], [-0.3, 0.1, 0.2], [0.0, 0.0, -0.2]])
    # a COLMAP text model: image a observes points 1 and 2, image b all three
    m = tmp_path / "sparse" / "0"
    m.mkdir(parents=True)
    (m / "cameras.txt").write_text("1 PINHOLE 64 48 50 50 32 24\n")
    lines = []
    for iid, (i, name, obs) in enumerate([(0, "a.png", [1, 2]), (1, "b.png", [1, 2, 3])], start=1):
        w2c = cams.viewmats()[i].double().numpy()
        from scipy.spatial.transform import Rotation

        qx, qy, qz, qw = Rotation.from_matrix(w2c[:3, :3]).as_quat()
        t = w2c[:3, 3]
        lines.append(f"{iid} {qw} {qx} {qy} {qz} {t[0]} {t[1]} {t[2]} 1 {name}")
        lines.append(" ".join(f"10 10 {p}" for p in obs))
    (m / "images.txt").write_text("\n".join(lines) + "\n")
    tracks = {1: "1 0 2 0", 2: "1 1 2 1", 3: "2 2"}
    (m / "points3D.txt").write_text("".join(f"{k} {p[0]} {p[1]} {p[2]} 128 128 128 0.5 {tracks[k]}\n"
                                            for k, p in zip((1, 2, 3), pts)))
    obs = sparse_observations(m, cams)
    assert obs is not None and len(obs) == 2
    for i, want in ((0, pts[:2]), (1, pts)):
        uv, z = cams[i].project(torch.from_numpy(want).float())
        got = obs[i][torch.argsort(obs[i][:, 2])]
        ref = torch.cat([uv[0], z[0, :, None]], 1)
        assert torch.allclose(got, ref[torch.argsort(ref[:, 2])], atol=1e-4)
    assert sparse_observations(tmp_path / "missing", cams) is None


def test_sparse_depth_term_pulls_the_render_onto_the_points():
    """Training with the sparse depth term (true depths at the toy scene's Gaussian centres) leaves the
    rendered depth there closer to the truth than the same run without it."""
    from spatialvid.train import Trainer
    from tests.test_train import _toy_cfg

    errs = {}
    for w in (0.0, 3.0):
        data = _toy_scene_data()
        data.points = data.points + 0.15  # a wrong initial geometry the photometric loss alone recovers slowly
        obs = []
        for i in range(len(data.cameras)):
            uv, z = data.cameras[i].project(data.points - 0.15)
            ok = (z[0] > 0) & (uv[0] >= 0).all(1) & (uv[0] < 40).all(1)
            o = torch.cat([uv[0][ok], z[0][ok, None]], 1)
            near = (o[:, None, :2] - o[None, :, :2]).norm(dim=-1) < 3
            front = ~(near & (o[None, :, 2] < o[:, None, 2])).any(1)  # no other point in front of it nearby
            obs.append(o[front])
        data.sparse_depth = obs
        tr = Trainer(data, _toy_cfg(steps=60, depth_sparse_weight=w), None, progress=False)
        tr.train()
        e = []
        for i in data.train_idx:
            out = tr.render(i)
            o = obs[i]
            d = out.depth.detach()[o[:, 1].long(), o[:, 0].long()]
            e.append(((d - o[:, 2]).abs() / o[:, 2])[out.alpha.detach()[o[:, 1].long(), o[:, 0].long()] > 0.5])
        errs[w] = float(torch.cat(e).median())
    assert errs[3.0] < 0.75 * errs[0.0], errs


def test_normal_term_makes_splats_agree_with_the_rendered_depth():
    """Training with the depth-normal term ends with a lower depth-normal disagreement than the same run
    without it (its gradients reach the Gaussians through both the normal and the depth render)."""
    from spatialvid.train import Trainer
    from tests.test_train import _toy_cfg

    final = {}
    for w in (0.0, 0.2):
        data = _toy_scene_data()
        tr = Trainer(data, _toy_cfg(steps=80, normal_weight=w, normal_start=0), None, progress=False)
        tr.train()
        with torch.no_grad():
            final[w] = float(np.mean([float(tr._normal_loss(tr.render(i), i, pos))
                                      for pos, i in enumerate(data.train_idx)]))
    assert final[0.2] < 0.8 * final[0.0], final


def test_mesh_preset_turns_the_geometry_terms_on_and_extend_off():
    from spatialvid.train.config import load_config

    cfg = load_config("mesh")
    assert cfg.normal_weight > 0 and cfg.depth_sparse_weight > 0 and cfg.multiview_weight > 0
    assert load_config("fast").normal_weight == 0 and load_config("fast").depth_sparse_weight == 0
    with pytest.raises(Exception, match="normal_weight"):
        load_config("fast", {"normal_weight": -1.0})


def test_export_knows_whether_a_scene_was_trained_for_geometry():
    from types import SimpleNamespace

    from spatialvid.cli.export import trained_for_geometry

    def scene(cfg):
        return SimpleNamespace(history=[{"kind": "reconstruct", "info": {"config": cfg}}, {"kind": "fill", "info": {}}])

    assert not trained_for_geometry(scene({"normal_weight": 0.0, "depth_sparse_weight": 0.0}))
    assert trained_for_geometry(scene({"normal_weight": 0.1, "depth_sparse_weight": 0.0}))
    assert trained_for_geometry(scene({"depth_sparse_weight": 0.5}))
    assert trained_for_geometry(scene({"multiview_weight": 0.2}))
    assert trained_for_geometry(SimpleNamespace(history=[]))  # a scene that does not say: no note


def test_multiview_term_is_lowest_at_the_true_depth_and_its_gradient_points_there():
    """Two views of a textured random Gaussian scene: the patch NCC cost of the true rendered depth is below
    that of a depth 4 % too far or too near, and descent on a depth scale starts back towards 1."""
    from spatialvid.train.losses import multiview_ncc_loss

    g = torch.Generator().manual_seed(5)
    n = 4000
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([3.0, 3.0, 0.2])  # a thick textured slab
    scales = torch.full((n, 3), 0.03)
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
    cols = torch.rand(n, 3, generator=g)
    opac = torch.full((n,), 0.9)
    cams = Cameras.cat([Cameras.look_at((0.0, -0.3, 3.0), (0, 0, 0), up=(0, 1, 0), fov_deg=50, width=96, height=72),
                        Cameras.look_at((0.4, -0.3, 3.0), (0, 0, 0), up=(0, 1, 0), fov_deg=50, width=96, height=72)])
    outs = [rasterize_view(means, quats, scales, opac, cols, cams, i) for i in range(2)]
    depth, alpha = outs[0].depth, outs[0].alpha
    K, V = cams.Ks()[0], cams.viewmats()[0]

    def cost(s):
        return multiview_ncc_loss(depth * s, alpha, K, V, outs[0].rgb, cams.Ks()[1], cams.viewmats()[1], outs[1].rgb)

    c_true = float(cost(torch.tensor(1.0)))
    assert c_true < 0.2
    assert c_true < float(cost(torch.tensor(1.04))) and c_true < float(cost(torch.tensor(0.96)))
    for s0, sign in ((1.04, 1.0), (0.96, -1.0)):
        s = torch.tensor(s0, requires_grad=True)
        cost(s).backward()
        assert sign * float(s.grad) > 0, (s0, float(s.grad))


def rasterize_view(means, quats, scales, opac, cols, cams, i):
    from spatialvid.render import rasterize

    with torch.no_grad():
        return rasterize(means, quats, scales, opac, cols, cams.viewmats()[i], cams.Ks()[i], int(cams.width[i]),
                         int(cams.height[i]), backend="cpu")
