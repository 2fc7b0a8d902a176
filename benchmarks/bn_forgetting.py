"""How much of a run's forgetting is BatchNorm running statistics rather than weights?

For every earlier domain d of a finished run, three mAPs on d's test set: the model right after d's own step, the
final model, and the final model with its BN running statistics re-estimated on d's own training images (the
weights untouched; cumulative average over up to 600 images, as AdaBN does). When the third is close to the first,
the weights still hold d and only the statistics followed the later domains: no distillation term can undo that.

    python benchmarks/bn_forgetting.py runs/demo/finetune [runs/demo/lwf ...]
"""
from __future__ import annotations

import argparse
import copy

import torch

from lreid_core.data.augment import normalize
from lreid_core.data.benchmark import build_benchmark
from lreid_core.evaluate import evaluate_testset
from lreid_core.results import stored_config
from lreid_core.train import Trainer
from lreid_core.widgets import load_checkpoint, step_checkpoints


@torch.no_grad()
def with_domain_statistics(method, images: torch.Tensor, batch: int = 64):
    """A copy of ``method`` whose model's BN running statistics are re-estimated on ``images`` (uint8 N,3,H,W)."""
    method = copy.deepcopy(method)
    norms = [m for m in method.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None                                   # cumulative average over every batch below
    method.model.train()
    for start in range(0, len(images), batch):
        method.model(normalize(images[start:start + batch]))
    method.model.eval()
    return method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished run folders (lreid demo / lreid run)")
    args = parser.parse_args()
    print("| run | domain | own step | final | final + own BN statistics |\n|---|---|---|---|---|")
    for run in args.runs:
        cfg = stored_config(run)
        bench = build_benchmark(cfg)
        trainer = Trainer(cfg, cfg.method.name, bench, None, progress=False, tensorboard=False)
        ckpts = list(step_checkpoints(run).values())
        final = load_checkpoint(ckpts[-1], cfg)
        for step, (train, test) in enumerate(zip(bench.train[:-1], bench.seen[:-1])):
            own = load_checkpoint(ckpts[step], cfg)
            images = trainer.images(train.records[:600], f"decode {train.domain}")
            maps = [evaluate_testset(trainer, test, m.embed)["mAP"] * 100
                    for m in (own, final, with_domain_statistics(final, images))]
            print(f"| {run} | {train.domain} | " + " | ".join(f"{v:.1f}" for v in maps) + " |", flush=True)


if __name__ == "__main__":
    main()
