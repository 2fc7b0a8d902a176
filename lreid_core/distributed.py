"""Data-parallel training over several processes (``torchrun``): process-group set-up and teardown, rank
helpers, gradient / buffer / loss synchronisation, gathered evaluation features, a global BatchNorm, and
one-line failure propagation. Every helper is the identity in a plain single process.

Design (what the Trainer does with these, methods stay unaware of it):

* One process per device: NCCL on CUDA (``cuda:LOCAL_RANK``), gloo on CPU. Every rank draws the *same* global
  PK batch (same sampler and augmentation generators) and keeps its own P / world identities, so the global
  batch and the checkpointed generator states do not depend on the number of ranks.
* Gradients: after ``backward()`` the gradients of every trainable parameter (model *and* ``method.extra``)
  are averaged over the ranks in one flat all-reduce (:func:`average_gradients`) instead of wrapping the model
  in ``DistributedDataParallel``: methods keep calling ``self.model(x)``, the frozen teacher is never involved,
  and parameters that get no gradient in a step (PatchKD's sampler and patch head in the first domain step)
  are handled exactly: a gradient missing on every rank stays ``None`` (Adam skips the parameter, as in one
  process), one missing on some ranks counts as zeros. The price is no overlap of communication with backward.
* Losses that are means over the batch's samples (cross-entropy, KD, L_conf, L_div, L_PLD) average over ranks
  to the single-process value. Batch-hard triplet (and the batch-relation terms: L_PRD, SPD's Gram matrix,
  the covariance pairs) only see a rank's own P / world identities: its hardest negative is searched among
  fewer identities, so the per-rank triplet loss is <= the global-batch one (positives are identical: every
  rank holds whole identities).
* BatchNorm is per-rank by default (each rank normalises with its own half of the batch): no extra
  communication per layer, which is the usual DDP choice and cheap across nodes; ``train.sync_bn`` swaps in
  :class:`GlobalBatchNorm` (statistics over the global batch, one small all-reduce per BN layer and pass)
  for small per-rank batches. Running statistics are averaged over the ranks at checkpoints and at the end of
  every domain step (the running-average update is linear, so this equals averaging only at the end) so that
  the teacher, evaluation and checkpoints see one model.
"""
from __future__ import annotations

import contextlib
import os
import signal
import warnings
from datetime import timedelta
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .errors import LReIDError

ERROR_KEY = "lreid/error"     # the first rank's one-line error, read by the ranks it stopped
_store: dist.Store | None = None


class _Terminated(Exception):
    """SIGTERM, which torchrun sends to the other ranks when one rank exits with an error."""


def _terminate(signum, frame) -> None:
    raise _Terminated()


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0: the only rank that writes metrics, checkpoints, TensorBoard events and progress bars."""
    return rank() == 0


def share() -> tuple[int, int]:
    """(rank, world size)."""
    return rank(), world_size()


def launched() -> bool:
    """True inside a multi-process ``torchrun`` launch (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda`` becomes ``cuda:LOCAL_RANK`` under a launch."""
    if launched() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextlib.contextmanager
def session(device: torch.device, timeout_s: float) -> Iterator[torch.device]:
    """Join the ``torchrun`` process group for the block (a no-op in a plain process); yields this rank's device.

    Collectives that wait longer than ``timeout_s`` fail. Ranks other than 0 are quiet (the Trainer and the
    image cache draw no bars there; warnings are ignored). A ``LReIDError`` on one rank is published in the rendezvous store; a rank stopped by it (its
    collective fails when the failing rank exits, or times out, or torchrun terminates it) raises the same
    one-line error.
    """
    global _store
    if not launched() or active():
        yield device
        return
    device = rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=timeout_s)
    _store, r, world = next(dist.rendezvous("env://", timeout=timeout))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=_store, rank=r, world_size=world,
                            timeout=timeout)
    if r != 0:
        warnings.filterwarnings("ignore")
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield device
    except LReIDError as exc:
        _publish(str(exc))
        raise
    except (RuntimeError, _Terminated) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        peer = _peer_error()
        if peer is None and not _stopped_by_peer(exc, first):
            raise
        raise LReIDError(peer or f"rank {r} stopped: another rank failed, a collective timed out after "
                                 f"{timeout_s:g} s, or torchrun terminated it ({first[:200]})") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        dist.destroy_process_group()
        _store = None


def _stopped_by_peer(exc: BaseException, first: str) -> bool:
    """A collective that failed because another rank is gone or late (gloo raises plain RuntimeErrors)."""
    return isinstance(exc, (dist.DistError, _Terminated)) or any(
        word in first.lower() for word in ("gloo", "nccl", "connection", "timed out", "timeout"))


def _publish(message: str) -> None:
    """Store ``message`` unless another rank's error is already there (the first one wins)."""
    with contextlib.suppress(Exception):
        _store.compare_set(ERROR_KEY, "", message)


def _peer_error() -> str | None:
    """The error another rank published, if it did within a few seconds."""
    with contextlib.suppress(Exception):
        _store.wait([ERROR_KEY], timedelta(seconds=3))
        return _store.get(ERROR_KEY).decode()
    return None


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """Run the block on each node's local rank 0 first (e.g. writing the synthetic benchmark), then on the rest."""
    first = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if active() and not first:
        dist.barrier()
    yield
    if active() and first:
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def seed_rank(seed: int) -> None:
    """Give ranks > 0 their own global RNG stream (e.g. PatchKD's Gumbel noise); rank 0 keeps the single-process
    stream. Parameters are broadcast from rank 0 (:func:`broadcast_modules`), so initialisation is unaffected."""
    if rank() > 0:
        torch.manual_seed(seed + 1_000_003 * rank())


def broadcast_modules(modules: Iterable[nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank (after a domain step grows the classifiers)."""
    if not active():
        return
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            if t.numel():
                dist.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter]) -> None:
    """Average gradients over ranks in one all-reduce; ``None`` on every rank stays ``None``, else missing = 0."""
    if not active() or not params:
        return
    ref = params[0]
    grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=ref.device, dtype=p.dtype)
             for p in params]
    present = torch.tensor([p.grad is not None for p in params], device=ref.device, dtype=ref.dtype)
    flat = torch.cat(grads + [present])
    dist.all_reduce(flat)
    flat[: -len(params)] /= world_size()
    used = flat[-len(params):].tolist()
    offset = 0
    for p, n in zip(params, used):
        if n > 0:
            g = flat[offset: offset + p.numel()].view_as(p)
            if p.grad is None:
                p.grad = g.clone(memory_format=torch.preserve_format)
            else:
                p.grad.copy_(g)
        offset += p.numel()


def average_buffers(modules: Iterable[nn.Module]) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over ranks."""
    if not active():
        return
    bufs = [b for m in modules for b in m.buffers() if b.is_floating_point() and b.numel()]
    if bufs:
        flat = torch.cat([b.reshape(-1).float() for b in bufs])
        dist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for b in bufs:
            b.copy_(flat[offset: offset + b.numel()].view_as(b))
            offset += b.numel()


def reduce_terms(bad_at: torch.Tensor, running: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss sums averaged over ranks and the earliest non-finite iteration of any rank (-1: none)."""
    if not active():
        return bad_at, running
    none = torch.iinfo(torch.long).max
    first = torch.where(bad_at < 0, torch.full_like(bad_at, none), bad_at)
    dist.all_reduce(first, op=dist.ReduceOp.MIN)
    keys = list(running)
    sums = torch.stack([running[k].float() for k in keys]) if keys else first.new_zeros(0, dtype=torch.float)
    dist.all_reduce(sums)
    return (torch.where(first == none, torch.full_like(first, -1), first),
            {k: v / world_size() for k, v in zip(keys, sums)})


def shard(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (sizes differ by at most one)."""
    r, w = share()
    return slice(n * r // w, n * (r + 1) // w)


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Concatenate every rank's :func:`shard` of an ``n``-row tensor, on every rank, in rank order."""
    w = world_size()
    if w == 1:
        return local
    rows = -(-n // w)
    padded = local.new_zeros((rows,) + tuple(local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: n * (r + 1) // w - n * r // w] for r, part in enumerate(parts)])


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training-mode statistics cover the global batch of all ranks (``train.sync_bn``).

    Per-rank mean and biased variance are combined exactly (one differentiable all-reduce), on CPU (gloo)
    and CUDA alike; evaluation mode and single-process use are plain BatchNorm. Any input rank >= 2.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active() and world_size() > 1):
            return super().forward(x)
        c, dims = x.shape[1], [d for d in range(x.dim()) if d != 1]
        xf = x.float()
        var, mean = torch.var_mean(xf, dim=dims, correction=0)
        count = torch.full((1,), x.numel() / c, device=x.device)
        w, r = share()[1], rank()
        table = torch.zeros(w, 2 * c + 1, device=x.device).index_copy(
            0, torch.tensor([r], device=x.device), torch.cat([mean, var, count])[None])
        table = dist_fn.all_reduce(table)
        means, variances, counts = table[:, :c], table[:, c: 2 * c], table[:, 2 * c:]
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / total
        if self.track_running_stats:
            self.num_batches_tracked += 1
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * total / (total - 1).clamp_min(1), factor)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_bn(module: nn.Module) -> None:
    """Swap every BatchNorm below ``module`` for a :class:`GlobalBatchNorm` sharing its parameters and buffers."""
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_bn(child)
