"""The device setting and the CUDA path.

CPU-side (run everywhere): ``--device`` resolution and its errors, the CLI's one-line errors, an explicit
``--device cpu`` render, trainer state on the configured device and checkpoint loading onto it, the
sync-free strategy accumulation, the int32 guard of the tile lists.

GPU-side (skipped with the reason without CUDA): CUDA kernels vs the C++ CPU kernels vs the PyTorch reference,
forward and backward (antialiasing, background, SH degree 0..3, odd sizes, zero Gaussians, Gaussians behind
the camera), the int32 guard, host syncs per training step, checkpoints across devices, a short training run
on the GPU reaching the CPU run's PSNR, a CLI render on the GPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatialvid.cameras import Cameras
from spatialvid.cli import main
from spatialvid.device import check_backend, resolve_device
from spatialvid.errors import SpatialvidError
from spatialvid.gaussians import Gaussians
from spatialvid.render import rasterize
from spatialvid.scene import Scene

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
no_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the error shown when CUDA is missing")

FWD_TOL = 1e-4
BWD_TOL = 1e-3


def make_scene(seed=0, n=400, width=64, height=48, sh_degree=None, behind=0):
    """Random Gaussians in front of a camera near the origin looking down +z (OpenCV); ``behind`` of them
    are put behind the camera (z < 0) or between it and the near plane."""
    g = torch.Generator().manual_seed(seed)
    f = 0.8 * width
    z = torch.rand(n, generator=g) * 4.0 + 2.0
    if behind:
        z[:behind] = torch.linspace(-3.0, 0.005, behind)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * torch.tensor([width / f, height / f]) * 1.3 * z.abs()[:, None]
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.6 - 3.5)
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = (torch.rand(n, 3, generator=g) if sh_degree is None
              else torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.4)
    a = 0.05
    viewmat = torch.eye(4)
    viewmat[:3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    viewmat[:3, 3] = torch.tensor([0.05, -0.03, 0.1])
    K = torch.tensor([[f, 0, width / 2 + 0.3], [0, f * 1.02, height / 2 - 0.2], [0, 0, 1]])
    return [means, quats, scales, opac, colors, viewmat, K], width, height


def run(inputs, width, height, backend, device="cpu", **kw):
    """Forward + backward of a fixed random loss; returns (output, gradients) on the CPU."""
    ins = [t.detach().clone().to(device).requires_grad_(i < 5) for i, t in enumerate(inputs)]
    out = rasterize(*ins[:5], ins[5], ins[6], width, height, backend=backend, **kw)
    out.means2d.retain_grad()
    g = torch.Generator().manual_seed(123)
    w_rgb = torch.randn(height, width, 3, generator=g).to(device)
    w_a = torch.randn(height, width, generator=g).to(device)
    w_d = torch.randn(height, width, generator=g).to(device)
    ((out.rgb * w_rgb).sum() + (out.alpha * w_a).sum() + (out.depth * w_d).sum()).backward()
    grads = {k: t.grad.cpu() for k, t in zip(["means", "quats", "scales", "opacities", "colors"], ins)}
    grads["means2d"] = out.means2d.grad.cpu() if out.means2d.grad is not None else torch.zeros_like(grads["means"][:, :2])
    return out, grads


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


# ------------------------------------------------------------------------------------------------
# CPU side: the device setting
# ------------------------------------------------------------------------------------------------
def test_resolve_device_names_and_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("auto", backend="cpu") == torch.device("cpu")  # --backend cpu alone: the CPU
    with pytest.raises(SpatialvidError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(SpatialvidError, match="cuda:N"):
        resolve_device("cuda:x")
    with pytest.raises(SpatialvidError, match="--device cpu"):
        check_backend("cpu", torch.device("cuda", 0))
    with pytest.raises(SpatialvidError, match="--backend cuda needs --device cuda"):
        check_backend("cuda", torch.device("cpu"))
    check_backend("torch", torch.device("cpu"))
    check_backend("auto", torch.device("cpu"))


@no_cuda
def test_device_cuda_without_cuda_is_one_clear_line():
    with pytest.raises(SpatialvidError, match="CUDA is not available.*--device cpu"):
        resolve_device("cuda")


@no_cuda
@pytest.mark.parametrize("argv", [
    ["render", "SCENE", "-o", "OUT/x.mp4", "--device", "cuda"],
    ["fill", "SCENE", "--path", "orbit", "--device", "cuda"],
    ["view", "SCENE", "--device", "cuda"],
    ["reconstruct", "SCENE", "-o", "OUT/scene", "--device", "cuda"],
])
def test_cli_device_cuda_without_cuda_exits_2_with_one_line(argv, tmp_path, capsys):
    argv = [a.replace("SCENE", str(tmp_path / "missing")).replace("OUT", str(tmp_path)) for a in argv]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"spatialvid {argv[0]}: error: device 'cuda': CUDA is not available" in err
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "scene").exists()


def test_cli_backend_device_mismatch_is_one_line(tmp_path, capsys):
    rc = main(["render", str(tmp_path / "missing"), "-o", str(tmp_path / "x.mp4"), "--device", "cpu",
               "--backend", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--backend cuda needs --device cuda" in err


@pytest.fixture(scope="module")
def blob_scene(tmp_path_factory):
    torch.manual_seed(0)
    g = Gaussians.from_points(torch.randn(1500, 3) * 0.5, torch.rand(1500, 3), scale=0.08, opacity=0.8)
    cams = Cameras.cat([Cameras.look_at([3 * math.cos(a), 3 * math.sin(a), 1.0], [0, 0, 0], up=(0, 0, 1),
                                        fov_deg=50, width=48, height=36) for a in np.linspace(0, 6, 4)])
    d = tmp_path_factory.mktemp("blob") / "scene"
    Scene(g, cams, {"up": [0, 0, 1]}).save(d)
    return d


def _render_frames(scene_dir, out, *extra):
    from PIL import Image

    assert main(["render", str(scene_dir), "--path", "orbit", "--frames", "2", "-o", str(out), "--quiet",
                 *extra]) == 0
    return [np.asarray(Image.open(p)) for p in sorted((out / "rgb").glob("*.png"))]


def test_cli_render_device_cpu_explicit_matches_default(blob_scene, tmp_path):
    import json

    a = _render_frames(blob_scene, tmp_path / "auto")
    b = _render_frames(blob_scene, tmp_path / "cpu", "--device", "cpu")
    assert len(a) == len(b) == 2 and a[0].std() > 0
    for x, y in zip(a, b):  # without a GPU, auto is the CPU: bit-identical
        if HAS_CUDA:
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
        else:
            np.testing.assert_array_equal(x, y)
    assert json.loads((tmp_path / "cpu" / "render.json").read_text())["device"] == "cpu"


def _toy():
    from test_train import _toy_cfg, _toy_data

    return _toy_data, _toy_cfg


def test_trainer_state_lives_on_the_configured_device_and_checkpoints_load_onto_it(tmp_path):
    from spatialvid.train import Trainer
    from spatialvid.train.checkpoint import checkpoint_path, load_checkpoint

    toy_data, toy_cfg = _toy()
    data = toy_data(n_cams=8, size=24)
    cfg = toy_cfg(steps=12, checkpoint_every=0, device="cpu", densify_start=2, densify_every=5, densify_stop=11)
    tr = Trainer(data, cfg, tmp_path, progress=False)
    tr.train(until=11)
    tr.save_checkpoint()
    dev = torch.device("cpu")
    assert tr.device == dev and all(p.device == dev for p in tr.params.values())
    assert all(v.device == dev for v in tr.strategy_state.values())
    assert tr.viewmats.device == dev and tr.image(0).device == dev
    ck = load_checkpoint(checkpoint_path(tmp_path))  # map_location="cpu": whatever device wrote it
    assert all(v.device == dev for v in ck["params"].values())
    again = Trainer(data, cfg, tmp_path, progress=False)
    again.resume()
    for k, p in again.params.items():
        assert p.device == again.device and torch.equal(p, tr.params[k])
        st = again.optimizers[k].state.get(p, {})
        assert "exp_avg" in st or k == "shN", k  # shN is unused before the SH degree rises
        if st:
            assert st["exp_avg"].device == p.device and st["exp_avg"].shape == p.shape
    # a replaced image is seen by the trainer (device copies follow data.images)
    data.images[0] = torch.zeros_like(data.images[0])
    assert again.image(0).abs().sum() == 0


def test_strategy_accumulation_without_boolean_indexing_matches_indexing():
    """The per-step accumulation uses torch.where (no host sync); same numbers as masked indexing."""
    from types import SimpleNamespace

    from spatialvid.train import DefaultStrategy

    g = torch.Generator().manual_seed(0)
    n = 500
    s = DefaultStrategy(1.0, verbose=False)
    state = s.initialize_state({"means": torch.zeros(n, 3)})
    ref = {k: v.clone() for k, v in state.items()}
    for _ in range(3):
        means2d = torch.zeros(n, 2, requires_grad=True)
        means2d.grad = torch.randn(n, 2, generator=g)
        radii = (torch.rand(n, generator=g) * 20).int() * (torch.rand(n, generator=g) > 0.4).int()
        out = SimpleNamespace(means2d=means2d, radii=radii, width=64, height=48)
        s.accumulate(state, out)
        gn = torch.stack([means2d.grad[:, 0] * 32, means2d.grad[:, 1] * 24], -1).norm(dim=-1)
        vis = radii > 0
        ref["grad2d"][vis] += gn[vis]
        ref["count"][vis] += 1
        ref["max_radii"][vis] = torch.maximum(ref["max_radii"][vis], radii[vis].float() / 64)
    for k in ref:
        assert torch.equal(state[k], ref[k]), k
    assert 0 < int((state["count"] > 0).sum()) < n


def _huge_scene(n=2100, side=16384, device="cpu"):
    """n Gaussians each covering a whole side x side image: n * (side/16)^2 > 2^31 tile pairs."""
    f = 0.8 * side
    means = torch.zeros(n, 3)
    means[:, 2] = 2.0 + torch.arange(n) * 1e-4
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
    scales = torch.full((n, 3), 2.0)
    opac = torch.full((n,), 0.9)
    colors = torch.rand(n, 3)
    K = torch.tensor([[f, 0, side / 2], [0, f, side / 2], [0, 0, 1]])
    return [t.to(device) for t in (means, quats, scales, opac, colors, torch.eye(4), K)], side


def test_too_many_tile_intersections_is_a_clear_error_cpu():
    (means, quats, scales, opac, colors, vm, K), side = _huge_scene()
    with pytest.raises(SpatialvidError, match="too many tile intersections for int32"):
        rasterize(means, quats, scales, opac, colors, vm, K, side, side, backend="cpu")


# ------------------------------------------------------------------------------------------------
# GPU side
# ------------------------------------------------------------------------------------------------
def _compare_three(inputs, w, h, **kw):
    ref, gref = run(inputs, w, h, "torch", **kw)
    cpu, gcpu = run(inputs, w, h, "cpu", **kw)
    cu, gcu = run(inputs, w, h, "cuda", device="cuda", **kw)
    assert cu.backend == "cuda" and cu.rgb.is_cuda
    for k in ("rgb", "alpha", "depth"):
        a, b, c = getattr(cu, k).detach().cpu(), getattr(cpu, k).detach(), getattr(ref, k).detach()
        if a.numel():
            assert (a - c).abs().max() < FWD_TOL, f"{k}: cuda vs reference"
            assert (a - b).abs().max() < FWD_TOL, f"{k}: cuda vs cpu"
    assert torch.equal(cu.radii.cpu(), cpu.radii)
    assert (cu.count.cpu() != cpu.count).float().mean() < 1e-3
    for name in gref:
        if gref[name].abs().max() == 0:
            assert gcu[name].abs().max() == 0, name
            continue
        assert torch.isfinite(gcu[name]).all(), name
        assert rel_err(gcu[name], gref[name]) < BWD_TOL, f"grad {name}: cuda vs reference"
        assert rel_err(gcu[name], gcpu[name]) < BWD_TOL, f"grad {name}: cuda vs cpu"
    return cu, gcu


@needs_cuda
@pytest.mark.parametrize("sh_degree", [None, 0, 1, 2, 3])
def test_cuda_matches_cpu_and_reference_sh(sh_degree):
    inputs, w, h = make_scene(seed=1 + (sh_degree or 0), n=1500, width=80, height=60, sh_degree=sh_degree)
    cu, _ = _compare_three(inputs, w, h)
    assert cu.num_intersections > 500 and cu.alpha.max() > 0.5


@needs_cuda
@pytest.mark.parametrize("size", [(37, 29), (1, 1), (65, 17), (129, 3)])
def test_cuda_odd_sizes(size):
    w, h = size
    inputs, _, _ = make_scene(seed=7, n=600, width=w, height=h, sh_degree=1)
    cu, _ = _compare_three(inputs, w, h)
    assert cu.rgb.shape == (h, w, 3)


@needs_cuda
def test_cuda_antialiased_and_background():
    inputs, w, h = make_scene(seed=3, n=1200, width=72, height=40, sh_degree=2)
    cu, _ = _compare_three(inputs, w, h, antialiased=True, background=torch.tensor([0.2, 0.5, 0.9]))
    empty = cu.alpha.detach().cpu() < 1e-6
    if empty.any():
        assert torch.allclose(cu.rgb.detach().cpu()[empty], torch.tensor([0.2, 0.5, 0.9]).expand(int(empty.sum()), 3))


@needs_cuda
def test_cuda_gaussians_behind_the_camera():
    inputs, w, h = make_scene(seed=5, n=800, width=64, height=48, behind=200)
    cu, g = _compare_three(inputs, w, h)
    assert (cu.radii[:200] == 0).all() and (cu.radii[200:] > 0).any()
    assert g["means"][:200].abs().max() == 0 and g["opacities"][:200].abs().max() == 0


@needs_cuda
def test_cuda_zero_gaussians():
    inputs, w, h = make_scene(n=0, width=33, height=20)
    out, g = run(inputs, w, h, "cuda", device="cuda", background=torch.tensor([1.0, 0.0, 0.0]))
    assert out.num_intersections == 0 and (out.alpha == 0).all()
    assert torch.equal(out.rgb.cpu(), torch.tensor([1.0, 0.0, 0.0]).expand(h, w, 3))
    assert g["means"].shape == (0, 3)


@needs_cuda
def test_too_many_tile_intersections_is_a_clear_error_cuda():
    (means, quats, scales, opac, colors, vm, K), side = _huge_scene(device="cuda")
    with pytest.raises(SpatialvidError, match="too many tile intersections for int32"):
        rasterize(means, quats, scales, opac, colors, vm, K, side, side, backend="cuda")


@needs_cuda
def test_cuda_binding_rejects_wrong_device_and_dtype():
    from spatialvid.render import backend as B

    ext = B.build_cuda_extension()
    inputs, w, h = make_scene(n=10)
    means, quats, scales, _, _, vm, K = [t.cuda() for t in inputs]
    with pytest.raises(RuntimeError, match="quats must be on cuda"):
        ext.project_fwd(means, quats.cpu(), scales, vm, K, w, h, 0.01, 1e10, 0.3, False)
    with pytest.raises(RuntimeError, match="scales must be Float"):
        ext.project_fwd(means, quats, scales.double(), vm, K, w, h, 0.01, 1e10, 0.3, False)
    with pytest.raises(RuntimeError, match="quats has 20 elements, expected 40"):
        ext.project_fwd(means, quats[:5], scales, vm, K, w, h, 0.01, 1e10, 0.3, False)


@needs_cuda
def test_cuda_training_step_host_syncs():
    """A training step (no densification) waits for the GPU at most at the tile-pair count and the stats."""
    from spatialvid.train import Trainer

    toy_data, toy_cfg = _toy()
    tr = Trainer(toy_data(), toy_cfg(steps=50, device="cuda", backend="auto", densify_stop=0), None, progress=False)
    tr.train_step(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        import warnings

        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            for s in range(1, 4):
                tr.train_step(s)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(r.message) for r in rec if "synchroniz" in str(r.message)]
    assert len(syncs) <= 3 * 3, syncs  # per step: intersect's pair count, the stats, one spare


@needs_cuda
def test_checkpoints_move_between_cuda_and_cpu(tmp_path):
    from spatialvid.train import Trainer

    toy_data, toy_cfg = _toy()
    data = toy_data()
    gpu = Trainer(data, toy_cfg(steps=30, checkpoint_every=20, device="cuda", backend="auto"), tmp_path,
                  progress=False)
    gpu.train(until=20)
    assert gpu.params["means"].is_cuda
    cpu = Trainer(data, toy_cfg(steps=30, checkpoint_every=20, device="cpu", backend="auto"), tmp_path,
                  progress=False)
    assert cpu.resume() == 20
    for k, p in cpu.params.items():
        assert not p.is_cuda and torch.equal(p, gpu.params[k].cpu())
        st = cpu.optimizers[k].state.get(p, {})
        assert all(not v.is_cuda for key, v in st.items() if key != "step")
    cpu.train()
    back = Trainer(data, toy_cfg(steps=40, checkpoint_every=20, device="cuda", backend="auto"), tmp_path,
                   progress=False)
    cpu.save_checkpoint()
    assert back.resume() == 30 and back.params["means"].is_cuda
    back.train()
    assert back.step == 40


@needs_cuda
@pytest.mark.slow
def test_gpu_training_reaches_the_cpu_psnr():
    from spatialvid.train import Trainer

    toy_data, toy_cfg = _toy()
    res = {}
    for dev, be in (("cpu", "cpu"), ("cuda", "cuda")):
        tr = Trainer(toy_data(), toy_cfg(steps=200, lr_sh0=0.01, device=dev, backend=be), None, progress=False)
        tr.train()
        assert tr.params["means"].device.type == dev
        res[dev] = tr.evaluate(save_images=False)["psnr"]
    assert res["cpu"] > 21
    assert res["cuda"] >= res["cpu"] - 0.5, res


@needs_cuda
def test_cli_render_on_cuda_matches_cpu(blob_scene, tmp_path):
    a = _render_frames(blob_scene, tmp_path / "cpu", "--device", "cpu")
    b = _render_frames(blob_scene, tmp_path / "cuda", "--device", "cuda")
    for x, y in zip(a, b):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


@needs_cuda
def test_fill_runs_on_cuda(blob_scene):
    from spatialvid.device import move_scene
    from spatialvid.generate import fill_view

    scene = move_scene(Scene.load(blob_scene), resolve_device("cuda"))
    cam = Cameras.look_at([0.0, 3.5, 0.5], [0, 0, 0], up=(0, 0, 1), fov_deg=80, width=48, height=36)
    n0 = len(scene.gaussians)
    res = fill_view(scene, cam, inpainter="classical", depth="classical", fit_iters=3)
    assert res.added > 0 and len(scene.gaussians) == n0 + res.added
    assert scene.gaussians.means.is_cuda
