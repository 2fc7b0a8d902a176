"""Evidence for the official-code recipe (issue 12) on the demo benchmark, as run by

    python benchmarks/official_recipe.py --out runs/recipe [--profile demo] [--seeds 0,1,2]

1. finetune, lwf, patchkd, joint over ``--seeds`` (``train.seed``; the benchmark's ``synth_seed`` stays fixed)
   under the defaults (``train.lr_schedule=global``) and under ``train.lr_schedule=per_step``;
2. the Table-3/4 ablation rows of patchkd on the first seed;
3. the sampler's health after each step of every default patchkd run (argmax cells on the trained domain's
   query images): distinct cells per image (of K), the share of images on which the most frequent cell is
   chosen, and the mean max probability of the score maps.

Runs that already finished under ``--out`` are reused, so an interrupted invocation continues where it stopped.
Prints the tables (``lreid report``'s mean ± sample std over seeds) and writes them to ``--out/summary-<parts>.md``;
``--parts`` picks what to run, so separate invocations can share the work.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from lreid_core.config import load_config
from lreid_core.data.augment import normalize
from lreid_core.data.benchmark import build_benchmark
from lreid_core.data.cache import load_images
from lreid_core.io import atomic_write_text
from lreid_core.models.patch import sampler_health
from lreid_core.report import build_report
from lreid_core.results import RunResult
from lreid_core.train import Trainer
from lreid_core.widgets import load_checkpoint, step_checkpoints

METHODS = ["finetune", "lwf", "patchkd", "joint"]
ABLATIONS = {"w/o L_conf": {"use_conf": False}, "w/o L_div": {"use_div": False}, "K=1": {"k": 1},
             "phi_p = phi": {"shared_classifier": True}, "FC relation": {"relation": "fc"},
             "random patches": {"random_patches": True}}


def train(profile: str, method: str, out: Path, train_set: dict, method_set: dict | None = None) -> RunResult:
    """One run in ``out`` (reused when it already finished)."""
    if (out / "metrics.json").is_file():
        done = RunResult.load(out)
        if done.status == "done":
            return done
    overrides = {"method": {"name": method, **(method_set or {})}, "train": train_set}
    cfg = load_config(profile_name=profile, overrides=overrides)
    t0 = time.perf_counter()
    result = Trainer(cfg, method, build_benchmark(cfg), out, progress=False, tensorboard=False).fit()
    print(f"  {out}: {time.perf_counter() - t0:.0f} s", flush=True)
    return result


def health_table(run_dir: Path) -> str:
    """Sampler health after each step of a patchkd run, on the trained domain's query images."""
    lines = ["| after step | domain | distinct cells / image (of K) | top cell share | mean max prob |",
             "|---|---|---|---|---|"]
    for label, path in step_checkpoints(run_dir).items():
        method = load_checkpoint(path)
        cfg = method.cfg
        step = int(label.split()[-1]) - 1
        bench = build_benchmark(cfg)
        test = bench.seen[step]
        res = method.inspect(normalize(load_images([r.path for r in test.query], cfg.data.height, cfg.data.width)))
        h = sampler_health(res["masks"], res["probs"])
        lines.append(f"| {step + 1} | {test.domain} | {h['distinct']:.2f} (of {cfg.method.k}) | "
                     f"{h['top_share']:.2f} | {h['max_prob']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/recipe")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--parts", default="schedules,ablations,health",
                    help="comma list of: schedules, ablations, health (separate invocations may share --out)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",")]
    sections = []
    start = time.perf_counter()
    for schedule in ("global", "per_step") if "schedules" in parts else ():
        dirs = []
        for seed in seeds:
            for method in METHODS:
                run_dir = out / schedule / f"seed{seed}" / method
                train(args.profile, method, run_dir, {"seed": seed, "lr_schedule": schedule})
                dirs.append(run_dir)
        sections.append(f"## train.lr_schedule={schedule}, seeds {args.seeds}\n\n{build_report(dirs).text()}")
    dirs = [out / "global" / f"seed{seeds[0]}" / "patchkd"]
    for label, switches in ABLATIONS.items() if "ablations" in parts else ():
        run_dir = out / "ablations" / label.replace(" ", "_").replace("/", "").replace("=", "")
        train(args.profile, "patchkd", run_dir, {"seed": seeds[0]}, switches)
        dirs.append(run_dir)
    if "ablations" in parts:
        sections.append(f"## patchkd ablations (Tables 3/4), seed {seeds[0]}\n\n{build_report(dirs).text()}")
    for seed in seeds if "health" in parts else ():
        run_dir = out / "global" / f"seed{seed}" / "patchkd"
        sections.append(f"## sampler health, patchkd seed {seed} (argmax cells, query images)\n\n"
                        f"{health_table(run_dir)}")
    text = "\n\n".join(sections) + f"\n\n(wall time of this invocation: {time.perf_counter() - start:.0f} s)\n"
    atomic_write_text(out / f"summary-{'-'.join(sorted(parts))}.md", text)
    print(text)


if __name__ == "__main__":
    main()
