"""Step 5 of a fill: a short optimisation of only the new Gaussians.

The fill view is rendered with the existing Gaussians (constants, never modified) plus the new ones
(parameters); colour, opacity and scale of the new Gaussians are optimised with Adam so the view
renders as the fill image inside the unseen mask and unchanged around it, and so the filled region is
opaque (alpha -> 1: a later view does not see it as unseen). Means and rotations stay where lift put
them (on the completed depth), which keeps the geometry consistent between views.
To bound cost the render is cropped to the mask's bounding box (intrinsics shifted) and only the
existing Gaussians that touch the view take part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from spatialvid.cameras import Cameras
from spatialvid.gaussians import Gaussians, rgb_to_sh0


@dataclass
class FitReport:
    iters: int
    loss_first: float
    loss_last: float
    seconds: float


def crop_camera(camera: Cameras, x0: int, y0: int, x1: int, y1: int) -> Cameras:
    """The sub-window ``[x0,x1) x [y0,y1)`` of a 1-camera ``camera`` as its own camera."""
    c = camera.clone()
    c.cx = c.cx - x0
    c.cy = c.cy - y0
    c.width = torch.tensor([x1 - x0])
    c.height = torch.tensor([y1 - y0])
    return c


def fit_new_gaussians(fixed: Gaussians, new: Gaussians, camera: Cameras, target: np.ndarray, mask: np.ndarray,
                      iters: int = 30, lr: float = 0.03, margin: int = 4, alpha_weight: float = 0.5,
                      max_side: int = 256, background=(0.0, 0.0, 0.0), backend: str = "auto",
                      antialiased: bool = False) -> tuple[Gaussians, FitReport]:
    """Optimise ``new`` (returns an optimised copy); ``fixed`` is read only.

    Args:
        fixed: existing Gaussians that touch the view (constants). new: the lifted Gaussians.
        camera: the 1-camera fill view. target: [H,W,3] image the view should render (0..1, composited
            over ``background``). mask: bool [H,W] unseen pixels (where the new Gaussians must render).
        iters: Adam steps (0 = no fit). margin: loss ring around the mask (pixels), penalising spill.
        max_side: the cropped view is rendered at most this many pixels on its longer side (the target
            is area-downsampled to match), which bounds the cost of one iteration.
    """
    t0 = time.perf_counter()
    if iters <= 0 or len(new) == 0 or not mask.any():
        return new, FitReport(0, float("nan"), float("nan"), 0.0)
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
    cam = crop_camera(camera, int(x0), int(y0), int(x1), int(y1))
    m = mask[y0:y1, x0:x1]
    ring = cv2.dilate(m.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    tgt_np = np.ascontiguousarray(target[y0:y1, x0:x1])
    s = min(1.0, max_side / max(m.shape))
    if s < 1.0:
        cam = cam.scaled(s)
        size = (int(cam.width[0]), int(cam.height[0]))
        tgt_np = cv2.resize(tgt_np, size, interpolation=cv2.INTER_AREA)
        m = cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
        ring = cv2.resize(ring.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.01
    tgt = torch.from_numpy(tgt_np).float()
    wm = torch.from_numpy(m.astype(np.float32))
    wl = torch.from_numpy(ring.astype(np.float32))
    bg = torch.as_tensor(background, dtype=torch.float32)

    from spatialvid.render import _torch_impl as ti  # SH evaluation of the constant Gaussians
    from spatialvid.render import rasterize

    dev = new.means.device
    tgt, wm, wl, bg = tgt.to(dev), wm.to(dev), wl.to(dev), bg.to(dev)
    viewmat, K = cam.viewmats()[0].to(dev), cam.Ks()[0].to(dev)
    width, height = int(cam.width[0]), int(cam.height[0])
    fixed = fixed.detach()
    with torch.no_grad():  # constants: everything of the existing Gaussians, positions/rotations of new
        f_col = ti.eval_sh(ti.view_dirs(fixed.means, viewmat), fixed.sh, fixed.sh_degree) if len(fixed) else \
            torch.zeros(0, 3, device=dev)
        means = torch.cat([fixed.means, new.means.detach()])
        quats = torch.cat([fixed.rotations, new.rotations.detach()])
        f_scales, f_op = fixed.scales, fixed.opacities
    p_col = new.colors.detach().clone().requires_grad_(True)  # the new Gaussians are degree-0: rgb
    p_op = new.opacity_logits.detach().clone().requires_grad_(True)
    p_ls = new.log_scales.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [p_col], "lr": lr},
                            {"params": [p_op], "lr": lr * 2},
                            {"params": [p_ls], "lr": lr * 0.1}])
    first = last = float("nan")
    for it in range(iters):
        out = rasterize(means, quats, torch.cat([f_scales, torch.exp(p_ls)]),
                        torch.cat([f_op, torch.sigmoid(p_op)]), torch.cat([f_col, p_col]), viewmat, K,
                        width, height, background=bg, backend=backend, antialiased=antialiased)
        l1 = ((out.rgb - tgt).abs().sum(-1) * wl).sum() / wl.sum().clamp_min(1)
        la = ((1 - out.alpha) ** 2 * wm).sum() / wm.sum().clamp_min(1)
        loss = l1 + alpha_weight * la
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            p_ls.clamp_(max=new.log_scales.detach() + 0.7)  # at most 2x the lifted footprint
            p_col.clamp_(0.0, 1.0)
        v = float(loss.detach())
        if it == 0:
            first = v
        last = v
    fitted = Gaussians(means=new.means.detach().clone(), log_scales=p_ls.detach().clone(),
                       quats=new.quats.detach().clone(), opacity_logits=p_op.detach().clone(),
                       sh0=rgb_to_sh0(p_col.detach()).clone(), shN=new.shN.detach().clone(), origin=new.origin.clone(),
                       step=new.step.clone())
    return fitted, FitReport(iters, first, last, time.perf_counter() - t0)
