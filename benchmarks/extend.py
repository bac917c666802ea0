"""Extend benchmark: a capture split into clips A and B; A reconstructed, then ``extend`` with B.

    python benchmarks/extend.py [--data sample|fox|both] [--steps-a 1500] [--steps-extend 500] [--fox DIR] [--json]
    python benchmarks/extend.py --pose-aligned [--data ...] [--work DIR]    # re-evaluate a run's scenes

``sample``: the bundled sample (60 frames, 320x240); frames with index % 8 == 4 are held out (in no input);
A = the first 36 frames, B = the last 24 (the arc's second part: partly different walls and objects).
``fox``: ../shared/data/fox's photos split in two halves by name, every 8th photo held out.
Reported per data set: held-out PSNR (dB) of B's and of A's held-out views for A alone, A extended with B
and a from-scratch reconstruct of A+B (``--steps-a`` steps, same settings as A); the drop of A's held-out
PSNR after extend; the new cameras' pose errors against ground truth (:func:`pose_metrics`: ``standard``, a
Sim3 on the centres of all the scene's cameras; ``fit_on_A``, a Sim3 on the poses of A's cameras only;
``relative`` to the nearest A camera): rotation (degrees), centre error (% of the trajectory extent); wall
times and the extend / from-scratch ratio (SfM + training). Held-out views are rendered at the true poses
mapped into each scene (:func:`pose_sim3`: a Sim3 on the centres and orientations of all its cameras; for
the extended scene also on A's cameras only, ``psnr_A_fit_on_A`` / ``psnr_B_fit_on_A``: A's views then
render at exactly the poses the A-alone scene renders them, as A's cameras are unchanged by the extend,
``A_drop_fit_on_A_db``) with the scene's camera intrinsics, at the
training resolution. ``--pose-aligned`` re-evaluates the scenes a run left in ``--work``: the same held-out
PSNR after a test-time alignment of each view's pose (60 Adam steps on its 6 dof against the image, the
Gaussians fixed), which separates rendering quality from a small misalignment of the whole frame. The last
line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FOX = REPO.parent / "shared" / "data" / "fox"


def _cfg(steps: int, resolution: int):
    from spatialvid.train.config import load_config

    return load_config("fast", {"steps": steps, "resolution": resolution, "holdout_every": 0,
                                "checkpoint_every": 0, "save_eval_images": False})


def _reconstruct(inp: Path, out: Path, steps: int, resolution: int) -> float:
    from spatialvid.train.pipeline import reconstruct

    t0 = time.perf_counter()
    reconstruct(inp, out, _cfg(steps, resolution), overwrite=True, progress=False, log=lambda *a, **k: None)
    return time.perf_counter() - t0


def _link(names: list[Path], d: Path) -> Path:
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for p in names:
        (d / p.name).symlink_to(p.resolve())
    return d


def pose_sim3(cams, ref, fit_names: set[str] | None = None) -> np.ndarray:
    """4x4 similarity mapping the reference into the scene, fitted on the poses (centres *and* orientations,
    :func:`spatialvid.sfm.align.pose_sim3`) of the scene cameras in ``fit_names`` (default all; matched by
    name). Camera centres alone leave the rotation about a nearly straight or planar trajectory (a short
    arc, as clip A is) weakly determined."""
    from spatialvid.sfm.align import match_by_name
    from spatialvid.sfm.align import pose_sim3 as fit

    ei, ri = match_by_name(cams, ref)
    pairs = [(e, r) for e, r in zip(ei, ri) if fit_names is None or cams.names[e] in fit_names]
    return fit(ref[[r for _, r in pairs]], cams[[e for e, _ in pairs]])


def _pose_optimised_psnr(sc, cam, gt: torch.Tensor, iters: int = 60, lr: float = 2e-3) -> float:
    """PSNR of ``cam``'s view after optimising its pose alone (6 dof, Adam on the L1 photometric error,
    the Gaussians fixed), starting at ``cam``: the test-time pose alignment of pose-free reconstruction
    papers (BARF, NoPe-NeRF...), so a small global misalignment between the scene's frame and the reference's
    does not count as rendering error."""
    from spatialvid.metrics import psnr
    from spatialvid.render import rasterize
    from spatialvid.render.api import render_settings
    from spatialvid.train.pose_refine import move_gaussians

    g = sc.gaussians
    look = render_settings(sc)
    bg = torch.tensor(look["background"], dtype=torch.float32)
    means, quats, scales, opac, sh = (t.detach() for t in (g.means, g.rotations, g.scales, g.opacities, g.sh))
    vm, K = cam.viewmats()[0], cam.Ks()[0]
    W, H = int(cam.width[0]), int(cam.height[0])
    delta = torch.zeros(6, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)

    def render():
        m, q = move_gaussians(means, quats, vm, delta)
        return rasterize(m, q, scales, opac, sh, vm, K, W, H, sh_degree=g.sh_degree, background=bg,
                         antialiased=look["antialiased"]).rgb

    for _ in range(iters):
        loss = (render() - gt).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return psnr(render().clamp(0, 1), gt)


def heldout_psnr(scene_dir: Path, ref, ref_images: dict[str, Path], names: list[str], fit_names=None,
                 optimise_pose: bool = False) -> float:
    """Mean PSNR of ``names`` (reference cameras) rendered from the scene at the reference poses mapped into
    it (:func:`pose_sim3` on the scene cameras in ``fit_names``, default all, matched by name); with
    ``optimise_pose``, after :func:`_pose_optimised_psnr`'s test-time pose alignment of each view."""
    from spatialvid.cameras import Cameras
    from spatialvid.metrics import psnr
    from spatialvid.scene import Scene
    from spatialvid.sfm.align import transform_cameras
    from spatialvid.train.data import load_image

    sc = Scene.load(scene_dir)
    M = pose_sim3(sc.cameras, ref, fit_names)
    w_train = sc.metadata.get("train_resolution", [int(sc.cameras.width[0])])[0]
    c0 = sc.cameras[[0]].scaled(w_train / float(sc.cameras.width[0]))
    idx = {n: i for i, n in enumerate(ref.names)}
    vals = []
    for n in names:
        r = transform_cameras(ref[[idx[n]]], M)
        cam = Cameras(fx=c0.fx, fy=c0.fy, cx=c0.cx, cy=c0.cy, width=c0.width, height=c0.height, R=r.R, t=r.t)
        gt = load_image(str(ref_images[n]), int(c0.width[0]), int(c0.height[0]))
        if optimise_pose:
            vals.append(_pose_optimised_psnr(sc, cam, gt))
            continue
        out = sc.render(cam)
        vals.append(psnr(torch.as_tensor(out.rgb).clamp(0, 1), gt))
    return float(np.mean(vals))


def _abs_errors(cams, ref, fit_names: set[str] | None, eval_names: set[str], poses: bool = False) -> dict:
    """Rotation (deg) and centre (% of the reference trajectory extent) errors of the cameras in
    ``eval_names`` after a Sim3 fitted on the cameras in ``fit_names`` (None: all) maps the reference into
    the scene: on their centres (the usual protocol), or with ``poses`` on centres and orientations
    (:func:`pose_sim3`)."""
    from spatialvid.sfm.align import decompose_sim3, match_by_name, rotation_angle_deg, umeyama

    ei, ri = match_by_name(cams, ref)
    fit = [(e, r) for e, r in zip(ei, ri) if fit_names is None or cams.names[e] in fit_names]
    ev = [(e, r) for e, r in zip(ei, ri) if cams.names[e] in eval_names]
    ce = cams.centers().double().numpy()
    cr = ref.centers().double().numpy()
    if poses:
        s, R, t = decompose_sim3(pose_sim3(cams, ref, fit_names))
    else:
        s, R, t = umeyama(cr[[r for _, r in fit]], ce[[e for e, _ in fit]])  # reference -> scene
    extent = float(np.linalg.norm(cr.max(0) - cr.min(0)))
    cen = np.array([np.linalg.norm(s * R @ cr[r] + t - ce[e]) / s / extent * 100 for e, r in ev])
    c2w_s = cams.R.double().numpy().transpose(0, 2, 1)[[e for e, _ in ev]]
    c2w_r = np.einsum("ij,njk->nik", R, ref.R.double().numpy().transpose(0, 2, 1)[[r for _, r in ev]])
    rot = rotation_angle_deg(c2w_s, c2w_r)
    return {"rot_median_deg": round(float(np.median(rot)), 3), "rot_max_deg": round(float(rot.max()), 3),
            "center_median_pct": round(float(np.median(cen)), 3), "center_max_pct": round(float(cen.max()), 3)}


def pose_metrics(scene_dir: Path, ref, old_names: set[str], scratch_dir: Path | None = None) -> dict:
    """The new cameras' pose errors against the reference, three ways: ``standard`` (the usual evaluation: a
    Sim3 fitted on the centres of all of the scene's cameras, A + B), ``fit_on_A`` (a Sim3 fitted on the poses,
    centres and orientations, of A's cameras only: is B registered in A's frame and scale?) and ``relative`` (each new camera's rotation relative to its nearest A
    camera, estimated vs true). With ``scratch_dir``: the standard errors of the same cameras in that scene."""
    from spatialvid.scene import Scene
    from spatialvid.train.extend import new_camera_errors

    sc = Scene.load(scene_dir)
    new_names = {n for n in sc.cameras.names if n not in old_names}
    rel, _, _ = new_camera_errors(sc.cameras, ref, old_names)
    out = {"new_cameras": len(new_names), "standard": _abs_errors(sc.cameras, ref, None, new_names),
           "fit_on_A": _abs_errors(sc.cameras, ref, old_names, new_names, poses=True),
           "relative": {"rot_median_deg": round(float(np.median(rel)), 3), "rot_max_deg": round(float(rel.max()), 3)}}
    if scratch_dir is not None:
        ab = Scene.load(scratch_dir).cameras
        out["scratch_AB_standard"] = _abs_errors(ab, ref, None, new_names & set(ab.names))
    return out


def run_split(name: str, work: Path, images: list[Path], ref, a_idx, b_idx, test_a, test_b, steps_a: int,
              steps_ext: int, resolution: int) -> dict:
    from spatialvid.train.extend import extend_scene

    work.mkdir(parents=True, exist_ok=True)
    ref_images = {p.name: p for p in images}
    da = _link([images[i] for i in a_idx], work / "A")
    db = _link([images[i] for i in b_idx], work / "B")
    dab = _link([images[i] for i in sorted(a_idx + b_idx)], work / "AB")
    names_a = [images[i].name for i in test_a]
    names_b = [images[i].name for i in test_b]
    t_a = _reconstruct(da, work / "scene_A", steps_a, resolution)
    a_fit = {images[i].name for i in a_idx}
    res = {"A_alone": {"psnr_A": heldout_psnr(work / "scene_A", ref, ref_images, names_a),
                       "psnr_B": heldout_psnr(work / "scene_A", ref, ref_images, names_b), "seconds": round(t_a, 1)}}
    shutil.rmtree(work / "scene_ext", ignore_errors=True)
    shutil.copytree(work / "scene_A", work / "scene_ext", symlinks=True)
    t0 = time.perf_counter()
    r = extend_scene(work / "scene_ext", db, steps=steps_ext, progress=False, log=lambda *a, **k: None)
    t_ext = time.perf_counter() - t0
    res["extended"] = {"psnr_A": heldout_psnr(work / "scene_ext", ref, ref_images, names_a),
                       "psnr_B": heldout_psnr(work / "scene_ext", ref, ref_images, names_b),
                       "psnr_A_fit_on_A": round(heldout_psnr(work / "scene_ext", ref, ref_images, names_a, a_fit), 2),
                       "psnr_B_fit_on_A": round(heldout_psnr(work / "scene_ext", ref, ref_images, names_b, a_fit), 2),
                       "seconds": round(t_ext, 1), "registered": len(r.registered), "dropped": len(r.dropped),
                       "added": r.added, "trained": r.trained, "frozen": r.frozen,
                       "register_seconds": r.timings.get("register_seconds")}
    t_ab = _reconstruct(dab, work / "scene_AB", steps_a, resolution)
    res["pose"] = pose_metrics(work / "scene_ext", ref, a_fit, work / "scene_AB")
    res["scratch_AB"] = {"psnr_A": heldout_psnr(work / "scene_AB", ref, ref_images, names_a),
                         "psnr_B": heldout_psnr(work / "scene_AB", ref, ref_images, names_b), "seconds": round(t_ab, 1)}
    for k in ("A_alone", "extended", "scratch_AB"):
        res[k]["psnr_A"] = round(res[k]["psnr_A"], 2)
        res[k]["psnr_B"] = round(res[k]["psnr_B"], 2)
    res["A_drop_db"] = round(res["A_alone"]["psnr_A"] - res["extended"]["psnr_A"], 2)
    # A's views at the very poses the A-alone scene renders them (A's cameras are unchanged by the extend)
    res["A_drop_fit_on_A_db"] = round(res["A_alone"]["psnr_A"] - res["extended"]["psnr_A_fit_on_A"], 2)
    res["B_gap_to_scratch_db"] = round(res["scratch_AB"]["psnr_B"] - res["extended"]["psnr_B"], 2)
    res["time_ratio_extend_over_scratch"] = round(t_ext / t_ab, 3)
    res["steps"] = {"A": steps_a, "scratch_AB": steps_a, "extend": steps_ext, "resolution": resolution}
    print(name, json.dumps(res), flush=True)
    return res


def _sample_split(work: Path):
    from spatialvid.sample import make_sample
    from spatialvid.sfm.pipeline import load_poses

    s = work / "sample"
    if not (s / "sample.json").exists():
        make_sample(s, progress=False)
    images = sorted((s / "images").glob("*.png"))
    ref = load_poses(s / "transforms.json")
    test = [i for i in range(len(images)) if i % 8 == 4]
    a = [i for i in range(36) if i not in test]
    b = [i for i in range(36, len(images)) if i not in test]
    return images, ref, a, b, [i for i in test if i < 36], [i for i in test if i >= 36]


def _fox_split(fox: Path):
    from spatialvid.sfm.pipeline import load_poses

    ref = load_poses(fox / "transforms.json")
    images = sorted(p for p in (fox / "images").iterdir() if p.suffix.lower() in (".jpg", ".png", ".jpeg"))
    test = [i for i in range(len(images)) if i % 8 == 4]
    half = len(images) // 2
    a = [i for i in range(half) if i not in test]
    b = [i for i in range(half, len(images)) if i not in test]
    return images, ref, a, b, [i for i in test if i < half], [i for i in test if i >= half]


def bench_sample(work: Path, steps_a: int, steps_ext: int) -> dict:
    return run_split("sample", work / "sample_run", *_sample_split(work), steps_a, steps_ext, 160)


def bench_fox(work: Path, steps_a: int, steps_ext: int, fox: Path = FOX) -> dict:
    return run_split("fox", work / "fox_run", *_fox_split(fox), steps_a, steps_ext, 240)


def pose_aligned_eval(run_dir: Path, split) -> dict:
    """Held-out PSNR of the scenes a run left in ``run_dir``, after test-time pose alignment of each view
    (:func:`_pose_optimised_psnr`); no training."""
    images, ref, _, _, test_a, test_b = split
    ref_images = {p.name: p for p in images}
    out = {}
    for key, d in (("A_alone", "scene_A"), ("extended", "scene_ext"), ("scratch_AB", "scene_AB")):
        if (run_dir / d / "scene.json").exists():
            out[key] = {f"psnr_{x}": round(heldout_psnr(run_dir / d, ref, ref_images, [images[i].name for i in t],
                                                        optimise_pose=True), 2)
                        for x, t in (("A", test_a), ("B", test_b))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=["sample", "fox", "both"], default="both")
    ap.add_argument("--steps-a", type=int, default=1500)
    ap.add_argument("--steps-extend", type=int, default=500)
    ap.add_argument("--work", default="/tmp/spatialvid_bench_extend")
    ap.add_argument("--fox", type=Path, default=FOX, help=f"the fox data (default {FOX})")
    ap.add_argument("--pose-aligned", action="store_true",
                    help="only evaluate the scenes an earlier run left in --work: held-out PSNR after test-time "
                         "pose alignment of each view (no training)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    out = {}
    if args.pose_aligned:
        if args.data in ("sample", "both"):
            out["sample"] = pose_aligned_eval(work / "sample_run", _sample_split(work))
        if args.data in ("fox", "both") and (args.fox / "transforms.json").exists():
            out["fox"] = pose_aligned_eval(work / "fox_run", _fox_split(args.fox))
        print(json.dumps({"pose_aligned_psnr": out}))
        return
    if args.data in ("sample", "both"):
        out["sample"] = bench_sample(work, args.steps_a, args.steps_extend)
    if args.data in ("fox", "both"):
        if (args.fox / "transforms.json").exists():
            out["fox"] = bench_fox(work, args.steps_a, args.steps_extend, args.fox)
        else:
            out["fox"] = {"skipped": f"no fox data at {args.fox}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
