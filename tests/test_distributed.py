"""Batched and data-parallel training (torch.distributed, gloo): the camera batch, the sqrt learning-rate rule,
and 2 ranks x 1 thread launched as torchrun does, compared with one process on the same total batch; a rank
that dies, resume with the same / another rank count, ranks that disagree on the input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spatialvid.errors import SpatialvidError
from spatialvid.train import Trainer
from spatialvid.train.optim import batch_scaling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import _toy_cfg, _toy_data, _toy_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# every rank runs the real command; TEST_DIE_AT=k makes this rank exit abruptly when step k starts
DRIVER = """\
import os, sys
import torch
torch.set_num_threads(1)
die_at = int(os.environ.get("TEST_DIE_AT", "-1"))
if die_at >= 0:
    from spatialvid.train.trainer import Trainer
    step = Trainer.train_step
    def dying(self, s):
        if s == die_at:
            os._exit(3)
        return step(self, s)
    Trainer.train_step = dying
from spatialvid.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- in one process ---------------------------------------------------------------------------------
def test_camera_batches_walk_the_epoch_permutations():
    data = _toy_data(n_cams=8, size=16)
    n = len(data.train_idx)
    one = Trainer(data, _toy_cfg(), None, progress=False)
    three = Trainer(data, _toy_cfg(batch_size=3), None, progress=False)
    stream = [one.camera_at(s) for s in range(4 * n)]
    assert sorted(stream[:n]) == list(range(n)) and stream[:n] != stream[n:2 * n]  # a fresh order per epoch
    assert [one.camera_batch(s) for s in range(5)] == [[c] for c in stream[:5]]
    batches = [three.camera_batch(s) for s in range(4)]
    assert sum(batches, []) == stream[:12]  # B consecutive items of the same stream (across epoch ends)
    assert all(len(b) == 3 for b in batches)


def test_sqrt_batch_rule_scales_learning_rates_and_betas():
    assert batch_scaling(1) == (1.0, (0.9, 0.999)) and batch_scaling(4, "none") == (1.0, (0.9, 0.999))
    k, betas = batch_scaling(4)
    assert k == 2.0 and betas == pytest.approx((0.9 ** 4, 0.999 ** 4))
    data = _toy_data(n_cams=8, size=16)
    t1 = Trainer(data, _toy_cfg(), None, progress=False)
    t4 = Trainer(data, _toy_cfg(batch_size=4), None, progress=False)
    for name in ("log_scales", "sh0", "opacity_logits"):
        g1, g4 = t1.optimizers[name].param_groups[0], t4.optimizers[name].param_groups[0]
        assert g4["lr"] == pytest.approx(2 * g1["lr"]) and g4["betas"] == pytest.approx(betas)
    assert t4.lr_means(10) == pytest.approx(2 * t1.lr_means(10))
    assert t4.strategy.grad_scale == 4.0  # per-camera screen gradients of the batch-mean loss, rescaled
    with pytest.raises(SpatialvidError, match="batch_size"):
        _toy_cfg(batch_size=0).validate()


def test_batch_step_is_the_mean_of_single_camera_gradients(one_thread):
    """A step with B=2 back-propagates loss/2 per camera: its gradient is the mean of the two cameras' own."""
    data = _toy_data(n_cams=8, size=24)
    cfg = _toy_cfg(batch_size=2, densify_stop=0, batch_lr_scaling="none")
    tr = Trainer(data, cfg, None, progress=False)
    cams = tr.camera_batch(0)
    single = []
    for pos in cams:
        from spatialvid.train.losses import photometric_loss

        out = tr.render(data.train_idx[pos], tr.sh_degree_at(0))
        photometric_loss(out.rgb, data.images[data.train_idx[pos]], cfg.ssim_lambda)[0].backward()
        single.append(tr.params["sh0"].grad.clone())
        tr.params["sh0"].grad = None
    for p in tr.params.values():
        p.grad = None
    captured = {}
    opt = tr.optimizers["sh0"]
    step = opt.step

    def spy(*a, **k):
        captured["g"] = tr.params["sh0"].grad.clone()
        return step(*a, **k)

    opt.step = spy
    tr.train_step(0)
    assert torch.allclose(captured["g"], (single[0] + single[1]) / 2, rtol=1e-5, atol=1e-9)


def test_resume_refuses_another_rank_count(tmp_path):
    data = _toy_data(n_cams=8, size=16)
    tr = Trainer(data, _toy_cfg(batch_size=2), tmp_path, progress=False)
    st = tr.state_dict()
    assert st["world_size"] == 1
    st["world_size"] = 2
    with pytest.raises(SpatialvidError, match=r"2 rank\(s\).*this run has 1.*torchrun --nproc_per_node 2"):
        Trainer(data, _toy_cfg(batch_size=2), tmp_path, progress=False).load_state_dict(st)
    st["world_size"] = 1
    with pytest.raises(SpatialvidError, match="batch_size=2"):
        Trainer(data, _toy_cfg(batch_size=4), tmp_path, progress=False).load_state_dict(st)


# ---- two ranks ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("WORLD_SIZE", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _launch(tmp_path, argvs: list[list[str]], env_by_rank: list[dict] | None = None, timeout: float = 240):
    """Start one process per argv with the variables torchrun sets (env:// rendezvous on localhost)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    port, n = _free_port(), len(argvs)
    procs = []
    for r, argv in enumerate(argvs):
        env = _env(RANK=r, LOCAL_RANK=r, WORLD_SIZE=n, LOCAL_WORLD_SIZE=n, MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, **((env_by_rank or [{}] * n)[r]))
        procs.append(subprocess.Popen([sys.executable, str(driver), *argv], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    res = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        res.append((p.returncode, out, err))
    return res


def _args(src: Path, out: Path, steps: int = 40) -> list[str]:
    return ["reconstruct", str(src), "-o", str(out), "--preset", "fast", "--steps", str(steps), "--batch-size", "2",
            "--init", "random", "--init-random-points", "300", "--resolution", "0", "--sh-degree", "1",
            "--sh-degree-interval", "20", "--densify-start", "10", "--densify-stop", "35", "--densify-every", "10",
            "--grad-threshold", "0.0002", "--opacity-reset-every", "0", "--checkpoint-every", "10",
            "--pose-refine", "on", "--pose-refine-start", "5", "--backend", "cpu", "--save-eval-images", "false",
            "--quiet", "--json", "--dist-timeout", "60"]


@pytest.mark.slow
def test_two_ranks_equal_one_rank_with_the_same_batch(tmp_path, one_thread, capsys):
    """2 ranks x 1 camera per step == 1 process x 2 cameras per step (same Gaussians, same PSNR); a rank that
    dies stops the run with the checkpoint kept; resume needs the same rank count and then finishes the same
    optimisation; ranks launched with different settings are refused before training."""
    from spatialvid.cli import main
    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.formats.ply import read_ply
    from spatialvid.train.checkpoint import checkpoint_path, load_checkpoint

    src = _toy_folder(tmp_path / "toy", n_cams=16, size=40)
    one = tmp_path / "one"
    assert main(_args(src, one)) == 0  # the reference: one process, batch of 2
    capsys.readouterr()

    two = tmp_path / "two"
    (r0, out0, err0), (r1, _, _) = _launch(tmp_path, [_args(src, two)] * 2, [{}, {"TEST_DIE_AT": 25}])
    assert r1 == 3 and r0 == 2, err0  # rank 1 died at step 25: rank 0 stops by itself (no hang) ...
    assert "another rank died" in err0 and "last checkpoint is kept" in err0
    ck = load_checkpoint(checkpoint_path(two))  # ... and the checkpoint of step 20 is intact
    assert ck["step"] == 20 and ck["world_size"] == 2
    assert not (two / "gaussians.ply").exists()

    assert main(_args(src, two) + ["--resume"]) == 2  # a single process cannot resume a 2-rank run
    assert "2 rank(s) but this run has 1" in capsys.readouterr().err

    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "spatialvid", *_args(src, two), "--resume"], env=_env(), capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    m2 = json.loads(res.stdout.strip().splitlines()[-1])  # only rank 0 prints
    m1 = json.loads((one / "metrics.json").read_text())
    assert m2["ranks"] == 2 and m1["ranks"] == 1 and m2["steps"] == m1["steps"] == 40
    assert m2["num_gaussians"] == m1["num_gaussians"] != 300  # the same densification decisions
    assert abs(m2["psnr"] - m1["psnr"]) < 0.1
    g1, g2 = read_ply(one / "gaussians.ply"), read_ply(two / "gaussians.ply")
    for k in ("means", "sh0", "opacity_logits", "log_scales"):
        assert torch.allclose(getattr(g1, k), getattr(g2, k), atol=1e-5), k  # the same optimisation, split
    given, c1, c2 = (read_transforms(d / "transforms.json") for d in (src, one, two))
    assert not torch.allclose(c1.t, given.t, atol=1e-5)  # pose refinement moved the cameras ...
    assert torch.allclose(c1.t, c2.t, atol=1e-6) and torch.allclose(c1.R, c2.R, atol=1e-6)  # ... alike on 2 ranks

    bad = tmp_path / "bad"
    results = _launch(tmp_path, [_args(src, bad, steps=4), _args(src, bad, steps=4) + ["--lr-sh0", "0.02"]])
    assert [r[0] for r in results] == [2, 2]
    assert "ranks disagree on the input: rank 1's config differ" in results[0][2]
    assert not (bad / "checkpoints").exists()
