"""The demo's table, its validity check, and the small backbone's shipped pretrained weights."""
import numpy as np
import pytest
import torch

from lreid_core.config import profile
from lreid_core.demo import check, criteria, gap_closed, stability, versus_lwf
from lreid_core.errors import LReIDError
from lreid_core.models.backbone import SYNTHETIC_WEIGHTS, build_backbone
from lreid_core.models.reid import ReIDModel
from lreid_core.results import RunResult, format_table

ORDER, UNSEEN = ["a", "b", "c"], ["u"]


def _run(method: str, diag: float, final: float, unseen: float) -> RunResult:
    """A finished run whose domains reach ``diag`` right after their step and ``final`` at the end."""
    def row(t: int) -> dict:
        cells = {d: {"mAP": diag if i == t else final, "R1": diag} for i, d in enumerate(ORDER[: t + 1])}
        return {**cells, "u": {"mAP": unseen, "R1": unseen}}

    if method == "joint":
        steps = [{**{d: {"mAP": final, "R1": final} for d in ORDER}, "u": {"mAP": unseen, "R1": unseen}}]
    else:
        steps = [row(t) for t in range(len(ORDER))]
    return RunResult(method, ORDER, UNSEEN, steps, status="done")


def test_table_columns_stay_aligned_with_long_rows_and_seeds():
    cov = _run("covariance", 0.6, 0.3, 0.2)
    cov.variants["task_aware"] = cov.steps
    lines = format_table([_run("finetune", 0.6, 0.3, 0.2), _run("finetune", 0.62, 0.31, 0.2), cov]).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[2].split()[:4] == ["finetune", "40.67", "±", "0.94"] and lines[-1].startswith("covariance[task_aware]")
    assert lines[0].endswith("Forget") and lines[-1].endswith("30.00")          # right-aligned to the header


def test_check_passes_and_fails_on_the_criteria():
    good = {s: [_run("finetune", 0.6, 0.3 + s / 100, 0.2), _run("lwf", 0.6, 0.4 + s / 100, 0.25),
                _run("joint", 0.6, 0.6 + s / 100, 0.3)] for s in range(3)}
    random = {s: {"u": 0.05} for s in range(3)}
    assert all(c.passed for c in check(good, random)), [c.line() for c in check(good, random)]
    bad = {s: [_run("finetune", 0.3, 0.3, 0.2), _run("lwf", 0.3, 0.29, 0.2), _run("joint", 0.4, 0.4, 0.2)]
           for s in range(3)}
    failed = {c.name for c in check(bad, {s: {"u": 0.1} for s in range(3)}) if not c.passed}
    assert failed == {"plasticity", "forgetting", "headroom", "generalisation", "calibration", "stability"}


def test_calibration_asks_lwf_to_close_a_quarter_of_the_gap():
    """Finetune 30 and Joint 60 Seen-Avg: LwF at 37 closes 0.23 of the gap (fails), at 38 0.27 (passes)."""
    for lwf, ok in ((0.37, False), (0.38, True)):
        runs = {0: [_run("finetune", 0.6, 0.3, 0.2), _run("lwf", 0.6, lwf, 0.2), _run("joint", 0.6, 0.6, 0.3)]}
        calib = next(c for c in criteria(runs, {0: {"u": 0.05}}) if c.name == "calibration")
        assert calib.passed is ok, calib.detail
    assert gap_closed(30.0, 40.0, 60.0) == pytest.approx(1 / 3) and np.isnan(gap_closed(30.0, 40.0, 30.0))


def test_stability_judges_paired_differences_not_levels():
    """Levels that move by 10 points between seeds pass when the difference holds; a sign flip or a mean
    below twice the std fails, and the per-seed differences are printed (Seen-Avg over 3 domains, the last
    at its diagonal: an edge e on the first two gives 2e/3)."""
    def runs(lwf_edge: list[float]) -> dict:
        return {s: [_run("finetune", 0.6, 0.3 + s / 10, 0.2), _run("lwf", 0.6, 0.3 + s / 10 + e, 0.2),
                    _run("joint", 0.6, 0.9, 0.3)] for s, e in enumerate(lwf_edge)}

    steady = stability(runs([0.03, 0.035, 0.04]))
    assert all(c.passed for c in steady), [c.line() for c in steady]
    assert "lwf - finetune +2.33 ± 0.33 (per seed +2.00, +2.33, +2.67)" in steady[1].detail
    assert not stability(runs([0.03, -0.01, 0.04]))[1].passed                    # sign flips in seed 1
    assert not stability(runs([0.01, 0.05, 0.03]))[1].passed                     # mean 2.00 < 2 x std 1.33
    assert not stability(runs([0.03]))[1].passed                                 # one seed has no spread
    both = {s: rs + [_run("patchkd", 0.6, 0.3 + s / 10, 0.2)] for s, rs in runs([0.03, 0.03, 0.03]).items()}
    assert versus_lwf(both).endswith("patchkd - lwf -2.00 ± 0.00 (per seed -2.00, -2.00, -2.00)")
    assert versus_lwf(runs([0.03, 0.03])) is None


def test_shipped_weights_load_and_give_the_papers_patch_grid():
    cfg = profile("demo").model
    assert cfg.pretrained == "synthetic" and SYNTHETIC_WEIGHTS.is_file()
    assert SYNTHETIC_WEIGHTS.stat().st_size < 4e6
    meta = torch.load(SYNTHETIC_WEIGHTS, weights_only=True)
    assert meta["seed"] == 0 and meta["pool"] and (meta["width"], meta["stride"]) == (cfg.width, cfg.small_stride)
    model = ReIDModel(cfg).eval()
    assert torch.equal(model.backbone.stem[0].weight, meta["state_dict"]["stem.0.weight"])
    with torch.no_grad():
        assert model.backbone(torch.zeros(2, 3, 64, 32)).shape[2:] == (16, 8)
    with pytest.raises(LReIDError, match="small_stride"):
        build_backbone("small", "synthetic", small_stride=8)
    assert not np.isnan(meta["pool_mAP"])


def test_demo_figures_for_joint_alone(tmp_path):
    """`lreid demo --methods joint`: no continual run to draw a curve of, the figure shows joint's point."""
    from lreid_core.viz import save_demo_figures

    paths = save_demo_figures([_run("joint", 0.6, 0.5, 0.2)], tmp_path)
    assert [p.name for p in paths] == ["demo_summary.png", "matrix_joint.png"] and all(p.stat().st_size for p in paths)
