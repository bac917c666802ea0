"""Autograd Functions around the compiled kernels (C++ CPU and CUDA share the signatures)."""

from __future__ import annotations

import torch

from spatialvid.errors import SpatialvidError
from spatialvid.render import _torch_impl as ti
from spatialvid.render import backend as _backend


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, means, quats, scales, viewmat, K, width, height, near, far, antialiased):
        m2d, con, dep, rad, comp, cov = ext.project_fwd(means, quats, scales, viewmat, K, width, height, near, far,
                                                        ti.EPS2D, antialiased)
        ctx.save_for_backward(means, quats, scales, viewmat, K, rad)
        ctx.cfg = (ext, width, height, near, far, antialiased)
        ctx.mark_non_differentiable(rad, cov)
        return m2d, con, dep, rad, comp, cov

    @staticmethod
    def backward(ctx, g_m2d, g_con, g_dep, _g_rad, g_comp, _g_cov):
        means, quats, scales, viewmat, K, rad = ctx.saved_tensors
        ext, width, height, near, far, antialiased = ctx.cfg

        def z(g, like):
            return torch.zeros_like(like) if g is None else g

        g_m2d = z(g_m2d, means[:, :2])
        g_con = z(g_con, means)
        g_dep = z(g_dep, means[:, 0])
        g_comp = z(g_comp, means[:, 0])
        want_v = ctx.needs_input_grad[4]
        gm, gq, gs, gv = ext.project_bwd(means, quats, scales, viewmat, K, width, height, near, far, ti.EPS2D,
                                         antialiased, rad, g_m2d, g_con, g_dep, g_comp, want_v)
        return None, gm, gq, gs, (gv if want_v else None), None, None, None, None, None, None


class _SH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, dirs, coeffs, degree):
        ctx.save_for_backward(dirs, coeffs)
        ctx.cfg = (ext, degree)
        return ext.sh_fwd(degree, dirs, coeffs)

    @staticmethod
    def backward(ctx, g):
        dirs, coeffs = ctx.saved_tensors
        ext, degree = ctx.cfg
        gc, gd = ext.sh_bwd(degree, dirs, coeffs, g.contiguous())
        return None, gd, gc, None


class _Raster(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, means2d, conics, colors, opac, depths, gids, offsets, boxes, width, height):
        rgb, alpha, dacc, count, final_t, last = ext.raster_fwd(means2d, conics, colors, opac, depths, gids, offsets,
                                                                boxes, width, height)
        ctx.save_for_backward(means2d, conics, colors, opac, depths, gids, offsets, boxes, final_t, last)
        ctx.cfg = (ext, width, height)
        ctx.mark_non_differentiable(count)
        return rgb, alpha, dacc, count

    @staticmethod
    def backward(ctx, g_rgb, g_alpha, g_dacc, _g_count):
        means2d, conics, colors, opac, depths, gids, offsets, boxes, final_t, last = ctx.saved_tensors
        ext, width, height = ctx.cfg
        H, W = height, width
        dev = means2d.device
        g_rgb = torch.zeros(H, W, 3, device=dev) if g_rgb is None else g_rgb
        g_alpha = torch.zeros(H, W, device=dev) if g_alpha is None else g_alpha
        g_dacc = torch.zeros(H, W, device=dev) if g_dacc is None else g_dacc
        g = ext.raster_bwd(means2d, conics, colors, opac, depths, gids, offsets, boxes, final_t, last,
                           g_rgb, g_alpha, g_dacc, width, height)
        return (None, g[:, 0:2], g[:, 2:5], g[:, 5:8], g[:, 8], g[:, 9], None, None, None, None, None)


class _Stages:
    """Stage implementations backed by a compiled extension (``ext``)."""

    ext_getter = None

    @classmethod
    def project(cls, means, quats, scales, viewmat, K, width, height, near, far, antialiased):
        return _Project.apply(cls.ext_getter(), means, quats, scales, viewmat, K, width, height, float(near),
                              float(far), bool(antialiased))

    @classmethod
    def eval_sh(cls, dirs, coeffs, degree):
        return _SH.apply(cls.ext_getter(), dirs, coeffs, int(degree))

    @classmethod
    def intersect(cls, means2d, cov2d, opacities, radii, depths, width, height):
        try:
            gids, offsets, boxes, radii = cls.ext_getter().intersect(means2d.detach(), cov2d, opacities.detach(),
                                                                     radii, depths.detach(), width, height)
        except RuntimeError as e:  # the int32 guard of the tile lists: a one-line user error
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if "tile intersections" in msg:
                raise SpatialvidError(f"rasterize: {msg.removeprefix('spatialvid rasterizer: ')} "
                                      f"({width}x{height}, {means2d.shape[0]:,} Gaussians)") from None
            raise
        return gids, offsets, radii, boxes

    @classmethod
    def rasterize(cls, means2d, conics, colors, opacities, depths, gids, offsets, aux, width, height):
        return _Raster.apply(cls.ext_getter(), means2d, conics, colors, opacities, depths, gids, offsets, aux,
                             width, height)


class CpuStages(_Stages):
    ext_getter = staticmethod(_backend.build_cpu_extension)


class CudaStages(_Stages):
    ext_getter = staticmethod(_backend.build_cuda_extension)
