"""Pure-PyTorch reference rasterizer, one function per stage (mirrors ``cuda_ext/``).

Every function is dtype-generic (float32 for rendering, float64 for ``gradcheck``) and differentiable
through ordinary autograd. The C++/CUDA kernels implement exactly the same maths (``cuda_ext/gs_math.h``);
tests compare them stage by stage.

Conventions: OpenCV camera axes (x right, y down, z forward), ``viewmat`` world-to-camera, pixel (px, py)
has its centre at continuous image coordinates (px + 0.5, py + 0.5).

Stages:

1. :func:`project` 3D Gaussians -> screen-space mean, conic (inverse 2D covariance), depth, radius,
   antialiasing compensation; culls behind/near/far, degenerate covariances.
2. :func:`eval_sh` colour from SH coefficients and view direction (degree 0..3), ``+0.5``, clamped >= 0.
3. :func:`tile_bounds` / :func:`intersect` per-Gaussian pixel box (alpha >= 1/255 region, small margin)
   -> sorted (tile, depth) pairs and per-tile ranges.
4. :func:`rasterize_tiles` front-to-back compositing, alpha = min(0.99, o * exp(power)), skip alpha < 1/255,
   stop before a Gaussian that would bring transmittance below 1e-4.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from spatialvid.gaussians import quat_to_rotmat

TILE = 16
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
EPS2D = 0.3
BOX_MARGIN = 0.01  # px added to the alpha >= 1/255 box (with a 1e-4 relative pad: conservative under rounding)

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


# ------------------------------------------------------------------------------------------------
# 1. projection
# ------------------------------------------------------------------------------------------------
def project(means, quats, scales, viewmat, K, width: int, height: int, near: float = 0.01,
            far: float = 1e10, antialiased: bool = False, eps2d: float = EPS2D):
    """EWA projection of 3D Gaussians.

    Returns ``means2d [N,2]`` (pixels), ``conics [N,3]`` (a, b, c of the inverse 2D covariance,
    power = -0.5 (a dx^2 + c dy^2) - b dx dy), ``depths [N]`` (camera z), ``radii [N]`` int
    (3 sigma of the largest eigenvalue, 0 = culled), ``comp [N]`` (opacity compensation of the
    antialiasing filter; 1 when ``antialiased`` is False) and ``cov2d [N,3]`` (blurred covariance, for
    the tile boxes). Culled entries have finite placeholder values and radius 0.
    """
    R = viewmat[:3, :3]
    t = viewmat[:3, 3]
    p = means @ R.T + t
    x, y, z = p.unbind(-1)
    zmask = (z > near) & (z < far)
    zs = torch.where(zmask, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    rot = quat_to_rotmat(quats)
    M = rot * scales[:, None, :]
    cov3 = M @ M.transpose(1, 2)
    covc = R @ cov3 @ R.T

    lim_xp = (width - cx) / fx + 0.3 * width / fx
    lim_xn = cx / fx + 0.3 * width / fx
    lim_yp = (height - cy) / fy + 0.3 * height / fy
    lim_yn = cy / fy + 0.3 * height / fy
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_xn), lim_xp)
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_yn), lim_yp)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / (zs * zs), zero, fy / zs, -fy * ty / (zs * zs)], -1).reshape(-1, 2, 3)
    cov2 = J @ covc @ J.transpose(1, 2)
    a0, b, c0 = cov2[:, 0, 0], cov2[:, 0, 1], cov2[:, 1, 1]
    det0 = a0 * c0 - b * b
    a, c = a0 + eps2d, c0 + eps2d
    det = a * c - b * b
    valid = zmask & (det > 0)
    dets = torch.where(valid, det, torch.ones_like(det))
    if antialiased:
        comp = torch.sqrt(torch.clamp_min(det0 / dets, 0.0))
    else:
        comp = torch.ones_like(det)
    conics = torch.stack([c / dets, -b / dets, a / dets], -1)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp_min(mid * mid - dets, 0.1))
        radii = torch.ceil(3.0 * torch.sqrt(lam))
        radii = torch.where(valid, radii, torch.zeros_like(radii)).to(torch.int32)
    cov2d = torch.stack([a, b, c], -1)
    return means2d, conics, z, radii, comp, cov2d


# ------------------------------------------------------------------------------------------------
# 2. spherical harmonics
# ------------------------------------------------------------------------------------------------
def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Real SH basis [N,(degree+1)^2] for unit directions [N,3] (3DGS sign convention)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * xz,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * xy * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def view_dirs(means: torch.Tensor, viewmat: torch.Tensor) -> torch.Tensor:
    """Unnormalised view directions ``means - camera_centre`` [N,3]; centre = -R^T t."""
    R = viewmat[:3, :3]
    t = viewmat[:3, 3]
    campos = -(R.T @ t)
    return means - campos


def eval_sh(dirs: torch.Tensor, coeffs: torch.Tensor, degree: int) -> torch.Tensor:
    """Colour [N,3] = clamp_min(sum_k basis_k(normalize(dirs)) * coeffs[:,k] + 0.5, 0)."""
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    nb = (degree + 1) ** 2
    basis = sh_basis(d, degree)
    col = (basis[:, :, None] * coeffs[:, :nb, :]).sum(1) + 0.5
    return torch.clamp_min(col, 0.0)


# ------------------------------------------------------------------------------------------------
# 3. tile intersection and depth sort
# ------------------------------------------------------------------------------------------------
def tile_bounds(means2d, cov2d, opacities, radii, width: int, height: int, tile: int = TILE):
    """Per-Gaussian pixel box where alpha can reach 1/255 (+margin), clipped to the image.

    Extent along x is ``sqrt(2 ln(255 o) cov_xx)`` (the ellipse {d: d^T cov^-1 d <= 2 ln(255 o)}).
    Returns int32 ``[N,4]`` pixel box (x0, y0, x1, y1; exclusive ends) and tile box, both clipped;
    empty boxes have x0 >= x1 or y0 >= y1.
    """
    with torch.no_grad():
        o = opacities.detach().to(torch.float32)
        lv = torch.log(torch.clamp_min(o * 255.0, 1e-30))
        ok = (radii > 0) & (o * 255.0 >= 1.0)
        lvs = torch.clamp_min(lv, 0.0)
        ex = torch.sqrt(2.0 * lvs * cov2d[:, 0].detach().float()) * 1.0001 + BOX_MARGIN
        ey = torch.sqrt(2.0 * lvs * cov2d[:, 2].detach().float()) * 1.0001 + BOX_MARGIN
        mx, my = means2d[:, 0].detach().float(), means2d[:, 1].detach().float()
        # pixel centre (px + 0.5) within [m - e, m + e]
        x0 = torch.ceil(mx - ex - 0.5).clamp(0, width)
        x1 = (torch.floor(mx + ex - 0.5) + 1).clamp(0, width)
        y0 = torch.ceil(my - ey - 0.5).clamp(0, height)
        y1 = (torch.floor(my + ey - 0.5) + 1).clamp(0, height)
        ok = ok & (x0 < x1) & (y0 < y1) & torch.isfinite(mx) & torch.isfinite(my)
        z = torch.zeros_like(x0)
        box = torch.stack([torch.where(ok, x0, z), torch.where(ok, y0, z), torch.where(ok, x1, z),
                           torch.where(ok, y1, z)], -1).to(torch.int32)
        tb = torch.stack([box[:, 0] // tile, box[:, 1] // tile, (box[:, 2] + tile - 1) // tile,
                          (box[:, 3] + tile - 1) // tile], -1)
        tb = torch.where(ok[:, None], tb, torch.zeros_like(tb))
    return box, tb


def intersect(tile_box: torch.Tensor, depths: torch.Tensor, width: int, height: int, tile: int = TILE):
    """(tile, Gaussian) pairs sorted by tile then depth (ties by index).

    Returns ``gauss_ids [P]`` int64 and ``offsets [num_tiles + 1]`` int64 (tile t owns
    ``gauss_ids[offsets[t]:offsets[t+1]]``), tiles in row-major order.
    """
    tw = (width + tile - 1) // tile
    th = (height + tile - 1) // tile
    ntiles = tw * th
    dev = depths.device
    with torch.no_grad():
        nx = (tile_box[:, 2] - tile_box[:, 0]).clamp_min(0).long()
        ny = (tile_box[:, 3] - tile_box[:, 1]).clamp_min(0).long()
        cnt = nx * ny
        total = int(cnt.sum())
        if total == 0:
            return torch.zeros(0, dtype=torch.long, device=dev), torch.zeros(ntiles + 1, dtype=torch.long, device=dev)
        gid = torch.repeat_interleave(torch.arange(len(cnt), device=dev), cnt)
        start = torch.cumsum(cnt, 0) - cnt
        local = torch.arange(total, device=dev) - start[gid]
        tx = tile_box[gid, 0].long() + local % nx[gid]
        ty = tile_box[gid, 1].long() + local // nx[gid]
        tid = ty * tw + tx
        # depth order first (stable), then stable by tile -> (tile, depth, index) order
        drank = torch.empty_like(depths, dtype=torch.long)
        drank[torch.argsort(depths.detach(), stable=True)] = torch.arange(len(depths), device=dev)
        key = tid * len(depths) + drank[gid]
        order = torch.argsort(key)
        gids = gid[order]
        counts = torch.bincount(tid, minlength=ntiles)
        offsets = torch.zeros(ntiles + 1, dtype=torch.long, device=dev)
        offsets[1:] = torch.cumsum(counts, 0)
    return gids, offsets


# ------------------------------------------------------------------------------------------------
# 4. compositing
# ------------------------------------------------------------------------------------------------
def _composite_chunk(pix, means2d, conics, colors, opacities, depths, idx, valid):
    """Composite pixels ``pix [T,P,2]`` over padded per-tile lists ``idx [T,L]`` (``valid`` mask)."""
    m = means2d[idx]  # [T,L,2]
    cn = conics[idx]
    dx = m[:, None, :, 0] - pix[:, :, None, 0]  # [T,P,L]
    dy = m[:, None, :, 1] - pix[:, :, None, 1]
    a, b, c = cn[:, None, :, 0], cn[:, None, :, 1], cn[:, None, :, 2]
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    alpha = torch.clamp_max(opacities[idx][:, None, :] * torch.exp(power), ALPHA_MAX)
    use = valid[:, None, :] & (power <= 0) & (alpha >= ALPHA_MIN)
    alpha = torch.where(use, alpha, torch.zeros_like(alpha))
    one_m = 1.0 - alpha
    T = torch.cumprod(torch.cat([torch.ones_like(one_m[..., :1]), one_m[..., :-1]], -1), -1)
    keep = (T * one_m) >= T_MIN  # prefix along L (T is non-increasing)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    w = alpha * T
    rgb = (w[..., None] * colors[idx][:, None, :, :]).sum(2)
    dep = (w * depths[idx][:, None, :]).sum(2)
    t_final = torch.where(keep, one_m, torch.ones_like(one_m)).prod(-1)
    cnt = (use & keep).sum(-1)
    return rgb, 1.0 - t_final, dep, cnt.to(rgb.dtype)


def rasterize_tiles(means2d, conics, colors, opacities, depths, gauss_ids, offsets, width: int, height: int,
                    tile: int = TILE, budget: int = 1 << 22):
    """Front-to-back compositing over sorted tile lists.

    Returns ``rgb [H,W,C]`` (no background), ``alpha [H,W]``, ``depth_acc [H,W]`` (sum of w*z, not yet
    normalised) and ``count [H,W]`` int32. Tiles are processed in chunks of at most ``budget``
    pixel x Gaussian entries; with autograd the chunks are checkpointed so memory stays bounded.
    """
    dev, dt = means2d.device, means2d.dtype
    C = colors.shape[-1]
    tw = (width + tile - 1) // tile
    th = (height + tile - 1) // tile
    ntiles = tw * th
    lens = (offsets[1:] - offsets[:-1]).tolist()
    ar = torch.arange(tile, device=dev, dtype=dt) + 0.5
    py, px = torch.meshgrid(ar, ar, indexing="ij")
    local = torch.stack([px.reshape(-1), py.reshape(-1)], -1)  # [P,2]
    P = tile * tile
    need_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means2d, conics, colors, opacities, depths))
    outs = []
    t0 = 0
    while t0 < ntiles:
        t1, lmax = t0, 0
        while t1 < ntiles and (t1 == t0 or (t1 - t0 + 1) * P * max(lmax, lens[t1], 1) <= budget):
            lmax = max(lmax, lens[t1])
            t1 += 1
        tiles = torch.arange(t0, t1, device=dev)
        origin = torch.stack([(tiles % tw) * tile, (tiles // tw) * tile], -1).to(dt)
        pix = origin[:, None, :] + local[None]
        if lmax == 0:
            z = torch.zeros(t1 - t0, P, device=dev, dtype=dt)
            outs.append((torch.zeros(t1 - t0, P, C, device=dev, dtype=dt), z, z, z))
        else:
            pos = offsets[t0:t1, None] + torch.arange(lmax, device=dev)[None]
            valid = pos < offsets[t0 + 1:t1 + 1, None]
            idx = gauss_ids[torch.where(valid, pos, torch.zeros_like(pos)).clamp_max(max(len(gauss_ids) - 1, 0))]
            args = (pix, means2d, conics, colors, opacities, depths, idx, valid)
            if need_grad:
                outs.append(checkpoint(_composite_chunk, *args, use_reentrant=False))
            else:
                outs.append(_composite_chunk(*args))
        t0 = t1

    def assemble(parts, ch):
        x = torch.cat(parts, 0).reshape(th, tw, tile, tile, ch).permute(0, 2, 1, 3, 4)
        return x.reshape(th * tile, tw * tile, ch)[:height, :width]

    if need_grad and not any(o[0].requires_grad for o in outs):
        # nothing on screen: keep the outputs in the graph so backward() still works (zero gradients)
        zero = sum((t * 0).sum() for t in (means2d, conics, colors, opacities, depths))
        outs = [(o[0] + zero, o[1] + zero, o[2] + zero, o[3]) for o in outs]
    rgb = assemble([o[0] for o in outs], C)
    alpha = assemble([o[1][..., None] for o in outs], 1)[..., 0]
    dep = assemble([o[2][..., None] for o in outs], 1)[..., 0]
    cnt = assemble([o[3][..., None] for o in outs], 1)[..., 0].detach().round().to(torch.int32)
    return rgb, alpha, dep, cnt


def finish(rgb, alpha, depth_acc, background=None):
    """Add the background (``rgb + (1 - alpha) * bg``) and normalise depth by alpha (0 where empty)."""
    if background is not None:
        rgb = rgb + (1.0 - alpha)[..., None] * background
    depth = torch.where(alpha > 1e-8, depth_acc / torch.clamp_min(alpha, 1e-8), torch.zeros_like(depth_acc))
    return rgb, depth

