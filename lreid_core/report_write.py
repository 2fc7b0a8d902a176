"""A report's figures and files: ``write_report(report, out)`` writes what ``report.build_report`` assembled.

Per domain order: ``table2_<order>.csv``, ``forgetting_<order>.csv``, ``figures/<order>_evolution.png`` (Figs.
4/5), ``figures/<order>_forgetting.png``, ``figures/<order>_matrix_<row>.png`` (step x domain heatmaps), and one
``report.md`` embedding them by relative path (see ``report``'s docstring for the conventions).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .io import atomic_write, atomic_write_text, refuse_foreign
from .report import DDOF, METRICS, OrderGroup, Report, Row, _md_escape, _slug, _unseen_per_step


# ---- figures ------------------------------------------------------------------------------------------
def _figure(w: float, h: float, nrows: int = 1, ncols: int = 1):
    """A matplotlib Figure outside pyplot (no global state; displays inline in a notebook)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


FONT = {"title": 11, "label": 10, "tick": 9, "annot": 9}    # points; figures are shown at about 1 in = 100 px


def matrix_figure(row: Row, group: OrderGroup, vmax: dict[str, float] | None = None):
    """Step x domain heatmaps (mAP and R1, %) of one row: seen domains, a divider, then the unseen sets; each
    with its colour bar. ``vmax`` per metric fixes the top of the scale (one scale for every row of a report)."""
    import seaborn as sns

    r = row.results[0]
    cols = group.order + group.unseen
    fig, axes = _figure(2 * (0.55 * len(cols) + 1.6), 0.45 * len(r.steps) + 1.9, 1, 2)
    ylabels = [f"after {t}" for t in r.trained] if r.trained else [f"step {t + 1}" for t in range(len(r.steps))]
    for ax, metric in zip(axes[0], METRICS):
        m = 100 * row.matrix(metric)
        sns.heatmap(m, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar=True, vmin=0,
                    vmax=(vmax or {}).get(metric) or None, xticklabels=cols, yticklabels=ylabels[: m.shape[0]],
                    annot_kws={"fontsize": FONT["annot"]}, cbar_kws={"label": f"{metric} (%)", "pad": 0.03})
        ax.figure.axes[-1].tick_params(labelsize=FONT["tick"])
        ax.figure.axes[-1].yaxis.label.set_size(FONT["label"])
        if group.unseen:
            ax.axvline(len(group.order), color="white", lw=3)
        ax.set_title(f"{row.label}: {metric} (%)" + (f", mean of {len(row.results)}" if len(row.results) > 1 else ""),
                     fontsize=FONT["title"])
        ax.tick_params(axis="x", labelrotation=30, labelsize=FONT["tick"])
        ax.tick_params(axis="y", labelrotation=0, labelsize=FONT["tick"])
    fig.tight_layout()
    return fig


def _curve(row: Row, metric: str, domain: str | None, n_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (steps), mean and std (%) of ``domain``'s metric after each step (``None``: unseen average)."""
    series = []
    for r in row.results:
        if domain is None:
            ys = _unseen_per_step(r, metric)
        else:
            ys = [s[domain][metric] if domain in s else np.nan for s in r.steps]
        series.append(100 * np.asarray(ys, dtype=float))
    length = max(len(s) for s in series)
    arr = np.full((len(series), length), np.nan)
    for i, s in enumerate(series):
        arr[i, : len(s)] = s
    xs = np.array([n_steps]) if row.joint else np.arange(1, length + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN steps (domain not yet seen)
        mean = np.nanmean(arr, axis=0)
        std = np.nanstd(arr, axis=0, ddof=DDOF) if len(series) > 1 else np.zeros(length)
    return xs, mean, std


def evolution_figure(group: OrderGroup):
    """Figs. 4/5: mAP (top) and R1 (bottom) after every step, one panel per seen domain + Unseen-Avg; panels of
    one metric share their y axis; the legend sits below the panels, off the curves."""
    from matplotlib.figure import Figure

    panels: list[str | None] = list(group.order) + ([None] if group.unseen else [])
    n = len(group.order)
    ncol = min(len(group.rows), 4)
    legend_h = 0.25 * math.ceil(len(group.rows) / ncol) + 0.15
    fig = Figure(figsize=(min(10.5, 1.75 * len(panels) + 0.9), 5.0 + legend_h))
    axes = fig.subplots(2, len(panels), squeeze=False, sharey="row")
    colors = {row.label: f"C{i % 10}" for i, row in enumerate(group.rows)}
    for i, metric in enumerate(METRICS):
        for j, domain in enumerate(panels):
            ax = axes[i, j]
            for row in group.rows:
                xs, mean, std = _curve(row, metric, domain, n)
                kw = dict(color=colors[row.label], label=row.label)
                if row.joint:                   # right of the last step's points, so it hides none of them
                    ax.plot(xs + 0.25, mean, marker="*", markersize=11, linestyle="none", **kw)
                else:
                    ax.plot(xs, mean, marker="o", markersize=4, **kw)
                    if len(row.results) > 1:
                        ax.fill_between(xs, mean - std, mean + std, color=colors[row.label], alpha=0.15)
            ax.set_xticks(range(1, n + 1))
            ax.set_xlim(0.7, n + 0.5)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(domain if domain is not None else "Unseen-Avg", fontsize=FONT["title"])
            if i == 1:
                ax.set_xlabel("step", fontsize=FONT["label"])
            if j == 0:
                ax.set_ylabel(f"{metric} (%)", fontsize=FONT["label"])
            ax.tick_params(labelsize=FONT["tick"])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=FONT["label"], frameon=False)
    notes = (["band: ± std over seeds"] if any(len(r.results) > 1 for r in group.rows) else []) + \
        (["★: joint (one step, after the last)"] if any(r.joint for r in group.rows) else [])
    fig.suptitle(f"Evolution across steps, {group.label}" + (f" ({'; '.join(notes)})" if notes else ""),
                 fontsize=FONT["title"])
    fig.tight_layout(rect=(0, legend_h / fig.get_figheight(), 1, 1))
    return fig


def forgetting_figure(group: OrderGroup):
    """Forgetting (= -BWT, points) in mAP and R1 per row; rows with one step (joint) are marked n/a; the legend
    sits above the bars."""
    rows = group.rows
    fig, axes = _figure(min(10.0, max(4.5, 0.9 * len(rows) + 2.5)), 3.8)
    ax = axes[0, 0]
    x = np.arange(len(rows))
    for k, metric in enumerate(METRICS):
        stats = [r.forgetting(metric) for r in rows]
        means = np.array([s.mean for s in stats])
        errs = np.array([0.0 if math.isnan(s.std) else s.std for s in stats])
        ax.bar(x + (k - 0.5) * 0.38, np.nan_to_num(means), 0.38, yerr=errs if errs.any() else None, capsize=3,
               label=f"forgetting {metric}")
    for i, r in enumerate(rows):
        if math.isnan(r.forgetting().mean):
            ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=FONT["tick"])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [r.label for r in rows], rotation=20, ha="right", fontsize=FONT["tick"])
    ax.tick_params(axis="y", labelsize=FONT["tick"])
    ax.set_ylabel("points (%)", fontsize=FONT["label"])
    ax.set_title(f"Forgetting (= -BWT), {group.label}", fontsize=FONT["title"], pad=24)
    ax.legend(fontsize=FONT["label"], loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _save_png(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


# ---- writing ------------------------------------------------------------------------------------------
REPORT_TITLE = "# LReID report"


def report_files(report: Report, figures: bool = True) -> list[Path]:
    """The files (relative to the output folder) :func:`write_report` writes for ``report``."""
    files = [Path("report.md")]
    for g in report.groups:
        files += [Path(f"table2_{g.label}.csv"), Path(f"forgetting_{g.label}.csv")]
        if figures:
            files += [Path("figures") / f"{g.label}_{what}.png" for what in ("evolution", "forgetting")]
            files += [Path("figures") / f"{g.label}_matrix_{_slug(r.label)}.png" for r in g.rows]
    return files


def check_report_out(report: Report, out: Path, figures: bool, overwrite: bool) -> None:
    """Refuse, before writing, to replace files in ``out`` that an earlier report did not write (one line
    naming the first): a folder whose ``report.md`` is one of ours is refreshed, anything else needs
    ``overwrite``."""
    if not overwrite:
        refuse_foreign(out, "report.md", REPORT_TITLE, report_files(report, figures), "report")


def write_report(report: Report, out: str | Path, figures: bool = True) -> Path:
    """Write CSVs, PNG figures and ``report.md`` (figures embedded by relative path) into ``out``.

    ``figures=False`` writes the tables only (quick; the Markdown then embeds no images).
    """
    out = Path(out)
    md = [REPORT_TITLE, "",
          f"{len(report.runs)} run director{'y' if len(report.runs) == 1 else 'ies'}, "
          f"{len(report.groups)} domain order{'s' if len(report.groups) != 1 else ''}. "
          "mAP and Rank-1 (R1) in %, after the last training step; a row with several runs (seeds) shows "
          "mean ± sample std (ddof=1). Seen-Avg / Unseen-Avg average the seen / unseen domains. "
          "Forgetting = mean drop of every earlier seen domain from just after its own step to the end (= -BWT).",
          ""]
    for g in report.groups:
        table_csv, forget_csv = f"table2_{g.label}.csv", f"forgetting_{g.label}.csv"
        atomic_write_text(out / table_csv, g.csv_text())
        atomic_write_text(out / forget_csv, g.forgetting_csv())
        evo = Path("figures") / f"{g.label}_evolution.png"
        fgt = Path("figures") / f"{g.label}_forgetting.png"
        md += [f"## {g.title()}", "", "### Table 2 report", "", g.markdown_table() + g.reference_block(), "",
               f"Numbers as CSV: [{table_csv}]({table_csv})", "",
               "### Forgetting / backward transfer", "", g.forgetting_markdown(), "",
               f"CSV: [{forget_csv}]({forget_csv})", ""]
        if figures:
            _save_png(evolution_figure(g), out / evo)
            _save_png(forgetting_figure(g), out / fgt)
            vmax = {m: float(np.nanmax([np.nanmax(100 * r.matrix(m)) for r in g.rows])) for m in METRICS}
            md += [f"![forgetting]({fgt.as_posix()})", "", "### Evolution across steps (Figs. 4/5)", "",
                   f"![evolution of every seen domain and the unseen average]({evo.as_posix()})", "",
                   "### Step x domain matrices", ""]
            for r in g.rows:
                name = Path("figures") / f"{g.label}_matrix_{_slug(r.label)}.png"
                _save_png(matrix_figure(r, g, vmax), out / name)
                md += [f"#### {_md_escape(r.label)}", "", f"![{_md_escape(r.label)} step x domain]({name.as_posix()})",
                       ""]
        md += ["### Runs", "", "| Row | Seed | Run directory |", "|:---|---:|:---|"]
        md += [f"| {_md_escape(r.label)} | {'?' if s is None else s} | `{p}` |"
               for r in g.rows for s, p in zip(r.seeds, r.paths)]
        md.append("")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md))
    return path
