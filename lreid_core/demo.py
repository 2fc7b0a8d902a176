"""``lreid demo``: the synthetic order for a few methods and seeds, its table, and the benchmark's validity check.

The check (``lreid demo --seeds 5 --check``) states what makes the embedded benchmark useful (DESIGN 5): every
domain learnable, Finetune forgetting, Joint well above Finetune, Joint generalising beyond a randomly
initialised model, LwF closing a paper-like share of the Finetune-to-Joint gap, and differences between
methods (Joint > LwF > Finetune) that hold in every seed and are large against their spread.
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
PLASTICITY, FORGETTING, HEADROOM, GENERALISATION, GAP_CLOSED, MIN_RATIO = 40.0, 15.0, 15.0, 3.0, 0.25, 2.0


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


def gap_closed(finetune: float, lwf: float, joint: float) -> float:
    """The share of the Finetune-to-Joint Seen-Avg gap a method closes (paper, Table 2: LwF 0.34 on order 1,
    0.25 on order 2); NaN when Joint is not above Finetune."""
    return (lwf - finetune) / (joint - finetune) if joint > finetune else float("nan")


def criteria(runs: dict[int, list[RunResult]], random: dict[int, dict[str, float]]) -> list[Criterion]:
    """The validity and calibration criteria of DESIGN 5 on the baselines only (``runs[seed]`` = that seed's
    results; ``random[seed]`` = the random-init model's unseen mAP); mAP points, means over seeds."""
    ft, lwf, joint = (_by_method(runs, m) for m in CHECK_METHODS)
    n = len(runs)
    diag = np.mean([np.diag(r.matrix("mAP")) for r in ft], axis=0) * 100
    diag_min = np.min([np.diag(r.matrix("mAP")) for r in ft], axis=0) * 100
    order = ft[0].order
    forget = np.mean([r.forgetting("mAP") for r in ft]) * 100
    seen = {m: float(np.mean([r.seen_avg("mAP") for r in rs])) * 100 for m, rs in
            (("finetune", ft), ("lwf", lwf), ("joint", joint))}
    closed = gap_closed(seen["finetune"], seen["lwf"], seen["joint"])
    unseen = ft[0].unseen
    j_unseen = {d: 100 * np.mean([r.final(d) for r in joint]) for d in unseen}
    r_unseen = {d: 100 * np.mean([random[s][d] for s in random]) for d in unseen}
    return [
        Criterion("plasticity", bool((diag >= PLASTICITY).all()),
                  f"Finetune mAP right after each domain's own step (mean / min over {n} seeds): "
                  + ", ".join(f"{d} {m:.1f}/{lo:.1f}" for d, m, lo in zip(order, diag, diag_min))
                  + f"  (each mean >= {PLASTICITY:.0f})"),
        Criterion("forgetting", bool(forget >= FORGETTING),
                  f"Finetune mean forgetting {forget:.1f} points  (>= {FORGETTING:.0f})"),
        Criterion("headroom", bool(seen["joint"] >= seen["finetune"] + HEADROOM),
                  f"Seen-Avg mAP Joint {seen['joint']:.1f} vs Finetune {seen['finetune']:.1f}: "
                  f"{seen['joint'] - seen['finetune']:+.1f}  (>= +{HEADROOM:.0f})"),
        Criterion("generalisation", all(j_unseen[d] >= GENERALISATION * r_unseen[d] for d in unseen),
                  "unseen mAP Joint vs random init: " + ", ".join(
                      f"{d} {j_unseen[d]:.1f} vs {r_unseen[d]:.1f} ({j_unseen[d] / max(r_unseen[d], 1e-9):.1f}x)"
                      for d in unseen) + f"  (>= {GENERALISATION:.0f}x)"),
        Criterion("calibration", bool(closed >= GAP_CLOSED),
                  f"LwF closes {closed:.2f} of the Finetune-to-Joint Seen-Avg gap ({seen['finetune']:.1f} -> "
                  f"{seen['lwf']:.1f} of {seen['joint']:.1f})  (>= {GAP_CLOSED}; paper 0.34 / 0.25)"),
    ]


def paired(runs: dict[int, list[RunResult]], better: str, worse: str) -> tuple[np.ndarray, float, float]:
    """Per-seed Seen-Avg mAP differences ``better - worse`` (points) with their mean and sample std."""
    diff = np.array([100 * (next(r for r in runs[s] if r.method == better).seen_avg("mAP")
                            - next(r for r in runs[s] if r.method == worse).seen_avg("mAP")) for s in sorted(runs)])
    return diff, float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")


def pair_text(runs: dict[int, list[RunResult]], better: str, worse: str) -> str:
    diff, mean, std = paired(runs, better, worse)
    return (f"{better} - {worse} {mean:+.2f} ± {std:.2f} (per seed {', '.join(f'{d:+.2f}' for d in diff)})")


def stability(runs: dict[int, list[RunResult]]) -> list[Criterion]:
    """DESIGN 5's stability: for each adjacent pair of the chain Joint > LwF > Finetune, the paired Seen-Avg
    difference is positive in every seed and its mean >= MIN_RATIO x its sample std over the seeds. PatchKD
    against LwF (when run) is printed in the same form and is never a criterion."""
    out = []
    for better, worse in (("joint", "lwf"), ("lwf", "finetune")):
        diff, mean, std = paired(runs, better, worse)
        ok = len(diff) > 1 and bool((diff > 0).all()) and mean >= MIN_RATIO * std
        out.append(Criterion("stability", ok, pair_text(runs, better, worse)
                             + f"  (> 0 in every seed, mean >= {MIN_RATIO:.0f} x std)"))
    return out


def check(runs: dict[int, list[RunResult]], random: dict[int, dict[str, float]]) -> list[Criterion]:
    """Every criterion ``lreid demo --check`` prints: validity and calibration, then stability over seeds."""
    return criteria(runs, random) + stability(runs)


def versus_lwf(runs: dict[int, list[RunResult]], method: str = "patchkd") -> str | None:
    """``method`` against LwF in the stability form (reported, not a criterion); None when it was not run."""
    if not all(any(r.method == method for r in rs) for rs in runs.values()):
        return None
    return "report        " + pair_text(runs, method, "lwf")
