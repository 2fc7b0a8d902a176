"""CPU speed of the demo model by memory layout and extraction batch (one thread): what `train.channels_last`
and the demo's `train.eval_batch=64` are based on. Prints img/s for extraction and ms per training iteration.

    OMP_NUM_THREADS=1 python benchmarks/cpu_layout.py
"""
import time

import torch

from lreid_core.config import load_config
from lreid_core.evaluate import extract_features
from lreid_core.methods import create_method


def method(name: str, channels_last: bool):
    torch.manual_seed(0)
    m = create_method(name, load_config(profile_name="demo", overrides={"method": {"name": name}}), "cpu")
    m.before_step(0, 100)
    m.after_step(0)
    m.before_step(1, 100)                                # step 2: the teacher runs too
    if channels_last:
        m.model.to(memory_format=torch.channels_last)
    return m


def extraction(channels_last: bool, batch: int, n: int = 2048) -> float:
    m = method("lwf", channels_last)
    m.train(False)
    imgs = torch.randint(0, 255, (n, 3, 64, 32), dtype=torch.uint8)
    extract_features(m.embed, imgs[:256], batch, torch.device("cpu"))
    t = time.perf_counter()
    extract_features(m.embed, imgs, batch, torch.device("cpu"))
    return n / (time.perf_counter() - t)


def iteration(name: str, channels_last: bool, iters: int = 30) -> float:
    m = method(name, channels_last)
    m.train(True)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    x = torch.randn(32, 3, 64, 32)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.arange(8).repeat_interleave(4) + 100

    def step():
        loss = sum(m.loss(x, y).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - t) / iters * 1000


if __name__ == "__main__":
    torch.set_num_threads(1)
    for cl in (False, True):
        for bs in (512, 64):
            print(f"extraction channels_last={cl} batch {bs}: {extraction(cl, bs):.0f} img/s", flush=True)
    for name in ("lwf", "patchkd"):
        for cl in (False, True):
            print(f"{name} iteration (batch 8x4) channels_last={cl}: {iteration(name, cl):.1f} ms", flush=True)
