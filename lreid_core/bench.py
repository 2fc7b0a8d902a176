"""``lreid bench train``: training-step speed per method, measured in one run on one device.

Rows: the *plain eager* baseline (pre-normalised float batches already on the device, non-fused Adam: the usual
ReID training step without a data path), then each method's real step *including data* (uint8 cache on the device
-> PK indices -> batched augmentation -> step with fused Adam), eager and, on CUDA, under ``torch.compile``; then
feature-extraction throughput and a projection of a full order-1 run (5 steps x 50 epochs x 150 iterations).

``--nproc N`` instead times the same step data-parallel (as under torchrun: each rank's PK share, gradient
all-reduce; NCCL on CUDA, gloo on CPU) for world sizes 1, 2, 4, ... N in one run, the same global batch each
time, and reports global images/s per world size (on CPU the threads are split evenly over the processes).

``lreid bench eval`` (:func:`bench_rank_metrics`, :func:`format_bench`): the vectorised
:func:`lreid_core.evaluate.rank_metrics` timed against its per-query reference ``rank_metrics_loop``.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .config import Config, profile
from .errors import LReIDError
from .evaluate import rank_metrics, rank_metrics_loop
from .data.augment import augment, normalize
from . import distributed
from .data.sampler import DistributedPKSampler
from .losses import reid_loss
from .methods import create_method, list_methods
from .models.reid import ReIDModel
from .train import AMP_DTYPES, build_optimizer, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _fake_domain(cfg: Config, device: torch.device, classes: int, per_id: int = 16):
    d = cfg.data
    images = torch.randint(0, 256, (classes * per_id, 3, d.height, d.width), dtype=torch.uint8, device=device)
    labels = torch.arange(classes, device=device).repeat_interleave(per_id)
    return images, labels


def plain_eager(cfg: Config, iters: int, warmup: int) -> float:
    """Seconds per step of a conventional eager step on ready float batches (the baseline)."""
    device = resolve_device(cfg.train.device)
    t, d = cfg.train, cfg.data
    model = ReIDModel(cfg.model).to(device)
    model.head.grow(500)
    cuda = device.type == "cuda"
    if cuda and t.channels_last:
        model.to(memory_format=torch.channels_last)
    batch = t.p_ids * t.k_imgs
    x = torch.randn(batch, 3, d.height, d.width, device=device)
    if cuda and t.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(t.p_ids, device=device).repeat_interleave(t.k_imgs)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)

    def step() -> None:
        with torch.autocast("cuda", dtype=AMP_DTYPES.get(t.amp), enabled=cuda and t.amp != "off"):
            out = model(x)
            loss = sum(reid_loss(out["logits"], out["feat"], y).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _timed(step, iters, warmup, device)


def method_step(cfg: Config, name: str, iters: int, warmup: int, compile_model: bool = False) -> float:
    """Seconds per step of ``name`` in its second domain step (teacher present), data path included; inside a
    process group, this rank's share of the global batch with the gradient all-reduce."""
    device = distributed.rank_device(resolve_device(cfg.train.device))
    torch.manual_seed(0)
    t = cfg.train
    classes = 500
    images, labels = _fake_domain(cfg, device, classes)
    share = distributed.share()
    sampler = DistributedPKSampler(labels.cpu(), t.p_ids, t.k_imgs, rank=share[0], world_size=share[1])
    method = create_method("finetune" if name == "base" else name, cfg, device)
    method.before_step(0, classes)
    method.after_step(0)
    method.before_step(1, classes)
    labels = labels + classes
    cuda = device.type == "cuda"
    if cuda and t.channels_last:
        method.model.to(memory_format=torch.channels_last)
        if method.old is not None:
            method.old.to(memory_format=torch.channels_last)
    if compile_model and cuda:
        method.model.compile()
        if method.old is not None:
            method.old.compile()
    opt, _ = build_optimizer(cfg, method.optim_groups(), device, iters + warmup, step=1)
    params = method.parameters()
    gen = torch.Generator(device=device).manual_seed(0)
    method.train(True)

    def step() -> None:
        idx = next(sampler).to(device, non_blocking=True)
        x = augment(images[idx], gen, share)
        if cuda and t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=AMP_DTYPES.get(t.amp), enabled=cuda and t.amp != "off"):
            loss = sum(method.loss(x, labels[idx]).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(params)
        opt.step()

    return _timed(step, iters, warmup, device)


def _ddp_worker(rank: int, world: int, port: int, threads: int, profile_name: str, methods: list[str], iters: int,
                warmup: int, out: str) -> None:
    """One rank of :func:`bench_ddp`: every method's step time, the slowest rank's, written by rank 0."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    cfg = profile(profile_name)
    device = distributed.rank_device(resolve_device(cfg.train.device))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world == 1:                       # the plain single-process step, no process group
        Path(out).write_text(json.dumps([method_step(cfg, m, iters, warmup) for m in methods]))
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        times = torch.tensor([method_step(cfg, m, iters, warmup) for m in methods], device=device)
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        if rank == 0:
            Path(out).write_text(json.dumps(times.tolist()))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_ddp(name: str, methods: list[str], iters: int, warmup: int, nproc: int) -> list[dict]:
    """Seconds per global step and global images/s of each method for world sizes 1, 2, 4, ..., ``nproc``."""
    cfg = profile(name)
    cuda = resolve_device(cfg.train.device).type == "cuda"
    if cuda and nproc > torch.cuda.device_count():
        raise LReIDError(f"--nproc {nproc} needs {nproc} GPUs, {torch.cuda.device_count()} visible")
    worlds = sorted({1, nproc} | {w for w in (2, 4, 8, 16, 32) if w < nproc})
    for w in worlds:
        DistributedPKSampler(list(range(cfg.train.p_ids)), cfg.train.p_ids, 1, world_size=w)   # P divisible by w
    threads = torch.get_num_threads()
    batch = cfg.train.p_ids * cfg.train.k_imgs
    rows, single = [], {}
    for world in worlds:
        per_rank = 1 if cuda else max(1, threads // world)
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "times.json")
            mp.spawn(_ddp_worker, (world, _free_port(), per_rank, name, methods, iters, warmup, out), nprocs=world)
            times = json.loads(Path(out).read_text())
        for m, sec in zip(methods, times):
            single.setdefault(m, sec)
            rows.append({"row": f"{m} x{world}", "method": m, "world_size": world, "step_s": sec,
                         "images_per_s": batch / sec, "speedup": single[m] / sec, "threads_per_rank": per_rank})
            print(f"  {m:<10} world {world:<3} {'GPU' if cuda else f'{per_rank} thr'}/rank {1000 * sec:8.1f} ms/step "
                  f"{batch / sec:9.1f} img/s  {single[m] / sec:5.2f}x vs 1 process", flush=True)
    return rows


@torch.no_grad()
def extraction(cfg: Config, n: int = 8192, batch: int = 512) -> float:
    """Images per second of retrieval-feature extraction (uint8 on the device -> BN-neck features)."""
    device = resolve_device(cfg.train.device)
    model = ReIDModel(cfg.model).to(device).eval()
    model.head.grow(500)                 # one step's class block, as after a first training step
    cuda = device.type == "cuda"
    if cuda and cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    images, _ = _fake_domain(cfg, device, classes=n // 16)

    def run() -> None:
        for s in range(0, len(images), batch):
            amp = cfg.train.amp
            with torch.autocast("cuda", dtype=AMP_DTYPES.get(amp), enabled=cuda and amp != "off"):
                model.embed(normalize(images[s:s + batch]))

    return len(images) / _timed(run, 2 if cuda else 1, 1, device)


def bench_train(args) -> list[dict]:
    """Print the rows described in the module docstring; optionally write them as JSON."""
    name = args.profile if args.profile != "auto" else ("paper" if torch.cuda.is_available() else "demo")
    cfg = profile(name)
    device = resolve_device(cfg.train.device)
    cuda = device.type == "cuda"
    iters = args.iters or (60 if cuda else 10)
    warmup = max(3, iters // 4)
    batch = cfg.train.p_ids * cfg.train.k_imgs
    methods = [m for m in args.methods.split(",") if m == "base" or m in list_methods()]
    dev_name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"lreid bench train: profile {name}, {cfg.model.backbone} {cfg.data.height}x{cfg.data.width}, batch "
          f"{cfg.train.p_ids}x{cfg.train.k_imgs}, {iters} timed iterations, device {dev_name}, "
          f"torch {torch.__version__}{f', data-parallel up to {args.nproc} processes' if args.nproc else ''}",
          flush=True)
    if args.nproc:
        rows = bench_ddp(name, methods, iters, warmup, args.nproc)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
        return rows
    rows = []

    def add(label: str, sec: float, **extra) -> None:
        rows.append({"row": label, "step_s": sec, "images_per_s": batch / sec, "device": dev_name, **extra})
        print(f"  {label:<28} {1000 * sec:8.1f} ms/step {batch / sec:9.1f} img/s", flush=True)

    add("plain eager (base, no data)", plain_eager(cfg, iters, warmup))
    variants = [False, True] if cuda and args.compile else [False]
    for compiled in variants:
        for m in methods:
            add(f"{m}{' compiled' if compiled else ''} (with data)",
                method_step(cfg, m, iters, warmup + (10 if compiled else 0), compiled), method=m, compiled=compiled)
    by = {(r.get("method"), r.get("compiled")): r for r in rows}
    base = rows[0]["step_s"]
    for compiled in variants:
        tag = " compiled" if compiled else ""
        if ("lwf", compiled) in by and ("patchkd", compiled) in by:
            print(f"  patchkd/lwf step-time ratio{tag}: {by['patchkd', compiled]['step_s'] / by['lwf', compiled]['step_s']:.3f}")
        for m in methods:
            if (m, compiled) in by:
                print(f"  {m}{tag} vs plain eager base: {base / by[m, compiled]['step_s']:.2f}x img/s")
    ext = extraction(cfg)
    rows.append({"row": "feature extraction", "images_per_s": ext, "device": dev_name})
    print(f"  feature extraction {ext:,.0f} img/s", flush=True)
    best = min((r for r in rows if r.get("method") == "patchkd"), key=lambda r: r["step_s"], default=None)
    if best is not None and name == "paper":
        train_s = 5 * 50 * 150 * best["step_s"]
        eval_s = 5 * 9854 / ext      # every step evaluates <= all 9,854 LReID test images (PatchKD Sec. 5.1)
        print(f"  projected order-1 PatchKD run: {train_s / 60:.1f} min training + {eval_s / 60:.1f} min evaluation "
              f"= {(train_s + eval_s) / 60:.1f} min")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


# ---------------------------------------------------------------------------------------------------
# lreid bench eval: rank_metrics against the per-query loop
# ---------------------------------------------------------------------------------------------------


def bench_rank_metrics(
    num_query: int = 3368,
    num_gallery: int = 15913,
    num_ids: int = 750,
    num_cams: int = 6,
    seed: int = 0,
    loop_queries: int = 500,
    repeats: int = 2,
    threads: int | None = None,
) -> dict:
    """Time :func:`rank_metrics` against :func:`rank_metrics_loop` on one random case.

    The case is Market-1501-sized by default: random pids in ``[0, num_ids)``,
    random camids in ``[0, num_cams)`` and a random float32 distance matrix.
    The vectorised version runs on all queries; the loop runs on the first
    ``loop_queries`` queries and its time is extrapolated linearly to
    ``num_query`` (``loop_extrapolated`` says whether that happened).  Each
    timing is the best of ``repeats`` runs (``time.perf_counter``), after a
    tiny untimed warm-up of both.  The two implementations are checked to
    agree on the loop's subset (mAP, mINP and every CMC entry within 1e-6);
    ``LReIDError`` is raised if they do not.

    ``threads`` sets ``torch.set_num_threads`` for the duration of the
    benchmark (restored afterwards); ``None`` keeps torch's default.  On a
    machine whose cores are busy with other work, intra-op threading can stall
    badly and ``threads=1`` gives the steadier number.
    """
    if threads is not None and threads < 1:
        raise LReIDError(f"threads must be >= 1, got {threads}")
    if threads is None:
        return _bench(num_query, num_gallery, num_ids, num_cams, seed, loop_queries, repeats)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _bench(num_query, num_gallery, num_ids, num_cams, seed, loop_queries, repeats)
    finally:
        torch.set_num_threads(before)


def _bench(num_query, num_gallery, num_ids, num_cams, seed, loop_queries, repeats) -> dict:
    for name, v in (("num_query", num_query), ("num_gallery", num_gallery), ("num_ids", num_ids),
                    ("num_cams", num_cams), ("loop_queries", loop_queries), ("repeats", repeats)):
        if v < 1:
            raise LReIDError(f"{name} must be >= 1, got {v}")
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, num_ids, num_query)
    g_pids = rng.integers(0, num_ids, num_gallery)
    q_cams = rng.integers(0, num_cams, num_query)
    g_cams = rng.integers(0, num_cams, num_gallery)
    distmat = torch.from_numpy(rng.random((num_query, num_gallery), dtype=np.float32))
    n_loop = min(loop_queries, num_query)
    sub = (distmat[:n_loop].numpy(), q_pids[:n_loop], g_pids, q_cams[:n_loop], g_cams)

    def best(fn, *args) -> tuple[float, dict]:
        times, out = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn(*args)
            times.append(time.perf_counter() - t0)
        return min(times), out

    warm = (np.zeros((1, 8), dtype=np.float32), [0], [0] * 8, [0], [1] * 8)
    rank_metrics(*warm)
    rank_metrics_loop(*warm)
    try:
        vec_s, full = best(rank_metrics, distmat, q_pids, g_pids, q_cams, g_cams)
        loop_sub_s, ref = best(rank_metrics_loop, *sub)
    except LReIDError as exc:
        raise LReIDError(f"benchmark case has no usable query ({exc}); use more ids or cameras") from None
    loop_s = loop_sub_s * num_query / n_loop

    check = rank_metrics(*sub)
    diff = max(
        abs(check["mAP"] - ref["mAP"]),
        abs(check["mINP"] - ref["mINP"]),
        float(np.max(np.abs(check["cmc"] - ref["cmc"]))),
    )
    if diff > 1e-6:
        raise LReIDError(f"rank_metrics and rank_metrics_loop disagree by {diff:.3g} on the benchmark subset")

    return {
        "vectorised_s": vec_s,
        "loop_s": loop_s,
        "speedup": loop_s / vec_s if vec_s > 0 else float("inf"),
        "num_query": num_query,
        "num_gallery": num_gallery,
        "num_ids": num_ids,
        "num_cams": num_cams,
        "seed": seed,
        "repeats": repeats,
        "loop_queries": n_loop,
        "loop_measured_s": loop_sub_s,
        "loop_extrapolated": n_loop < num_query,
        "max_abs_diff": diff,
        "mAP": full["mAP"],
        "rank1": float(full["cmc"][0]),
        "torch_threads": torch.get_num_threads(),
    }


def format_bench(result: dict) -> str:
    """Human-readable summary of :func:`bench_rank_metrics` (first line is the headline)."""
    line = (
        f"rank_metrics: {result['num_query']} x {result['num_gallery']} in "
        f"{result['vectorised_s']:.2f} s (vectorised) vs {result['loop_s']:.1f} s (per-query loop) "
        f"-> {result['speedup']:.1f}x"
    )
    if result.get("loop_extrapolated"):
        line += (
            f"\n  loop timed on the first {result['loop_queries']} queries "
            f"({result['loop_measured_s']:.2f} s) and extrapolated linearly; "
            f"results agree to {result['max_abs_diff']:.1e}; torch threads: {result['torch_threads']}"
        )
    else:
        line += f"\n  results agree to {result['max_abs_diff']:.1e}; torch threads: {result['torch_threads']}"
    return line
