"""`spatialvid reconstruct`: video, image folder or posed folder to a trained Gaussian-splat scene."""

from __future__ import annotations

import json
import os
import sys
import warnings

from spatialvid.cli._common import add_parser
from spatialvid.errors import SpatialvidError

DESCRIPTION = """\
Train a 3D Gaussian-splat scene from INPUT and write it to SCENE_DIR.

INPUT is one of:
  * a video (.mp4/.mov/...) or a folder of images: poses are estimated first (spatialvid.sfm),
    unless --poses gives them;
  * a folder with a transforms.json (nerfstudio) or a COLMAP model (sparse/0), images beside it
    (known poses; without a point cloud, sparse points are triangulated with them; --init random skips that);
  * a scene folder written by `spatialvid poses` or an earlier reconstruct (its cameras and points).

SCENE_DIR gets: gaussians.ply, transforms.json, scene.json (the scene), metrics.json (held-out PSNR, SSIM,
LPIPS or null, Gaussian count, steps, training seconds, held-out image names), training_curve.png,
eval/ (ground truth | render per held-out view) and checkpoints/last.pt (for --resume).

Every 8th image (by name) is held out for evaluation (--holdout-every). Presets live in configs/*.yaml;
every config field can be overridden, e.g. --sh-degree 1 --max-gaussians 200000 --strategy mcmc.

Several processes (data parallel, gloo on CPU / NCCL on GPU): launch with torchrun and give a batch of at
least one camera per rank, e.g. `torchrun --nproc_per_node 2 -m spatialvid reconstruct ... --batch-size 2`.
Rank 0 writes SCENE_DIR; --resume needs the same number of ranks.
"""

EPILOG = """\
examples:
  spatialvid reconstruct data/sample/video.mp4 -o scenes/sample --preset fast
  spatialvid reconstruct ../shared/data/fox --poses transforms.json --downscale 4 -o scenes/fox
  spatialvid reconstruct scenes/fox --resume -o scenes/fox        # continue a killed run
  spatialvid reconstruct data/sample -o scenes/sample --view      # watch training live in a browser
  torchrun --nproc_per_node 2 -m spatialvid reconstruct data/sample -o scenes/sample --batch-size 2
"""


def register(sub) -> None:
    from spatialvid.device import add_device_argument
    from spatialvid.train.config import PRESETS, add_config_arguments

    p = add_parser(sub, "reconstruct", help="Video or images to a trained Gaussian-splat scene",
                   description=DESCRIPTION)
    p.epilog = EPILOG
    p.add_argument("input", metavar="INPUT", help="video file, image folder, posed folder or scene folder")
    p.add_argument("-o", "--out", "--output", dest="out", required=True, metavar="SCENE_DIR",
                   help="output scene folder (refused if it exists and is not empty, unless --overwrite/--resume)")
    p.add_argument("--preset", default="default",
                   help=f"training preset: {' | '.join(PRESETS)} or a YAML file (default: default)")
    p.add_argument("--poses", metavar="FILE",
                   help="known poses: a nerfstudio transforms.json or a COLMAP model folder (relative paths are "
                        "also looked up inside INPUT); turns pose estimation and pose refinement off")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from the preset)")
    p.add_argument("--backend", choices=["auto", "cpu", "cuda", "torch"], default=None,
                   help="rasterizer backend (default auto: the CUDA kernels for --device cuda, else the C++ CPU "
                        "kernels)")
    add_device_argument(p, "the parameters, images and optimiser state")
    p.add_argument("--resume", action="store_true",
                   help="continue from SCENE_DIR/checkpoints/last.pt (same input and settings)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing SCENE_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("--view", action="store_true",
                   help="watch training live in the web viewer (splats refreshed every few seconds, loss/PSNR/"
                        "Gaussian count shown, Pause/Resume button); the URL is printed when training starts "
                        "and the viewer stops when training ends")
    p.add_argument("--view-host", default="127.0.0.1",
                   help="address the live viewer listens on (default: 127.0.0.1, this machine only)")
    p.add_argument("--view-port", type=int, default=8080,
                   help="live viewer port (default: 8080; the next free one is used when taken; 0 = any)")
    p.add_argument("--dist-timeout", type=float, default=None, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for the others before the run stops "
                        "(default 1800; a rank that dies is noticed at once)")
    add_config_arguments(p)
    p.set_defaults(func=run)


class LiveView:
    """``--view``: a training-mode viewer fed by the trainer's step callback.

    ``start(scene)`` (the pipeline's ``on_train_start``) opens the viewer on the starting scene and prints its
    URL; calling the object with a :class:`~spatialvid.train.trainer.StepEvent` (``on_step``) sends the current
    Gaussians and stats (the viewer throttles the copies) and blocks while the user has paused training;
    ``stop()`` closes the viewer. ``factory(scene, config)`` builds the app (default: ``ViewerApp``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, factory=None):
        if not 0 <= port <= 65535:
            raise SpatialvidError(f"--view-port must be in 0..65535 (got {port})")
        self.host, self.port, self.factory = host, port, factory
        self.app = None
        self.updates = 0

    def start(self, scene) -> None:
        from viewer import ViewerApp, ViewerConfig
        from viewer.app import is_loopback

        if not is_loopback(self.host):
            print(f"spatialvid reconstruct: warning: the live viewer listens on {self.host}: anyone who can "
                  "reach this machine can see the scene", file=sys.stderr)
        config = ViewerConfig(host=self.host, port=self.port)
        try:
            with warnings.catch_warnings():  # the warning was printed above, once
                warnings.simplefilter("ignore", UserWarning)
                if self.factory is not None:
                    self.app = self.factory(scene, config)
                else:
                    self.app = ViewerApp(scene, config=config, training=True)
        except OSError as e:
            raise SpatialvidError(f"--view: cannot listen on {self.host}:{self.port} ({e})") from None
        print(f"live view: open {self.app.url} in a browser (Pause/Resume in the Training tab)", flush=True)

    def __call__(self, event) -> None:
        if self.app is None:
            return
        stats = {"step": f"{event.step}/{event.total}", "loss": event.loss, "psnr": event.psnr}
        self.app.update_training(event.gaussians(copy=False), stats)  # the viewer copies what it sends
        self.updates += 1
        while not self.app.wait_while_paused(0.5):  # short waits: Ctrl-C stays responsive while paused
            pass

    def stop(self) -> None:
        app, self.app = self.app, None
        if app is not None:
            app.stop()


def run(args) -> int:
    from spatialvid.device import check_backend, resolve_device
    from spatialvid.train.config import load_config, overrides_from_args
    from spatialvid.train.distributed import DEFAULT_TIMEOUT_S, Distributed

    cfg = load_config(args.preset, overrides_from_args(args))
    check_backend(cfg.backend, resolve_device(cfg.device, cfg.backend))  # a bad --device fails here, before any work
    timeout = DEFAULT_TIMEOUT_S if getattr(args, "dist_timeout", None) is None else args.dist_timeout
    dist = Distributed.from_env(timeout_s=timeout)  # None unless launched by torchrun with several ranks
    try:
        return _run(args, cfg, dist)
    except SpatialvidError as e:
        if dist is None:
            raise
        # Several ranks and one of them failed (a peer died, the ranks disagree on the input, ...): tearing the
        # process group down, or the interpreter's own exit, can make gloo's threads abort the process
        # (SIGABRT, "terminate called without an active exception") after the error was printed. Files are
        # written atomically and the checkpoint is safe on disk: report and leave now, exit code 2.
        print(f"spatialvid {args.command}: error: {e}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)
    finally:
        if dist is not None:
            dist.close()


def _run(args, cfg, dist) -> int:
    from spatialvid.train.pipeline import reconstruct

    view = None
    if getattr(args, "view", False) and dist is not None:
        raise SpatialvidError("--view cannot be used with several ranks (a paused view would stall them all)")
    if dist is not None:
        dist.check_batch(cfg.batch_size)
    if getattr(args, "view", False):
        try:
            import viewer  # noqa: F401  (fail before any long work when the viewer cannot be imported)
        except ImportError as e:
            raise SpatialvidError(f"--view needs the viewer package ({e})") from None
        view = LiveView(args.view_host, args.view_port)
    try:
        m = reconstruct(args.input, args.out, cfg, poses=args.poses, resume=args.resume,
                        overwrite=args.overwrite, progress=not args.quiet, preset=args.preset,
                        on_step=view, on_train_start=view.start if view is not None else None, dist=dist)
    finally:
        if view is not None and view.app is not None:
            view.stop()
            print(f"live view closed; open the result with: spatialvid view {args.out}", file=sys.stderr)
    if dist is not None and not dist.is_main:
        return 0  # rank 0 reports
    if args.json:
        print(json.dumps({k: v for k, v in m.items() if k != "per_image"}))
        return 0
    psnr = "n/a" if m["psnr"] is None else f"{m['psnr']:.2f} dB"
    ssim = "n/a" if m["ssim"] is None else f"{m['ssim']:.4f}"
    print(f"scene written to {args.out}: {m['num_gaussians']:,} Gaussians, {m['steps']} steps in "
          f"{m['train_seconds']:.0f} s; held-out PSNR {psnr}, SSIM {ssim} on {len(m['heldout_images'])} views")
    if m.get("lpips_note"):
        print(m["lpips_note"])
    return 0
