"""Table 2 of one domain order as text to paste into a paper or a README: CSV, Markdown, LaTeX (and HTML).

Two things a published table carries that ``report.OrderGroup``'s own tables do not:

* the **best value per column in bold** (highest mean; JointTrain, the upper bound, does not compete, as in the
  paper's Table 2, unless every row is joint). CSV has no bold: it gets a ``best`` row naming the winning row(s);
* a **chance row**: mAP / R1 of a random ranking of the same test sets (``evaluate.chance_levels``), Seen-Avg and
  Unseen-Avg averaged like the methods' (``None``: no chance row).

Example::

    chance = chance_levels(build_benchmark(cfg))
    Path("table2.tex").write_text(export_table(report.groups[0], "tex", chance))
"""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from .errors import LReIDError
from .report import METRICS, OrderGroup

FORMATS = {"csv": "CSV", "md": "Markdown", "tex": "LaTeX"}    # file suffix -> name in the export control
CHANCE = "chance (random ranking)"


def best_rows(group: OrderGroup) -> dict[tuple[str, str], set[str]]:
    """Per column ``(domain, metric)``: the labels of the rows with the highest mean (ties all bold)."""
    contenders = [r for r in group.rows if not r.joint] or group.rows
    best = {}
    for col in group.columns():
        means = {r.label: r.value(*col).mean for r in contenders}
        top = max((m for m in means.values() if not math.isnan(m)), default=math.nan)
        best[col] = {label for label, m in means.items() if not math.isnan(top) and round(m, 2) == round(top, 2)}
    return best


def chance_row(group: OrderGroup, chance: dict[str, dict[str, float]]) -> dict[tuple[str, str], float]:
    """The chance row in % per column: each seen domain's level, their mean (Seen-Avg), the unseen sets' mean."""
    missing = [d for d in group.order + group.unseen if d not in chance]
    if missing:
        raise LReIDError(f"no chance level for domain {missing[0]!r}; known: {', '.join(chance)}")
    row = {}
    for metric in METRICS:
        for d in group.order:
            row[(d, metric)] = 100 * chance[d][metric]
        row[("Seen-Avg", metric)] = 100 * float(np.mean([chance[d][metric] for d in group.order]))
        row[("Unseen-Avg", metric)] = (100 * float(np.mean([chance[d][metric] for d in group.unseen]))
                                       if group.unseen else math.nan)
    return row


def _cells(group: OrderGroup, chance) -> list[tuple[str, list[tuple[str, bool]]]]:
    """Rows as (label, [(cell text, bold)]) in column order, the chance row last."""
    best = best_rows(group)
    rows = [(label, [(text, label in best[c]) for (text, _), c in zip(cells, group.columns())])
            for label, cells in group.cells()]
    if chance is not None:
        levels = chance_row(group, chance)
        rows.append((CHANCE, [("-" if math.isnan(levels[c]) else f"{levels[c]:.2f}", False)
                              for c in group.columns()]))
    return rows


def _latex_escape(text: str) -> str:
    out = text.replace("\\", "\0")                   # backslashes first, so the escapes below stay intact
    for a, b in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("{", r"\{"), ("}", r"\}"),
                 ("±", r"$\pm$"), ("→", r"$\to$")):
        out = out.replace(a, b)
    return out.replace("\0", r"\textbackslash{}")


def to_csv(group: OrderGroup, chance=None) -> str:
    """Means in % (``mean ± std`` for seeds), the chance row, then a ``best`` row naming each column's winner."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method"] + [f"{d} {m}" for d, m in group.columns()])
    for label, cells in _cells(group, chance):
        w.writerow([label] + [text for text, _ in cells])
    best = best_rows(group)
    w.writerow(["best"] + [" / ".join(sorted(best[c])) for c in group.columns()])
    return buf.getvalue()


def to_markdown(group: OrderGroup, chance=None) -> str:
    return group.markdown_table(_cells(group, chance)) + "\n"


def to_latex(group: OrderGroup, chance=None) -> str:
    """A ``tabular`` with the paper's two-level header (booktabs rules); bold via ``\\textbf``."""
    groups = group.order + ["Seen-Avg", "Unseen-Avg"]
    top = " & ".join(rf"\multicolumn{{2}}{{c}}{{{_latex_escape(g)}}}" for g in groups)
    rules = " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(groups)))
    sub = " & ".join(m for _ in groups for m in METRICS)
    lines = [r"\begin{tabular}{l" + "r" * 2 * len(groups) + "}", r"\toprule", rf"Method & {top} \\", rules,
             rf" & {sub} \\", r"\midrule"]
    body = _cells(group, chance)
    for i, (label, cells) in enumerate(body):
        if chance is not None and i == len(body) - 1:
            lines.append(r"\midrule")
        shown = [rf"\textbf{{{_latex_escape(t)}}}" if bold else _latex_escape(t) for t, bold in cells]
        lines.append(" & ".join([_latex_escape(label)] + shown) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_html(group: OrderGroup, chance=None) -> str:
    """Table 2 as shown in notebook 05: two-level header, best in bold, the chance row in grey."""
    return group.html_table(_cells(group, chance), grey=CHANCE)


def export_table(group: OrderGroup, fmt: str, chance=None) -> str:
    """``group``'s Table 2 in ``fmt`` (``csv``, ``md`` or ``tex``)."""
    writers = {"csv": to_csv, "md": to_markdown, "tex": to_latex}
    if fmt not in writers:
        raise LReIDError(f"unknown export format {fmt!r}; valid formats: {', '.join(writers)}")
    return writers[fmt](group, chance)
