"""``rasterize``: differentiable tile-based 3D Gaussian splatting (3DGS / EWA splatting).

One function, several backends with identical maths:

* ``"cpu"``: C++/OpenMP kernels in ``cuda_ext/`` (built on first use, cached),
* ``"cuda"``: CUDA kernels in ``cuda_ext/`` (built with torch's extension tools on a CUDA machine),
* ``"torch"``: the pure-PyTorch reference in :mod:`spatialvid.render._torch_impl`,
* ``"auto"``: the CUDA kernels for CUDA tensors (when they build), the C++ kernels for CPU tensors; the
  reference for float64 inputs or when the C++ build fails (with a one-time warning).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spatialvid.errors import SpatialvidError
from spatialvid.render import _torch_impl as ti
from spatialvid.render import backend as _backend

BACKENDS = ("auto", "cpu", "cuda", "torch")


@dataclass
class RasterOutput:
    """Result of :func:`rasterize`.

    Attributes:
        rgb: [H,W,3] colour, background composited (``rgb + (1 - alpha) * background``).
        alpha: [H,W] accumulated opacity ``1 - T_final``.
        depth: [H,W] expected camera-space z, ``sum(w_i z_i) / alpha`` (0 where alpha == 0).
        count: [H,W] int32, number of Gaussians composited into the pixel (coverage).
        radii: [N] int32, screen radius in px (3 sigma of the largest eigenvalue); 0 = culled / not in view.
        visible: [N] bool, ``radii > 0``.
        means2d: [N,2] pixel coordinates (in the autograd graph: ``means2d.retain_grad()`` before
            ``backward()`` to read the screen-space gradient used by densification).
        conics: [N,3] inverse 2D covariance (a, b, c).
        depths: [N] camera z of each Gaussian.
        num_intersections: number of (tile, Gaussian) pairs composited.
        backend: the backend that produced the result.
        width, height: image size in pixels.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    count: torch.Tensor
    radii: torch.Tensor
    visible: torch.Tensor
    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    num_intersections: int
    backend: str
    width: int = 0
    height: int = 0


def _check(name, t, shape, n=None):
    if not isinstance(t, torch.Tensor):
        raise SpatialvidError(f"rasterize: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "x".join("N" if s is None else str(s) for s in shape)
        raise SpatialvidError(f"rasterize: {name} has shape {tuple(t.shape)}, expected [{want}]")
    if n is not None and t.shape[0] != n:
        raise SpatialvidError(f"rasterize: {name} has {t.shape[0]} rows but means has {n}")
    if not t.is_floating_point():
        raise SpatialvidError(f"rasterize: {name} must be a floating-point tensor (got {t.dtype})")


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``"auto"`` to a concrete backend for tensors on ``device``."""
    if backend not in BACKENDS:
        raise SpatialvidError(f"rasterize: unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        if device.type == "cuda":
            return "cuda" if _backend.cuda_extension_available() else "torch"
        return "cpu" if _backend.cpu_extension_available() else "torch"
    if backend == "cpu" and device.type != "cpu":
        raise SpatialvidError("rasterize: backend 'cpu' needs CPU tensors (move them with .cpu())")
    if backend == "cuda" and device.type != "cuda":
        raise SpatialvidError("rasterize: backend 'cuda' needs CUDA tensors")
    return backend


def rasterize(means, quats, scales, opacities, colors, viewmat, K, width: int, height: int,
              sh_degree: int | None = None, background=None, near: float = 0.01, far: float = 1e10,
              antialiased: bool = False, backend: str = "auto") -> RasterOutput:
    """Render N 3D Gaussians into one pinhole camera.

    Args:
        means: [N,3] world positions. quats: [N,4] rotations (w,x,y,z; normalised internally).
        scales: [N,3] activated standard deviations (world units). opacities: [N] activated, 0..1.
        colors: [N,3] RGB used as-is, or SH coefficients [N,K,3] (K = (d+1)^2, DC first); SH colour is
            ``clamp_min(SH(dir) + 0.5, 0)`` with ``dir = mean - camera_centre``.
        viewmat: [4,4] world-to-camera (OpenCV axes: x right, y down, z forward). K: [3,3] intrinsics (px).
        width, height: image size in pixels. Pixel (px, py) has its centre at (px + 0.5, py + 0.5).
        sh_degree: SH degree to use (default: all of K). background: [3] colour behind the Gaussians
            (default black). near, far: camera-z clipping. antialiased: mip-splatting style 2D filter with
            opacity compensation (else the classic 0.3 px dilation).
        backend: "auto" | "cpu" | "cuda" | "torch".

    Differentiable w.r.t. means, quats, scales, opacities, colors/SH (and viewmat on the torch and CPU
    backends).
    """
    _check("means", means, (None, 3))
    n = means.shape[0]
    _check("quats", quats, (None, 4), n)
    _check("scales", scales, (None, 3), n)
    _check("opacities", opacities, (None,), n)
    if colors.dim() == 2:
        _check("colors", colors, (None, 3), n)
        is_sh = False
    else:
        _check("colors (SH)", colors, (None, None, 3), n)
        is_sh = True
        kb = colors.shape[1]
        d_all = int(round(kb ** 0.5)) - 1
        if (d_all + 1) ** 2 != kb or d_all > 3:
            raise SpatialvidError(f"rasterize: {kb} SH coefficients per channel is not (d+1)^2 for d in 0..3")
        if sh_degree is None:
            sh_degree = d_all
        if not 0 <= sh_degree <= d_all:
            raise SpatialvidError(f"rasterize: sh_degree={sh_degree} needs {(sh_degree + 1) ** 2} coefficients, "
                                  f"got {kb}")
    _check("viewmat", viewmat, (4, 4))
    _check("K", K, (3, 3))
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise SpatialvidError(f"rasterize: image size must be positive, got {width}x{height}")
    if not near > 0 or not far > near:
        raise SpatialvidError(f"rasterize: need 0 < near < far, got near={near}, far={far}")
    dev = means.device
    dt = means.dtype
    if backend == "auto" and dt != torch.float32:
        be = "torch"  # the compiled kernels are float32; float64 (e.g. gradcheck) uses the reference
    else:
        be = resolve_backend(backend, dev)
    viewmat = viewmat.to(device=dev, dtype=dt)
    K = K.to(device=dev, dtype=dt)
    if background is not None:
        background = torch.as_tensor(background, device=dev, dtype=dt).reshape(-1)
        if background.shape[0] != 3:
            raise SpatialvidError(f"rasterize: background must have 3 values, got {background.shape[0]}")

    if be == "torch":
        impl = _backend.TorchStages
    elif be == "cpu":
        if dt != torch.float32:
            raise SpatialvidError("rasterize: the cpu backend works in float32 (use backend='torch' for float64)")
        impl = _backend.cpu_stages()
    else:
        if dt != torch.float32:
            raise SpatialvidError("rasterize: the cuda backend works in float32")
        impl = _backend.cuda_stages()

    means2d, conics, depths, radii, comp, cov2d = impl.project(means, quats, scales, viewmat, K, width, height,
                                                               near, far, antialiased)
    opac = opacities * comp if antialiased else opacities
    if is_sh:
        dirs = ti.view_dirs(means, viewmat)
        cols = impl.eval_sh(dirs, colors, sh_degree)
    else:
        cols = colors
    gids, offsets, radii, aux = impl.intersect(means2d, cov2d, opac, radii, depths, width, height)
    rgb, alpha, dacc, count = impl.rasterize(means2d, conics, cols, opac, depths, gids, offsets, aux, width, height)
    rgb, depth = ti.finish(rgb, alpha, dacc, background)
    return RasterOutput(rgb=rgb, alpha=alpha, depth=depth, count=count, radii=radii, visible=radii > 0,
                        means2d=means2d, conics=conics, depths=depths, num_intersections=int(gids.shape[0]),
                        backend=be, width=width, height=height)


def render_gaussians(gaussians, camera, **kw) -> RasterOutput:
    """Render a :class:`~spatialvid.gaussians.Gaussians` set from one camera (a 1-element
    :class:`~spatialvid.cameras.Cameras`); applies the activations and calls :func:`rasterize`.

    Keyword arguments go to :func:`rasterize` (``sh_degree``, ``background``, ``backend``, ...).
    """
    if len(camera) != 1:
        raise SpatialvidError(f"render_gaussians: expected 1 camera, got {len(camera)}")
    dev = gaussians.means.device
    viewmat = camera.viewmats()[0].to(dev)
    K = camera.Ks()[0].to(dev)
    return rasterize(gaussians.means, gaussians.rotations, gaussians.scales, gaussians.opacities, gaussians.sh,
                     viewmat, K, int(camera.width[0]), int(camera.height[0]), **kw)


def rasterize_batch(means, quats, scales, opacities, colors, viewmats, Ks, width: int, height: int,
                    **kw) -> list[RasterOutput]:
    """:func:`rasterize` for C cameras at once: ``viewmats [C,4,4]``, ``Ks [C,3,3]`` (one image size).

    Returns one :class:`RasterOutput` per camera; gradients from all views accumulate into the inputs.
    """
    if viewmats.dim() != 3 or Ks.dim() != 3 or viewmats.shape[0] != Ks.shape[0]:
        raise SpatialvidError(f"rasterize_batch: viewmats {tuple(viewmats.shape)} and Ks {tuple(Ks.shape)} must be "
                              "[C,4,4] and [C,3,3]")
    return [rasterize(means, quats, scales, opacities, colors, viewmats[i], Ks[i], width, height, **kw)
            for i in range(viewmats.shape[0])]
