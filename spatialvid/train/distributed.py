"""Data-parallel training on torch.distributed: ``torchrun --nproc_per_node N -m spatialvid reconstruct ...``.

Every rank holds all the Gaussians (replicated, as DistributedDataParallel does). At each step:

* the batch of ``batch_size`` training cameras is the same on every rank (derived from (seed, step), see
  :meth:`~spatialvid.train.trainer.Trainer.camera_batch`); rank r renders the cameras at batch positions
  j with j % N == r and back-propagates loss_j / batch_size (the strategy's regulariser once, on rank 0);
* :meth:`Distributed.sum_gradients` sums the gradients of every Gaussian parameter (and of the pose
  corrections) over the ranks in one all-reduce: the gradient of the batch-mean loss, what one process
  computes for the same batch; Adam then takes the same step on every rank;
* while densification runs, its per-step statistics are all-reduced (screen-space gradient sums and counts:
  sum; screen radii: max) before they enter the strategy state (:meth:`Distributed.reduce_stats`), so every
  rank clones, splits and prunes the same Gaussians; random operations (split sampling, MCMC relocation and
  noise) draw from the global torch RNG, seeded alike and advanced alike on every rank.

Rank 0 alone resolves the input (pose estimation included), reads the checkpoint to resume from (sent to the
others) and writes checkpoints, the scene, metrics and plots; the others wait for it in collectives. At start
the ranks compare digests of their config, cameras, images and initial Gaussians (:meth:`check_same_inputs`),
and at every checkpoint digests of their parameters and RNG (:meth:`check_in_sync`): a mismatch is a clear
error. A collective that fails (a rank died: its connections close; a rank hangs: the process group's
timeout) raises :class:`RankLost`; the last checkpoint on disk stays as it was (written atomically).
Backends: gloo on CPU, NCCL when CUDA is available (``SPATIALVID_DIST_BACKEND`` overrides).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from spatialvid.errors import SpatialvidError

DEFAULT_TIMEOUT_S = 1800.0


class RankLost(SpatialvidError):
    """A collective failed: another rank died or did not answer within the process group's timeout."""


def world_size_from_env() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise SpatialvidError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


class Distributed:
    """This process's place in the process group, and the collectives training needs.

    Counters for benchmarks: ``comm_bytes`` (payload bytes this rank all-reduced) and ``comm_seconds``
    (wall time spent in the gradient and statistics all-reduces), ``comm_calls``.
    """

    def __init__(self, rank: int, world_size: int, local_rank: int = 0, backend: str = "gloo",
                 device: torch.device | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.rank, self.world_size, self.local_rank = int(rank), int(world_size), int(local_rank)
        self.backend, self.device, self.timeout_s = backend, device, float(timeout_s)
        self.comm_bytes = 0
        self.comm_seconds = 0.0
        self.comm_calls = 0

    # ---- setup --------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, timeout_s: float = DEFAULT_TIMEOUT_S, backend: str | None = None) -> Distributed | None:
        """Join the process group torchrun describes (env:// rendezvous: MASTER_ADDR, MASTER_PORT, RANK,
        WORLD_SIZE, LOCAL_RANK); None when WORLD_SIZE is unset or 1 (a plain single-process run)."""
        world = world_size_from_env()
        if world <= 1:
            return None
        import torch.distributed as tdist

        if not tdist.is_available():
            raise SpatialvidError("this torch build has no torch.distributed")
        if timeout_s <= 0:
            raise SpatialvidError(f"--dist-timeout must be > 0 seconds (got {timeout_s})")
        backend = backend or os.environ.get("SPATIALVID_DIST_BACKEND") or (
            "nccl" if torch.cuda.is_available() else "gloo")
        if backend not in ("gloo", "nccl"):
            raise SpatialvidError(f"SPATIALVID_DIST_BACKEND must be gloo or nccl (got {backend!r})")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = None
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        try:
            tdist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as e:
            raise SpatialvidError(f"torch.distributed: cannot join the process group ({e})") from None
        return cls(tdist.get_rank(), tdist.get_world_size(), local_rank, backend, device, timeout_s)

    def close(self) -> None:
        import torch.distributed as tdist

        if tdist.is_initialized():
            try:
                tdist.barrier()  # tear down together: gloo can abort when a peer closes its sockets first
                tdist.destroy_process_group()
            except RuntimeError:  # a peer is gone: nothing left to tear down cleanly
                pass

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        if batch_size < self.world_size:
            raise SpatialvidError(f"batch_size {batch_size} < {self.world_size} ranks: every rank needs at least "
                                  f"one camera per step (pass --batch-size {self.world_size} or a multiple)")

    def share(self, items: Sequence) -> list:
        """This rank's share of a batch: items j with j % world_size == rank (same order everywhere)."""
        return list(items[self.rank::self.world_size])

    # ---- collectives (failures become RankLost) ----------------------------------------------------------
    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RuntimeError as e:  # gloo/NCCL errors (DistBackendError etc. derive from RuntimeError)
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RankLost(f"rank {self.rank}: {what} failed, another rank died or did not answer within "
                           f"{self.timeout_s:.0f} s ({msg}); the run stops, the last checkpoint is kept") from None

    def _to_comm(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.device is None or t.device == self.device else t.to(self.device)

    def all_reduce(self, t: torch.Tensor, op: str = "sum", what: str = "all-reduce") -> torch.Tensor:
        """Reduce ``t`` over ranks (``sum`` or ``max``); returns the result on ``t``'s device."""
        import torch.distributed as tdist

        buf = self._to_comm(t)
        red = tdist.ReduceOp.SUM if op == "sum" else tdist.ReduceOp.MAX
        t0 = time.perf_counter()
        self._run(what, lambda: tdist.all_reduce(buf, op=red))
        self.comm_seconds += time.perf_counter() - t0
        self.comm_bytes += buf.numel() * buf.element_size()
        self.comm_calls += 1
        return buf if buf.device == t.device else buf.to(t.device)

    def broadcast(self, obj: Any = None, what: str = "broadcast") -> Any:
        """Rank 0's ``obj`` on every rank (pickled)."""
        import torch.distributed as tdist

        box = [obj if self.is_main else None]
        self._run(what, lambda: tdist.broadcast_object_list(box, src=0))
        return box[0]

    def gather(self, obj: Any, what: str = "all-gather") -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        import torch.distributed as tdist

        out: list = [None] * self.world_size
        self._run(what, lambda: tdist.all_gather_object(out, obj))
        return out

    def barrier(self) -> None:
        self.gather(None, "barrier")

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 only (e.g. input resolution, reading a checkpoint, writing the scene) and give
        its result to every rank; an error there is raised on every rank (the others wait meanwhile)."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:
                error = e
        sent = self.broadcast(("error", str(error)) if error is not None else ("ok", result), "waiting for rank 0")
        if error is not None:
            raise error
        if sent[0] == "error":
            raise SpatialvidError(f"rank 0 stopped: {sent[1]}")
        return sent[1]

    def agree(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on every rank; if it fails anywhere, every rank raises (naming the first rank that failed)."""
        result, error = None, None
        try:
            result = fn()
        except Exception as e:
            error = e
        errors = self.gather(None if error is None else str(error), "gathering errors")
        if error is not None:
            raise error
        bad = [(r, m) for r, m in enumerate(errors) if m is not None]
        if bad:
            raise SpatialvidError(f"rank {bad[0][0]} stopped: {bad[0][1]}")
        return result

    # ---- training -----------------------------------------------------------------------------------
    def sum_gradients(self, params: Sequence[torch.Tensor], scalars: Sequence[float] = (),
                      active: Sequence[int | None] | None = None) -> list[float]:
        """Sum ``p.grad`` of every tensor in ``params`` over the ranks (one all-reduce), in place.

        ``active[i]`` (optional): only the first ``active[i]`` entries of dim 1 of ``params[i]`` can have a
        non-zero gradient (e.g. the SH bands in use): only those are sent. A gradient that is None on every
        rank stays None (Adam then skips the tensor, as a single process would); None on some ranks counts as
        zero. ``scalars`` (e.g. loss sums) ride along and come back summed.
        """
        active = list(active) if active is not None else [None] * len(params)
        parts, flags = [], []
        for p, a in zip(params, active):
            g = p.grad
            shape = p.shape if a is None else (p.shape[0], a, *p.shape[2:])
            if g is None:
                parts.append(torch.zeros(int(np.prod(shape)), dtype=p.dtype, device=p.device))
                flags.append(0.0)
            else:
                parts.append((g if a is None else g[:, :a]).reshape(-1))
                flags.append(1.0)
        dev = params[0].device if len(params) else torch.device("cpu")
        tail = torch.tensor(flags + [float(s) for s in scalars], dtype=torch.float32, device=dev)
        buf = self.all_reduce(torch.cat(parts + [tail]), "sum", "gradient all-reduce")
        total = sum(x.numel() for x in parts)
        flags_sum = buf[total:total + len(params)].tolist()
        off = 0
        for i, (p, a) in enumerate(zip(params, active)):
            n = parts[i].numel()
            if flags_sum[i] > 0:
                flat = buf[off:off + n]
                if a is None:
                    p.grad = flat.view_as(p).clone() if p.grad is None else p.grad.copy_(flat.view_as(p))
                else:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    p.grad[:, :a] = flat.view(p.shape[0], a, *p.shape[2:])
            else:
                p.grad = None
            off += n
        return [float(x) for x in buf[total + len(params):].tolist()]

    def reduce_stats(self, stats: dict[str, torch.Tensor], ops: dict[str, str]) -> dict[str, torch.Tensor]:
        """Combine per-step statistics over ranks: one all-reduce per kind of ``ops[key]`` (sum / max)."""
        out = dict(stats)
        for op in ("sum", "max"):
            keys = [k for k in stats if ops.get(k, "sum") == op]
            if not keys:
                continue
            sizes = [stats[k].numel() for k in keys]
            buf = self.all_reduce(torch.cat([stats[k].reshape(-1).float() for k in keys]), op,
                                  "densification statistics all-reduce")
            for k, part in zip(keys, torch.split(buf, sizes)):
                out[k] = part.view_as(stats[k]).to(stats[k].dtype)
        return out

    def check_same_inputs(self, parts: dict[str, str]) -> None:
        """All ranks must have the same digests (config, cameras, images, initial Gaussians...)."""
        everyone = self.gather(parts, "input check")
        for r, theirs in enumerate(everyone):
            differ = [k for k in parts if theirs.get(k) != everyone[0].get(k)]
            if differ:
                raise SpatialvidError(f"ranks disagree on the input: rank {r}'s {', '.join(differ)} differ from "
                                      "rank 0's; every rank must run the same command on the same data "
                                      "(same files at the same paths on every machine)")

    def check_in_sync(self, step: int, digest: str) -> None:
        everyone = self.gather(digest, "sync check")
        bad = [r for r, d in enumerate(everyone) if d != everyone[0]]
        if bad:
            raise SpatialvidError(f"ranks diverged by step {step}: rank {bad[0]}'s parameters or RNG differ from "
                                  "rank 0's (a non-deterministic operation?); the last checkpoint is kept")


# ---- digests ----------------------------------------------------------------------------------------------
def tensor_digest(*tensors: torch.Tensor | None) -> str:
    """SHA-256 over the shapes, dtypes and bytes of ``tensors`` (None allowed)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def input_digests(data, cfg, params: dict[str, torch.Tensor]) -> dict[str, str]:
    """Digests of what every rank must share: the config, the cameras and split, the images, the initial
    Gaussians (an image that differs on one machine, or other flags, is caught before training)."""
    c = data.cameras
    cams = tensor_digest(c.R, c.t, c.fx, c.fy, c.cx, c.cy, c.width, c.height)
    names = hashlib.sha256(json.dumps([list(c.names), list(data.train_idx), list(data.test_idx)]).encode())
    return {"config": hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16],
            "cameras": cams + names.hexdigest()[:16],
            "images": tensor_digest(*data.images),
            "initial Gaussians": tensor_digest(*params.values())}
