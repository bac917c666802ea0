"""Rasterizer speed: C++ CPU kernels (and CUDA / gsplat when present) vs the PyTorch reference, same input.

Usage: python benchmarks/raster.py [--json] [--quick] [--full] [--repeats 5] [--configs WxHxN ...]
                                   [--backends cpu cuda gsplat] [--no-ref]

Scenes: N Gaussians uniformly inside the view frustum (depth 3..7, log-normal sizes of a few pixels,
random rotations/opacities, SH degree 0), camera at the origin looking down +z (OpenCV).
Default run: 256x256 and 512x512 with 10k and 100k Gaussians (CPU and torch reference, forward and
forward+backward), 512x512 with 500k and 1080x1920 with 100k/500k forward on the CPU only; ``--full`` also
times the reference on the large inputs (minutes). ``--quick``: a few-second smoke subset.

Each record: width, height, gaussians, backend, pass ("forward" | "forward_backward"), median_ms (wall),
max_abs_err (of rgb/alpha/depth against the torch reference on the same input; null where the reference
was not run), pairs_per_s ((tile, Gaussian) pairs composited per second), peak_mb (peak resident-memory
growth during the call, sampled every 2 ms), cpu_ms (process CPU time, all threads: the cost independent of
other load on the machine), num_threads, pairs. With a GPU, our CUDA kernels and gsplat (when installed:
``pip install 'spatialvid[bench-gpu]'``) run on the same input, and one extra record per size and pass,
``{"compare": "cuda_vs_gsplat", "ratio": cuda_ms / gsplat_ms, ...}``, gives the ratio measured in this run
(peak_mb is host memory; CUDA records add peak_gpu_mb). The last line of output is one JSON list.

GPU example (1080p, 1M Gaussians, forward and forward+backward, ours vs gsplat):
    python benchmarks/raster.py --configs 1920x1080x1000000 --backends cuda gsplat --no-ref --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time

import torch

from spatialvid.render import backend as B
from spatialvid.render import rasterize


def make_scene(n: int, width: int, height: int, seed: int = 0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    f = 0.9 * max(width, height)
    z = torch.rand(n, generator=g) * 4 + 3
    xy = (torch.rand(n, 2, generator=g) - 0.5) * torch.tensor([width / f, height / f]) * z[:, None]
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=g)
    # std ~2.5 px (log-normal spread) whatever the image size
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.4) * (2.5 * z[:, None] / f)
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, 3, generator=g)
    viewmat = torch.eye(4)
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    return [t.to(device) for t in (means, quats, scales, opac, colors, viewmat, K)]


class PeakRSS:
    """Peak resident-set growth (MB) while the block runs, sampled from /proc every 2 ms."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *a):
        self.stop = True
        self.t.join()
        self.peak = max(self.peak, self._rss())
        self.mb = (self.peak - self.base) / 1e6


def run_once(inputs, width, height, backend, backward):
    ins = [t.detach().clone().requires_grad_(backward and i < 5) for i, t in enumerate(inputs)]
    if backend == "gsplat":
        import gsplat

        means, quats, scales, opac, colors, viewmat, K = ins
        rc, ra, meta = gsplat.rasterization(means, quats, scales, opac, colors, viewmat[None], K[None], width,
                                            height, render_mode="RGB+ED")
        out = {"rgb": rc[0, ..., :3], "alpha": ra[0, ..., 0], "depth": rc[0, ..., 3]}
        pairs = int(meta.get("isect_ids", torch.zeros(0)).numel())
    else:
        o = rasterize(*ins[:5], ins[5], ins[6], width, height, backend=backend)
        out = {"rgb": o.rgb, "alpha": o.alpha, "depth": o.depth}
        pairs = o.num_intersections
    if backward:
        (out["rgb"].sum() + out["alpha"].sum() + out["depth"].sum() * 0.1).backward()
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
    return {k: v.detach() for k, v in out.items()}, pairs


def measure(inputs, width, height, backend, backward, repeats):
    times, cpu = [], []
    with PeakRSS() as mem:  # includes the first call: later calls reuse the allocator's memory
        if backend != "torch":  # the reference has nothing to warm up and is slow
            run_once(inputs, width, height, backend, backward)  # warm-up (and extension build)
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            out, pairs = run_once(inputs, width, height, backend, backward)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return statistics.median(times), out, pairs, mem.mb, statistics.median(cpu)


def max_err(a, b):
    return max(float((a[k].float().cpu() - b[k].float().cpu()).abs().max()) for k in ("rgb", "alpha", "depth"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print only the JSON list (plus progress on stderr)")
    ap.add_argument("--quick", action="store_true", help="a few-second smoke subset")
    ap.add_argument("--full", action="store_true", help="also run the torch reference on the largest inputs")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per fast backend (median; default 5)")
    ap.add_argument("--configs", nargs="+", metavar="WxHxN",
                    help="run only these sizes, e.g. 512x512x100000 (forward and forward+backward)")
    ap.add_argument("--no-ref", action="store_true", help="skip the torch reference (no max_abs_err)")
    ap.add_argument("--backends", nargs="+", choices=["cpu", "cuda", "gsplat"],
                    help="fast backends to time (default: cpu, plus cuda and gsplat where available)")
    args = ap.parse_args()

    if args.quick:
        configs = [(64, 64, 2000, True, True)]
    else:
        # (width, height, gaussians, with backward, run the torch reference)
        configs = [(256, 256, 10_000, True, True), (256, 256, 100_000, True, True),
                   (512, 512, 10_000, True, True), (512, 512, 100_000, True, True),
                   (512, 512, 500_000, True, args.full), (1920, 1080, 100_000, False, args.full),
                   (1920, 1080, 500_000, False, args.full)]
    if args.configs:
        try:
            configs = [tuple(int(v) for v in c.lower().split("x")) + (True, True) for c in args.configs]
        except ValueError:
            ap.error("--configs takes WxHxN, e.g. 512x512x100000")
    if args.no_ref:
        configs = [c[:4] + (False,) for c in configs]
    fast = ["cpu"]
    have_gsplat = False
    if torch.cuda.is_available():
        fast.append("cuda")
        try:
            import gsplat  # noqa: F401

            have_gsplat = True
            fast.append("gsplat")
        except ImportError:
            pass
    if args.backends:
        missing = [b for b in args.backends if b not in fast]
        if missing:
            reason = "no CUDA device" if not torch.cuda.is_available() else "gsplat is not installed"
            log_err = f"raster.py: {', '.join(missing)} unavailable ({reason}); skipped"
            print(log_err, file=sys.stderr)
        fast = [b for b in args.backends if b in fast]
    if "cpu" in fast or any(c[4] for c in configs):
        B.build_cpu_extension()
    if "cuda" in fast:
        B.build_cuda_extension()
    print(f"raster.py: backends {fast}; gsplat {'present' if have_gsplat else 'absent'}", file=sys.stderr)
    nthreads = torch.get_num_threads()
    records = []

    def log(msg):
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    for width, height, n, with_bwd, with_ref in configs:
        scene = make_scene(n, width, height)
        passes = [False, True] if with_bwd else [False]
        for backward in passes:
            pname = "forward_backward" if backward else "forward"
            ref_out, tref = None, None
            if with_ref:
                reps = 1 if n * width * height > 2e9 else 2
                t, ref_out, pairs, mb, cpu = measure(scene, width, height, "torch", backward, reps)
                tref = t
                records.append(dict(width=width, height=height, gaussians=n, backend="torch", **{"pass": pname},
                                    median_ms=t * 1e3, max_abs_err=0.0, pairs_per_s=pairs / t, peak_mb=mb,
                                    cpu_ms=cpu * 1e3, num_threads=nthreads, pairs=pairs))
                log(f"{width}x{height} N={n} {pname:16s} torch  {t * 1e3:9.1f} ms (cpu time {cpu * 1e3:8.1f} ms)")
            times = {}
            for be in fast:
                inp = [x.cuda() for x in scene] if be in ("cuda", "gsplat") else scene
                if be in ("cuda", "gsplat"):
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                t, out, pairs, mb, cpu = measure(inp, width, height, be, backward, args.repeats)
                times[be] = t
                err = max_err(out, ref_out) if ref_out is not None else None
                if be == "gsplat":
                    err = None  # different conventions (tile culling, depth) from ours: timing only
                rec = dict(width=width, height=height, gaussians=n, backend=be, **{"pass": pname}, median_ms=t * 1e3,
                           max_abs_err=err, pairs_per_s=pairs / t, peak_mb=mb, cpu_ms=cpu * 1e3, num_threads=nthreads,
                           pairs=pairs)
                if be in ("cuda", "gsplat"):
                    rec["peak_gpu_mb"] = (torch.cuda.max_memory_allocated() - base) / 1e6
                    rec["gpu"] = torch.cuda.get_device_name()
                records.append(rec)
                speed = f" ({tref / t:.1f}x vs torch, err {err:.1e})" if err is not None else ""
                log(f"{width}x{height} N={n} {pname:16s} {be:6s} {t * 1e3:9.1f} ms (cpu time {cpu * 1e3:8.1f} ms) "
                    f"{pairs / t / 1e6:6.1f} Mpairs/s{speed}")
            if "cuda" in times and "gsplat" in times:
                ratio = times["cuda"] / times["gsplat"]
                records.append(dict(compare="cuda_vs_gsplat", width=width, height=height, gaussians=n,
                                    **{"pass": pname}, ratio=ratio, cuda_ms=times["cuda"] * 1e3,
                                    gsplat_ms=times["gsplat"] * 1e3))
                log(f"{width}x{height} N={n} {pname:16s} ours / gsplat = {ratio:.2f}x")
    for r in records:
        for k, v in r.items():
            if isinstance(v, float) and math.isfinite(v):
                r[k] = round(v, 6 if k == "max_abs_err" else 2)
    print(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
