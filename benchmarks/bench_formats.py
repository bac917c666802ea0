"""Throughput of the scene formats: 3DGS PLY write/read, .splat export, transforms.json round trip.

Usage: python benchmarks/bench_formats.py [--n 1000000] [--degree 3]
Prints one JSON object (last line) with seconds and MB/s. Files go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from spatialvid.cameras import Cameras
from spatialvid.formats.nerfstudio import read_transforms, write_transforms
from spatialvid.formats.ply import read_ply, write_ply
from spatialvid.formats.splat import write_splat
from spatialvid.gaussians import Gaussians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="number of Gaussians (default 1,000,000)")
    ap.add_argument("--degree", type=int, default=3, help="SH degree 0..3 (default 3)")
    ap.add_argument("--cameras", type=int, default=1000, help="cameras in transforms.json (default 1000)")
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    n, k = args.n, (args.degree + 1) ** 2 - 1
    g = Gaussians.from_arrays(torch.randn(n, 3, generator=gen), torch.randn(n, 3, generator=gen) - 4,
                              torch.randn(n, 4, generator=gen), torch.randn(n, generator=gen),
                              torch.randn(n, 3, generator=gen), torch.randn(n, k, 3, generator=gen))
    cams = Cameras.cat([Cameras.look_at((3 * float(torch.cos(torch.tensor(i * 0.01))), 3.0, 1.0), (0, 0, 0),
                                        name=f"{i:05d}.png") for i in range(args.cameras)])
    out: dict = {"n": n, "sh_degree": args.degree}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t = time.perf_counter()
        write_ply(d / "g.ply", g)
        out["ply_write_s"] = time.perf_counter() - t
        size = (d / "g.ply").stat().st_size
        t = time.perf_counter()
        back = read_ply(d / "g.ply")
        out["ply_read_s"] = time.perf_counter() - t
        assert torch.equal(back.shN, g.shN)
        out["ply_mb"] = size / 1e6
        out["ply_write_mb_s"] = size / 1e6 / out["ply_write_s"]
        out["ply_read_mb_s"] = size / 1e6 / out["ply_read_s"]
        t = time.perf_counter()
        write_splat(d / "g.splat", g)
        out["splat_write_s"] = time.perf_counter() - t
        t = time.perf_counter()
        write_transforms(d / "transforms.json", cams)
        read_transforms(d / "transforms.json")
        out[f"transforms_roundtrip_{args.cameras}_cams_s"] = time.perf_counter() - t
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
