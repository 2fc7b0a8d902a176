"""A grid over one config key (PatchKD Fig. 6): each cell is a normal run directory ``OUT/<key>=<value>/``.

* Every cell's config is resolved through ``load_config`` **before** anything runs or is written, so an
  unknown key or a value of the wrong type is a one-line ``LReIDError`` and leaves no files behind.
* Resumable: a cell whose ``metrics.json`` says ``status: done`` is skipped (``skip`` is printed); a cell with
  a checkpoint continues from it (``Trainer.resume``); either way its stored ``config.yaml`` must equal the
  requested config, else the sweep stops with a one-line error rather than mixing settings.
* At the end ``sweep.csv`` (Seen-/Unseen-Avg mAP/R1 and forgetting per value, %) and ``sweep.png`` (Fig. 6:
  Seen-Avg and Unseen-Avg mAP/R1 against the value, values evenly spaced as in the paper).

Example::

    cells = run_sweep("method.gamma3", "0,1,10,100", Path("runs/sweep"), method="patchkd", profile="demo")
    write_sweep_outputs("method.gamma3", cells, Path("runs/sweep"))
"""
from __future__ import annotations

import copy
import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from .config import Config, load_config, load_yaml
from .errors import LReIDError
from .io import atomic_write, atomic_write_text
from .results import RunResult

# Settings that do not change a cell's numbers; a resumed/skipped cell may differ from the request here.
_IGNORED = {"train.device", "train.eval_batch", "train.ckpt_every", "data.cache_device"}


@dataclass
class SweepCell:
    token: str            # the value as typed on the command line, also the folder name's right side
    value: Any            # the parsed value (YAML scalar)
    cfg: Config
    run_dir: Path
    result: RunResult | None = None
    skipped: bool = False


def parse_values(values: str | list) -> list[tuple[str, Any]]:
    """``"0,1,10"`` or ``[0, 1, 10]`` -> [(token, parsed value)]; one-line errors for empty/duplicate tokens."""
    tokens = [t.strip() for t in values.split(",")] if isinstance(values, str) else [str(v).strip() for v in values]
    if not tokens or any(not t for t in tokens):
        raise LReIDError(f"--values needs a comma list of values without empty items, got {values!r}")
    if len(set(tokens)) != len(tokens):
        raise LReIDError(f"--values lists a value twice: {values!r}")
    for t in tokens:
        if "/" in t or "\\" in t or t in (".", ".."):
            raise LReIDError(f"sweep value {t!r} cannot be part of a folder name")
    return [(t, load_yaml(t, f"sweep value {t!r}")) for t in tokens]


def _set(nested: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = nested
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise LReIDError(f"config key {key!r}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def _has(nested: dict, key: str) -> bool:
    node: Any = nested
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return True


def plan_sweep(key: str, values: str | list, out: str | Path, overrides: dict | None = None,
               config: str | Path | None = None, profile: str | None = None) -> list[SweepCell]:
    """Resolve every cell's config (validating key and values) without touching the disk."""
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise LReIDError(f"--key must look like section.name (e.g. method.gamma3), got {key!r}")
    overrides = overrides or {}
    if _has(overrides, key):
        raise LReIDError(f"{key!r} is the swept key; do not also set it with --set")
    cells = []
    for token, value in parse_values(values):
        cell_over = copy.deepcopy(overrides)
        _set(cell_over, key, value)
        cfg = load_config(config, profile_name=profile, overrides=cell_over)
        cells.append(SweepCell(token, value, cfg, Path(out) / f"{key}={token}"))
    return cells


def _comparable(cfg_dict: dict) -> dict[str, Any]:
    """Flattened ``section.key -> value`` after a YAML round trip, without the result-neutral settings."""
    from .results import flatten

    flat = flatten(yaml.safe_load(yaml.safe_dump(cfg_dict, sort_keys=True)) or {})
    return {k: v for k, v in flat.items() if k not in _IGNORED}


def _check_same_config(cell: SweepCell) -> None:
    stored = cell.run_dir / "config.yaml"
    if not stored.is_file():
        return
    try:
        old = _comparable(yaml.safe_load(stored.read_text()) or {})
    except yaml.YAMLError:
        raise LReIDError(f"unreadable config.yaml in {cell.run_dir}; use another --out or remove that folder") from None
    new = _comparable(cell.cfg.to_dict())
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise LReIDError(f"{cell.run_dir} holds a run with a different config ({', '.join(diff)}); "
                         f"use another --out or remove that folder")


def _status(run_dir: Path) -> str:
    try:
        return RunResult.load(run_dir).status
    except (LReIDError, ValueError, TypeError):
        return "missing"


def run_sweep(key: str, values: str | list, out: str | Path, overrides: dict | None = None,
              config: str | Path | None = None, profile: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> list[SweepCell]:
    """Run (or skip/resume) every cell of the grid; returns the cells with their results."""
    from .data.benchmark import build_benchmark
    from .train import Trainer

    cells = plan_sweep(key, values, out, overrides, config, profile)
    for cell in cells:                        # refuse a mismatching folder before any training starts
        _check_same_config(cell)
    benches: dict[str, Any] = {}
    for cell in cells:
        name = cell.run_dir.name
        if _status(cell.run_dir) == "done":
            cell.result, cell.skipped = RunResult.load(cell.run_dir), True
            log(f"skip {name} (done)")
            continue
        data_key = yaml.safe_dump({"data": cell.cfg.to_dict()["data"], "seed": cell.cfg.train.seed})
        if data_key not in benches:
            benches[data_key] = build_benchmark(cell.cfg)
        trainer = Trainer(cell.cfg, cell.cfg.method.name, benches[data_key], cell.run_dir, progress=progress)
        if (cell.run_dir / "checkpoints" / "last.pt").is_file():
            trainer.resume()
            log(f"resume {name}")
        else:
            log(f"run {name} ({cell.cfg.method.name}, profile {cell.cfg.profile})")
        t0 = time.perf_counter()
        cell.result = trainer.fit()
        s = cell.result.summary()
        log(f"  {name}: Seen-Avg mAP {100 * s['seen_mAP']:.2f}, Unseen-Avg mAP {100 * s['unseen_mAP']:.2f} "
            f"({time.perf_counter() - t0:.0f} s)")
    return cells


def sweep_csv(key: str, cells: list[SweepCell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = ["seen_mAP", "seen_R1", "unseen_mAP", "unseen_R1", "forgetting_mAP"]
    w.writerow([key, "method"] + cols + ["run_dir"])
    for c in cells:
        s = c.result.summary()
        w.writerow([c.token, c.result.method] + ["" if np.isnan(s[k]) else f"{100 * s[k]:.2f}" for k in cols]
                   + [str(c.run_dir)])
    return buf.getvalue()


def sweep_figure(key: str, cells: list[SweepCell]):
    """Fig. 6 style: Seen-Avg and Unseen-Avg mAP (solid) and R1 (dashed) against the swept value."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.5, 0.9 * len(cells) + 2.5), 3.6))
    ax = fig.subplots()
    x = np.arange(len(cells))
    for where, color in (("seen", "C0"), ("unseen", "C1")):
        for metric, style in (("mAP", "-"), ("R1", "--")):
            ys = [100 * c.result.summary()[f"{where}_{metric}"] for c in cells]
            ax.plot(x, ys, style, marker="o", color=color, label=f"{where.capitalize()}-Avg {metric}")
    ax.set_xticks(x, [c.token for c in cells])
    ax.set_xlabel(key)
    ax.set_ylabel("%")
    methods = sorted({c.result.method for c in cells})
    ax.set_title(f"Sensitivity to {key}" + (f" ({methods[0]})" if len(methods) == 1 else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_sweep_outputs(key: str, cells: list[SweepCell], out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    csv_path, png_path = out / "sweep.csv", out / "sweep.png"
    atomic_write_text(csv_path, sweep_csv(key, cells))
    fig = sweep_figure(key, cells)
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return csv_path, png_path
