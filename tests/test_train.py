"""Training: config, strategies (on hand-made states), pose refinement maths, checkpoint resume, NaN handling,
output-folder safety, and a short real training run on a small sample (held-out PSNR)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.train import DefaultStrategy, MCMCStrategy, Trainer, TrainingDiverged, load_config
from spatialvid.train.checkpoint import checkpoint_path, load_checkpoint
from spatialvid.train.config import TrainConfig, apply_overrides
from spatialvid.train.data import TrainData, split_indices
from spatialvid.train.optim import make_optimizers
from spatialvid.train.pose_refine import corrected_viewmat, move_gaussians, rotvec_to_matrix
from spatialvid.train.strategy import compute_relocation, quat_to_rotmat


@pytest.fixture
def one_thread():
    """Bit-exact comparisons need one thread (multi-threaded float reductions may reorder sums); it is
    also faster for these tiny images on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- config ---------------------------------------------------------------------------------------
def test_presets_load_and_overrides_are_typed():
    fast, default, quality = (load_config(p) for p in ("fast", "default", "quality"))
    assert fast.steps < default.steps < quality.steps
    cfg = load_config("fast", {"steps": "123", "sh_degree": 2, "antialiased": "true", "lr_means": "1e-4"})
    assert (cfg.steps, cfg.sh_degree, cfg.antialiased, cfg.lr_means) == (123, 2, True, 1e-4)
    with pytest.raises(SpatialvidError, match="unknown config field"):
        apply_overrides(TrainConfig(), {"stepz": 3})
    with pytest.raises(SpatialvidError, match="expected int"):
        load_config("fast", {"steps": "many"})
    with pytest.raises(SpatialvidError, match="strategy"):
        load_config("fast", {"strategy": "magic"})
    with pytest.raises(SpatialvidError, match="unknown preset"):
        load_config("turbo")


def test_cli_flags_reach_the_config():
    from spatialvid.cli import build_parser
    from spatialvid.train.config import overrides_from_args

    args = build_parser().parse_args(["reconstruct", "in", "-o", "out", "--preset", "fast", "--steps", "50",
                                      "--sh-degree", "0", "--max_gaussians", "1000", "--backend", "torch"])
    cfg = load_config(args.preset, overrides_from_args(args))
    assert (cfg.steps, cfg.sh_degree, cfg.max_gaussians, cfg.backend) == (50, 0, 1000, "torch")


def test_holdout_split_every_eighth_by_name():
    names = [f"f{i:03d}.png" for i in range(17)][::-1]  # unsorted input
    train, test = split_indices(names, 8)
    assert sorted(names[i] for i in test) == ["f000.png", "f008.png", "f016.png"]
    assert len(train) == 14 and not set(train) & set(test)


# ---- strategies on a hand-made state ----------------------------------------------------------------
def _params(n_extra_big: bool = True):
    means = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])
    log_scales = torch.log(torch.tensor([[0.005] * 3, [0.2, 0.1, 0.05], [0.005] * 3, [0.005] * 3]))
    quats = torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0.2, 0.3], [1, 0, 0, 0], [1, 0, 0, 0]])
    opac = torch.logit(torch.tensor([0.5, 0.6, 0.001, 0.7]))
    sh0 = torch.arange(12.0).reshape(4, 3)
    shN = torch.arange(36.0).reshape(4, 3, 3)
    raw = {"means": means, "log_scales": log_scales, "quats": quats, "opacity_logits": opac, "sh0": sh0, "shN": shN}
    params = {k: torch.nn.Parameter(v.clone()) for k, v in raw.items()}
    opts = make_optimizers(params, dict.fromkeys(params, 0.01))
    for k, p in params.items():  # one step with a row-identifying gradient -> non-zero, distinct moments
        p.grad = torch.arange(1.0, 5.0).reshape(4, *[1] * (p.dim() - 1)).expand_as(p).clone()
        opts[k].step()
        opts[k].zero_grad()
    return params, opts


def _moment(opts, name):
    p = opts[name].param_groups[0]["params"][0]
    return opts[name].state[p]["exp_avg"]


def test_default_strategy_clone_split_prune_keep_adam_aligned():
    params, opts = _params()
    before = {k: v.detach().clone() for k, v in params.items()}
    m_before = _moment(opts, "sh0").clone()
    s = DefaultStrategy(scene_extent=1.0, grow_scale3d=0.01, grad_threshold=1e-3, prune_opacity=0.005,
                        reset_every=0, verbose=False)
    state = s.initialize_state(params)
    state["grad2d"][:] = torch.tensor([0.01, 0.01, 0.0, 0.0])  # 0: high & small -> clone; 1: high & big -> split
    state["count"][:] = 1
    n_clone, n_split = s.grow(params, opts, state, step=1000)
    assert (n_clone, n_split) == (1, 1)
    assert params["means"].shape[0] == 6  # 4 + 1 clone - 1 split parent + 2 children
    # row order: survivors [0, 2, 3, clone-of-0], then the two children of 1
    assert torch.equal(params["means"][3], before["means"][0])
    assert torch.equal(params["sh0"][:4], before["sh0"][[0, 2, 3, 0]])
    children = params["means"][4:].detach()
    rot = quat_to_rotmat(before["quats"][1:2])[0]
    local = (children - before["means"][1]) @ rot / torch.exp(before["log_scales"][1])  # in parent sigmas
    assert (local.norm(dim=-1) < 6).all()
    assert torch.allclose(params["log_scales"][4:], (before["log_scales"][1] - math.log(1.6)).expand(2, 3))
    assert torch.equal(params["sh0"][4:], before["sh0"][[1, 1]])
    for name, p in params.items():
        assert opts[name].param_groups[0]["params"][0] is p
        st = opts[name].state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape
    m = _moment(opts, "sh0")
    assert torch.equal(m[:3], m_before[[0, 2, 3]]) and (m[3:] == 0).all()  # new rows start with zero moments
    assert len(state["grad2d"]) == 6

    n_pruned = s.prune(params, opts, state, step=1000)  # Gaussian 2 (opacity 0.001) goes
    assert n_pruned == 1 and params["means"].shape[0] == 5 and len(state["grad2d"]) == 5
    assert not any(torch.equal(r, before["means"][2]) for r in params["means"].detach())
    assert torch.equal(_moment(opts, "sh0")[:2], m_before[[0, 3]])
    assert _moment(opts, "opacity_logits").shape[0] == 5


def test_default_strategy_respects_cap_and_resets_opacity():
    params, opts = _params()
    s = DefaultStrategy(scene_extent=1.0, max_gaussians=5, grad_threshold=1e-3, verbose=False)
    state = s.initialize_state(params)
    state["grad2d"][:] = torch.tensor([0.01, 0.02, 0.0, 0.03])  # three candidates, room for one
    state["count"][:] = 1
    s.grow(params, opts, state, step=600)
    assert params["means"].shape[0] == 5
    assert any("max_gaussians=5" in m for m in s.messages)
    s.reset_opacity(params, opts)
    assert float(torch.sigmoid(params["opacity_logits"].detach()).max()) <= 0.01 + 1e-6
    assert (_moment(opts, "opacity_logits") == 0).all()


def test_mcmc_relocation_formula_and_moves():
    # ratio 1 keeps a Gaussian; ratio 2: two copies composite to the original opacity
    o = torch.tensor([0.3, 0.8])
    sc = torch.ones(2, 3)
    o1, s1 = compute_relocation(o, sc, torch.tensor([1, 1]))
    assert torch.allclose(o1, o) and torch.allclose(s1, sc)
    o2, _ = compute_relocation(o, sc, torch.tensor([2, 2]))
    assert torch.allclose(1 - (1 - o2) ** 2, o, atol=1e-6)

    torch.manual_seed(0)
    params, opts = _params()
    s = MCMCStrategy(scene_extent=1.0, cap=6, min_opacity=0.005, verbose=False)
    assert s.relocate(params, opts) == 1  # Gaussian 2 was dead
    assert float(torch.sigmoid(params["opacity_logits"].detach()).min()) > 0.005
    assert s.add(params, opts) == 1  # 5% of 4 rounds up to one more
    assert params["means"].shape[0] == 5
    for name, p in params.items():
        assert opts[name].state[opts[name].param_groups[0]["params"][0]]["exp_avg"].shape == p.shape
    for _ in range(3):
        s.add(params, opts)
    assert params["means"].shape[0] == 6  # the budget holds
    m0 = params["means"].detach().clone()
    s.inject_noise(params, lr_means=1e-4)
    assert torch.isfinite(params["means"]).all() and not torch.equal(m0, params["means"])


# ---- pose refinement -------------------------------------------------------------------------------
def test_pose_delta_on_gaussians_equals_corrected_camera():
    torch.manual_seed(1)
    cam = Cameras.look_at((3.0, 1.0, 1.0), (0.0, 0.0, 0.0), fov_deg=50, width=64, height=48)
    vm = cam.viewmats()[0].double()
    means = torch.randn(20, 3, dtype=torch.float64)
    quats = torch.nn.functional.normalize(torch.randn(20, 4, dtype=torch.float64), dim=-1)
    delta = torch.tensor([0.05, -0.02, 0.03, 0.02, -0.04, 0.01], dtype=torch.float64, requires_grad=True)
    new_means, new_quats = move_gaussians(means, quats, vm, delta)
    D = corrected_viewmat(vm, delta)
    want = means @ D[:3, :3].T + D[:3, 3]
    got = new_means @ vm[:3, :3].T + vm[:3, 3]
    assert torch.allclose(got, want, atol=1e-10)
    # orientation in the camera frame agrees too: R_cam(new) = Rd R R_g
    Rd = rotvec_to_matrix(delta[3:])
    assert torch.allclose(vm[:3, :3] @ quat_to_rotmat(new_quats.float()).double()[0],
                          Rd @ vm[:3, :3] @ quat_to_rotmat(quats.float()).double()[0], atol=1e-5)
    got.sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0


# ---- training on synthetic data (fast) ----------------------------------------------------------------
def _toy_data(n_cams: int = 16, size: int = 40, holdout: int = 8) -> TrainData:
    """Images rendered from a known random Gaussian scene by cameras on a circle."""
    from spatialvid.render import rasterize

    g = torch.Generator().manual_seed(3)
    n = 300
    means = (torch.rand(n, 3, generator=g) - 0.5) * 1.6
    scales = torch.full((n, 3), 0.08)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    colors = torch.rand(n, 3, generator=g)
    opac = torch.full((n,), 0.8)
    cams = []
    for i in range(n_cams):
        a = 2 * math.pi * i / n_cams
        cams.append(Cameras.look_at((3 * math.cos(a), 3 * math.sin(a), 0.8), (0, 0, 0), fov_deg=45, width=size,
                                    height=size, name=f"v{i:03d}.png"))
    cams = Cameras.cat(cams)
    images = [rasterize(means, quats, scales, opac, colors, cams.viewmats()[i], cams.Ks()[i], size, size,
                        backend="torch").rgb.detach() for i in range(n_cams)]
    train, test = split_indices(cams.names, holdout)
    return TrainData(cams, images, train, test, points=means + 0.05 * torch.randn(n, 3, generator=g),
                     colors=torch.full((n, 3), 0.5), known_poses=True)


def _toy_cfg(**kw) -> TrainConfig:
    base = dict(steps=60, sh_degree=1, sh_degree_interval=30, densify_start=10, densify_stop=50, densify_every=10,
                grad_threshold=2e-4, opacity_reset_every=0, checkpoint_every=0, log_every=10, backend="cpu",
                save_eval_images=False)
    base.update(kw)
    return apply_overrides(TrainConfig(), base)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Resume is bit-exact for a given thread count: the CPU backward assigns tiles to threads statically."""
    n = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(n)


def test_resume_reaches_the_same_result(tmp_path, threads):
    data = _toy_data()
    cfg = _toy_cfg(checkpoint_every=30)
    full = Trainer(data, cfg, tmp_path / "a", progress=False)
    full.train()
    assert len(full.history) > 0 and full.num_gaussians != 300  # densification did something

    part = Trainer(data, cfg, tmp_path / "b", progress=False)
    part.train(until=35)  # killed after step 35: the checkpoint on disk is from step 30
    assert load_checkpoint(checkpoint_path(tmp_path / "b"))["step"] == 30
    resumed = Trainer(data, cfg, tmp_path / "b", progress=False)
    assert resumed.resume() == 30
    resumed.train()
    assert resumed.step == full.step == 60
    assert all(torch.equal(full.params[k], resumed.params[k]) for k in full.params)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history]


class _Evil:
    """Pickles into a call of ``os.system``: what weights_only=False would run when loading it."""

    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_checkpoint_loads_safely_and_restores_rng(tmp_path, monkeypatch):
    import random

    import numpy as np

    from spatialvid.train.checkpoint import save_checkpoint
    from spatialvid.train.trainer import rng_state_dict, set_rng_state_dict

    monkeypatch.chdir(tmp_path)
    gen = torch.Generator().manual_seed(5)
    np.random.seed(3)
    random.seed(4)
    save_checkpoint(tmp_path / "ok.pt", {"step": 7, "rng": rng_state_dict(gen)})
    want = (torch.rand(3, generator=gen), np.random.random(3), random.random(), torch.rand(2))
    st = load_checkpoint(tmp_path / "ok.pt")  # weights_only=True: tensors and plain data only
    gen2 = torch.Generator()
    set_rng_state_dict(st["rng"], gen2)
    got = (torch.rand(3, generator=gen2), np.random.random(3), random.random(), torch.rand(2))
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]
    assert torch.equal(want[3], got[3])
    save_checkpoint(tmp_path / "evil.pt", {"step": 1, "payload": _Evil()})
    with pytest.raises(SpatialvidError, match="cannot read checkpoint safely"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()  # the pickled call never ran


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, one_thread):
    data = _toy_data()
    cfg = _toy_cfg(checkpoint_every=10)
    tr = Trainer(data, cfg, tmp_path, progress=False)
    tr.train(until=22)
    pos = tr.camera_at(25)
    bad_step = next(s for s in range(22, 60) if tr.camera_at(s) == pos)
    data.images[data.train_idx[pos]] = torch.full_like(data.images[0], float("nan"))  # a corrupt frame
    with pytest.raises(TrainingDiverged, match=rf"step {bad_step}.*checkpoint \(step 20\) is kept"):
        tr.train()
    ck = load_checkpoint(checkpoint_path(tmp_path))
    assert ck["step"] == 20
    assert all(torch.isfinite(v).all() for v in ck["params"].values())


def test_toy_training_improves_heldout_psnr(one_thread):
    data = _toy_data()
    tr = Trainer(data, _toy_cfg(steps=200, lr_sh0=0.01), None, progress=False)
    before = tr.evaluate(save_images=False)["psnr"]
    tr.train()
    after = tr.evaluate(save_images=False)
    assert after["psnr"] > before + 5, (before, after["psnr"])
    assert after["psnr"] > 21 and after["ssim"] > 0.6


# ---- the command on a small sample -------------------------------------------------------------------
def test_output_folder_is_not_overwritten(tmp_path):
    from spatialvid.cli import main

    out = tmp_path / "scene"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["reconstruct", str(tmp_path / "nothing"), "-o", str(out)]) == 2  # bad input: one line, exit 2
    with pytest.raises(SpatialvidError, match="--overwrite"):
        from spatialvid.train.pipeline import check_output

        check_output(out, resume=False, overwrite=False)
    assert main(["reconstruct", str(tmp_path), "-o", str(out), "--quiet"]) == 2
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(SpatialvidError, match="nothing to resume"):
        check_output(out, resume=True, overwrite=False)


@pytest.mark.slow
def test_reconstruct_small_sample(trained_sample_scene):
    from spatialvid.scene import Scene

    scene_dir = trained_sample_scene
    m = json.loads((scene_dir / "metrics.json").read_text())
    for key in ("psnr", "ssim", "lpips", "num_gaussians", "steps", "train_seconds", "heldout_images"):
        assert key in m
    assert m["lpips"] is None and "lpips_note" in m
    assert m["heldout_images"] == ["frame_00000.png", "frame_00008.png", "frame_00016.png", "frame_00024.png"]
    assert m["psnr"] > 20, m["psnr"]  # the random init renders ~12 dB; 300 steps at 80x60 reach ~21.5
    assert m["ssim"] > 0.6
    scene = Scene.load(scene_dir)
    assert len(scene.gaussians) == m["num_gaussians"]
    assert scene.history[-1]["kind"] == "reconstruct"
    assert (scene.gaussians.step == scene.history[-1]["step"]).all()
    assert (scene_dir / "training_curve.png").stat().st_size > 1000
    assert (scene_dir / "eval" / "frame_00008.png").exists()


# ---- step callbacks and the live view (--view) --------------------------------------------------------
def test_step_callback_reports_progress_and_blocking_pauses_training(one_thread):
    import threading
    import time

    data = _toy_data(n_cams=8, size=32)
    events, times = [], []
    resume = threading.Event()
    pause_s = 0.4

    def on_step(ev):
        events.append((ev.step, ev.total, ev.loss, ev.psnr, ev.num_gaussians, ev.stats))
        g = ev.gaussians()
        assert len(g) == ev.num_gaussians == ev.trainer.num_gaussians
        assert torch.equal(g.means, ev.trainer.params["means"].detach())
        assert g.means.data_ptr() != ev.trainer.params["means"].data_ptr()  # a copy, not the parameter
        times.append(time.perf_counter())
        if ev.step == 10:  # a "paused" UI: blocks until released from another thread
            threading.Timer(pause_s, resume.set).start()
            assert resume.wait(10)

    tr = Trainer(data, _toy_cfg(steps=30), None, progress=False, on_step=[on_step], on_step_every=5)
    t0 = time.perf_counter()
    tr.train(until=22)
    wall = time.perf_counter() - t0
    steps = [e[0] for e in events]
    assert steps == [5, 10, 15, 20, 22]  # every 5 steps and after the last one of train()
    for step, total, loss, psnr, n, stats in events:
        assert total == 30 and math.isfinite(loss) and 0 < loss < 1 and 5 < psnr < 60 and n > 0
        assert stats == {"step": step, "loss": loss, "psnr": psnr, "num_gaussians": n}
    assert events[-1][4] == tr.num_gaussians
    assert times[2] - times[1] >= pause_s  # training did not go on while the callback blocked
    assert wall >= pause_s and tr.train_seconds <= wall - pause_s + 0.05  # paused time is not training time
    with pytest.raises(SpatialvidError, match="on_step_every"):
        Trainer(data, _toy_cfg(), None, progress=False, on_step_every=0)


def _toy_folder(tmp_path, n_cams: int = 8, size: int = 32):
    """_toy_data written as a nerfstudio folder (images/ + transforms.json) for the command."""
    import numpy as np
    from PIL import Image

    from spatialvid.formats.nerfstudio import write_transforms

    data = _toy_data(n_cams=n_cams, size=size)
    (tmp_path / "images").mkdir(parents=True)
    cams = data.cameras.clone()
    paths = []
    for name, img in zip(cams.names, data.images):
        p = tmp_path / "images" / name
        Image.fromarray((img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(p)
        paths.append(str(p))
    cams.image_paths = paths
    write_transforms(tmp_path / "transforms.json", cams, relative_to=tmp_path)
    return tmp_path


class _FakeViewer:
    """Records what `reconstruct --view` does with the viewer (no server)."""

    made: list = []
    fail_at: int | None = None

    def __init__(self, scene, config=None, training=False):
        self.scene, self.config, self.training = scene, config, training
        self.updates, self.waits, self.stopped = [], 0, 0
        self.url = f"http://{config.host}:{config.port}"
        _FakeViewer.made.append(self)

    def update_training(self, gaussians, stats):
        self.updates.append((len(gaussians), dict(stats)))
        if stats["step"].startswith(str(_FakeViewer.fail_at) + "/"):
            raise KeyboardInterrupt  # Ctrl-C during training

    def wait_while_paused(self, timeout=None):
        self.waits += 1
        return self.waits % 2 == 0  # "paused" once per step: the caller must keep waiting

    def stop(self):
        self.stopped += 1


def test_reconstruct_view_feeds_the_viewer_and_stops_it(tmp_path, monkeypatch, capsys, one_thread):
    import viewer
    from spatialvid.cli import main

    monkeypatch.setattr(viewer, "ViewerApp", _FakeViewer)
    _FakeViewer.made, _FakeViewer.fail_at = [], None
    src = _toy_folder(tmp_path / "toy")
    args = ["reconstruct", str(src), "-o", str(tmp_path / "out"), "--preset", "fast", "--steps", "12",
            "--init", "random", "--init-random-points", "300", "--resolution", "0", "--checkpoint-every", "0",
            "--backend", "cpu", "--quiet", "--view", "--view-port", "0"]
    assert main(args) == 0
    (app,) = _FakeViewer.made
    assert app.training and app.config.port == 0 and app.config.host == "127.0.0.1"
    assert len(app.scene.gaussians) == 300 and len(app.scene.cameras) == 8  # the starting scene
    assert [u[1]["step"] for u in app.updates] == [f"{s}/12" for s in range(1, 13)]
    assert all(math.isfinite(u[1]["loss"]) and math.isfinite(u[1]["psnr"]) and u[0] > 0 for u in app.updates)
    assert app.waits == 2 * 12 and app.stopped == 1
    assert "live view: open http://127.0.0.1:0" in capsys.readouterr().out
    assert (tmp_path / "out" / "gaussians.ply").exists()

    _FakeViewer.made, _FakeViewer.fail_at = [], 5  # interrupted: exit 130, the viewer is still stopped
    assert main(args[:3] + [str(tmp_path / "out2")] + args[4:]) == 130
    assert _FakeViewer.made[0].stopped == 1 and len(_FakeViewer.made[0].updates) == 5
    capsys.readouterr()
    bad = args[:3] + [str(tmp_path / "out3")] + args[4:] + ["--view-port", "70000"]
    assert main(bad) == 2  # bad port: one line, before any work
    assert "--view-port must be in 0..65535" in capsys.readouterr().err and not (tmp_path / "out3").exists()


def test_live_view_with_a_real_viewer(one_thread):
    import threading
    import time

    from spatialvid.cli.reconstruct import LiveView
    from spatialvid.scene import Scene

    data = _toy_data(n_cams=8, size=32)
    tr = Trainer(data, _toy_cfg(steps=20), None, progress=False)
    view = LiveView("127.0.0.1", 0)
    view.start(Scene(tr.gaussians(), data.cameras))
    try:
        tr.callbacks = [view]
        panel = view.app.training_panel
        panel.refresh.value = 0.5
        panel.toggle_pause()  # the user pressed "Pause training": the first step's callback blocks
        threading.Timer(0.3, panel.toggle_pause).start()  # ... until "Resume training" is pressed
        t0 = time.perf_counter()
        tr.train()
        assert time.perf_counter() - t0 >= 0.3 and tr.train_seconds < time.perf_counter() - t0 - 0.25
        assert not panel.paused
        assert panel.flush(20)
        assert view.updates == 20 and panel.updates >= 1
        assert panel.stats["step"] == "20/20" and panel.stats["gaussians"] == tr.num_gaussians
        assert len(view.app.scene.gaussians) == tr.num_gaussians  # the splats shown are the trained ones
    finally:
        view.stop()
    assert view.app is None


def test_posed_folder_without_points_triangulates_or_falls_back_to_random(tmp_path, capsys, one_thread):
    """A transforms.json folder with no point cloud: points are triangulated with the known poses; where
    that cannot work (featureless images) training starts from random points and says why."""
    import numpy as np
    from PIL import Image

    from spatialvid.cli import main

    src = _toy_folder(tmp_path / "flat")
    for p in (src / "images").iterdir():  # featureless: nothing to match
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(p)
    out = tmp_path / "out"
    rc = main(["reconstruct", str(src), "-o", str(out), "--preset", "fast", "--steps", "4", "--resolution", "0",
               "--init-random-points", "200", "--checkpoint-every", "0", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0 and (out / "metrics.json").is_file()
    assert "triangulat" in text and "random" in text  # the reason is said
    assert "init: 200 random points" in text  # the trainer's own random init, as configured
