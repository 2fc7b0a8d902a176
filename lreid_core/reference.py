"""The papers' own reported numbers (``recipes/reported.yaml``): reference rows ``lreid report`` prints after the
reproduced ones, marked "reported (paper), not reproduced".

They appear only for a group of runs on real data in a named paper order (order 1 today): the papers measured
their numbers on the real benchmark, so beside synthetic runs they would compare unlike things and are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .catalog import ORDERS
from .errors import LReIDError
from .io import load_yaml, read_text
from .recipes import RECIPE_DIR, REPORTED

COLUMNS = ("seen_mAP", "seen_R1", "unseen_mAP", "unseen_R1")
MARK = "reported (paper), not reproduced"


@dataclass(frozen=True)
class ReportedRow:
    """One paper's Seen-Avg / Unseen-Avg mAP and R1 (%), with the table it was read from."""
    label: str
    source: str
    values: tuple[float, float, float, float]      # COLUMNS, in %


def _row(item: Any, where: str) -> ReportedRow:
    if not isinstance(item, dict) or not isinstance(item.get("label"), str) or not isinstance(item.get("source"), str):
        raise LReIDError(f"{where}: each row needs a label and a source (strings)")
    values = []
    for key in COLUMNS:
        v = item.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 <= v <= 100):
            raise LReIDError(f"{where}: {item['label']}: {key} must be a number in [0, 100], got {str(v)[:40]}")
        values.append(float(v))
    return ReportedRow(item["label"], item["source"], tuple(values))


def reported_rows(order: str) -> list[ReportedRow]:
    """The reported rows of domain order ``order`` (e.g. ``"order1"``; none for any other)."""
    path = RECIPE_DIR / f"{REPORTED}.yaml"
    data = load_yaml(read_text(path, "reported numbers"), f"reported numbers {path}")
    if not isinstance(data, dict):
        raise LReIDError(f"reported numbers {path} must hold a mapping")
    items = data.get(order) or []
    if not isinstance(items, list):
        raise LReIDError(f"reported numbers {path}: {order} must be a list of rows")
    return [_row(item, f"reported numbers {path}") for item in items]


def rows_for(order: str, configs: list[dict[str, Any]]) -> list[ReportedRow]:
    """Reference rows for a report group of runs with flattened ``configs`` in order ``order``: the paper's
    rows when no run is synthetic (``data.synthetic``), none otherwise."""
    if order not in ORDERS or any(c.get("data.synthetic", False) for c in configs):
        return []
    return reported_rows(order)


def reported_markdown(rows: list[ReportedRow]) -> str:
    """The reference rows as a Markdown table, headed by their mark."""
    lines = [f"Reference rows: {MARK} (the papers' own numbers, for comparison only; LSTKC and DKP average the "
             "unseen sets one by one, PatchKD's code scores them as one merged set)", "",
             "| Method | Seen-Avg mAP | Seen-Avg R1 | Unseen-Avg mAP | Unseen-Avg R1 | Source |",
             "|:---|---:|---:|---:|---:|:---|"]
    for r in rows:
        lines.append(f"| {r.label} | " + " | ".join(f"{v:.2f}" for v in r.values) + f" | {r.source} |")
    return "\n".join(lines)
