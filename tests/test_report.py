"""`lreid report` and `lreid sweep`: Table-2 numbers equal the run directories' metrics, mean ± std over seeds
(sample std, ddof=1), one section per domain order, one-line errors, and a resumable two-cell sweep."""
import csv
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from lreid_core.cli import main
from lreid_core.config import ORDERS, load_config, save_config
from lreid_core.report import build_report
from lreid_core.report_write import write_report
from lreid_core.results import RunResult

ORDER = ["synth_a", "synth_b", "synth_c"]
UNSEEN = ["synth_u1", "synth_u2"]
TINY = ["train.epochs=1", "train.iters_per_epoch=2"]


pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py


def fake_run(path, method, seed=0, order=ORDER, unseen=UNSEEN, joint=False, variants=(), values=None, **method_cfg):
    """A finished run directory written by RunResult.save + save_config, with seeded pseudo-random metrics.

    ``values`` overrides the metrics: {domain: (mAP, R1)} at every step.
    """
    rng = np.random.default_rng(zlib.crc32(f"{path.name}:{method}:{seed}".encode()))

    def step_rows():
        rows = []
        for t in range(1 if joint else len(order)):
            seen = order if joint else order[: t + 1]
            rows.append({d: {"mAP": float(values[d][0]) if values else float(rng.uniform(0.05, 0.95)),
                             "R1": float(values[d][1]) if values else float(rng.uniform(0.05, 0.95)),
                             "mINP": float(rng.uniform(0, 0.5))} for d in seen + unseen})
        return rows

    result = RunResult(method, list(order), list(unseen), step_rows(), ["all"] if joint else list(order),
                       {v: step_rows() for v in variants}, status="done", wall_s=1.0)
    result.save(path)
    cfg = load_config(profile_name="smoke", overrides={"method": {"name": method, **method_cfg},
                                                       "train": {"seed": seed},
                                                       "data": {"order": list(order), "unseen": list(unseen)}})
    save_config(cfg, path / "config.yaml")
    return path


def read_csv(path):
    with open(path, newline="") as f:
        return {row["method"]: row for row in csv.DictReader(f)}


def pct(x):
    return f"{100 * x:.2f}"


def test_numbers_equal_run_directories(tmp_path):
    runs = [fake_run(tmp_path / "ft", "finetune"), fake_run(tmp_path / "lwf", "lwf"),
            fake_run(tmp_path / "joint", "joint", joint=True),
            fake_run(tmp_path / "cov", "covariance", variants=("task_aware",)), fake_run(tmp_path / "spd", "spd")]
    report = build_report(runs)
    md = write_report(report, tmp_path / "out", figures=False)
    [group] = report.groups
    assert [r.label for r in group.rows] == ["finetune", "spd", "lwf", "covariance", "covariance[task_aware]",
                                             "joint"]                      # Table 2 row order, joint last
    table = read_csv(tmp_path / "out" / f"table2_{group.label}.csv")
    forget = read_csv(tmp_path / "out" / f"forgetting_{group.label}.csv")
    text = md.read_text()
    for run in runs:
        data = json.loads((run / "metrics.json").read_text())
        rows = [(data["method"], data["steps"])] + [(f"{data['method']}[{v}]", s) for v, s in data["variants"].items()]
        for label, steps in rows:
            cells = table[label]
            assert cells["runs"] == "1" and cells["seeds"] == "0"
            for d in ORDER:
                for m in ("mAP", "R1"):
                    assert cells[f"{d} {m}"] == pct(steps[-1][d][m]), (label, d, m)
                    assert cells[f"{d} {m} std"] == ""
            md_row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
            for d in ORDER:
                assert f"| {pct(steps[-1][d]['mAP'])} |" in md_row
        s = data["summary"]
        cells = table[data["method"]]
        assert cells["Seen-Avg mAP"] == pct(s["seen_mAP"]) and cells["Seen-Avg R1"] == pct(s["seen_R1"])
        assert cells["Unseen-Avg mAP"] == pct(s["unseen_mAP"]) and cells["Unseen-Avg R1"] == pct(s["unseen_R1"])
        if data["method"] == "joint":
            assert forget["joint"]["forgetting mAP"] == ""
        else:
            assert forget[data["method"]]["forgetting mAP"] == pct(s["forgetting_mAP"])
    assert report.groups[0].frame().loc["lwf", ("synth_a", "mAP")] == \
        100 * RunResult.load(tmp_path / "lwf").final("synth_a")
    assert "Table 2 report" in report.html() and 'class="lreid-table2"' in report.html()


def test_figures_embedded_by_relative_path(tmp_path):
    runs = [fake_run(tmp_path / "s0", "lwf", seed=0), fake_run(tmp_path / "s1", "lwf", seed=1),
            fake_run(tmp_path / "joint", "joint", joint=True)]
    md = write_report(build_report(runs), tmp_path / "out")
    targets = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text())
    assert len(targets) == 4                                   # forgetting, evolution, 2 matrices
    for target in targets:
        assert not target.startswith("/") and (md.parent / target).stat().st_size > 0, target
    assert sorted(p.name for p in (tmp_path / "out" / "figures").iterdir()) == sorted(Path(t).name for t in targets)


def test_mean_and_sample_std_over_seeds(tmp_path):
    a = fake_run(tmp_path / "s0", "lwf", seed=0, values={d: (0.30, 0.50) for d in ORDER + UNSEEN})
    b = fake_run(tmp_path / "s1", "lwf", seed=1, values={d: (0.40, 0.70) for d in ORDER + UNSEEN})
    report = build_report([b, a])
    write_report(report, tmp_path / "out", figures=False)
    [row] = report.groups[0].rows
    assert row.label == "lwf" and row.seeds == [0, 1]
    assert row.value("synth_a", "mAP").cell() == "35.00 ± 7.07"            # std with ddof=1: 0.1 / sqrt(2)
    assert row.value("Seen-Avg", "R1").mean == pytest.approx(60.0)
    assert row.value("Seen-Avg", "R1").std == pytest.approx(100 * np.std([0.5, 0.7], ddof=1))
    cells = read_csv(tmp_path / "out" / f"table2_{report.groups[0].label}.csv")["lwf"]
    assert cells["runs"] == "2" and cells["seeds"] == "0 1"
    assert (cells["synth_b mAP"], cells["synth_b mAP std"]) == ("35.00", "7.07")
    assert (cells["Unseen-Avg R1"], cells["Unseen-Avg R1 std"]) == ("60.00", "14.14")


def test_orders_grouped_and_config_rows(tmp_path):
    o1 = [fake_run(tmp_path / f"o1_{m}", m, order=ORDERS["order1"], unseen=["viper"]) for m in ("finetune", "lwf")]
    o2 = [fake_run(tmp_path / "o2_lwf", "lwf", order=ORDERS["order2"], unseen=["viper"])]
    sweep = [fake_run(tmp_path / f"g{g}", "patchkd", gamma3=g) for g in (10.0, 0.0)]
    report = build_report(o1 + o2 + sweep)
    assert [g.label for g in report.groups] == ["order1", "order2", "synth_a-synth_b-synth_c"]
    assert [r.label for r in report.groups[2].rows] == ["patchkd (method.gamma3=0.0)", "patchkd (method.gamma3=10.0)"]
    assert report.groups[1].columns()[0] == ("dukemtmc", "mAP")
    write_report(report, tmp_path / "out", figures=False)
    assert {p.name for p in (tmp_path / "out").glob("table2_*.csv")} == {
        "table2_order1.csv", "table2_order2.csv", "table2_synth_a-synth_b-synth_c.csv"}


def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lreid: error: ") and err.strip().count("\n") == 0, err
    return err


def test_report_errors_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    assert "not a run directory" in one_line_error(capsys, ["report", str(tmp_path / "empty"), "--out", str(out)])
    assert "not a run directory" in one_line_error(capsys, ["report", str(tmp_path / "nope"), "--out", str(out)])
    run = fake_run(tmp_path / "a", "lwf")
    fake_run(tmp_path / "b", "lwf")
    assert "same config and seed 0" in one_line_error(capsys, ["report", str(run), str(tmp_path / "b"),
                                                               "--out", str(out)])
    data = json.loads((run / "metrics.json").read_text())
    data["status"] = "running"
    (run / "metrics.json").write_text(json.dumps(data))
    assert "run not finished" in one_line_error(capsys, ["report", str(run), "--out", str(out)])
    assert not out.exists()


def test_sweep_validates_before_writing(tmp_path, capsys):
    out = tmp_path / "sweep"
    err = one_line_error(capsys, ["sweep", "--key", "method.gamma9", "--values", "0,1", "--profile", "smoke",
                                  "--out", str(out)])
    assert "unknown config key 'method.gamma9'" in err
    err = one_line_error(capsys, ["sweep", "--key", "train.epochs", "--values", "1,x", "--profile", "smoke",
                                  "--out", str(out)])
    assert "train.epochs" in err
    one_line_error(capsys, ["sweep", "--key", "method.tau", "--values", "1,1", "--profile", "smoke", "--out", str(out)])
    assert not out.exists()


def test_sweep_two_cells_resumable_then_report(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--key", "method.gamma0", "--values", "0,1", "--method", "lwf", "--profile", "smoke",
            "--order", "synth_b,synth_a", "--out", str(out), "--quiet", "--set", *TINY]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.count("run method.gamma0=") == 2 and "skip" not in first
    cells = [out / "method.gamma0=0", out / "method.gamma0=1"]
    assert all(json.loads((c / "metrics.json").read_text())["status"] == "done" for c in cells)
    assert (out / "sweep.png").stat().st_size > 0
    mtimes = [(c / "metrics.json").stat().st_mtime_ns for c in cells]
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert second.count("skip method.gamma0=") == 2 and "run method.gamma0=" not in second
    assert [(c / "metrics.json").stat().st_mtime_ns for c in cells] == mtimes
    sweep_rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["method.gamma0"] for r in sweep_rows] == ["0", "1"]
    # the report of real runs (a folder of run dirs) equals their metrics.json, one row per cell
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--no-figures"]) == 0
    capsys.readouterr()
    [table] = (tmp_path / "rep").glob("table2_*.csv")
    table = read_csv(table)
    for cell, sweep_row in zip(cells, sweep_rows):
        data = json.loads((cell / "metrics.json").read_text())
        assert data["order"] == ["synth_b", "synth_a"]
        label = f"lwf (method.gamma0={float(cell.name.split('=')[1])})"
        for d in data["order"]:
            assert table[label][f"{d} R1"] == pct(data["steps"][-1][d]["R1"])
        assert table[label]["Seen-Avg mAP"] == pct(data["summary"]["seen_mAP"]) == sweep_row["seen_mAP"]
    # a changed request does not silently reuse the cells
    err = one_line_error(capsys, argv[:-len(TINY)] + ["train.epochs=1", "train.iters_per_epoch=3"])
    assert "different config (train.iters_per_epoch)" in err
