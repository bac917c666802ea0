"""Rasterizer: C++ CPU kernels vs the PyTorch reference (forward, backward, stages), gradcheck of the reference,
edge cases, errors. CUDA-vs-CPU tests run only where a GPU is present."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.gaussians import Gaussians
from spatialvid.render import _torch_impl as ti
from spatialvid.render import backend as B
from spatialvid.render import rasterize, render_gaussians

FWD_TOL = 1e-4
BWD_TOL = 1e-3


@pytest.fixture(scope="module")
def ext():
    return B.build_cpu_extension()


def make_scene(seed=0, n=400, width=64, height=48, sh_degree=None, depth=(2.0, 6.0), scale=(-3.5, 0.6),
               dtype=torch.float32):
    """Random Gaussians in front of a camera at the origin looking down +z (OpenCV)."""
    g = torch.Generator().manual_seed(seed)
    f = 0.8 * width
    z = torch.rand(n, generator=g) * (depth[1] - depth[0]) + depth[0]
    xy = (torch.rand(n, 2, generator=g) - 0.5) * torch.tensor([width / f, height / f]) * 1.3 * z[:, None]
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * scale[1] + scale[0])
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.4
    ang = 0.05
    R = torch.tensor([[math.cos(ang), 0, math.sin(ang)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]])
    viewmat = torch.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = torch.tensor([0.05, -0.03, 0.1])
    K = torch.tensor([[f, 0, width / 2 + 0.3], [0, f * 1.02, height / 2 - 0.2], [0, 0, 1]])
    ts = [means, quats, scales, opac, colors, viewmat, K]
    return [t.to(dtype) for t in ts], width, height


def run(inputs, width, height, backend, grad=True, weights_seed=123, **kw):
    ins = [t.detach().clone().requires_grad_(grad) for t in inputs[:6]] + [inputs[6]]
    out = rasterize(*ins[:5], ins[5], ins[6], width, height, backend=backend, **kw)
    grads = None
    if grad:
        out.means2d.retain_grad()
        g = torch.Generator().manual_seed(weights_seed)
        h, w = height, width
        loss = ((out.rgb * torch.randn(h, w, 3, generator=g)).sum() + (out.alpha * torch.randn(h, w, generator=g)).sum()
                + (out.depth * torch.randn(h, w, generator=g)).sum())
        loss.backward()
        grads = {name: t.grad for name, t in zip(["means", "quats", "scales", "opacities", "colors", "viewmat"], ins)}
        grads["means2d"] = out.means2d.grad
    return out, grads


def assert_forward_close(a, b):
    for k in ("rgb", "alpha", "depth"):
        err = (getattr(a, k) - getattr(b, k)).abs().max().item() if getattr(a, k).numel() else 0.0
        assert err < FWD_TOL, f"{k}: max abs err {err}"
    assert torch.equal(a.count, b.count), f"count differs at {(a.count != b.count).sum().item()} pixels"
    assert torch.equal(a.radii, b.radii)
    assert torch.equal(a.visible, b.visible)


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def assert_grads_close(ga, gb):
    for name in gb:
        assert ga[name] is not None and gb[name] is not None, name
        assert torch.isfinite(ga[name]).all(), name
        if gb[name].abs().max() == 0:
            assert ga[name].abs().max() == 0, name
            continue
        e = rel_err(ga[name], gb[name])
        assert e < BWD_TOL, f"grad {name}: rel err {e}"


# ------------------------------------------------------------------------------------------------
# forward + backward, CPU vs reference
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sh_degree", [None, 0, 1, 2, 3])
def test_cpu_matches_reference_random_scene(sh_degree):
    inputs, w, h = make_scene(seed=1 + (sh_degree or 0), sh_degree=sh_degree)
    ref, gref = run(inputs, w, h, "torch")
    cpu, gcpu = run(inputs, w, h, "cpu")
    assert ref.num_intersections > 100 and ref.alpha.max() > 0.5  # the scene actually covers pixels
    assert_forward_close(cpu, ref)
    assert_grads_close(gcpu, gref)


@pytest.mark.parametrize("size", [(37, 29), (16, 16), (1, 1), (65, 17)])
def test_cpu_matches_reference_odd_sizes(size):
    w, h = size
    inputs, _, _ = make_scene(seed=7, n=300, width=w, height=h, sh_degree=1)
    ref, gref = run(inputs, w, h, "torch")
    cpu, gcpu = run(inputs, w, h, "cpu")
    assert ref.rgb.shape == (h, w, 3) and cpu.rgb.shape == (h, w, 3)
    assert_forward_close(cpu, ref)
    assert_grads_close(gcpu, gref)


def test_background_antialiased_and_dense_early_stop():
    # many opaque overlapping Gaussians: most pixels hit the T < 1e-4 stop
    inputs, w, h = make_scene(seed=3, n=1500, width=48, height=40, scale=(-2.0, 0.3))
    inputs[3] = torch.full_like(inputs[3], 0.97)
    bg = torch.tensor([0.2, 0.5, 0.9])
    for aa in (False, True):
        ref, gref = run(inputs, w, h, "torch", background=bg, antialiased=aa)
        cpu, gcpu = run(inputs, w, h, "cpu", background=bg, antialiased=aa)
        assert_forward_close(cpu, ref)
        assert_grads_close(gcpu, gref)
        assert (ref.alpha > 1 - 1e-3).float().mean() > 0.5
    # background shows where there is nothing
    empty, _ = run([t[:0] if t.dim() and t.shape[0] == 1500 else t for t in inputs], w, h, "cpu", grad=False,
                   background=bg)
    assert torch.allclose(empty.rgb, bg.expand(h, w, 3))


def test_zero_gaussians():
    inputs, w, h = make_scene(seed=0, n=0)
    for be in ("torch", "cpu"):
        out, grads = run(inputs, w, h, be)
        assert out.rgb.shape == (h, w, 3) and float(out.rgb.detach().abs().sum()) == 0.0
        assert float(out.alpha.detach().sum()) == 0 and int(out.count.sum()) == 0 and float(out.depth.detach().sum()) == 0
        assert out.num_intersections == 0 and grads["means"].shape == (0, 3)


def test_behind_camera_and_near_plane():
    inputs, w, h = make_scene(seed=4, n=300)
    means = inputs[0]
    # rotate the camera-space z of a third of them behind the camera, a third straddling the near plane
    vm = inputs[5]
    cam = means @ vm[:3, :3].T + vm[:3, 3]
    cam[:100, 2] = -cam[:100, 2]
    cam[100:200, 2] = torch.linspace(-0.05, 0.05, 100)
    inputs[0] = (cam - vm[:3, 3]) @ vm[:3, :3]
    ref, gref = run(inputs, w, h, "torch", near=0.01)
    cpu, gcpu = run(inputs, w, h, "cpu", near=0.01)
    assert_forward_close(cpu, ref)
    assert_grads_close(gcpu, gref)
    z = inputs[0] @ vm[:3, :3].T + vm[:3, 3]
    assert not cpu.visible[z[:, 2] <= 0.01].any()
    assert torch.isfinite(gcpu["means"]).all()


def test_huge_and_subpixel_gaussians():
    inputs, w, h = make_scene(seed=5, n=200)
    s = inputs[2]
    s[:5] = 3.0  # covers the whole image many times over
    s[5:100] = 1e-4  # far below a pixel: only the 0.3 px filter is left
    inputs[2] = s
    ref, gref = run(inputs, w, h, "torch")
    cpu, gcpu = run(inputs, w, h, "cpu")
    assert_forward_close(cpu, ref)
    assert_grads_close(gcpu, gref)
    assert (cpu.radii[:5] > max(w, h)).all()


def test_gaussians_on_tile_borders():
    # means projected exactly onto tile corners and edges (multiples of 16 px)
    w, h = 64, 48
    inputs, _, _ = make_scene(seed=6, n=64, width=w, height=h, scale=(-4.0, 0.3))
    vm = torch.eye(4)
    f = 50.0
    K = torch.tensor([[f, 0, 0.0], [0, f, 0.0], [0, 0, 1]])
    u = torch.tensor([0.0, 16.0, 32.0, 48.0, 64.0, 15.5, 16.5, 31.999])
    v = torch.tensor([0.0, 16.0, 32.0, 48.0, 8.0, 24.0, 40.0, 47.5])
    uu, vv = torch.meshgrid(u, v, indexing="ij")
    z = torch.full((64,), 3.0)
    means = torch.stack([uu.reshape(-1) * z / f, vv.reshape(-1) * z / f, z], -1)
    inputs = [means, inputs[1], inputs[2], inputs[3], inputs[4], vm, K]
    ref, gref = run(inputs, w, h, "torch")
    cpu, gcpu = run(inputs, w, h, "cpu")
    assert torch.allclose(cpu.means2d[:, 0], uu.reshape(-1), atol=1e-4)
    assert_forward_close(cpu, ref)
    assert_grads_close(gcpu, gref)


# ------------------------------------------------------------------------------------------------
# stage by stage
# ------------------------------------------------------------------------------------------------
def test_projection_stage_matches(ext):
    (means, quats, scales, opac, colors, vm, K), w, h = make_scene(seed=8, n=500)
    for aa in (False, True):
        r = ti.project(means, quats, scales, vm, K, w, h, 0.01, 1e10, aa)
        c = ext.project_fwd(means, quats, scales, vm, K, w, h, 0.01, 1e10, ti.EPS2D, aa)
        valid = r[3] > 0
        assert torch.equal(r[3], c[3])
        for i, name in [(0, "means2d"), (1, "conics"), (2, "depths"), (4, "comp"), (5, "cov2d")]:
            assert torch.allclose(r[i][valid], c[i][valid], rtol=1e-4, atol=1e-4), name


def test_sh_stage_matches(ext):
    g = torch.Generator().manual_seed(9)
    dirs = torch.randn(300, 3, generator=g) * 3
    coeffs = torch.randn(300, 16, 3, generator=g) * 2.5
    for deg in range(4):
        r = ti.eval_sh(dirs, coeffs, deg)
        c = ext.sh_fwd(deg, dirs, coeffs)
        assert torch.allclose(r, c, atol=1e-5), deg
        assert (c >= 0).all() and (c == 0).any()  # the clamp is exercised
        gcol = torch.randn(300, 3, generator=g)
        d = dirs.clone().requires_grad_(True)
        k = coeffs.clone().requires_grad_(True)
        (ti.eval_sh(d, k, deg) * gcol).sum().backward()
        gk, gd = ext.sh_bwd(deg, dirs, coeffs, gcol)
        assert rel_err(gk, k.grad) < 1e-5, deg
        if deg == 0:
            assert d.grad is None and gd.abs().max() == 0  # degree 0 does not depend on the direction
        else:
            assert rel_err(gd, d.grad) < 1e-4, deg


def test_intersection_stage_matches(ext):
    (means, quats, scales, opac, colors, vm, K), w, h = make_scene(seed=10, n=600, width=70, height=50)
    m2d, con, dep, rad, comp, cov = ti.project(means, quats, scales, vm, K, w, h)
    box, tb = ti.tile_bounds(m2d, cov, opac, rad, w, h)
    gids, offs = ti.intersect(tb, dep, w, h)
    cg, co, cbox, crad = ext.intersect(m2d, cov, opac, rad, dep, w, h)
    assert torch.equal(cbox, box)
    assert torch.equal(co.long(), offs) and torch.equal(cg.long(), gids)
    # every tile list is sorted by depth
    for t in range(len(offs) - 1):
        d = dep[gids[offs[t]:offs[t + 1]]]
        assert (d[1:] >= d[:-1]).all()


def test_box_is_conservative():
    """No pixel outside a Gaussian's box can reach alpha >= 1/255 (brute force over the whole image)."""
    (means, quats, scales, opac, colors, vm, K), w, h = make_scene(seed=11, n=150, width=40, height=30)
    m2d, con, dep, rad, comp, cov = ti.project(means, quats, scales, vm, K, w, h)
    box, _ = ti.tile_bounds(m2d, cov, opac, rad, w, h)
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    for i in torch.nonzero(rad > 0).reshape(-1).tolist():
        dx, dy = m2d[i, 0] - xs, m2d[i, 1] - ys
        a, b, c = con[i]
        alpha = opac[i] * torch.exp(-0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy)
        inside = torch.zeros(h, w, dtype=torch.bool)
        x0, y0, x1, y1 = box[i].tolist()
        inside[y0:y1, x0:x1] = True
        assert not ((alpha >= 1 / 255) & ~inside).any(), i


# ------------------------------------------------------------------------------------------------
# gradcheck of the reference in float64 (every stage end to end)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sh_degree,aa", [(None, False), (1, True)])
def test_reference_gradcheck_float64(sh_degree, aa):
    inputs, w, h = make_scene(seed=12, n=3, width=10, height=8, sh_degree=sh_degree, depth=(2.0, 3.0),
                              scale=(-1.5, 0.2), dtype=torch.float64)
    means, quats, scales, opac, colors, vm, K = inputs
    opac = opac.clamp(0.3, 0.8)

    def f(means, quats, scales, opac, colors, vm):
        out = rasterize(means, quats, scales, opac, colors, vm, K, w, h, backend="torch", antialiased=aa,
                        background=torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
        return out.rgb, out.alpha, out.depth

    args = tuple(t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors, vm))
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_reference_is_chunked_consistently():
    """A tiny chunk budget (many chunks, checkpointed) gives the same image and gradients as one chunk."""
    (means, quats, scales, opac, colors, vm, K), w, h = make_scene(seed=13, n=300, width=40, height=32)
    m2d, con, dep, rad, comp, cov = ti.project(means, quats, scales, vm, K, w, h)
    _, tb = ti.tile_bounds(m2d, cov, opac, rad, w, h)
    gids, offs = ti.intersect(tb, dep, w, h)
    outs = []
    for budget in (1, 1 << 24):
        c = colors.clone().requires_grad_(True)
        rgb, alpha, dacc, cnt = ti.rasterize_tiles(m2d, con, c, opac, dep, gids, offs, w, h, budget=budget)
        (rgb.sum() + alpha.sum()).backward()
        outs.append((rgb.detach(), cnt, c.grad))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-6) and torch.equal(outs[0][1], outs[1][1])
    assert torch.allclose(outs[0][2], outs[1][2], atol=1e-5)


# ------------------------------------------------------------------------------------------------
# API behaviour
# ------------------------------------------------------------------------------------------------
def test_render_gaussians_and_means2d_grad():
    g = torch.Generator().manual_seed(14)
    xyz = torch.randn(500, 3, generator=g) * 0.5
    gs = Gaussians.from_points(xyz, torch.rand(500, 3, generator=g), scale=0.05, opacity=0.6, sh_degree=2)
    cam = Cameras.look_at(eye=(3.0, 0.0, 0.5), target=(0.0, 0.0, 0.0), fov_deg=50, width=48, height=36)
    for p in (gs.means, gs.log_scales, gs.sh0, gs.shN):
        p.requires_grad_(True)
    out = render_gaussians(gs, cam, backend="cpu")
    ref = render_gaussians(gs, cam, backend="torch")
    assert out.rgb.shape == (36, 48, 3) and out.alpha.max() > 0.9
    assert_forward_close(out, ref)
    out.means2d.retain_grad()
    out.rgb.mean().backward()
    g2d = out.means2d.grad
    assert g2d.shape == (500, 2) and g2d[out.visible].abs().sum() > 0 and g2d[~out.visible].abs().sum() == 0
    # the projected centres agree with Cameras.project
    uv, _ = cam.project(gs.means.detach())
    assert torch.allclose(out.means2d[out.visible], uv[0][out.visible], atol=1e-3)


def test_depth_is_expected_camera_z():
    # a single large opaque Gaussian, fronto-parallel, at z = 4: depth == 4 wherever alpha > 0
    means = torch.tensor([[0.0, 0.0, 4.0]])
    quats = torch.tensor([[1.0, 0, 0, 0]])
    scales = torch.tensor([[3.0, 3.0, 0.01]])
    out = rasterize(means, quats, scales, torch.tensor([0.9]), torch.tensor([[1.0, 0.5, 0.25]]), torch.eye(4),
                    torch.tensor([[20.0, 0, 16], [0, 20.0, 16], [0, 0, 1]]), 32, 32, backend="cpu")
    m = out.alpha > 0
    assert m.all() and torch.allclose(out.depth[m], torch.tensor(4.0), atol=1e-5)
    assert abs(out.alpha[16, 16].item() - 0.9) < 1e-3  # centre pixel: alpha = opacity * exp(~0)
    assert torch.allclose(out.rgb[16, 16], torch.tensor([1.0, 0.5, 0.25]) * out.alpha[16, 16], atol=1e-5)


@pytest.mark.parametrize("bad", ["shape", "rows", "backend", "size", "sh", "dtype"])
def test_bad_inputs_raise_clear_errors(bad):
    (means, quats, scales, opac, colors, vm, K), w, h = make_scene(seed=0, n=10)
    kw = dict(backend="cpu")
    if bad == "shape":
        means = means[:, :2]
    elif bad == "rows":
        opac = opac[:5]
    elif bad == "backend":
        kw["backend"] = "metal"
    elif bad == "size":
        w = 0
    elif bad == "sh":
        colors = torch.zeros(10, 5, 3)
    elif bad == "dtype":
        means = means.long()
    with pytest.raises(SpatialvidError):
        rasterize(means, quats, scales, opac, colors, vm, K, w, h, **kw)


# ------------------------------------------------------------------------------------------------
# CUDA (only with a GPU)
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("sh_degree", [None, 3])
def test_cuda_matches_cpu(sh_degree):
    inputs, w, h = make_scene(seed=20, n=2000, width=80, height=60, sh_degree=sh_degree)
    cpu, gcpu = run(inputs, w, h, "cpu")
    cu_in = [t.cuda() for t in inputs]
    cuda, gcuda = run(cu_in, w, h, "cuda")
    for k in ("rgb", "alpha", "depth"):
        assert (getattr(cuda, k).cpu() - getattr(cpu, k)).abs().max() < FWD_TOL, k
    assert (cuda.count.cpu() != cpu.count).float().mean() < 1e-3
    for name in gcpu:
        assert rel_err(gcuda[name].cpu(), gcpu[name]) < BWD_TOL, name


def test_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(B, "_cpu_ext", None)
    monkeypatch.setattr(B, "_cpu_error", None)
    monkeypatch.setenv("CXX", "/nonexistent/g++-missing")
    with pytest.raises(SpatialvidError, match="no C\\+\\+ compiler"):
        B.build_cpu_extension()
    monkeypatch.setattr(B, "_cpu_error", None)
    inputs, w, h = make_scene(seed=0, n=20)
    with pytest.warns(UserWarning, match="falling back"):
        out = rasterize(*inputs[:5], inputs[5], inputs[6], w, h)  # auto falls back to the reference, once
    assert out.backend == "torch"
    assert B.cpu_extension_available() is False  # the failure is remembered (no rebuild per call)
    with pytest.raises(SpatialvidError, match="compiler"):
        rasterize(*inputs[:5], inputs[5], inputs[6], w, h, backend="cpu")  # explicit cpu: a clear error


def test_rasterize_batch_matches_single_views():
    from spatialvid.render import rasterize_batch

    (means, quats, scales, opac, colors, vm, K), w, h = make_scene(seed=15, n=200)
    vm2 = vm.clone()
    vm2[:3, 3] += torch.tensor([0.2, 0.0, 0.0])
    outs = rasterize_batch(means, quats, scales, opac, colors, torch.stack([vm, vm2]), torch.stack([K, K]), w, h,
                           backend="cpu")
    assert len(outs) == 2
    for v, o in zip((vm, vm2), outs):
        single = rasterize(means, quats, scales, opac, colors, v, K, w, h, backend="cpu")
        assert torch.equal(single.rgb, o.rgb)
    assert not torch.equal(outs[0].rgb, outs[1].rgb)


def test_cpu_backward_accumulation_paths_agree(monkeypatch):
    """Per-thread buffers (default), atomics (forced) and a single thread give the same gradients."""
    inputs, w, h = make_scene(seed=16, n=800, sh_degree=1)
    _, g_buf = run(inputs, w, h, "cpu")
    monkeypatch.setenv("SPATIALVID_RASTER_ATOMIC", "1")
    _, g_atomic = run(inputs, w, h, "cpu")
    monkeypatch.delenv("SPATIALVID_RASTER_ATOMIC")
    nthreads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, g_single = run(inputs, w, h, "cpu")
    finally:
        torch.set_num_threads(nthreads)
    for name in g_buf:
        assert rel_err(g_atomic[name], g_buf[name]) < 1e-5, name
        assert rel_err(g_single[name], g_buf[name]) < 1e-5, name


NVCC = next((p for p in ("/usr/local/bin/nvcc", "/usr/local/cuda/bin/nvcc") if Path(p).exists()), None)


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
def test_check_nvcc_catches_broken_cuda(tmp_path):
    """cuda_ext/check_nvcc.py (what `make cuda-check` runs) fails on a .cu that does not compile."""
    good = tmp_path / "good.cu"
    good.write_text('#include "gs_math.h"\n__global__ void k(float* x) { x[threadIdx.x] = gs::fast_exp(x[0]); }\n')
    bad = tmp_path / "bad.cu"
    bad.write_text("__global__ void k(float* x) { x[threadIdx.x] = undefined_symbol; }\n")
    script = Path(__file__).resolve().parents[1] / "cuda_ext" / "check_nvcc.py"
    ok = subprocess.run([sys.executable, str(script), "--nvcc", NVCC, "--arch", "80", "--sources", str(good)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run([sys.executable, str(script), "--nvcc", NVCC, "--arch", "80", "--sources", str(bad)],
                          capture_output=True, text=True)
    assert fail.returncode == 1 and "undefined_symbol" in fail.stderr
