"""What the notebooks call so that they hold only parameters, plotting calls and asserts.

* ``setup()``: progress bars off (no widget clutter in a saved notebook) and PNG output for every displayed
  matplotlib Figure, also ones made without pyplot (the report's and the explorers' figures);
* ``runs_folder(profile)``: where finished runs are looked up: ``runs/<profile>`` of the project (what
  ``lreid demo`` writes, README's main job) in the demo profile, a fresh temporary folder in ``smoke``;
* ``reuse_or_train(cfg, methods, bench, folder)``: each method's finished run of exactly this config from
  ``folder/<method>`` (``results.finished_run``), training only the missing ones; a folder that holds another
  run is never replaced (the new run then goes to a temporary folder).

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
from .data.benchmark import Benchmark
from .results import RunResult, finished_run, holds_run


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
    from .train import Trainer

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
        result = Trainer(c, method, bench, run_dir, progress=False, tensorboard=False).fit()
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
    from .train import Trainer
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
