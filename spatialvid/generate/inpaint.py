"""Colour fill of the unseen pixels of a rendered view.

Conventions: images are ``float32`` numpy arrays ``[H,W,3]`` in 0..1 (RGB); masks are ``bool [H,W]`` with
``True`` = pixel to fill. Every inpainter returns a new image whose known pixels are bit-identical to the
input and whose masked pixels are filled.

* :class:`StructureTextureInpainter` (the default, ``"classical"``, no model): the image is completed as
  structure + texture (in the spirit of Bertalmio et al. 2003): the structure (low frequencies) by a
  push-pull pyramid fill of the known pixels (Gortler et al. 1996), which continues nearby colours at
  the hole's border and tends to the broader surroundings deep inside it; the texture by exemplar
  synthesis, weighted by how well it predicts a hidden band of known pixels around the hole (measured per
  call). Far from any known pixel the colour is a guess; unless the texture proves predictable, the
  structure layer keeps that guess close to what the surroundings predict on average.
* :class:`ExemplarInpainter` (``"exemplar"``): multi-scale exemplar-based image completion in the
  spirit of Wexler, Shechtman & Irani (2007) with a vectorised PatchMatch (Barnes et al. 2009)
  nearest-neighbour field. Texture is copied from the known part of the image, so large holes get
  texture, not a smear. OpenCV's ``cv2.inpaint`` is only used to initialise the coarsest level.
* :class:`DiffusersInpainter`: a ``diffusers`` inpainting pipeline loaded from a local folder
  (``local_files_only=True``: never downloads).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from spatialvid.errors import SpatialvidError


@runtime_checkable
class Inpainter(Protocol):
    """Fills ``mask`` pixels of ``image`` ([H,W,3] float32 0..1); known pixels must come back unchanged.

    ``guide`` (optional, may be ignored) is a map known everywhere, e.g. the completed inverse depth.
    """

    name: str

    def inpaint(self, image: np.ndarray, mask: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray: ...


def _check_inputs(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3:
        raise SpatialvidError(f"inpaint: image must be [H,W,3], got {image.shape}")
    if mask.shape != image.shape[:2]:
        raise SpatialvidError(f"inpaint: mask {mask.shape} does not match image {image.shape[:2]}")
    return image, mask


def _downsample(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Halve resolution: area-average the known pixels only; a coarse pixel is a hole if any fine one is."""
    h, w = mask.shape
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    ph, pw = h2 * 2 - h, w2 * 2 - w
    known = (~mask).astype(np.float32)
    imgp = np.pad(img * known[..., None], ((0, ph), (0, pw), (0, 0)), mode="edge")
    kp = np.pad(known, ((0, ph), (0, pw)), mode="edge")
    mp = np.pad(mask, ((0, ph), (0, pw)), mode="edge")
    s = imgp.reshape(h2, 2, w2, 2, img.shape[2]).sum((1, 3))
    k = kp.reshape(h2, 2, w2, 2).sum((1, 3))
    out = s / np.maximum(k, 1e-6)[..., None]
    m2 = mp.reshape(h2, 2, w2, 2).any((1, 3))
    return out.astype(np.float32), m2


class _Level:
    """One pyramid level in padded flat coordinates (padding ``r`` on every side)."""

    def __init__(self, img: np.ndarray, mask: np.ndarray, r: int):
        self.h, self.w = mask.shape
        self.r = r
        self.wp = self.w + 2 * r
        self.hp = self.h + 2 * r
        self.mask = mask
        inside = np.zeros((self.hp, self.wp), bool)
        inside[r:r + self.h, r:r + self.w] = True
        self.inside_w = inside.reshape(-1).astype(np.float32)
        hole_p = np.zeros((self.hp, self.wp), bool)
        hole_p[r:r + self.h, r:r + self.w] = mask
        # source centres: the whole patch inside the image and known
        bad = (~inside) | hole_p
        k = 2 * r + 1
        bad_dil = cv2.dilate(bad.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        self.src_ok = (~bad_dil).reshape(-1)
        self.src_idx = np.flatnonzero(self.src_ok)
        # targets: centres (inside the image) whose patch touches the hole
        tgt = cv2.dilate(hole_p.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        tgt &= inside
        self.tgt_idx = np.flatnonzero(tgt)
        self.hole_idx = np.flatnonzero(hole_p)
        self.tgt_map = np.full(self.hp * self.wp, -1, np.int64)
        self.tgt_map[self.tgt_idx] = np.arange(self.tgt_idx.size)
        ys, xs = np.mgrid[-r:r + 1, -r:r + 1]
        self.offs = (ys * self.wp + xs).reshape(-1)
        self.offs_yx = np.stack([ys.reshape(-1), xs.reshape(-1)], 1)
        self.set_image(img)

    def nearest_src(self) -> np.ndarray:
        """For every padded flat index, the flat index of the nearest valid source centre."""
        from scipy.ndimage import distance_transform_edt

        ok = self.src_ok.reshape(self.hp, self.wp)
        _, (iy, ix) = distance_transform_edt(~ok, return_indices=True)
        return (iy * self.wp + ix).reshape(-1)

    def set_image(self, img: np.ndarray) -> None:
        r = self.r
        c = img.shape[2]
        self.imgp = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge").reshape(-1, c).astype(np.float32)
        self.guide_hole = self.imgp[self.hole_idx, 3:].copy()  # guide channels are known in the hole too

    def image(self) -> np.ndarray:
        r = self.r
        return self.imgp.reshape(self.hp, self.wp, -1)[r:r + self.h, r:r + self.w].copy()

    def yx(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return flat // self.wp, flat % self.wp


@dataclass
class ExemplarInpainter:
    """Multi-scale exemplar-based completion (PatchMatch NNF + weighted patch voting).

    Args:
        patch_size: odd patch side in pixels (7 is a good default).
        coarsest_side: the pyramid stops when the image's longer side would drop below this.
        em_iters, pm_iters: expectation-maximisation iterations per level, PatchMatch iterations per EM
            iteration (levels up to ``fast_above`` targets).
        fine_em_iters, fine_pm_iters: the same for larger levels (fewer, to bound run time).
        fast_above: levels with more target pixels than this compare a stride-2 subset of patch pixels,
            propagate 1 pixel only and search locally (the upsampled field is already good there).
        search_max_targets: levels with more target pixels than this are not searched at all: the
            upsampled field is voted once (texture still comes from the full-resolution source pixels).
        pm_iters: PatchMatch iterations per EM iteration.
        seed: random seed (the result is deterministic for a given seed).
    """

    patch_size: int = 7
    coarsest_side: int = 24
    em_iters: int = 4
    pm_iters: int = 3
    fine_em_iters: int = 1
    fine_pm_iters: int = 1
    fast_above: int = 12000
    search_max_targets: int = 60000
    guide_weight: float = 3.0
    seed: int = 0
    name: str = "exemplar"

    def inpaint(self, image: np.ndarray, mask: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        """``guide``: optional ``[H,W]`` or ``[H,W,G]`` map known everywhere (e.g. completed inverse depth,
        normalised to ~0..1); patches are then also compared on it (weight ``guide_weight``), so a hole
        is filled from regions of similar geometry."""
        image, mask = _check_inputs(image, mask)
        if not mask.any():
            return image.copy()
        if mask.all():
            raise SpatialvidError("inpaint: every pixel is unknown; there is nothing to continue from")
        rng = np.random.default_rng(self.seed)
        r = self.patch_size // 2
        guides = []
        if guide is not None:
            gd = np.asarray(guide, np.float32)
            gd = gd[..., None] if gd.ndim == 2 else gd
            if gd.shape[:2] != mask.shape:
                raise SpatialvidError(f"inpaint: guide {gd.shape[:2]} does not match image {mask.shape}")
            guides = [gd * self.guide_weight]
        # pyramid
        imgs, masks = [image], [mask]
        while max(masks[-1].shape) // 2 >= self.coarsest_side and min(masks[-1].shape) // 2 >= 2 * r + 2:
            im2, m2 = _downsample(imgs[-1], masks[-1])
            if m2.all() or (~m2).sum() < 4 * (2 * r + 1) ** 2:
                break
            imgs.append(im2)
            masks.append(m2)
            if guides:
                g2 = cv2.resize(guides[-1], (m2.shape[1], m2.shape[0]), interpolation=cv2.INTER_AREA)
                guides.append(g2.reshape(m2.shape + (-1,)))
        nlev = len(imgs)
        nnf = None  # source (y, x) in unpadded coords, per target of the previous level
        prev = None
        for li in range(nlev - 1, -1, -1):
            img, m = imgs[li], masks[li]
            gl = guides[li] if guides else np.zeros(m.shape + (0,), np.float32)
            lv = _Level(np.concatenate([img, gl], 2), m, r)
            big = lv.tgt_idx.size > self.fast_above
            lv.doffs = lv.offs.reshape(2 * r + 1, 2 * r + 1)[::2, ::2].reshape(-1) if big else lv.offs
            if lv.src_idx.size == 0:
                # the known part is too thin to hold one full patch: diffusion fill at this level
                lv.set_image(np.concatenate([_telea(img, m), gl], 2))
                prev, nnf = lv, None
                continue
            if nnf is None or prev is None:
                lv.set_image(np.concatenate([_telea(img, m), gl], 2))
                cur = lv.src_idx[rng.integers(0, lv.src_idx.size, lv.tgt_idx.size)]
                if gl.shape[2]:
                    # geometry-aware start: of 32 random sources keep the one whose guide patch fits best,
                    # then vote, so the hole starts from colours of similar geometry (not a diffusion)
                    cur = self._guide_init(lv, cur, rng)
                    self._vote(lv, cur, None)
            else:
                cur = self._upsample_nnf(prev, nnf, lv, rng)
                self._vote(lv, cur, None)
            if lv.tgt_idx.size > self.search_max_targets and nnf is not None:
                # very large level: the upsampled field already copies full-resolution texture; one
                # sharp vote over the central 3x3 of each patch, no search (bounds the cost)
                self._vote(lv, cur, None, radius=1)
            else:
                dist = self._dist(lv, lv.tgt_idx, cur)
                em, pm, vr = (self.fine_em_iters, self.fine_pm_iters, 2) if big else (self.em_iters, self.pm_iters, None)
                for _ in range(em):
                    for _ in range(pm):
                        cur, dist = self._patchmatch_iter(lv, cur, dist, rng)
                    self._vote(lv, cur, dist, radius=vr)
                    if em > 1:
                        dist = self._dist(lv, lv.tgt_idx, cur)
            nnf = np.stack(lv.yx(cur), 1) - r  # unpadded source coords
            prev = lv
        out = np.clip(prev.image()[..., :3], 0.0, 1.0)
        out[~mask] = image[~mask]
        return out.astype(np.float32)

    # ---- pieces ----------------------------------------------------------------------------------
    @staticmethod
    def _dist(lv: _Level, tgt: np.ndarray, src: np.ndarray, tpatch: np.ndarray | None = None) -> np.ndarray:
        """Mean squared colour difference between the patches at ``tgt`` and ``src`` (padded flat indices).

        Uses ``lv.doffs`` (all patch offsets, or a stride-2 subset on large levels for speed); the
        image is edge-padded, so patches that cross the image border compare replicated pixels.
        """
        if tpatch is None:
            tpatch = lv.imgp[tgt[:, None] + lv.doffs[None, :]]
        d = tpatch - lv.imgp[src[:, None] + lv.doffs[None, :]]
        return np.einsum("ijk,ijk->i", d, d) / lv.doffs.size

    @staticmethod
    def _guide_init(lv: _Level, cur: np.ndarray, rng, tries: int = 32) -> np.ndarray:
        tg = lv.imgp[lv.tgt_idx[:, None] + lv.offs[None, :], 3:]
        best = np.full(cur.size, np.inf)
        for _ in range(tries):
            cand = lv.src_idx[rng.integers(0, lv.src_idx.size, cur.size)]
            d = ((tg - lv.imgp[cand[:, None] + lv.offs[None, :], 3:]) ** 2).sum((1, 2))
            better = d < best
            cur = np.where(better, cand, cur)
            best = np.where(better, d, best)
        return cur

    def _patchmatch_iter(self, lv: _Level, cur: np.ndarray, dist: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        tgt = lv.tgt_idx
        tpatch = lv.imgp[tgt[:, None] + lv.doffs[None, :]]
        wp = lv.wp
        fast = tgt.size > self.fast_above

        def consider(cand: np.ndarray, ok: np.ndarray) -> None:
            nonlocal cur, dist
            ok = ok & lv.src_ok[np.clip(cand, 0, lv.src_ok.size - 1)]
            if not ok.any():
                return
            sel = np.flatnonzero(ok)
            d = self._dist(lv, tgt[sel], cand[sel], tpatch[sel])
            better = d < dist[sel]
            cur[sel[better]] = cand[sel[better]]
            dist[sel[better]] = d[better]

        # propagation from the 4 neighbours (and 2-pixel jumps): s' = nnf(p + e) - e
        for step in ((1,) if fast else (1, 2)):
            for e in (step, -step, step * wp, -step * wp):
                nb = tgt + e
                j = lv.tgt_map[np.clip(nb, 0, lv.tgt_map.size - 1)]
                ok = j >= 0
                cand = np.where(ok, cur[np.maximum(j, 0)] - e, 0)
                consider(cand, ok)
        # random search around the current match with shrinking radius
        rad = 8 if fast else max(lv.h, lv.w)
        while rad >= 1:
            cy, cx = lv.yx(cur)
            ny = cy + rng.integers(-rad, rad + 1, cur.size)
            nx = cx + rng.integers(-rad, rad + 1, cur.size)
            ok = (ny >= 0) & (ny < lv.hp) & (nx >= 0) & (nx < lv.wp)
            consider(np.where(ok, ny * wp + nx, 0), ok)
            rad //= 3
        # a few fully random candidates keep far-away good matches reachable
        consider(lv.src_idx[rng.integers(0, lv.src_idx.size, cur.size)], np.ones(cur.size, bool))
        return cur, dist

    @staticmethod
    def _vote(lv: _Level, cur: np.ndarray, dist: np.ndarray | None, radius: int | None = None) -> None:
        """Each hole pixel = weighted average of the colours that the overlapping patches propose
        (only the patches' central ``(2 radius + 1)^2`` pixels when ``radius`` is given)."""
        hole = lv.hole_idx
        if dist is None:
            wt = np.ones(cur.size, np.float32)
        else:
            sig2 = max(float(np.percentile(dist, 75)), 1e-4)
            wt = np.exp(-dist / (2 * sig2)).astype(np.float32) + 1e-6
        acc = np.zeros((hole.size, lv.imgp.shape[1]), np.float32)
        wsum = np.zeros(hole.size, np.float32)
        offs = lv.offs
        if radius is not None and radius < lv.r:
            keep = (np.abs(lv.offs_yx) <= radius).all(1)
            offs = lv.offs[keep]
        for o in offs:
            p = hole - o  # patch centre that covers hole pixel at offset o
            j = lv.tgt_map[p]
            ok = j >= 0
            jj = j[ok]
            src = cur[jj] + o
            ww = wt[jj]
            acc[ok] += lv.imgp[src] * ww[:, None]
            wsum[ok] += ww
        good = wsum > 0
        lv.imgp[hole[good]] = acc[good] / wsum[good, None]
        if lv.guide_hole.shape[1]:
            lv.imgp[hole, 3:] = lv.guide_hole

    @staticmethod
    def _upsample_nnf(prev: _Level, nnf: np.ndarray, lv: _Level, rng) -> np.ndarray:
        r = lv.r
        ty, tx = lv.yx(lv.tgt_idx)
        ty, tx = ty - r, tx - r  # unpadded target coords at this level
        # coarse target -> coarse nnf lookup
        cy, cx = ty // 2, tx // 2
        cflat = (cy + r) * prev.wp + (cx + r)
        j = prev.tgt_map[np.clip(cflat, 0, prev.tgt_map.size - 1)]
        have = j >= 0
        sy = np.where(have, nnf[np.maximum(j, 0), 0] * 2 + (ty % 2), 0)
        sx = np.where(have, nnf[np.maximum(j, 0), 1] * 2 + (tx % 2), 0)
        sy = np.clip(sy, 0, lv.h - 1)
        sx = np.clip(sx, 0, lv.w - 1)
        cand = (sy + r) * lv.wp + (sx + r)
        ok = have & lv.src_ok[cand]
        # an upsampled source that is no longer a valid patch centre at this level (the known region's
        # border moved by a pixel, a thin strip lost its centres) moves to the nearest valid centre, so the
        # match keeps its region (floor stays floor); targets without a coarse match start at random
        near = lv.nearest_src()[cand]
        rand = lv.src_idx[rng.integers(0, lv.src_idx.size, cand.size)]
        return np.where(ok, cand, np.where(have, near, rand))


def _telea(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    rad = max(3, int(round(0.02 * max(mask.shape))))
    out = cv2.inpaint(u8, mask.astype(np.uint8), rad, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    out[~mask] = img[~mask]
    return out


def push_pull(image: np.ndarray, known: np.ndarray, extra_levels: int = 1) -> np.ndarray:
    """Pyramid fill (push-pull, Gortler et al. 1996) of the pixels where ``known`` is False.

    Pull: Gaussian-pyramid sums of ``image * known`` and of ``known`` until every coarse pixel has some
    known weight (plus ``extra_levels`` more, for a broader average deep inside large holes). Push: from
    the coarsest level up, each pixel blends its own normalised colour (weight ``min(1, 4 w)``) with the
    upsampled coarser estimate. Known pixels come back unchanged; the result is smooth in the holes.
    """
    image = np.asarray(image, np.float32)
    known = np.asarray(known, bool)
    if known.all():
        return image.copy()
    if not known.any():
        raise SpatialvidError("inpaint: every pixel is unknown; there is nothing to continue from")
    w = known.astype(np.float32)
    c = image * w[..., None]
    pyr = []
    extra = int(extra_levels)
    while True:
        pyr.append((c, w))
        if (w > 0).all():
            if extra <= 0:
                break
            extra -= 1
        if min(w.shape) < 2:
            break
        c, w = cv2.pyrDown(c), cv2.pyrDown(w)
        c = c.reshape(w.shape + (image.shape[2],))
    est = pyr[-1][0] / np.maximum(pyr[-1][1], 1e-12)[..., None]
    for c, w in reversed(pyr[:-1]):
        up = cv2.pyrUp(est, dstsize=(w.shape[1], w.shape[0])).reshape(c.shape)
        a = np.clip(4 * w, 0, 1)[..., None]
        est = a * (c / np.maximum(w, 1e-12)[..., None]) + (1 - a) * up
    out = est.astype(np.float32)
    out[known] = image[known]
    return out


@dataclass
class StructureTextureInpainter:
    """Structure (push-pull pyramid fill) + texture (exemplar synthesis), the default classical inpainter.

    The fill is ``H + a (T - H)``: ``T`` the exemplar fill (:class:`ExemplarInpainter`), ``H`` the hedged fill
    (the smooth structure plus ``detail`` times T's high frequencies), and ``a`` in [0, 1] how far to trust
    the exemplar texture. With ``adaptive`` (the default) ``a`` is measured on the image itself: at half
    resolution a band of known pixels around the hole is hidden, both fills predict it, and ``a`` is the
    least-squares weight of ``T - H`` against the truth there. A regular, predictable texture (tiles,
    stripes) gets ``a`` near 1 (the exemplar continues it in phase); an irregular one (scattered spots,
    unseen objects) gets ``a`` near 0 (a confident sample of detail is wrong in every pixel it places).

    Args:
        detail: amplitude of T's texture in ``H`` (0, the default = smooth structure only: the texture then
            enters only through ``a``; 1 = full contrast), a floor on texture whatever ``a`` is measured.
        texture_sigma: the structure / texture split, a Gaussian of this std as a fraction of the image's
            longer side (1/64: 5 px at 320 px).
        extra_levels: push-pull levels beyond the first complete one (broader averages in big holes).
        adaptive: measure ``a`` as above; False uses ``a = trust``.
        trust: ``a`` when not adaptive (or when the band is too small to measure).
        band: width of the validation band as a fraction of the image's longer side.
        exemplar: the texture synthesiser (default :class:`ExemplarInpainter()`).
    """

    detail: float = 0.0
    texture_sigma: float = 1.0 / 64
    extra_levels: int = 1
    adaptive: bool = True
    trust: float = 0.0
    band: float = 0.04
    exemplar: ExemplarInpainter | None = None
    name: str = "classical"
    last_trust: float | None = None  # the ``a`` used by the last call (for logs and tests)

    def _hedged(self, image, mask, guide, exemplar: ExemplarInpainter | None = None, need_texture: bool = True):
        """(H, T): the hedged fill and the exemplar fill (T is None when not ``need_texture`` and
        ``detail`` is 0: nothing would use it)."""
        structure = push_pull(image, ~mask, self.extra_levels)
        sig = max(0.5, self.texture_sigma * max(mask.shape))
        hedged = cv2.GaussianBlur(structure, (0, 0), sig)
        if not need_texture and self.detail <= 0:
            return hedged, None
        tex = (exemplar or self.exemplar or ExemplarInpainter()).inpaint(image, mask, guide)
        if self.detail > 0:
            hedged = hedged + self.detail * (tex - cv2.GaussianBlur(tex, (0, 0), sig))
        return hedged, tex

    def measure_trust(self, image: np.ndarray, mask: np.ndarray, guide: np.ndarray | None = None) -> float | None:
        """The least-squares ``a`` on a hidden band of known pixels around the hole (half resolution);
        None when the band is too small to say."""
        img2, m2 = _downsample(image, mask)
        g2 = None
        if guide is not None:
            g = np.asarray(guide, np.float32)
            g2 = cv2.resize(g, (m2.shape[1], m2.shape[0]), interpolation=cv2.INTER_AREA).reshape(
                m2.shape + g.shape[2:])
        b = max(2, int(round(self.band * max(m2.shape))))
        ring = (cv2.dilate(m2.astype(np.uint8), np.ones((2 * b + 1, 2 * b + 1), np.uint8)) > 0) & ~m2
        val = m2 | ring
        if ring.sum() < 64 or (~val).sum() < 0.2 * val.size:
            return None
        ex = self.exemplar or ExemplarInpainter()
        quick = replace(ex, em_iters=min(ex.em_iters, 2), pm_iters=min(ex.pm_iters, 2),
                        fast_above=min(ex.fast_above, 4000))  # a cheaper pass suffices to score the band
        hedged, tex = self._hedged(img2, val, g2, quick)
        d = (tex - hedged)[ring].astype(np.float64)
        e = (img2 - hedged)[ring].astype(np.float64)
        den = float((d * d).sum())
        if den < 1e-9:
            return None
        return float(np.clip((d * e).sum() / den, 0.0, 1.0))

    def inpaint(self, image: np.ndarray, mask: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        image, mask = _check_inputs(image, mask)
        if not mask.any():
            return image.copy()
        if mask.all():
            raise SpatialvidError("inpaint: every pixel is unknown; there is nothing to continue from")
        if not 0.0 <= self.detail <= 2.0 or not 0.0 <= self.trust <= 1.0:
            raise SpatialvidError(f"inpaint: detail must be in [0, 2] and trust in [0, 1], got {self.detail}, "
                                  f"{self.trust}")
        a = self.measure_trust(image, mask, guide) if self.adaptive else None
        a = self.trust if a is None else a
        self.last_trust = a
        hedged, tex = self._hedged(image, mask, guide, need_texture=a > 0)
        out = np.clip(hedged if tex is None else hedged + a * (tex - hedged), 0.0, 1.0).astype(np.float32)
        out[~mask] = image[~mask]
        return out


@dataclass
class MeanColorInpainter:
    """Baseline: fill the hole with the mean colour of the known pixels (used in benchmarks/tests)."""

    name: str = "mean"

    def inpaint(self, image: np.ndarray, mask: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        image, mask = _check_inputs(image, mask)
        out = image.copy()
        if mask.any() and (~mask).any():
            out[mask] = image[~mask].mean(0)
        return out


class DiffusersInpainter:
    """A ``diffusers`` inpainting pipeline loaded from a local folder (never downloads).

    ``path`` is a folder written by ``pipeline.save_pretrained`` (e.g. a Stable Diffusion inpainting
    checkpoint the user has on disk). The image is resized to ``size`` (multiple of 8, longer side) for the
    pipeline and the result is resized back; only masked pixels are taken from it.
    """

    def __init__(self, path: str | Path, prompt: str = "", negative_prompt: str = "", steps: int = 25,
                 guidance_scale: float = 7.5, size: int = 512, device: str | None = None, seed: int = 0):
        path = Path(path)
        if not path.is_dir():
            raise SpatialvidError(f"--inpainter diffusers:{path}: not a folder (give a local pipeline folder "
                                  "written by save_pretrained; nothing is downloaded)")
        try:
            import diffusers  # noqa: F401
            import torch
        except ImportError:
            raise SpatialvidError("the diffusers inpainter needs the optional packages: "
                                  "pip install 'spatialvid[models]'") from None
        from diffusers import AutoPipelineForInpainting

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.pipe = AutoPipelineForInpainting.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise SpatialvidError(f"{path}: could not load a diffusers inpainting pipeline ({e})") from None
        self.pipe = self.pipe.to(self.device)
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self.steps, self.guidance_scale, self.size, self.seed = steps, guidance_scale, size, seed
        self.name = f"diffusers:{path}"

    def inpaint(self, image: np.ndarray, mask: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        import torch
        from PIL import Image

        image, mask = _check_inputs(image, mask)
        if not mask.any():
            return image.copy()
        h, w = mask.shape
        s = self.size / max(h, w)
        ww, hh = max(8, int(round(w * s / 8)) * 8), max(8, int(round(h * s / 8)) * 8)
        pil = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((ww, hh), Image.BICUBIC)
        pm = Image.fromarray(mask.astype(np.uint8) * 255).resize((ww, hh), Image.NEAREST)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        res = self.pipe(prompt=self.prompt, negative_prompt=self.negative_prompt or None, image=pil,
                        mask_image=pm, height=hh, width=ww, num_inference_steps=self.steps,
                        guidance_scale=self.guidance_scale, generator=gen, output_type="np")
        out = np.asarray(res.images[0], dtype=np.float32)
        if out.max() > 1.5:
            out = out / 255.0
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
        result = image.copy()
        result[mask] = np.clip(out[mask], 0, 1)
        return result


def make_inpainter(spec: str | Inpainter | None) -> Inpainter:
    """``"classical"`` (default: structure + texture), ``"exemplar"`` (texture synthesis only), ``"mean"``
    or ``"diffusers:PATH"`` -> an :class:`Inpainter`."""
    if spec is None or spec == "classical":
        return StructureTextureInpainter()
    if not isinstance(spec, str):
        if not isinstance(spec, Inpainter):
            raise SpatialvidError(f"inpainter {spec!r} has no inpaint(image, mask) method")
        return spec
    if spec == "mean":
        return MeanColorInpainter()
    if spec == "exemplar":
        return ExemplarInpainter()
    if spec.startswith("diffusers:"):
        return DiffusersInpainter(spec.split(":", 1)[1])
    raise SpatialvidError(f"unknown inpainter '{spec}' (use classical, exemplar, mean or diffusers:PATH)")


__all__ = ["DiffusersInpainter", "ExemplarInpainter", "Inpainter", "MeanColorInpainter", "StructureTextureInpainter",
           "make_inpainter", "push_pull"]
