"""``lreid pretrain``: starting weights for the small backbone, learnt on a pool of synthetic domains that is
disjoint from the benchmark's (other scenes, cameras and people): the CPU profiles' stand-in for the paper's
ImageNet initialisation. The shipped ``model.pretrained=synthetic`` file is ``lreid pretrain --seed 0``."""
from __future__ import annotations

import time
from pathlib import Path

from .config import Config, profile
from .data.synthetic import GENERATOR_VERSION, PRETRAIN_STYLES
from .io import atomic_torch_save

POOL = list(PRETRAIN_STYLES)
POOL_IDS = 250          # identities per pool domain (1,000 in all)


def pretrain_config(seed: int = 0, iters: int = 2000) -> Config:
    """The demo model trained jointly on the pool (``data.synth_variant=pretrain``) for ``iters`` iterations."""
    cfg = profile("demo")
    d, t = cfg.data, cfg.train
    d.order, d.unseen, d.synth_variant, d.synth_seed = list(POOL), [], "pretrain", seed
    d.synth_train_ids, d.synth_test_ids, d.synth_images_per_id, d.ids_per_domain = POOL_IDS, 25, 8, POOL_IDS
    cfg.model.pretrained = ""
    cfg.method.name = "joint"
    t.seed, t.epochs, t.joint_epochs_factor = seed, 10, 1 / len(POOL)   # one joint step of 10 epochs
    t.iters_per_epoch, t.milestones, t.lr = max(1, iters // 10), [6, 8], 1e-3
    return cfg


def pretrain(out: Path, seed: int = 0, iters: int = 2000, progress: bool = True) -> dict:
    """Train on the pool and write the backbone's weights to ``out`` (loadable with ``weights_only=True``);
    returns the file's metadata (seed, pool, iterations, the pool's test mAP, wall time)."""
    from .data.benchmark import build_benchmark
    from .train import Trainer

    cfg = pretrain_config(seed, iters)
    start = time.perf_counter()
    trainer = Trainer(cfg, "joint", build_benchmark(cfg), None, progress=progress, tensorboard=False)
    result = trainer.fit()
    m = cfg.model
    meta = {"width": m.width, "stride": m.small_stride, "last_stride": m.last_stride, "seed": seed,
            "iters": cfg.train.epochs * cfg.train.iters_per_epoch, "pool": POOL, "pool_ids": POOL_IDS,
            "generator_version": GENERATOR_VERSION, "input": [cfg.data.height, cfg.data.width],
            "pool_mAP": round(result.seen_avg("mAP"), 4), "wall_s": round(time.perf_counter() - start, 1)}
    state = {k: v.detach().cpu().clone() for k, v in trainer.method.model.backbone.state_dict().items()}
    atomic_torch_save(Path(out), {"state_dict": state, **meta})
    return meta
