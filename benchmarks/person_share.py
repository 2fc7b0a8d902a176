"""Where finished PatchKD runs put their sampler: the share of argmax choices on the person after step 1 (untrained)
and after the last step, against a random cell, and on the grid's outer ring (``sampler_stats``).

    python benchmarks/person_share.py runs/study/synth1/*/patchkd runs/sweep-method.gamma3/*

Each run is measured on its own benchmark (its stored config; the synthetic data are regenerated with person masks
where the cache predates them) over every query image of its order's domains.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lreid_core.checkpoints import load_checkpoint, step_paths
from lreid_core.data.benchmark import build_benchmark
from lreid_core.results import stored_config
from lreid_core.sampler_stats import person_share, query_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished PatchKD run folders")
    args = parser.parse_args()
    head = ["run", "synth", "gamma3", "routing", "step1 %", "last %", "random %", "last per branch %", "ring %"]
    print(" | ".join(head))
    for run in args.runs:
        cfg = stored_config(run)
        paths = query_paths(build_benchmark(cfg).seen)
        size = (cfg.data.height, cfg.data.width)
        steps = step_paths(run)
        first, last = (person_share(load_checkpoint(p, cfg), paths, size) for p in (steps[0], steps[-1]))
        print(" | ".join([str(run), str(cfg.data.synth_seed), f"{cfg.method.gamma3:g}", cfg.method.routing,
                          f"{100 * first.mean_on_person:.1f}", f"{100 * last.mean_on_person:.1f}",
                          f"{100 * last.random_on_person:.1f}", "/".join(f"{100 * v:.0f}" for v in last.on_person),
                          "/".join(f"{100 * v:.0f}" for v in last.ring)]), flush=True)


if __name__ == "__main__":
    main()
