"""Training benchmarks: speed (steps/s with a per-stage breakdown) and quality (held-out PSNR) runs.

    python benchmarks/train.py --what speed  [--source sample|fox] [--gaussians 100000] [--resolution 480] [--json]
    python benchmarks/train.py --what sample [--preset fast] [--steps N] [--json]
    python benchmarks/train.py --what fox    [--preset default] [--steps N] [--sfm] [--json]

``speed`` times the training step at 480x270 with a fixed number of Gaussians (densification off) and splits
it into render forward, loss, backward, optimiser and strategy; ``--source sample`` uses trained-like Gaussians
(the sample's ground truth), ``--source fox`` a random init on the fox images (large Gaussians, pessimistic).
``sample`` makes the bundled sample (cached under --work) and reconstructs it; ``fox`` reconstructs
../shared/data/fox with its known poses (or with our SfM: --sfm). The last line printed is JSON.

GPU: ``--device cuda`` trains on the GPU (``--backend auto`` = our CUDA kernels); ``--backend gsplat`` (speed only,
gsplat installed: ``pip install 'spatialvid[bench-gpu]'``) renders the same step with gsplat instead, so the
two rasterizers are compared on the same Gaussians, images and optimiser. ``--threads N`` sets torch's CPU
threads (e.g. 2 for the CPU baseline the GPU is compared with).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOX = REPO.parent / "shared" / "data" / "fox"


def _speed_data_fox(args, cfg):
    from spatialvid.train import make_train_data, resolve_input

    if not (FOX / "transforms.json").exists():
        raise SystemExit(f"fox data not found at {FOX}")
    res = resolve_input(FOX, "transforms.json", init="random")
    return make_train_data(res.cameras, cfg, res.points, res.colors, True, progress=False), None


def _speed_data_sample(args, cfg):
    """Trained-like Gaussians: the sample's gt_gaussians.ply (subsampled to --gaussians), seen by the sample's
    cameras re-shaped to 480x270; targets are renders of the full ground-truth set, the trained copy is
    perturbed so that gradients are realistic."""
    import torch

    from spatialvid.cameras import Cameras
    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.formats.ply import read_ply
    from spatialvid.render import render_gaussians
    from spatialvid.sample import make_sample
    from spatialvid.train.data import TrainData, split_indices

    sample = Path(args.work) / "sample"
    if not (sample / "sample.json").exists():
        make_sample(sample, progress=False)
    gt = read_ply(sample / "gt_gaussians.ply")
    cams = read_transforms(sample / "transforms.json")
    long_side = args.resolution
    w, h = long_side, int(round(long_side * 9 / 16))
    f = 288.0 * w / 320
    cams = Cameras(fx=torch.full((len(cams),), f), fy=torch.full((len(cams),), f), cx=w / 2, cy=h / 2, width=w,
                   height=h, R=cams.R, t=cams.t, names=cams.names)
    target_backend = "torch" if cfg.backend == "torch" else "auto"  # gt is on the CPU
    with torch.no_grad():
        images = [render_gaussians(gt, cams[i], backend=target_backend).rgb.clamp(0, 1) for i in range(len(cams))]
    g = torch.Generator().manual_seed(0)
    sel = torch.randperm(len(gt), generator=g)[:args.gaussians]
    init = gt[sel].clone()
    init.means += 0.01 * torch.randn(init.means.shape, generator=g)
    init.sh0 += 0.2 * torch.randn(init.sh0.shape, generator=g)
    train, test = split_indices(cams.names, 8)
    return TrainData(cams, images, train, test, None, None, True), init


def bench_speed(args) -> dict:
    import torch

    from spatialvid.train import Trainer, load_config
    from spatialvid.train.losses import photometric_loss

    use_gsplat = args.backend == "gsplat"
    cfg = load_config("default", {"resolution": args.resolution, "init": "random", "init_random_points": args.gaussians,
                                  "max_gaussians": max(args.gaussians, 1), "densify_stop": 0,
                                  "backend": "auto" if use_gsplat else args.backend, "device": args.device,
                                  "checkpoint_every": 0, "sh_degree": args.sh_degree, "sh_degree_interval": 0})
    data, init = (_speed_data_sample if args.source == "sample" else _speed_data_fox)(args, cfg)
    tr = Trainer(data, cfg, None, init=init, progress=False)
    if use_gsplat:
        if tr.device.type != "cuda":
            raise SystemExit("--backend gsplat needs --device cuda")
        tr.render = _gsplat_render(tr)
    cuda = tr.device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for s in range(args.warmup):
        tr.train_step(s)
    sync()
    stages = {"render": 0.0, "loss": 0.0, "backward": 0.0, "optimizer": 0.0, "strategy": 0.0}
    t_all = time.perf_counter()
    isect = 0
    for s in range(args.warmup, args.warmup + args.steps):
        pos = tr.camera_at(s)
        cam = data.train_idx[pos]
        t0 = time.perf_counter()
        out = tr.render(cam, tr.sh_degree_at(s))
        sync()  # per-stage times need the GPU to finish each stage (costs a little; steps_per_second includes it)
        t1 = time.perf_counter()
        loss, _ = photometric_loss(out.rgb, tr.image(cam), cfg.ssim_lambda)
        sync()
        t2 = time.perf_counter()
        tr.strategy.step_pre_backward(tr.params, tr.optimizers, tr.strategy_state, s, out)
        loss.backward()
        sync()
        t3 = time.perf_counter()
        for o in tr.optimizers.values():
            o.step()
            o.zero_grad(set_to_none=True)
        sync()
        t4 = time.perf_counter()
        tr.strategy.step_post_backward(tr.params, tr.optimizers, tr.strategy_state, s, out, lr_means=tr.lr_means(s))
        sync()
        t5 = time.perf_counter()
        for k, a, b in (("render", t0, t1), ("loss", t1, t2), ("backward", t2, t3), ("optimizer", t3, t4),
                        ("strategy", t4, t5)):
            stages[k] += b - a
        isect += out.num_intersections
    total = time.perf_counter() - t_all
    # whole train_step calls (stats read back, no per-stage syncs): what a real run costs per step
    t_steps = time.perf_counter()
    s0 = args.warmup + args.steps
    for s in range(s0, s0 + args.steps):
        tr.train_step(s)
    sync()
    step_total = time.perf_counter() - t_steps
    w, h = int(data.cameras.width[0]), int(data.cameras.height[0])
    return {"what": "speed", "source": args.source, "width": w, "height": h, "num_gaussians": tr.num_gaussians,
            "sh_degree": args.sh_degree, "steps": args.steps, "steps_per_second": args.steps / total,
            "ms_per_step": 1000 * total / args.steps,
            "stage_ms": {k: round(1000 * v / args.steps, 2) for k, v in stages.items()},
            "train_step_ms": round(1000 * step_total / args.steps, 3),
            "device": str(tr.device), "gpu": torch.cuda.get_device_name() if cuda else None,
            "mean_intersections": isect // args.steps, "backend": out.backend, "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in __import__("os").getloadavg()]}


class _GsplatOut:
    def __init__(self, rgb, n):
        self.rgb, self.num_intersections, self.backend = rgb, n, "gsplat"


def _gsplat_render(tr):
    """A drop-in for ``Trainer.render`` (densification off, no pose refinement) that renders with gsplat."""
    import gsplat
    import torch

    def render(cam_idx, sh_degree=None, train_pos=None):
        p = tr.params
        deg = tr.cfg.sh_degree if sh_degree is None else sh_degree
        k = (deg + 1) ** 2 - 1
        sh = torch.cat([p["sh0"][:, None, :], p["shN"][:, :k]], 1) if k else p["sh0"][:, None, :]
        img = tr.image(cam_idx)
        rc, _, meta = gsplat.rasterization(
            p["means"], p["quats"], torch.exp(p["log_scales"]), torch.sigmoid(p["opacity_logits"]), sh,
            tr.viewmats[cam_idx][None], tr.Ks[cam_idx][None], img.shape[1], img.shape[0], sh_degree=deg,
            backgrounds=tr.bg[None], rasterize_mode="antialiased" if tr.cfg.antialiased else "classic")
        return _GsplatOut(rc[0], int(meta["isect_ids"].numel()) if "isect_ids" in meta else 0)

    return render


def bench_sample(args) -> dict:
    from spatialvid.sample import make_sample
    from spatialvid.train import load_config, reconstruct

    work = Path(args.work)
    sample = work / "sample"
    t0 = time.perf_counter()
    if not (sample / "sample.json").exists():
        make_sample(sample, progress=not args.json)
    t_sample = time.perf_counter() - t0
    over = {"backend": args.backend, "device": args.device, "init": args.init}
    for kv in args.set or []:
        k, _, v = kv.partition("=")
        over[k] = v
    if args.steps:
        over["steps"] = args.steps
    cfg = load_config(args.preset, over)
    # as `spatialvid demo`: the known poses, with sparse points triangulated from them (unless --init random)
    src, poses = (sample / "video.mp4", None) if args.sfm else (sample, sample / "transforms.json")
    m = reconstruct(src, work / f"scene_{args.preset}{'_sfm' if args.sfm else ''}", cfg, poses=poses,
                    overwrite=True, progress=not args.json, preset=args.preset,
                    log=(lambda *a: None) if args.json else print)
    return {"what": "sample", "preset": args.preset, "poses": "sfm" if args.sfm else "ground truth",
            "psnr": m["psnr"], "ssim": m["ssim"], "num_gaussians": m["num_gaussians"], "steps": m["steps"],
            "train_seconds": m["train_seconds"], "sample_seconds": round(t_sample, 1), "timings": m["timings"]}


def bench_fox(args) -> dict:
    from spatialvid.train import load_config, reconstruct

    if not (FOX / "transforms.json").exists():
        raise SystemExit(f"fox data not found at {FOX}")
    over = {"backend": args.backend, "device": args.device, "resolution": args.resolution, "init": args.init}
    for kv in args.set or []:
        k, _, v = kv.partition("=")
        over[k] = v
    if args.steps:
        over["steps"] = args.steps
    cfg = load_config(args.preset, over)
    out = Path(args.work) / f"fox_{args.preset}{'_sfm' if args.sfm else ''}"
    src, poses = (FOX / "images", None) if args.sfm else (FOX, "transforms.json")
    m = reconstruct(src, out, cfg, poses=poses, overwrite=True, progress=not args.json, preset=args.preset,
                    log=(lambda *a: None) if args.json else print)
    return {"what": "fox", "preset": args.preset, "poses": "sfm" if args.sfm else "transforms.json",
            "resolution": m["resolution"], "psnr": m["psnr"], "ssim": m["ssim"], "num_gaussians": m["num_gaussians"],
            "steps": m["steps"], "train_seconds": m["train_seconds"], "timings": m["timings"]}


def bench_ranks(args) -> dict:
    """Data-parallel speed on the sample: for each rank count N in ``--ranks``, ``reconstruct`` with the same
    total batch (``--batch-size``, default 2) and the same cores: N ranks (torchrun, gloo) x (cores / N)
    threads each. Reports steps/s, images/s, rank 0's all-reduce bytes per step and seconds in collectives."""
    import os
    import subprocess

    from spatialvid.sample import make_sample

    work = Path(args.work)
    sample = work / "sample"
    if not (sample / "sample.json").exists():
        make_sample(sample, progress=not args.json)
    cores = args.cores
    steps = args.steps or 300
    runs = []
    for n in [int(x) for x in args.ranks.split(",")]:
        if cores % n:
            raise SystemExit(f"--cores {cores} is not a multiple of {n} ranks")
        out = work / f"ranks_{n}"
        cmd = [sys.executable]
        if n > 1:
            cmd += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]
        cmd += ["-m", "spatialvid", "reconstruct", str(sample), "-o", str(out), "--poses",
                str(sample / "transforms.json"), "--preset", args.preset or "fast", "--steps", str(steps),
                "--batch-size", str(args.batch_size), "--backend", "cpu", "--save-eval-images", "false",
                "--overwrite", "--quiet", "--json"]
        env = {**os.environ, "OMP_NUM_THREADS": str(cores // n)}
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"{n} ranks failed:\n{r.stderr[-2000:]}")
        m = json.loads((out / "metrics.json").read_text())
        ts = m["train_seconds"]
        runs.append({"ranks": n, "threads_per_rank": cores // n, "steps": m["steps"], "batch_size": args.batch_size,
                     "train_seconds": ts, "steps_per_s": round(m["steps"] / ts, 3),
                     "images_per_s": round(m["steps"] * args.batch_size / ts, 3), "psnr": m["psnr"],
                     "num_gaussians": m["num_gaussians"], "comm_bytes_per_step": m.get("comm_bytes_per_step", 0),
                     "comm_seconds": m.get("comm_seconds", 0.0), "wall_seconds": round(wall, 1)})
    base = runs[0]["steps_per_s"]
    for r in runs:
        r["speed_vs_first"] = round(r["steps_per_s"] / base, 3)
        if r["comm_bytes_per_step"]:
            r["compute_seconds_per_step"] = round((r["train_seconds"] - r["comm_seconds"]) / r["steps"], 4)
            r["comm_seconds_per_step"] = round(r["comm_seconds"] / r["steps"], 4)
    return {"what": "ranks", "cores": cores, "runs": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=["speed", "sample", "fox"], default="speed")
    p.add_argument("--preset", default=None, help="fast for sample, default for fox (default)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--gaussians", type=int, default=100_000)
    p.add_argument("--resolution", type=int, default=480, help="longest image side in px (speed, fox)")
    p.add_argument("--sh-degree", type=int, default=3)
    p.add_argument("--source", choices=["sample", "fox"], default="sample",
                   help="speed: trained-like Gaussians from the sample's ground truth (default) or a random init "
                        "on the fox images (many large Gaussians: a pessimistic case)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--backend", default="auto", help="auto | cpu | cuda | torch | gsplat (speed, GPU only)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (where the training tensors live)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--init", default="auto", help="sample, fox: auto (triangulate with the known poses via "
                   "spatialvid.sfm) or random (skip triangulation)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="extra config overrides (sample, fox)")
    p.add_argument("--sfm", action="store_true", help="estimate poses with our SfM instead of the known ones")
    p.add_argument("--work", default="/tmp/spatialvid_bench_train", help="scratch folder")
    p.add_argument("--json", action="store_true", help="only the JSON line")
    p.add_argument("--ranks", default=None, metavar="N,M,...",
                   help="data-parallel speed on the sample for these rank counts (torchrun, gloo), same cores")
    p.add_argument("--cores", type=int, default=2, help="--ranks: cores shared by the ranks (default 2)")
    p.add_argument("--batch-size", type=int, default=2, help="--ranks: cameras per step in total (default 2)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.ranks:
        res = bench_ranks(args)
    elif args.what == "speed":
        args.steps = args.steps or 30
        res = bench_speed(args)
    elif args.what == "sample":
        args.preset = args.preset or "fast"
        res = bench_sample(args)
    else:
        args.preset = args.preset or "default"
        res = bench_fox(args)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
