"""`spatialvid export` on the demo scene: mesh accuracy against the sample's true surfaces and mesh time,
.spz size and rendering fidelity against the scene's PLY.

Usage: python benchmarks/export.py [--scene data/demo/scene] [--sample data/demo/sample] [--threads 2]
(make them with `spatialvid demo`). Prints one JSON object (last line):

* ``mesh``: the trained scene's mesh (default options, original frame = metres) vs the sample's exact
  surfaces (:func:`spatialvid.mesh_eval.evaluate_mesh`: chamfer, completeness within 0.5 % of the extent
  over the surface the video sees), with its export time; ``mesh_gt``: the same for the sample's
  ground-truth Gaussians seen by the video (the meshing alone, without training error).
* ``spz``: file sizes (the scene's gaussians.ply vs .spz, default and with ``--min-opacity 0.01
  --fractional-bits 11``) and PSNR of renders of the PLY and of the decoded .spz against the video frames,
  on the held-out frames and on all cameras (the difference is what the compression costs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _images(scene, scene_dir: Path, names: list[str] | None):
    from PIL import Image

    out = []
    for i, p in enumerate(scene.cameras.image_paths):
        if names is not None and Path(p).name not in names:
            continue
        path = Path(p) if Path(p).is_absolute() else scene_dir / p
        out.append((i, torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0)))
    return out


def _psnr(gaussians, scene, images) -> float:
    from spatialvid.metrics import psnr
    from spatialvid.render.api import render_scene

    return float(np.mean([psnr(torch.from_numpy(render_scene(gaussians, scene.cameras[i]).rgb).clamp(0, 1), img)
                          for i, img in images]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="data/demo/scene", help="trained demo scene (default data/demo/scene)")
    ap.add_argument("--sample", default="data/demo/sample", help="its sample folder (default data/demo/sample)")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads (default 2)")
    ap.add_argument("--no-gt", action="store_true", help="skip the ground-truth Gaussians' mesh")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from spatialvid.formats import export_scene
    from spatialvid.formats.mesh import MeshConfig, read_mesh, scene_to_mesh
    from spatialvid.formats.spz import read_spz
    from spatialvid.mesh_eval import evaluate_mesh
    from spatialvid.sample import video_visible_scene
    from spatialvid.scene import Scene

    scene_dir, sample = Path(args.scene), Path(args.sample)
    scene = Scene.load(scene_dir)
    out: dict = {"scene": str(scene_dir), "gaussians": len(scene.gaussians), "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        glb = export_scene(scene, tmp / "mesh.glb", mesh=MeshConfig(progress=False))
        secs = time.perf_counter() - t
        m = read_mesh(glb)
        out["mesh"] = {"seconds": round(secs, 2), "faces": len(m.faces), "glb_mb": round(glb.stat().st_size / 1e6, 2),
                       **evaluate_mesh(m.vertices, m.faces, sample)}
        print(json.dumps({"mesh": out["mesh"]}), flush=True)
        if not args.no_gt:
            gt = video_visible_scene(sample)
            t = time.perf_counter()
            gm = scene_to_mesh(gt, MeshConfig(progress=False))
            out["mesh_gt"] = {"seconds": round(time.perf_counter() - t, 2), "faces": len(gm.faces),
                              "gaussians": len(gt.gaussians), **evaluate_mesh(gm.vertices, gm.faces, sample)}
            print(json.dumps({"mesh_gt": out["mesh_gt"]}), flush=True)

        metrics = json.loads((scene_dir / "metrics.json").read_text()) if (scene_dir / "metrics.json").exists() else {}
        held = _images(scene, scene_dir, metrics.get("heldout_images"))
        every = _images(scene, scene_dir, None)
        ply_mb = (scene_dir / "gaussians.ply").stat().st_size / 1e6
        base = {"heldout": _psnr(scene.gaussians, scene, held), "all": _psnr(scene.gaussians, scene, every)}
        spz = {"ply_mb": round(ply_mb, 3), "psnr_ply": {k: round(v, 3) for k, v in base.items()},
               "heldout_views": len(held), "all_views": len(every)}
        for name, kw in (("default", {}), ("compact", {"min_opacity": 0.01, "fractional_bits": 11})):
            t = time.perf_counter()
            p = export_scene(scene, tmp / f"{name}.spz", **kw)
            secs = time.perf_counter() - t
            g = read_spz(p)
            ps = {"heldout": _psnr(g, scene, held), "all": _psnr(g, scene, every)}
            spz[name] = {"options": kw, "mb": round(p.stat().st_size / 1e6, 3),
                         "ratio": round(ply_mb / (p.stat().st_size / 1e6), 2), "gaussians": len(g),
                         "write_seconds": round(secs, 2), "psnr": {k: round(v, 3) for k, v in ps.items()},
                         "psnr_delta": {k: round(ps[k] - base[k], 3) for k in ps}}
            print(json.dumps({f"spz_{name}": spz[name]}), flush=True)
        out["spz"] = spz
    print(json.dumps(out))


if __name__ == "__main__":
    main()
