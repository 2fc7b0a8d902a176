"""A run's results: the step x domain mAP/R1 matrix, Seen-Avg / Unseen-Avg, forgetting, and their files."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LReIDError
from .io import atomic_write_json, atomic_write_text

# Settings that do not change a run's numbers: a resumed run may change them, and a stored run counts as
# "the same config" whatever they are.
RESULT_NEUTRAL = frozenset({"train.device", "train.eval_batch", "train.ckpt_every", "data.cache_device", "out_dir"})
RUN_MARKERS = ("config.yaml", "metrics.json", "checkpoints", "tb")   # what a Trainer writes into a run folder


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
        """``metrics.json`` of a run directory, checked field by field (one line naming the file and key)."""
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise LReIDError(f"not a run directory (no metrics.json): {run_dir}")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise LReIDError(f"unreadable {path}: {str(exc).splitlines()[0]}") from None
        except RecursionError:
            raise LReIDError(f"unreadable {path}: nested too deeply to be a metrics file") from None
        check_metrics(data, path)
        data.pop("summary", None)
        return cls(**data)


def _fail(path: Path, key: str, why: str) -> LReIDError:
    return LReIDError(f"{path}: {key} {why}")


def _check_rows(rows: Any, path: Path, key: str, domains: set[str]) -> None:
    """``rows`` is a list of {domain: {metric: fraction}} with only known domains and finite fractions."""
    if not isinstance(rows, list):
        raise _fail(path, key, f"must be a list of steps, got {type(rows).__name__}")
    for t, row in enumerate(rows):
        where = f"{key}[{t}]"
        if not isinstance(row, dict):
            raise _fail(path, where, f"must map domains to metrics, got {type(row).__name__}")
        for domain, metrics in row.items():
            if domain not in domains:
                raise _fail(path, f"{where}.{domain}", "is not a domain of this run's order or unseen sets")
            if not isinstance(metrics, dict) or not {"mAP", "R1"} <= set(metrics):
                raise _fail(path, f"{where}.{domain}", "must hold mAP and R1")
            for name, value in metrics.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise _fail(path, f"{where}.{domain}.{name}", f"must be a finite number, got {value!r}")
                if not 0 <= value <= 1:
                    raise _fail(path, f"{where}.{domain}.{name}",
                                f"= {value} is not a fraction in [0, 1] (percent scale?)")


def check_metrics(data: Any, path: Path) -> None:
    """Reject a ``metrics.json`` whose structure or values a RunResult cannot mean (wrong types, NaN, percents)."""
    if not isinstance(data, dict):
        raise LReIDError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    for key in ("method", "order", "unseen", "steps", "status"):
        if key not in data:
            raise _fail(path, key, "is missing")
    known = {"method", "order", "unseen", "steps", "trained", "variants", "status", "wall_s", "summary"}
    if unknown := sorted(set(data) - known):
        raise _fail(path, unknown[0], "is not a metrics.json field")
    if not isinstance(data["method"], str) or not isinstance(data["status"], str):
        raise _fail(path, "method/status", "must be strings")
    for key in ("order", "unseen", "trained"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(path, key, "must be a list of domain names")
    if not data["order"]:
        raise _fail(path, "order", "is empty")
    domains = set(data["order"]) | set(data["unseen"])
    _check_rows(data["steps"], path, "steps", domains)
    if len(data.get("trained", [])) != len(data["steps"]):
        raise _fail(path, "trained", f"has {len(data.get('trained', []))} entries for {len(data['steps'])} steps")
    if data["steps"] and not set(data["unseen"]) <= set(data["steps"][-1]):
        raise _fail(path, "steps[-1]", "lacks an unseen domain")
    variants = data.get("variants", {})
    if not isinstance(variants, dict):
        raise _fail(path, "variants", "must map variant names to step lists")
    for name, rows in variants.items():
        _check_rows(rows, path, f"variants.{name}", domains)
    wall = data.get("wall_s", 0.0)
    if isinstance(wall, bool) or not isinstance(wall, (int, float)):
        raise _fail(path, "wall_s", f"must be a number, got {wall!r}")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(stored: dict[str, Any], wanted: dict[str, Any],
                       ignore: frozenset[str] = RESULT_NEUTRAL) -> list[str]:
    """Dotted keys whose values differ between two config dicts (after a YAML round trip), minus ``ignore``.

    A key missing from ``stored`` (a setting added after that run was written) matches when ``wanted`` holds the
    setting's default in the stored run's profile: a new setting's default keeps the behaviour the older run had.
    """
    import yaml

    from .config import PROFILES, Config, profile, upgrade_stored

    name = stored.get("profile") if isinstance(stored, dict) else None
    base = profile(name) if name in PROFILES else Config()
    a, b, default = (flatten(yaml.safe_load(yaml.safe_dump(c, sort_keys=True)) or {})
                     for c in (upgrade_stored(stored), wanted, base.to_dict()))
    for k in set(b) - set(a):
        if k in default:
            a[k] = default[k]
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))


def stored_config(run_dir: str | Path):
    """The validated ``Config`` stored in a run directory's ``config.yaml``; one line naming the file otherwise."""
    import yaml

    from .config import config_from_dict, validate

    path = Path(run_dir) / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LReIDError(f"unreadable {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise LReIDError(f"{path} does not hold a config mapping")
    try:
        cfg = config_from_dict(data)
        validate(cfg)
    except LReIDError as exc:
        raise LReIDError(f"stored config {path} no longer validates: {exc}") from None
    return cfg


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds anything a Trainer writes (config, metrics, checkpoints, TensorBoard logs)."""
    return any((Path(folder) / m).exists() for m in RUN_MARKERS)


def finished_run(folder: str | Path, cfg: Any) -> RunResult | None:
    """The result in ``folder`` when it holds a finished run of config ``cfg`` (result-neutral keys aside), else None.

    For reusing existing run folders (e.g. a notebook's demo runs) instead of training again; a damaged,
    unfinished or differently configured run gives None.
    """
    import yaml

    folder = Path(folder)
    try:
        result = RunResult.load(folder)
        stored = yaml.safe_load((folder / "config.yaml").read_text())
    except (LReIDError, OSError, yaml.YAMLError):
        return None
    if result.status != "done" or not isinstance(stored, dict):
        return None
    return None if config_differences(stored, cfg.to_dict()) else result


TABLE_COLUMNS = (("Seen mAP", "seen_mAP"), ("Seen R1", "seen_R1"), ("Unseen mAP", "unseen_mAP"),
                 ("Unseen R1", "unseen_R1"), ("Forget", "forgetting_mAP"))


def points(value: float, signed: bool = False) -> str:
    """``value`` (points) with two decimals, its sign too when ``signed``; a value that rounds to zero prints as
    0.00 (never -0.00), so a computed sentence does not show a sign the number does not have."""
    v = round(value, 2) or 0.0
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _cell(values: list[float]) -> str:
    """One value as ``12.34``, several (seeds) as ``mean ± sample std``; NaN (joint's forgetting) as ``-``."""
    vals = np.asarray(values, dtype=float)
    if np.isnan(vals).all():
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f}"


def format_table(results: list[RunResult], chance: dict[str, dict[str, float]] | None = None) -> str:
    """Table-2 style text table: per method (and evaluation variant) Seen-Avg and Unseen-Avg mAP/R1 (%) and
    forgetting (mAP points); several results of one method (seeds) give one row of mean ± sample std. Columns
    are as wide as their longest cell.

    ``chance`` (``evaluate.chance_levels``: domain -> {"mAP", "R1"} of a random ranking) adds a last row, the
    averages a model that ranks the gallery at random gets on the same test sets.
    """
    groups: dict[str, list[dict[str, float]]] = {}
    for r in (row for res in results for row in res.expanded()):
        groups.setdefault(r.method, []).append(r.summary())
    head = ["Method"] + [name for name, _ in TABLE_COLUMNS]
    rows = [[method] + [_cell([100 * s[key] for s in sums]) for _, key in TABLE_COLUMNS]
            for method, sums in groups.items()]
    if chance is not None and results:
        parts = {"seen": results[0].order, "unseen": results[0].unseen}
        avg = {f"{part}_{k}": float(np.mean([chance[d][k] for d in domains])) if domains else float("nan")
               for part, domains in parts.items() for k in ("mAP", "R1")}
        rows.append(["chance"] + [_cell([100 * avg[key]]) if key in avg else "-" for _, key in TABLE_COLUMNS])
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    text = [line(head), "-" * len(line(head))]
    return "\n".join(text + [line(row) for row in rows])
