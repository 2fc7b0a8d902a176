"""``lreid study sampler``: is PatchKD's sampler on the person, and what moves it off?

Trains (or reuses) one PatchKD run per gradient routing (``method.routing``: the official code's ``code``, our
reading of Fig. 2 ``fig2``) x relation weight (``method.gamma3``; 100 is the paper's, 0 switches L_PRD off) into
``OUT/<routing>-g<gamma3>``, then measures, after every step, the share of the sampler's argmax choices on the
person over every query image of the order's domains (``sampler_stats``), against a uniformly random cell and the
untrained step-1 sampler. The defaults stay the official code's; the other cells are measurements, not fixes.

Example::

    lreid study sampler --routing code,fig2 --gamma3 100,0 --out runs/sampler
"""
from __future__ import annotations

import copy
import csv
import io
from pathlib import Path

from .checkpoints import load_checkpoint, step_paths
from .config import Config, validate, with_method
from .io import atomic_write, atomic_write_text
from .sampler_stats import PersonShare, person_share, query_paths
from .study import train_or_reuse

COLUMNS = ["variant", "routing", "gamma3", "step", "images", "mean", "random cell", "lift", "cover", "branches",
           "ring", "ring branches"]


def variant_config(cfg: Config, routing: str, gamma3: float) -> Config:
    """``cfg`` as a PatchKD run with this routing and relation weight (validated)."""
    c = with_method(copy.deepcopy(cfg), "patchkd")
    c.method.routing, c.method.gamma3 = routing, float(gamma3)
    validate(c)
    return c


def variant_name(routing: str, gamma3: float) -> str:
    return f"{routing}-g{gamma3:g}"


def step_shares(run_dir: Path, cfg: Config, paths: list[str]) -> dict[int, PersonShare]:
    """``PersonShare`` of the sampler after every step of a finished PatchKD run (step numbers from 1)."""
    size = (cfg.data.height, cfg.data.width)
    return {n: person_share(load_checkpoint(p, cfg), paths, size) for n, p in enumerate(step_paths(run_dir), 1)}


def run_sampler_study(cfg: Config, routings: list[str], gamma3s: list[float], out: Path, progress: bool = True,
                      log=print) -> dict[str, dict[int, PersonShare]]:
    """Every routing x gamma3 variant: trained or reused in ``OUT/<variant>``, then measured after every step."""
    from .data.benchmark import build_benchmark

    variants = [(r, g, variant_config(cfg, r, g)) for r in routings for g in gamma3s]   # all validate first
    bench = build_benchmark(variants[0][2])
    paths = query_paths(bench.seen)
    found = {}
    for routing, gamma3, c in variants:
        name = variant_name(routing, gamma3)
        log(f"{name}: training or reusing {out / name}")
        train_or_reuse(c, "patchkd", bench, out / name, progress)
        found[name] = step_shares(out / name, c, paths)
    return found


def rows(found: dict[str, dict[int, PersonShare]]) -> list[list[str]]:
    out = []
    for name, steps in found.items():
        routing, gamma3 = name.rsplit("-g", 1)
        for step, s in steps.items():
            out.append([name, routing, gamma3, str(step), str(s.images), f"{100 * s.mean_on_person:.1f}",
                        f"{100 * s.random_on_person:.1f}", f"{s.lift:.2f}", f"{100 * sum(s.cover) / len(s.cover):.1f}",
                        "/".join(f"{100 * v:.0f}" for v in s.on_person), f"{100 * sum(s.ring) / len(s.ring):.1f}",
                        "/".join(f"{100 * v:.0f}" for v in s.ring)])
    return out


def format_rows(table: list[list[str]]) -> str:
    head = ["variant", "step", "on person %", "random %", "lift", "cover %", "per branch %", "ring %", "ring per branch %"]
    shown = [[r[0], r[3], r[5], r[6], r[7], r[8], r[9], r[10], r[11]] for r in table]
    widths = [max(len(r[i]) for r in [head] + shown) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if i in (0, 6, 8) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(head), "-" * len(line(head))] + [line(r) for r in shown])


def sampler_figure(found: dict[str, dict[int, PersonShare]]):
    """Per variant, the share of choices on the person after each step (mean over branches, each branch a dot)
    and a random cell's share as a dashed line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (name, steps), colour in zip(found.items(), colours):
        xs = list(steps)
        ax.plot(xs, [100 * s.mean_on_person for s in steps.values()], marker="o", color=colour, label=name)
        for x, s in steps.items():
            ax.scatter([x] * len(s.on_person), [100 * v for v in s.on_person], s=14, color=colour, alpha=0.45)
    random = next(iter(next(iter(found.values())).values())).random_on_person
    ax.axhline(100 * random, color="grey", ls="--", lw=1, label="random cell")
    ax.set_xlabel("after step (1: untrained sampler)", fontsize=10)
    ax.set_ylabel("choices on the person (%)", fontsize=10)
    ax.set_xticks(xs)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def write_outputs(found: dict[str, dict[int, PersonShare]], out: Path) -> tuple[Path, Path]:
    """``sampler.csv`` (one row per variant x step) and ``sampler.png`` in ``out``."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    csv.writer(buf).writerows([COLUMNS] + rows(found))
    atomic_write_text(out / "sampler.csv", buf.getvalue())
    fig = sampler_figure(found)
    png = out / "sampler.png"
    atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out / "sampler.csv", png
