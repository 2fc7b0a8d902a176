"""``lreid demo``: the synthetic order for a few methods and seeds, its table, and the benchmark's validity check.

The check (``lreid demo --seeds 3 --check``) states what makes the embedded benchmark useful (DESIGN 5): every
domain learnable, Finetune forgetting, Joint well above Finetune, Joint generalising beyond a randomly
initialised model, and a method ranking that holds in every seed.
"""
from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .results import RunResult, finished_run

DEMO_METHODS = ["finetune", "lwf", "patchkd", "joint"]   # `--methods all` runs every registered method
CHECK_METHODS = ["finetune", "lwf", "joint"]              # what the validity check needs
PLASTICITY, FORGETTING, HEADROOM, GENERALISATION, MAX_STD = 40.0, 15.0, 15.0, 3.0, 1.5


def run_methods(cfg: Config, methods: list[str], out: Path, progress: bool = True, reuse: bool = False,
                replace: list[Path] = ()) -> list[RunResult]:
    """Train every method in ``methods`` on one benchmark; each run lands in out/<method>. ``reuse``: a finished
    run of the same config there is loaded instead of trained again (e.g. seeds run as separate processes);
    the run folders in ``replace`` (checked by the caller, ``cli.check_demo_folders``) are deleted just before
    their method trains, no other folder is."""
    from .data.benchmark import build_benchmark
    from .train import Trainer

    bench = build_benchmark(cfg)
    results = []
    for name in methods:
        run_dir = out / name
        cfg.method.name = name
        done = finished_run(run_dir, cfg) if reuse else None
        if done is not None:
            results.append(done)
            print(f"  seed {cfg.train.seed} {name}: reused {run_dir}", flush=True)
            continue
        if run_dir in replace:
            shutil.rmtree(run_dir)
        t0 = time.perf_counter()
        results.append(Trainer(cfg, name, bench, run_dir, progress=progress).fit())
        print(f"  seed {cfg.train.seed} {name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    return results


def random_init_unseen(cfg: Config) -> dict[str, float]:
    """Unseen-domain mAP of the untrained, randomly initialised model (no pretrained weights), seeded by
    ``train.seed``: the floor the generalisation criterion compares Joint with."""
    from .data.benchmark import build_benchmark
    from .evaluate import evaluate_testset
    from .train import Trainer

    cfg = copy.deepcopy(cfg)
    cfg.model.pretrained, cfg.method.name = "", "finetune"
    bench = build_benchmark(cfg)
    trainer = Trainer(cfg, "finetune", bench, None, progress=False, tensorboard=False)
    trainer.method.before_step(0, bench.train[0].num_classes)
    trainer.method.train(False)
    return {ts.domain: evaluate_testset(trainer, ts, trainer.method.embed)["mAP"] for ts in bench.unseen}


@dataclass
class Criterion:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<14} {self.detail}"


def _by_method(runs: dict[int, list[RunResult]], method: str) -> list[RunResult]:
    return [r for seed in sorted(runs) for r in runs[seed] if r.method == method]


def widest_spread(results: list[RunResult]) -> tuple[str, float]:
    """The seen domain whose final mAP varies most over ``results`` (one method, one run per seed) and that
    sample std in mAP points: where a method's Seen-Avg spread comes from."""
    order = results[0].order
    stds = (np.array([[r.final(d) for d in order] for r in results]) * 100).std(axis=0, ddof=1)
    i = int(np.argmax(stds))
    return order[i], float(stds[i])


def check(runs: dict[int, list[RunResult]], random: dict[int, dict[str, float]]) -> list[Criterion]:
    """The validity criteria over seeds (``runs[seed]`` = that seed's results; ``random[seed]`` = the random-init
    model's unseen mAP); every value is in mAP points, means over seeds unless stated."""
    ft, lwf, joint = (_by_method(runs, m) for m in CHECK_METHODS)
    n = len(runs)
    diag = np.mean([np.diag(r.matrix("mAP")) for r in ft], axis=0) * 100
    diag_min = np.min([np.diag(r.matrix("mAP")) for r in ft], axis=0) * 100
    order = ft[0].order
    forget = np.mean([r.forgetting("mAP") for r in ft]) * 100
    seen = {m: np.array([r.seen_avg("mAP") for r in _by_method(runs, m)]) * 100
            for m in dict.fromkeys(r.method for rs in runs.values() for r in rs)}
    unseen = ft[0].unseen
    j_unseen = {d: 100 * np.mean([r.final(d) for r in joint]) for d in unseen}
    r_unseen = {d: 100 * np.mean([random[s][d] for s in random]) for d in unseen}
    stds = {m: (float(v.std(ddof=1)) if len(v) > 1 else float("nan")) for m, v in seen.items()}
    ranked = [bool(j > l > f) for j, l, f in zip(seen["joint"], seen["lwf"], seen["finetune"])]
    spread = [(m, *widest_spread(_by_method(runs, m))) for m, s in stds.items() if s > MAX_STD]
    return [
        Criterion("plasticity", bool((diag >= PLASTICITY).all()),
                  f"Finetune mAP right after each domain's own step (mean / min over {n} seeds): "
                  + ", ".join(f"{d} {m:.1f}/{lo:.1f}" for d, m, lo in zip(order, diag, diag_min))
                  + f"  (each mean >= {PLASTICITY:.0f})"),
        Criterion("forgetting", bool(forget >= FORGETTING),
                  f"Finetune mean forgetting {forget:.1f} points  (>= {FORGETTING:.0f})"),
        Criterion("headroom", bool(seen["joint"].mean() >= seen["finetune"].mean() + HEADROOM),
                  f"Seen-Avg mAP Joint {seen['joint'].mean():.1f} vs Finetune {seen['finetune'].mean():.1f}: "
                  f"+{seen['joint'].mean() - seen['finetune'].mean():.1f}  (>= +{HEADROOM:.0f})"),
        Criterion("generalisation", all(j_unseen[d] >= GENERALISATION * r_unseen[d] for d in unseen),
                  "unseen mAP Joint vs random init: " + ", ".join(
                      f"{d} {j_unseen[d]:.1f} vs {r_unseen[d]:.1f} ({j_unseen[d] / max(r_unseen[d], 1e-9):.1f}x)"
                      for d in unseen) + f"  (>= {GENERALISATION:.0f}x)"),
        Criterion("stability", n > 1 and all(s <= MAX_STD for s in stds.values()) and all(ranked),
                  "Seen-Avg mAP std over seeds: " + ", ".join(f"{m} {s:.2f}" for m, s in stds.items())
                  + f" (<= {MAX_STD}); Joint > LwF > Finetune in {sum(ranked)}/{n} seeds"
                  + "".join(f"; {m}'s spread is widest on {d} (final mAP std {s:.1f})" for m, d, s in spread)),
    ]
