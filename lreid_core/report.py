"""Reports researchers publish: PatchKD's Table 2 from run directories, plus its figures.

``build_report(paths)`` reads finished run directories (``metrics.json`` + ``config.yaml``) and
``report_write.write_report(report, out)`` writes, per domain order:

* ``table2_<order>.csv`` / a Markdown table in ``report.md``: rows = methods (and their evaluation variants,
  ``RunResult.expanded()``), columns = every seen domain's mAP/R1 after the last step, Seen-Avg mAP/R1,
  Unseen-Avg mAP/R1, in % with 2 decimals (Table 2 layout);
* ``forgetting_<order>.csv`` and a bar plot: forgetting (= -BWT, mean drop of every earlier domain from just
  after its own step to the end, in points) per method;
* ``figures/<order>_evolution.png`` (Figs. 4/5: one subplot per seen domain + the unseen average, mAP and R1
  per step) and ``figures/<order>_matrix_<row>.png`` (step x domain heatmaps, seen and unseen domains);
* ``report.md`` embedding all of it with relative paths.

Conventions (documented choices):

* **Several orders in one report** are grouped, not rejected: one section (one Table 2) per distinct
  (seen order, unseen set), like Table 2 (a) and (b) of the paper.
* **Seeds**: run directories of the same method whose configs differ only in ``train.seed`` (and in
  settings that do not change results: device, data root, eval batch, checkpoint interval, output folder)
  form one row showing mean ± std. The std is the **sample** standard deviation (``ddof=1``); a single run
  shows its value without ± . Runs of one method whose configs differ elsewhere (e.g. the cells of a sweep)
  get one row each, labelled by the keys that differ: ``patchkd (method.gamma3=10.0)``. Two runs with the same
  method, config and seed are an error (nothing to average).
* Only finished runs (``status: done``) are reported; anything else is a one-line ``LReIDError``.
* **Reference rows**: on real data in order 1, the papers' own Seen-/Unseen-Avg numbers (``reference.py``) follow
  the table in a separate block marked "reported (paper), not reproduced"; on synthetic data they are left out.
* The numbers are the run directories' own: a single run's cell is ``f"{100 * value:.2f}"`` of the value in
  its ``metrics.json``; Seen-/Unseen-Avg are ``RunResult.seen_avg()/unseen_avg()`` (the ``summary`` there).

Example::

    report = build_report(["runs/order1/finetune", "runs/order1/lwf"])
    write_report(report, Path("reports/order1"))      # report_write; -> reports/order1/report.md
    report.groups[0].frame()                          # pandas DataFrame of the means (%)
"""
from __future__ import annotations

import csv
import html
import io
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .config import ORDERS, load_yaml
from .errors import LReIDError
from .io import read_text
from .recipes import recipe_keys
from .reference import ReportedRow, reported_markdown, rows_for
from .results import RunResult, flatten

DDOF = 1   # sample standard deviation over seeds
# Table 2 row order (paper): Finetune, SPD, LwF, CRL, AKA, Ours; other methods follow; JointTrain (upper bound) last.
TABLE2_ORDER = ("finetune", "spd", "lwf", "crl", "aka", "patchkd")
# Config keys that do not change a run's numbers: runs differing only here (and in train.seed) are repeats.
# data.order / data.unseen: runs are already grouped by their resolved order ("order1" == its five names).
NON_SEMANTIC = {"train.seed", "data.root", "out_dir", "train.device", "data.cache_device", "train.eval_batch",
                "train.ckpt_every", "data.order", "data.unseen"}
METRICS = ("mAP", "R1")


# ---- loading ------------------------------------------------------------------------------------------
@dataclass
class LoadedRun:
    """One finished run directory: its result and its flattened ``config.yaml`` (empty when absent)."""
    path: Path
    result: RunResult
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        return self.config.get("train.seed")


def load_run(path: str | Path) -> LoadedRun:
    """A finished run directory; one-line ``LReIDError`` for a missing, unreadable or unfinished one."""
    path = Path(path)
    if not path.is_dir():
        raise LReIDError(f"not a run directory (no such folder): {path}")
    try:
        result = RunResult.load(path)
    except (ValueError, TypeError) as exc:     # JSON syntax or unexpected fields
        raise LReIDError(f"unreadable metrics.json in {path}: {str(exc).splitlines()[0]}") from None
    if result.status != "done" or not result.steps:
        raise LReIDError(f"run not finished (status {result.status!r}, {len(result.steps)} steps): {path}")
    config: dict[str, Any] = {}
    cfg_path = path / "config.yaml"
    if cfg_path.is_file():
        stored = load_yaml(read_text(cfg_path, "run config"), f"run config {cfg_path}") or {}
        if not isinstance(stored, dict):
            raise LReIDError(f"run config {cfg_path} does not hold a mapping (it holds a value of type "
                             f"{type(stored).__name__})")
        config = flatten(stored)
    return LoadedRun(path, result, config)


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run directories among ``paths``: a folder without ``metrics.json`` stands for its child run folders
    (e.g. a sweep folder or ``runs/order1``); a folder with neither is an error."""
    if not paths:
        raise LReIDError("no run directories given")
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            found.append(p)
        elif p.is_dir() and (children := sorted(c for c in p.iterdir() if (c / "metrics.json").is_file())):
            found.extend(children)
        else:
            raise LReIDError(f"not a run directory (no metrics.json in it or in its sub-folders): {p}")
    seen: set[Path] = set()
    unique = []
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


# ---- statistics ---------------------------------------------------------------------------------------
@dataclass
class Stat:
    """One table cell over the runs of a row: the values are fractions, ``mean``/``std`` in %."""
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        vals = [v for v in self.values if not math.isnan(v)]
        return 100 * float(np.mean(vals)) if vals else float("nan")

    @property
    def std(self) -> float:
        vals = [v for v in self.values if not math.isnan(v)]
        return 100 * float(np.std(vals, ddof=DDOF)) if len(vals) > 1 else float("nan")

    def cell(self) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n > 1:
            return f"{self.mean + 0.0:.2f} ± {self.std:.2f}"       # + 0.0: no "-0.00"
        return f"{self.mean + 0.0:.2f}"


def step_domain_matrix(result: RunResult, metric: str = "mAP") -> np.ndarray:
    """(steps, seen + unseen domains) fractions; NaN where a domain was not evaluated at that step."""
    cols = result.order + result.unseen
    return np.array([[s.get(d, {}).get(metric, np.nan) for d in cols] for s in result.steps], dtype=float)


def _unseen_per_step(result: RunResult, metric: str) -> list[float]:
    return [float(np.mean([s[d][metric] for d in result.unseen])) if result.unseen else float("nan")
            for s in result.steps]


@dataclass
class Row:
    """A table row: one method (or evaluation variant, or config) over one or more seeds."""
    label: str
    method: str
    results: list[RunResult]
    paths: list[Path]
    seeds: list[int | None]

    def value(self, domain: str, metric: str) -> Stat:
        """``domain`` is a seen domain name, ``"Seen-Avg"`` or ``"Unseen-Avg"``."""
        if domain == "Seen-Avg":
            return Stat([r.seen_avg(metric) for r in self.results])
        if domain == "Unseen-Avg":
            return Stat([r.unseen_avg(metric) for r in self.results])
        return Stat([r.final(domain, metric) for r in self.results])

    def forgetting(self, metric: str = "mAP") -> Stat:
        return Stat([r.forgetting(metric) for r in self.results])

    def matrix(self, metric: str = "mAP") -> np.ndarray:
        """Mean over the runs of ``step_domain_matrix`` (fractions)."""
        mats = [step_domain_matrix(r, metric) for r in self.results]
        steps = max(m.shape[0] for m in mats)
        padded = np.full((len(mats), steps, mats[0].shape[1]), np.nan)
        for i, m in enumerate(mats):
            padded[i, : m.shape[0]] = m
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN cells (domain not yet seen)
            return np.nanmean(padded, axis=0) if len(mats) > 1 else padded[0]

    @property
    def joint(self) -> bool:
        r = self.results[0]
        return len(r.steps) == 1 and len(r.order) > 1


def _order_label(order: list[str]) -> str:
    for name, names in ORDERS.items():
        if list(order) == names:
            return name
    label = _slug("-".join(order))     # domain names come from metrics.json: never a path separator or ".."
    return label if len(label) <= 60 else label[:50] + f"-{len(order)}domains"


def _slug(text: str) -> str:
    """A file-name part: runs of anything but letters, digits and ``_.=-`` become ``_``, and so do dot runs."""
    return re.sub(r"[^A-Za-z0-9_.=-]+|\.{2,}", "_", text).strip("_.") or "row"


def _sort_key(value: Any) -> tuple:
    """Numbers first, in numeric order (so 2 < 10), then everything else as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


@dataclass
class OrderGroup:
    """One domain order (and unseen set): the rows of one Table 2."""
    label: str
    order: list[str]
    unseen: list[str]
    rows: list[Row]
    reported: list[ReportedRow] = field(default_factory=list)   # the papers' own numbers (real data, order 1)

    def reference_block(self) -> str:
        """The reported rows as a separate table after the reproduced ones ("" when there are none)."""
        return "\n\n" + reported_markdown(self.reported) if self.reported else ""

    def columns(self) -> list[tuple[str, str]]:
        return [(d, m) for d in self.order + ["Seen-Avg", "Unseen-Avg"] for m in METRICS]

    def row(self, label: str) -> Row:
        for r in self.rows:
            if r.label == label:
                return r
        raise LReIDError(f"no row {label!r}; rows: {', '.join(r.label for r in self.rows)}")

    def frame(self, stat: str = "mean"):
        """pandas DataFrame (rows x (domain, metric)) of the means (or ``stat="std"``) in %."""
        import pandas as pd

        cols = self.columns()
        data = [[getattr(r.value(d, m), stat) for d, m in cols] for r in self.rows]
        return pd.DataFrame(data, index=pd.Index([r.label for r in self.rows], name="Method"),
                            columns=pd.MultiIndex.from_tuples(cols))

    def title(self) -> str:
        name = f"{self.label}: " if self.label in ORDERS else "order "
        unseen = ", ".join(self.unseen) if self.unseen else "none"
        return f"{name}{' → '.join(self.order)} (unseen: {unseen})"

    # ---- tables as text ----------------------------------------------------------------------------
    def cells(self) -> list[tuple[str, list[tuple[str, bool]]]]:
        """The rows as (label, [(cell text, bold)]) in column order, nothing bold (``export`` marks the best)."""
        return [(r.label, [(r.value(*c).cell(), False) for c in self.columns()]) for r in self.rows]

    def markdown_table(self, rows: list[tuple[str, list[tuple[str, bool]]]] | None = None) -> str:
        """Table 2 in Markdown; ``rows`` as ``cells()`` gives them (the default)."""
        head = ["Method"] + [f"{d} {m}" for d, m in self.columns()]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
        for label, cells in self.cells() if rows is None else rows:
            shown = [f"**{t}**" if bold else t for t, bold in cells]
            lines.append("| " + " | ".join([_md_escape(label)] + shown) + " |")
        return "\n".join(lines)

    def forgetting_markdown(self) -> str:
        lines = ["| Method | Forgetting mAP | Forgetting R1 | BWT mAP | BWT R1 |", "|:---|---:|---:|---:|---:|"]
        for r in self.rows:
            f = [r.forgetting(m) for m in METRICS]
            bwt = [Stat([-v for v in s.values]) for s in f]
            lines.append("| " + " | ".join([_md_escape(r.label)] + [s.cell() for s in f + bwt]) + " |")
        return "\n".join(lines)

    def html_table(self, rows: list[tuple[str, list[tuple[str, bool]]]] | None = None, grey: str = "") -> str:
        """Table 2 with the paper's two-level header (domain over mAP / R1); ``rows`` as ``cells()`` gives them (the
        default); the row labelled ``grey`` is drawn in grey (``export``'s chance row)."""
        groups = self.order + ["Seen-Avg", "Unseen-Avg"]
        top = "".join(f'<th colspan="2" style="text-align:center">{html.escape(g)}</th>' for g in groups)
        sub = "".join(f'<th style="text-align:right">{m}</th>' for _ in groups for m in METRICS)
        pad = "text-align:right;white-space:nowrap;padding:2px 8px"
        body = []
        for label, cells in self.cells() if rows is None else rows:
            style = ' style="color:#666"' if grey and label == grey else ""
            tds = "".join(f'<td style="{pad}">' + (f"<b>{t}</b>" if bold else t) + "</td>" for t, bold in cells)
            name = f'<td style="text-align:left;white-space:nowrap">{html.escape(label)}</td>'
            body.append(f"<tr{style}>{name}{tds}</tr>")
        return (f'<table class="lreid-table2" data-order="{html.escape(self.label)}"><thead>'
                f'<tr><th rowspan="2">Method</th>{top}</tr><tr>{sub}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table>')

    def csv_text(self) -> str:
        """Numbers only: means in % (2 decimals) and, per column, the std over seeds (blank for single runs)."""
        cols = self.columns()
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", "runs", "seeds"] + [f"{d} {m}" for d, m in cols] + [f"{d} {m} std" for d, m in cols])
        for r in self.rows:
            stats = [r.value(d, m) for d, m in cols]
            w.writerow([r.label, len(r.results), " ".join("?" if s is None else str(s) for s in r.seeds)]
                       + [_num(s.mean) for s in stats] + [_num(s.std) for s in stats])
        return buf.getvalue()

    def forgetting_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", "runs", "forgetting mAP", "forgetting R1", "BWT mAP", "BWT R1",
                    "forgetting mAP std", "forgetting R1 std"])
        for r in self.rows:
            f = [r.forgetting(m) for m in METRICS]
            w.writerow([r.label, len(r.results)] + [_num(s.mean) for s in f] + [_num(-s.mean) for s in f]
                       + [_num(s.std) for s in f])
        return buf.getvalue()


def _num(x: float) -> str:
    return "" if math.isnan(x) else f"{x + 0.0:.2f}"     # + 0.0: no "-0.00"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


@dataclass
class Report:
    groups: list[OrderGroup]
    runs: list[LoadedRun]

    def text(self) -> str:
        return "\n\n".join(f"Table 2 report, {g.title()}\n{g.markdown_table()}{g.reference_block()}"
                           for g in self.groups)

    def html(self) -> str:
        parts = ["<h3>Table 2 report</h3>",
                 "<p>mAP / R1 in % after the last step; mean ± sample std (ddof=1) over seeds where a row has "
                 "several runs.</p>"]
        for g in self.groups:
            parts.append(f"<h4>{html.escape(g.title())}</h4>{g.html_table()}")
        return '<div class="lreid-report">' + "".join(parts) + "</div>"

    def _repr_html_(self) -> str:
        return self.html()


# ---- building -----------------------------------------------------------------------------------------
def _partition(runs: list[LoadedRun]) -> list[tuple[str, list[LoadedRun]]]:
    """Split one method's runs into groups that differ only in seed; label each by its differing keys."""
    common = set.intersection(*(set(r.config) for r in runs)) if runs else set()
    varying = sorted(k for k in common - NON_SEMANTIC if len({yaml.safe_dump(r.config[k]) for r in runs}) > 1)
    parts: dict[tuple, list[LoadedRun]] = {}
    for r in runs:
        parts.setdefault(tuple(yaml.safe_dump(r.config[k]) for k in varying), []).append(r)
    out = []
    for members in sorted(parts.values(), key=lambda ms: tuple(_sort_key(ms[0].config[k]) for k in varying)):
        seeds = [m.seed for m in members]
        if len(members) > 1:
            if None in seeds:
                bad = next(m for m in members if m.seed is None)
                raise LReIDError(f"cannot tell seeds apart (no config.yaml with train.seed) in {bad.path}; "
                                 f"repeats of {members[0].result.method!r} need their config.yaml")
            for i, a in enumerate(members):
                for b in members[i + 1:]:
                    if a.seed == b.seed:
                        raise LReIDError(f"two runs of {a.result.method!r} with the same config and seed {a.seed}: "
                                         f"{a.path} and {b.path}")
        suffix = ", ".join(f"{k}={members[0].config[k] or 'none'}" if k == "recipe" else f"{k}={members[0].config[k]}"
                           for k in _label_keys(varying))
        out.append((suffix, sorted(members, key=lambda m: _sort_key(m.seed))))
    return out


def _label_keys(varying: list[str]) -> list[str]:
    """The keys a row label names: when runs differ in ``recipe``, the keys the recipes set are left to its name."""
    return [k for k in varying if k not in recipe_keys()] if "recipe" in varying else varying


def _method_rank(method: str) -> tuple[int, int]:
    if method == "joint":
        return (2, 0)
    return (0, TABLE2_ORDER.index(method)) if method in TABLE2_ORDER else (1, 0)


def build_report(paths: list[str | Path]) -> Report:
    """Load run directories (or folders of them) and arrange them as Table-2 groups, one per domain order."""
    runs = [load_run(p) for p in find_run_dirs(paths)]
    by_order: dict[tuple, list[LoadedRun]] = {}
    for r in runs:
        by_order.setdefault((tuple(r.result.order), tuple(r.result.unseen)), []).append(r)
    groups, labels = [], set()
    for (order, unseen), members in by_order.items():
        label = _order_label(list(order))
        base, i = label, 2
        while label in labels:
            label, i = f"{base}-{i}", i + 1
        labels.add(label)
        by_method: dict[str, list[LoadedRun]] = {}
        for r in members:
            by_method.setdefault(r.result.method, []).append(r)
        rows: list[Row] = []
        for method in sorted(by_method, key=_method_rank):     # stable: unknown methods keep input order
            for suffix, part in _partition(by_method[method]):
                expanded = [m.result.expanded() for m in part]
                names = [res.method for res in expanded[0]]
                for j, name in enumerate(names):
                    members_j = [(m, e[j]) for m, e in zip(part, expanded) if j < len(e) and e[j].method == name]
                    rows.append(Row(f"{name} ({suffix})" if suffix else name, method, [e for _, e in members_j],
                                    [m.path for m, _ in members_j], [m.seed for m, _ in members_j]))
        groups.append(OrderGroup(label, list(order), list(unseen), rows, rows_for(label, [m.config for m in members])))
    return Report(groups, runs)
