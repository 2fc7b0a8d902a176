"""A run's results: the step x domain mAP/R1 matrix, Seen-Avg / Unseen-Avg, forgetting, and their files."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import LReIDError
from .io import atomic_write_json, atomic_write_text


@dataclass
class RunResult:
    """``steps[t]`` maps every evaluated domain after step t to {"mAP", "R1", "mINP"} (fractions)."""
    method: str
    order: list[str]
    unseen: list[str]
    steps: list[dict[str, dict[str, float]]] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)      # what step t trained on ("all" for joint)
    variants: dict[str, list[dict[str, dict[str, float]]]] = field(default_factory=dict)  # extra eval modes
    status: str = "running"
    wall_s: float = 0.0

    # ---- summaries of the final step -------------------------------------------------------------
    def final(self, domain: str, metric: str = "mAP") -> float:
        return self.steps[-1][domain][metric]

    def seen_avg(self, metric: str = "mAP") -> float:
        """Mean over the seen domains evaluated at the last step (all of them once the run is done)."""
        return float(np.mean([self.final(d, metric) for d in self.order if d in self.steps[-1]]))

    def unseen_avg(self, metric: str = "mAP") -> float:
        if not self.unseen:
            return float("nan")
        return float(np.mean([self.final(d, metric) for d in self.unseen]))

    def matrix(self, metric: str = "mAP") -> np.ndarray:
        """(steps, seen domains) matrix; NaN where a domain was not yet seen."""
        return np.array([[s.get(d, {}).get(metric, np.nan) for d in self.order] for s in self.steps], dtype=float)

    def forgetting(self, metric: str = "mAP") -> float:
        """Mean drop from just after training on a domain to the end (= -BWT), over all but the last domain.

        NaN for a joint run (one step) or a single-domain order.
        """
        m = self.matrix(metric)
        if m.shape[0] != len(self.order) or len(self.order) < 2:
            return float("nan")
        diag = np.diag(m)[:-1]
        return float(np.mean(diag - m[-1, :-1]))

    def summary(self) -> dict[str, float]:
        return {"seen_mAP": self.seen_avg("mAP"), "seen_R1": self.seen_avg("R1"),
                "unseen_mAP": self.unseen_avg("mAP"), "unseen_R1": self.unseen_avg("R1"),
                "forgetting_mAP": self.forgetting("mAP")}

    # ---- files -------------------------------------------------------------------------------------
    def save(self, run_dir: Path) -> None:
        """metrics.json (everything) + matrix_mAP.csv / matrix_R1.csv (steps x all domains), atomically."""
        data = asdict(self)
        if self.steps:
            data["summary"] = self.summary()
        atomic_write_json(run_dir / "metrics.json", data)
        domains = self.order + self.unseen
        for metric in ("mAP", "R1"):
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["step", "trained"] + domains)
            for t, s in enumerate(self.steps):
                writer.writerow([t + 1, self.trained[t]] + [
                    f"{100 * s[d][metric]:.2f}" if d in s else "" for d in domains])
            atomic_write_text(run_dir / f"matrix_{metric}.csv", buf.getvalue())

    def variant(self, name: str) -> "RunResult":
        """The same run seen through an extra evaluation variant (e.g. ``task_aware``), as its own result."""
        return RunResult(f"{self.method}[{name}]", self.order, self.unseen, self.variants[name], self.trained,
                         status=self.status, wall_s=self.wall_s)

    def expanded(self) -> list["RunResult"]:
        """This result followed by one result per evaluation variant (the rows of a table)."""
        return [self] + [self.variant(v) for v in self.variants]

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunResult":
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise LReIDError(f"not a run directory (no metrics.json): {run_dir}")
        data = json.loads(path.read_text())
        data.pop("summary", None)
        return cls(**data)


TABLE_COLUMNS = (("Seen mAP", "seen_mAP"), ("Seen R1", "seen_R1"), ("Unseen mAP", "unseen_mAP"),
                 ("Unseen R1", "unseen_R1"), ("Forget", "forgetting_mAP"))


def _cell(values: list[float]) -> str:
    """One value as ``12.34``, several (seeds) as ``mean ± sample std``; NaN (joint's forgetting) as ``-``."""
    vals = np.asarray(values, dtype=float)
    if np.isnan(vals).all():
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f}"


def format_table(results: list[RunResult]) -> str:
    """Table-2 style text table: per method (and evaluation variant) Seen-Avg and Unseen-Avg mAP/R1 (%) and
    forgetting (mAP points); several results of one method (seeds) give one row of mean ± sample std. Columns
    are as wide as their longest cell."""
    groups: dict[str, list[dict[str, float]]] = {}
    for r in (row for res in results for row in res.expanded()):
        groups.setdefault(r.method, []).append(r.summary())
    head = ["Method"] + [name for name, _ in TABLE_COLUMNS]
    rows = [[method] + [_cell([100 * s[key] for s in sums]) for _, key in TABLE_COLUMNS]
            for method, sums in groups.items()]
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    text = [line(head), "-" * len(line(head))]
    return "\n".join(text + [line(row) for row in rows])
