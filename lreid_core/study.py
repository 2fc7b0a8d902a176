"""``lreid study regime``: where on the regime axes the embedded benchmark reproduces the paper's baselines.

The axes (DESIGN 5): iterations per domain step, the learning rate of every step after the first on the global
clock (``train.later_lr``; step 1 unchanged) and identities per batch (``train.p_ids``). Every regime x validation
generator seed trains the methods into ``OUT/synth<S>/<regime>/<method>``: finished runs are reused, an
interrupted one resumes from its checkpoint, so the command can be stopped and started again (or run as one
process per seed and tabulated afterwards with ``--table-only``). Regimes run cheapest first (iterations x batch).

The calibration rule, applied per seed on the baselines only (``demo.criteria``): the chosen regime is the
cheapest whose Finetune, LwF and Joint pass every criterion on every validation seed (ties: the lower later-step
learning rate, nearer the paper's). PatchKD's numbers and where its sampler puts its cells are reported for every
regime and never enter the choice.

Example::

    lreid study regime --synth-seeds 1,2 --iters 120,480 --later-lr 1,0.2,0.05 --p-ids 8,16 --out runs/study
"""
from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import Config, validate, with_method
from .demo import Criterion, criteria, gap_closed, random_init_unseen
from .errors import LReIDError
from .io import atomic_write, atomic_write_json, atomic_write_text
from .results import RESULT_NEUTRAL, RunResult, config_differences, finished_run, holds_run, stored_config

STUDY_METHODS = ["finetune", "lwf", "patchkd", "joint"]


@dataclass(frozen=True)
class Regime:
    iters: int          # training iterations per domain step (joint: the order's total)
    later_lr: float     # learning-rate factor of every step after the first (global clock)
    p_ids: int          # identities per batch (P; K images each)

    @property
    def name(self) -> str:
        return f"it{self.iters}-lr{self.later_lr:g}-p{self.p_ids}"

    @property
    def cost(self) -> int:
        """Images trained per step: what a regime costs (evaluation is the same in every regime)."""
        return self.iters * self.p_ids

    def apply(self, cfg: Config) -> Config:
        """A copy of ``cfg`` in this regime: ``train.iters_per_epoch`` (the profile's epochs kept, so the global
        clock's milestones stay where they are), ``train.later_lr`` and ``train.p_ids``."""
        cfg = copy.deepcopy(cfg)
        if self.iters % cfg.train.epochs:
            raise LReIDError(f"--iters {self.iters} is not a multiple of train.epochs={cfg.train.epochs}")
        cfg.train.iters_per_epoch = self.iters // cfg.train.epochs
        cfg.train.later_lr, cfg.train.p_ids = self.later_lr, self.p_ids
        validate(cfg)
        return cfg


def parse_numbers(text: str, kind: type, flag: str) -> list:
    """A flag's comma list as distinct ``kind`` values; one line naming the flag otherwise."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LReIDError(f"{flag} needs a comma list of {kind.__name__} values, got {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise LReIDError(f"{flag} needs distinct values, got {text!r}")
    return values


def parse_regimes(iters: str, later_lr: str, p_ids: str) -> list[Regime]:
    """The grid of the three comma lists, cheapest first; at equal cost the higher later-step rate first."""
    grid = itertools.product(parse_numbers(iters, int, "--iters"), parse_numbers(later_lr, float, "--later-lr"),
                             parse_numbers(p_ids, int, "--p-ids"))
    return sorted((Regime(*g) for g in grid), key=lambda r: (r.cost, -r.later_lr))


def seed_folder(out: Path, synth_seed: int) -> Path:
    return out / f"synth{synth_seed}"


def train_or_reuse(cfg: Config, method: str, bench, run_dir: Path, progress: bool) -> RunResult:
    """The finished run of ``cfg`` in ``run_dir``, else the run trained there (resumed from its checkpoint when
    an earlier study was stopped); a folder holding a run of another config is refused, never replaced."""
    from .train import Trainer

    cfg = with_method(cfg, method)
    if (done := finished_run(run_dir, cfg)) is not None:
        return done
    resume = False
    if holds_run(run_dir):
        if (run_dir / "config.yaml").is_file():
            differ = config_differences(stored_config(run_dir).to_dict(), cfg.to_dict(), RESULT_NEUTRAL)
        else:
            differ = ["config.yaml missing"]
        if differ:
            raise LReIDError(f"{run_dir} holds another run ({', '.join(differ[:3])} differ); not replacing it")
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
    trainer = Trainer(cfg, method, bench, run_dir, progress=progress)
    if resume:
        trainer.resume()
    return trainer.fit()


def random_floor(cfg: Config, folder: Path) -> dict[str, float]:
    """The random-init model's unseen mAP for this generator seed (``demo.random_init_unseen``), cached in
    ``folder/random_init.json``."""
    path = folder / "random_init.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and set(data) == set(cfg.data.unseen):
                return {k: float(v) for k, v in data.items()}
        except (OSError, ValueError, TypeError):
            pass
    floor = random_init_unseen(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, floor)
    return floor


def ring_share(run_dir: Path, cfg: Config, bench) -> list[float]:
    """Per sampler branch, the share of (query image, seen domain) choices on the feature grid's outer ring
    after the last step (argmax, no Gumbel noise), over every query image of every seen domain
    (``sampler_stats.ring_share``: a uniform choice lands there 34 % of the time on a 16 x 8 grid)."""
    from .checkpoints import load_checkpoint, step_paths
    from .sampler_stats import chosen_cells, query_paths
    from .sampler_stats import ring_share as on_ring

    method = load_checkpoint(step_paths(run_dir)[-1], with_method(cfg, "patchkd"))
    if cfg.train.channels_last:
        method.model.to(memory_format=torch.channels_last)
    return on_ring(*chosen_cells(method, query_paths(bench.seen), (cfg.data.height, cfg.data.width)))


def ring_cached(run_dir: Path, cfg: Config, bench) -> list[float]:
    """``ring_share`` of a finished PatchKD run, stored beside it in ``sampler_ring.json``."""
    path = run_dir / "sampler_ring.json"
    if path.is_file():
        try:
            return [float(v) for v in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            pass
    share = ring_share(run_dir, cfg, bench)
    atomic_write_json(path, share)
    return share


@dataclass
class Cell:
    """One regime on one generator seed: its runs by method and the calibration criteria on the baselines."""
    regime: Regime
    synth_seed: int
    results: dict[str, RunResult]
    verdict: list[Criterion]
    ring: list[float] | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.verdict)

    def seen(self, method: str) -> float:
        return 100 * self.results[method].seen_avg("mAP") if method in self.results else float("nan")

    def forget(self, method: str) -> float:
        return 100 * self.results[method].forgetting("mAP") if method in self.results else float("nan")


def run_study(cfg: Config, regimes: list[Regime], synth_seeds: list[int], methods: list[str], out: Path,
              train: bool = True, progress: bool = True, log=print) -> list[Cell]:
    """Every regime x seed (cheapest regime first, the seeds of a regime side by side): train what is missing
    (``train``; the baselines first, so a regime's verdict comes before PatchKD's numbers) or only collect what is
    finished; a cell is complete when every baseline of it is."""
    from .data.benchmark import build_benchmark

    baselines = ("finetune", "lwf", "joint")
    methods = [m for m in baselines if m in methods] + [m for m in methods if m not in baselines]   # verdict first
    cells = []
    for regime in regimes:
        for seed in synth_seeds:
            c = regime.apply(cfg)
            c.data.synth_seed = seed
            folder = seed_folder(out, seed) / regime.name
            bench = build_benchmark(c) if train else None
            results = {}
            for method in methods:
                run_dir = folder / method
                if train:
                    t0 = time.perf_counter()
                    done = finished_run(run_dir, with_method(c, method)) is not None
                    results[method] = train_or_reuse(c, method, bench, run_dir, progress)
                    log(f"synth{seed} {regime.name} {method}: "
                        + ("reused" if done else f"trained in {time.perf_counter() - t0:.0f} s"))
                elif (done := finished_run(run_dir, with_method(c, method))) is not None:
                    results[method] = done
            if not all(m in results for m in baselines):
                continue
            floor = random_floor(c, seed_folder(out, seed))
            verdict = criteria({0: [results[m] for m in baselines]}, {0: floor})
            ring = None
            if "patchkd" in results:
                ring = ring_cached(folder / "patchkd", c, bench or build_benchmark(c))
            cells.append(Cell(regime, seed, results, verdict, ring))
    return cells


def choose(cells: list[Cell], regimes: list[Regime], synth_seeds: list[int]) -> Regime | None:
    """The calibration rule: the first regime (cheapest, then lower later-step lr) whose baselines pass every
    criterion on every validation seed; None when no complete regime does."""
    by = {(c.regime, c.synth_seed): c for c in cells}
    ordered = sorted(regimes, key=lambda r: (r.cost, r.later_lr))
    for r in ordered:
        if all((r, s) in by and by[(r, s)].passed for s in synth_seeds):
            return r
    return None


COLUMNS = ["regime", "synth_seed", "finetune", "lwf", "patchkd", "joint", "gap_closed_lwf", "gap_closed_patchkd",
           "forget_finetune", "forget_lwf", "forget_patchkd", "patchkd_ring", "criteria"]


def rows(cells: list[Cell]) -> list[list[str]]:
    """One row per cell: Seen-Avg mAP per method, the gap LwF / PatchKD close, forgetting, PatchKD's outer-ring
    shares per branch, and the criteria that failed ("ok" when none)."""
    out = []
    for c in cells:
        ft, joint = c.seen("finetune"), c.seen("joint")
        failed = [v.name for v in c.verdict if not v.passed]
        out.append([c.regime.name, str(c.synth_seed)]
                   + [f"{c.seen(m):.2f}" for m in ("finetune", "lwf", "patchkd", "joint")]
                   + [f"{gap_closed(ft, c.seen(m), joint):.2f}" for m in ("lwf", "patchkd")]
                   + [f"{c.forget(m):.2f}" for m in ("finetune", "lwf", "patchkd")]
                   + ["/".join(f"{v:.2f}" for v in c.ring) if c.ring else "-", ",".join(failed) or "ok"])
    return out


def format_rows(table: list[list[str]]) -> str:
    head = ["regime", "seed", "FT", "LwF", "PKD", "Joint", "LwF gap", "PKD gap", "FT fgt", "LwF fgt", "PKD fgt",
            "PKD ring", "failed"]
    widths = [max(len(r[i]) for r in [head] + table) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if 0 < i < len(r) - 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(head), "-" * len(line(head))] + [line(r) for r in table])


def study_figure(cells: list[Cell], regimes: list[Regime]):
    """Per regime (cheapest left): Seen-Avg mAP and forgetting per method, and the share of the Finetune-to-Joint
    gap LwF and PatchKD close against the rule's 0.25 and the paper's 0.34; the mean over the validation seeds as a
    line, each seed a small dot."""
    import matplotlib.pyplot as plt

    shown = [r for r in regimes if any(c.regime == r for c in cells)]
    fig, axes = plt.subplots(1, 3, figsize=(max(12, 1.6 * len(shown) + 7), 4.4), constrained_layout=True)
    xs = np.arange(len(shown))

    def closed(c: Cell, m: str) -> float:
        return gap_closed(c.seen("finetune"), c.seen(m), c.seen("joint"))

    panels = ((axes[0], Cell.seen, ("finetune", "lwf", "patchkd", "joint")),
              (axes[1], Cell.forget, ("finetune", "lwf", "patchkd")), (axes[2], closed, ("lwf", "patchkd")))
    colours = dict(zip(("finetune", "lwf", "patchkd", "joint"), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, value, methods in panels:
        for method in methods:
            per = [[value(c, method) for c in cells if c.regime == r] for r in shown]
            ax.plot(xs, [np.nanmean(p) if np.isfinite(p).any() else np.nan for p in per], marker="o", color=colours[method],
                    label=method)
            for x, p in zip(xs, per):
                ax.scatter([x] * len(p), p, s=12, color=colours[method], alpha=0.5)
    axes[2].axhline(0.25, color="grey", ls="--", lw=1, label="rule: 0.25")
    axes[2].axhline(0.34, color="grey", ls=":", lw=1, label="paper order 1: 0.34")
    titles = ("Seen-Avg mAP (%)", "forgetting (mAP points)", "share of the Finetune-to-Joint gap closed")
    for ax, title in zip(axes, titles):
        ax.set_xticks(xs, [r.name for r in shown], rotation=35, ha="right", fontsize=9)
        ax.set_xlim(-0.5, len(shown) - 0.5)
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
    for ax in (axes[0], axes[2]):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0) if ax is axes[2] else None)
    return fig


def write_outputs(cells: list[Cell], regimes: list[Regime], out: Path) -> tuple[Path, Path]:
    """``study.csv`` (one row per regime x seed) and ``study.png`` in ``out``."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    csv.writer(buf).writerows([COLUMNS] + rows(cells))
    atomic_write_text(out / "study.csv", buf.getvalue())
    fig = study_figure(cells, regimes)
    png = out / "study.png"
    atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out / "study.csv", png
