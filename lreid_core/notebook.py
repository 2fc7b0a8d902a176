"""What the notebooks call so that they hold only parameters, plotting calls and asserts.

* ``setup()``: progress bars off (no widget clutter in a saved notebook) and PNG output for every displayed
  matplotlib Figure, also ones made without pyplot (the report's and the explorers' figures);
* ``runs_folder(profile)``: where finished runs are looked up: ``runs/<profile>`` of the project (what
  ``lreid demo`` writes, README's main job) in the demo profile, a fresh temporary folder in ``smoke``;
* ``reuse_or_train(cfg, methods, bench, folder)``: each method's finished run of exactly this config from
  ``folder/<method>`` (``results.finished_run``), training only the missing ones; a folder that holds another
  run is never replaced (the new run then goes to a temporary folder);
* ``NarratedTrainer``: a Trainer that prints its progress as plain lines (a notebook's bars are off);
* ``*_conclusion`` / ``*_text``: the sentences a notebook prints from its runs' numbers (never quoted by hand).

Example::

    setup()
    runs = reuse_or_train(load_config(profile_name="demo"), ["finetune", "lwf"], bench, runs_folder("demo"))
    runs["lwf"].result.seen_avg()
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import Config, with_method  # noqa: F401  (with_method: for the notebooks)
from .data.benchmark import Benchmark, TrainSet
from .results import RunResult, finished_run, holds_run, points
from .train import LOGGED, Trainer


def setup() -> None:
    """Switch progress bars off and render displayed Figures as PNG images at 100 dpi (so a figure's inches
    are its size on screen: 1 in = 100 px); call once, first thing."""
    import matplotlib
    import matplotlib.pyplot  # noqa: F401  (activates the kernel's inline backend before its rc is changed)

    os.environ["LREID_PROGRESS"] = "0"
    matplotlib.rcParams["figure.dpi"] = 100
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(shell, {"png"})


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``pyproject.toml`` above ``start`` (default: the working directory), else ``start``."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return start


def runs_folder(profile: str) -> Path:
    """``$LREID_RUNS/<profile>`` or ``<project>/runs/<profile>`` (``lreid demo``'s default ``--out`` in the demo
    profile); a new temporary folder in the ``smoke`` profile, so tests always train."""
    if profile == "smoke":
        return Path(tempfile.mkdtemp(prefix="lreid-smoke-runs-"))
    base = Path(os.environ["LREID_RUNS"]) if os.environ.get("LREID_RUNS") else project_root() / "runs"
    return base / profile


class NarratedTrainer(Trainer):
    """``Trainer`` that prints plain-text progress in a notebook, where bars are off (``setup``): per domain step
    the loss at about every third of its iterations with the elapsed time and the step's ETA, then the
    evaluation's time. Plain lines, so a saved notebook shows them without widget state."""

    def train_step(self, step: int, ts: TrainSet) -> None:
        self._t0, self._shown = time.perf_counter(), 0
        print(f"{self.method.name} step {step + 1}/{len(self.steps())} {ts.domain}: training", flush=True)
        super().train_step(step, ts)

    def log(self, step: int, it: int, running: dict, n: int, lr: float, bar) -> None:
        super().log(step, it, running, n, lr, bar)
        total = bar.total or it + 1
        if 3 * (it + 1) >= (self._shown + 1) * total:           # about every third of the step
            self._shown = 3 * (it + 1) // total
            loss = sum(float(v) / n for k, v in running.items() if not k.startswith(LOGGED))
            spent = time.perf_counter() - self._t0
            eta = spent / (it + 1) * (total - it - 1)
            print(f"  iteration {it + 1}/{total}, loss {loss:.3f}, {spent:.0f} s (ETA {eta:.0f} s)", flush=True)

    def evaluate(self, step: int) -> dict[str, dict[str, float]]:
        t0 = time.perf_counter()
        row = super().evaluate(step)
        print(f"  evaluated {len(row)} test sets in {time.perf_counter() - t0:.0f} s", flush=True)
        return row


@dataclass
class NotebookRun:
    """One method's finished run: its result, its folder (checkpoints under ``folder/checkpoints``) and
    whether it was reused rather than trained here."""
    result: RunResult
    folder: Path
    reused: bool


def reuse_or_train(cfg: Config, methods: list[str], bench: Benchmark, folder: Path,
                   name_of: dict[str, str] | None = None) -> dict[str, NotebookRun]:
    """For each method: the finished run of ``cfg`` (with ``method.name`` set) in ``folder/<run name>``, else a
    new run trained there. A run folder holding anything else is left alone and the run goes to a temporary
    folder. ``name_of`` maps a method to its run folder name (default: the method name). Prints one line per run.
    """
    runs = {}
    for method in methods:
        c = with_method(cfg, method)
        run_dir = Path(folder) / (name_of or {}).get(method, method)
        result = finished_run(run_dir, c)
        if result is not None:
            print(f"{method}: reusing the finished run in {run_dir}")
            runs[method] = NotebookRun(result, run_dir, True)
            continue
        if holds_run(run_dir):
            print(f"{method}: {run_dir} holds another run (left alone)", end="; ")
            run_dir = Path(tempfile.mkdtemp(prefix=f"lreid-{method}-")) / method
        t0 = time.perf_counter()
        result = NarratedTrainer(c, method, bench, run_dir, progress=False, tensorboard=False).fit()
        print(f"{method}: trained in {time.perf_counter() - t0:.0f} s -> {run_dir}")
        runs[method] = NotebookRun(result, run_dir, False)
    return runs


def drift_from_teacher(folder: Path, cfg: Config, x: torch.Tensor, step: int) -> float:
    """How far a trained run moved from its own teacher: L_KD (Eq. 2, over the teacher's classes, ``method.tau``)
    of the model after step ``step + 1`` against the model after step ``step`` (checkpoints ``step{N}.pt`` of the
    run in ``folder``, both in eval mode) on the normalised images ``x``. Zero at the start of a step, when f = f^o."""
    from .losses import kd_loss
    from .widgets import load_checkpoint

    teacher = load_checkpoint(Path(folder) / "checkpoints" / f"step{step}.pt", cfg).model
    student = load_checkpoint(Path(folder) / "checkpoints" / f"step{step + 1}.pt", cfg).model
    with torch.no_grad():
        old = teacher(x)["logits"]
        new = student(x)["logits"][:, : old.shape[1]]
    return float(kd_loss(new, old, cfg.method.tau))


def query_images(testset, size: tuple[int, int], display: tuple[int, int] | None = None, n: int | None = None,
                 per_identity: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A test set's query images as (N, 3, H, W) uint8 at the model's ``size`` and, when ``display`` is given, at
    that (larger) size for drawing: one per identity (first query image, in file order) or all of them, the
    first ``n``."""
    from .data.cache import load_images

    if per_identity:
        first: dict[int, str] = {}
        for r in testset.query:
            first.setdefault(r.pid, r.path)
        paths = list(first.values())
    else:
        paths = [r.path for r in testset.query]
    paths = paths[:n]
    return load_images(paths, *size), (load_images(paths, *display) if display else None)


def sampler_health_table(method, testsets, size: tuple[int, int]):
    """``models.patch.sampler_health`` of a PatchKD method's argmax choices over every query image of each test
    set: a DataFrame with one row per domain (images, distinct, top_share, spread, max_prob)."""
    import pandas as pd

    from .data.augment import normalize
    from .models.patch import sampler_health

    rows = []
    for ts in testsets:
        x, _ = query_images(ts, size, per_identity=False)
        res = method.inspect(normalize(x))
        rows.append({"domain": ts.domain, "images": len(x), **sampler_health(res["masks"], res["probs"])})
    return pd.DataFrame(rows).set_index("domain")


def mAP_with_bn_from(folder: Path, cfg: Config, bench: Benchmark, bn_step: int = 1, domain: int = 0) -> float:
    """mAP on seen domain ``domain`` of a run's final model with the BatchNorm running statistics of its model
    after step ``bn_step`` put back (weights unchanged): how much of the forgetting is BN statistics drift."""
    from .evaluate import evaluate_testset
    from .widgets import load_checkpoint, step_checkpoints

    ckpts = list(step_checkpoints(folder).values())
    early, final = load_checkpoint(ckpts[bn_step - 1], cfg), load_checkpoint(ckpts[-1], cfg)
    state = final.model.state_dict()
    for key, value in early.model.state_dict().items():
        if key.endswith(("running_mean", "running_var")) and state[key].shape == value.shape:
            state[key] = value
    final.model.load_state_dict(state)
    trainer = Trainer(cfg, final, bench, progress=False, tensorboard=False)
    return evaluate_testset(trainer, bench.seen[domain], final.embed)["mAP"]


# ---- conclusions printed from the runs (notebooks 01, 03, 04) ---------------------------------------------
def _change(diff: float, up: str, down: str, same: str = "no change", eps: float = 0.05) -> str:
    """``diff`` (points) as signed text with the word for its direction (``same`` within ``eps``)."""
    return same if abs(diff) < eps else f"{points(diff, signed=True)} points, {up if diff > 0 else down}"


def forgetting_conclusion(base: RunResult, method: RunResult) -> str:
    """Which of two runs of one order forgets less (``RunResult.forgetting``, mAP points) and by how much, and
    ``method``'s Seen-Avg and first-domain lead over ``base`` at the end, as measured."""
    f = {r.method: 100 * r.forgetting() for r in (base, method)}
    less, more = sorted(f, key=f.get)
    seen = 100 * (method.seen_avg() - base.seen_avg())
    first = 100 * (method.matrix()[-1, 0] - base.matrix()[-1, 0])
    share = f" ({100 * (f[more] - f[less]) / f[more]:.0f} % of {more}'s)" if f[more] > 0 else ""
    verdict = (f"both forget the same ({f[less]:.2f} points)" if abs(f[more] - f[less]) < 0.005 else
               f"{less} forgets less: {f[less]:.2f} vs {f[more]:.2f} mAP points, {f[more] - f[less]:.2f} "
               f"less{share}")
    return (f"Forgetting (mean drop from right after each domain's step to the end): {verdict}.\n"
            f"{method.method}'s lead over {base.method} at the end: Seen-Avg mAP {100 * method.seen_avg():.2f} vs "
            f"{100 * base.seen_avg():.2f} ({points(seen, signed=True)} points); first domain "
            f"{100 * method.matrix()[-1, 0]:.2f} vs {100 * base.matrix()[-1, 0]:.2f} ({points(first, signed=True)} "
            f"points).")


def trade_off_text(scores: dict[str, dict[str, dict[str, float]]], with_term: str, without: str, first: str,
                   new: str) -> str:
    """What a loss term keeps on the first domain and what it costs on the new one: ``scores[run][domain]``
    (fractions) of two runs that differ only by the term."""
    keep = 100 * (scores[with_term][first]["mAP"] - scores[without][first]["mAP"])
    cost = 100 * (scores[without][new]["mAP"] - scores[with_term][new]["mAP"])
    seen = {r: 50 * (scores[r][first]["mAP"] + scores[r][new]["mAP"]) for r in (with_term, without)}
    return (f"first domain {first}: mAP {100 * scores[with_term][first]['mAP']:.2f} {with_term} vs "
            f"{100 * scores[without][first]['mAP']:.2f} {without}: "
            f"{_change(keep, 'kept by the term', 'lost with the term')}\n"
            f"new domain {new}: mAP {100 * scores[with_term][new]['mAP']:.2f} {with_term} vs "
            f"{100 * scores[without][new]['mAP']:.2f} {without}: "
            f"{_change(cost, 'the cost of the term', 'gained with the term')}\n"
            f"mean of the two: {seen[with_term]:.2f} {with_term} vs {seen[without]:.2f} {without} "
            f"({points(seen[with_term] - seen[without], signed=True)} points)")


def gradient_ratio_word(ratio: float) -> str:
    """How a term's gradient compares with cross-entropy's, from the ratio of their norms."""
    if ratio < 1e-2:
        return "negligible next to CE"
    if ratio < 0.5:
        return "smaller than CE's"
    return "comparable to CE's" if ratio <= 2.0 else "larger than CE's"


def variant_effect_text(reference: RunResult, changed: RunResult, what: str) -> str:
    """What one setting (``what``) changes between two runs of one order: forgetting and Seen-Avg mAP (points)."""
    df = 100 * (changed.forgetting() - reference.forgetting())
    ds = 100 * (changed.seen_avg() - reference.seen_avg())
    return (f"{what} ({changed.method} vs {reference.method}): forgetting {100 * changed.forgetting():.2f} vs "
            f"{100 * reference.forgetting():.2f} mAP points ({_change(df, 'more forgetting', 'less forgetting')}); "
            f"Seen-Avg mAP {100 * changed.seen_avg():.2f} vs {100 * reference.seen_avg():.2f} "
            f"({_change(ds, 'higher', 'lower')})")


def task_aware_text(gaps: dict[str, float]) -> str:
    """Per seen domain, task-aware minus task-agnostic mAP (points), and what the sign says."""
    below = [d for d, g in gaps.items() if round(g, 2) < 0]
    lines = ["task-aware - task-agnostic mAP: " + ", ".join(f"{d} {points(g, signed=True)}" for d, g in gaps.items())]
    if below:
        lines.append(f"task-aware is below task-agnostic on {', '.join(below)}: there, the domain's own head alone "
                     f"ranks worse than all heads together (task-agnostic concatenates them, so its distance sums "
                     f"every head's squared distances: an ensemble). Two reasons a head alone can lose: an earlier "
                     f"domain's head stayed frozen while the trunk under it kept training, and the last domain's head "
                     f"gives up the earlier heads' distances that the ensemble adds. Knowing the test domain does "
                     f"not help where picking one head throws away more evidence than it gains")
    if len(below) < len(gaps):
        lines.append(f"task-aware is at or above task-agnostic on "
                     f"{', '.join(d for d in gaps if d not in below)}: there, the domain's own head alone ranks at "
                     f"least as well as all heads together")
    return "\n".join(lines)
