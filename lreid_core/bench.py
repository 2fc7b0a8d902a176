"""``lreid bench train``: training-step time and images/s per method, measured in one run on one device,
with the data path included (uint8 cache on the device -> PK indices -> batched augmentation -> step)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import Config, profile
from .data.augment import augment
from .data.sampler import PKSampler
from .methods import create_method, list_methods
from .train import build_optimizer, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_method(cfg: Config, name: str, iters: int, warmup: int, compile_model: bool = False) -> dict:
    """Seconds per training step of ``name`` in its second domain step (teacher present), data included."""
    device = resolve_device(cfg.train.device)
    torch.manual_seed(0)
    t, d = cfg.train, cfg.data
    classes, per_id = 500 if cfg.profile == "paper" else 100, 16
    images = torch.randint(0, 256, (classes * per_id, 3, d.height, d.width), dtype=torch.uint8, device=device)
    labels = torch.arange(classes, device=device).repeat_interleave(per_id)
    sampler = PKSampler(labels.cpu(), t.p_ids, t.k_imgs)
    method = create_method("finetune" if name == "base" else name, cfg, device)
    method.before_step(0, classes)
    method.after_step(0)
    method.before_step(1, classes)
    labels = labels + classes
    if device.type == "cuda" and t.channels_last:
        method.model.to(memory_format=torch.channels_last)
    if compile_model and device.type == "cuda":
        method.model.compile()
    opt, _ = build_optimizer(cfg, method.parameters(), device, iters + warmup)
    gen = torch.Generator(device=device).manual_seed(0)
    amp = device.type == "cuda" and t.amp
    method.train(True)

    def step() -> None:
        idx = next(sampler).to(device, non_blocking=True)
        x = augment(images[idx], gen)
        if device.type == "cuda" and t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = sum(method.loss(x, labels[idx]).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    sec = (time.perf_counter() - start) / iters
    batch = t.p_ids * t.k_imgs
    return {"method": name, "step_s": sec, "images_per_s": batch / sec, "batch": batch,
            "input": f"{d.height}x{d.width}", "backbone": cfg.model.backbone, "compile": compile_model}


def bench_train(args) -> list[dict]:
    """Print step time / images/s for each method and the PatchKD/LwF ratio (same run, same device)."""
    name = args.profile
    if name == "auto":
        name = "paper" if torch.cuda.is_available() else "demo"
    cfg = profile(name)
    device = resolve_device(cfg.train.device)
    iters = args.iters or (50 if device.type == "cuda" else 10)
    methods = [m for m in args.methods.split(",") if m == "base" or m in list_methods()]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"lreid bench train: profile {name}, {cfg.model.backbone} {cfg.data.height}x{cfg.data.width}, "
          f"batch {cfg.train.p_ids}x{cfg.train.k_imgs}, {iters} timed iterations, device {dev_name}", flush=True)
    rows = []
    for m in methods:
        row = time_method(cfg, m, iters, warmup=max(3, iters // 5))
        row["device"] = dev_name
        rows.append(row)
        print(f"  {m:<10} {1000 * row['step_s']:8.1f} ms/step {row['images_per_s']:9.1f} img/s", flush=True)
    by = {r["method"]: r for r in rows}
    if "lwf" in by and "patchkd" in by:
        print(f"  patchkd/lwf step-time ratio: {by['patchkd']['step_s'] / by['lwf']['step_s']:.3f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return rows
