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


def format_table(results: list[RunResult]) -> str:
    """Table-2 style text table: per-method Seen-Avg and Unseen-Avg mAP/R1 (%) and forgetting (mAP points)."""
    head = f"{'Method':<12} {'Seen mAP':>9} {'Seen R1':>8} {'Unseen mAP':>11} {'Unseen R1':>10} {'Forget':>7}"
    lines = [head, "-" * len(head)]
    for r in (row for res in results for row in res.expanded()):
        s = r.summary()
        forget = "-" if np.isnan(s["forgetting_mAP"]) else f"{100 * s['forgetting_mAP']:.1f}"
        lines.append(f"{r.method:<12} {100 * s['seen_mAP']:>9.2f} {100 * s['seen_R1']:>8.2f} "
                     f"{100 * s['unseen_mAP']:>11.2f} {100 * s['unseen_R1']:>10.2f} {forget:>7}")
    return "\n".join(lines)
