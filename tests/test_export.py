"""Notebook 05's report: Table 2 export (best value per column in bold, JointTrain not competing, a chance row),
conclusions computed from the rows whichever way they go, and a report that is a function of the selection."""
import pytest

from lreid_core.config import load_config, save_config
from lreid_core.export import best_rows, export_table
from lreid_core.report import build_report
from lreid_core.results import RunResult
from lreid_core.run_explorer import RunExplorer, conclusions

ORDER, UNSEEN = ["synth_a", "synth_b"], ["synth_u1"]
CHANCE = {"synth_a": {"mAP": 0.10, "R1": 0.05}, "synth_b": {"mAP": 0.20, "R1": 0.15},
          "synth_u1": {"mAP": 0.30, "R1": 0.25}}


def fake_run(path, method, first, last, joint=False):
    """A finished run: mAP of synth_a is ``first`` after step 1 and ``last`` at the end; R1 = mAP / 2."""
    def row(a, seen):
        vals = {"synth_a": a, "synth_b": 0.5, "synth_u1": 0.4}
        return {d: {"mAP": vals[d], "R1": vals[d] / 2, "mINP": 0.1} for d in seen + UNSEEN}

    steps = [row(last, ORDER)] if joint else [row(first, ORDER[:1]), row(last, ORDER)]
    RunResult(method, ORDER, UNSEEN, steps, ["all"] if joint else ORDER, {}, status="done", wall_s=1.0).save(path)
    cfg = load_config(profile_name="smoke", overrides={"method": {"name": method},
                                                       "data": {"order": ORDER, "unseen": UNSEEN}})
    save_config(cfg, path / "config.yaml")
    return path


@pytest.fixture
def runs(tmp_path):
    return {"finetune": fake_run(tmp_path / "finetune", "finetune", 0.6, 0.3),
            "lwf": fake_run(tmp_path / "lwf", "lwf", 0.6, 0.5),
            "joint": fake_run(tmp_path / "joint", "joint", 0.9, 0.9, joint=True)}


def test_best_in_bold_without_joint_and_a_chance_row(runs):
    [group] = build_report(list(runs.values())).groups
    assert best_rows(group)[("synth_a", "mAP")] == {"lwf"}              # joint (90.00) does not compete
    assert best_rows(group)[("synth_b", "mAP")] == {"finetune", "lwf"}  # a tie: both bold
    md = export_table(group, "md", CHANCE)
    assert "| lwf | **50.00** |" in md and "| joint | 90.00 |" in md and "| finetune | 30.00 |" in md
    assert "| chance (random ranking) | 10.00 | 5.00 | 20.00 | 15.00 | 15.00 | 10.00 | 30.00 | 25.00 |" in md
    tex = export_table(group, "tex", CHANCE)
    assert r"\multicolumn{2}{c}{synth\_a}" in tex and r"lwf & \textbf{50.00} & \textbf{25.00}" in tex
    csv = export_table(group, "csv", None).splitlines()
    assert csv[-1].startswith("best,lwf,lwf,finetune / lwf") and not any(line.startswith("chance") for line in csv)


def test_conclusions_hold_whichever_way_results_go(tmp_path, runs):
    [group] = build_report(list(runs.values())).groups
    lines = conclusions(group)
    assert "lwf forgets least (10.00), finetune most (30.00), 20.00 points apart." in lines[0]
    assert "lwf forgets 20.00 points less than finetune." in lines
    assert any(line.startswith("Seen-Avg minus Unseen-Avg mAP: finetune +0.00, lwf +10.00, joint +30.00")
               for line in lines)
    assert lines[-1] == ("joint (all domains at once, the upper bound) reaches Seen-Avg mAP 70.00, 20.00 points "
                         "above lwf.")
    worse = fake_run(tmp_path / "lwf-worse", "lwf", 0.6, 0.1)
    [group] = build_report([runs["finetune"], worse]).groups
    assert "lwf forgets 20.00 points more than finetune." in conclusions(group)
    same = fake_run(tmp_path / "lwf-same", "lwf", 0.6, 0.3)
    [group] = build_report([runs["finetune"], same]).groups
    assert "all 2 lifelong methods forget the same (30.00)" in conclusions(group)[0]
    assert "lwf forgets as much as finetune (within 0.01 points)." in conclusions(group)


def test_report_is_a_function_of_the_selection(tmp_path, runs, monkeypatch):
    monkeypatch.setattr(RunExplorer, "chance", lambda self, group: CHANCE)
    explorer = RunExplorer(profile="smoke", out=tmp_path / "out", methods=("finetune", "lwf", "joint"))
    explorer.load([runs["finetune"], runs["lwf"], runs["joint"]])
    first = explorer.report_dir
    explorer.load([runs["lwf"]])
    assert explorer.report_dir != first and explorer.methods.value == ("lwf",)    # the picker follows the report
    figs = explorer.figures()
    assert [p.name for p in figs["matrices"]] == ["synth_a-synth_b_matrix_lwf.png"]  # not finetune's, not joint's
    assert all(p.is_file() and p.parent.parent == explorer.report_dir for ps in figs.values() for p in ps)
    for kind in ("forgetting", "evolution", "matrices"):
        data, meta = explorer._slot(kind)
        assert "image/png" in data and meta["lreid"] == {"figure": kind, "rows": ["lwf"]}
    html = explorer.html()
    assert html.count('class="lreid-table2"') == 1 and ">finetune<" not in html and "<b>50.00</b>" in html
    [path] = explorer.export("tex")
    assert path.parent == explorer.report_dir and r"\textbf{50.00}" in path.read_text()
