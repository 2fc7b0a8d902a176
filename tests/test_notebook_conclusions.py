"""The sentences notebooks 01, 03 and 04 print from their runs follow the numbers (either sign), and
NarratedTrainer prints plain progress lines."""
from lreid_core.notebook import (forgetting_conclusion, gradient_ratio_word, task_aware_text, trade_off_text,
                                 variant_effect_text)
from lreid_core.results import RunResult


def run(method: str, first_after_1: float, first_end: float, second_end: float) -> RunResult:
    """A two-domain run: mAP of domain a after step 1, then of a and b after step 2 (fractions)."""
    steps = [{"a": {"mAP": first_after_1, "R1": 0.5}},
             {"a": {"mAP": first_end, "R1": 0.5}, "b": {"mAP": second_end, "R1": 0.5}}]
    return RunResult(method, ["a", "b"], [], steps, ["a", "b"], status="done")


def test_forgetting_conclusion_names_who_forgets_less():
    fin, lwf = run("finetune", 0.9, 0.5, 0.8), run("lwf", 0.9, 0.6, 0.7)     # forgetting 40 vs 30 points
    text = forgetting_conclusion(fin, lwf)
    assert "lwf forgets less: 30.00 vs 40.00 mAP points, 10.00 less (25 % of finetune's)" in text
    assert "Seen-Avg mAP 65.00 vs 65.00 (+0.00 points)" in text and "first domain 60.00 vs 50.00 (+10.00" in text
    flipped = forgetting_conclusion(run("finetune", 0.9, 0.7, 0.8), run("lwf", 0.9, 0.6, 0.8))
    assert "finetune forgets less: 20.00 vs 30.00" in flipped and "(-5.00 points)" in flipped
    assert "both forget the same" in forgetting_conclusion(fin, run("lwf", 0.9, 0.5, 0.8))


def test_trade_off_text_signs():
    scores = {"with": {"a": {"mAP": 0.8}, "b": {"mAP": 0.3}}, "without": {"a": {"mAP": 0.6}, "b": {"mAP": 0.7}}}
    text = trade_off_text(scores, "with", "without", "a", "b")
    assert "+20.00 points, kept by the term" in text and "+40.00 points, the cost of the term" in text
    assert "mean of the two: 55.00 with vs 65.00 without (-10.00 points)" in text
    scores["with"]["b"]["mAP"] = 0.9                                          # the term helps the new domain
    assert "-20.00 points, gained with the term" in trade_off_text(scores, "with", "without", "a", "b")


def test_variant_effect_and_gradient_words():
    text = variant_effect_text(run("learns", 0.9, 0.6, 0.8), run("acts", 0.9, 0.7, 0.8), "alpha")
    assert "forgetting 20.00 vs 30.00 mAP points (-10.00 points, less forgetting)" in text
    assert "Seen-Avg mAP 75.00 vs 70.00 (+5.00 points, higher)" in text
    assert [gradient_ratio_word(r) for r in (1e-15, 0.1, 1.0, 5.0)] == [
        "negligible next to CE", "smaller than CE's", "comparable to CE's", "larger than CE's"]


def test_task_aware_text_explains_a_negative_gap():
    text = task_aware_text({"a": -5.0, "b": 0.4})
    assert text.startswith("task-aware - task-agnostic mAP: a -5.00, b +0.40")
    assert "below task-agnostic on a:" in text and "at or above task-agnostic on b:" in text
    assert "below" not in task_aware_text({"a": 1.0})


def test_narrated_trainer_prints_progress(capsys, one_thread):
    from lreid_core.config import load_config
    from lreid_core.data.benchmark import build_benchmark
    from lreid_core.notebook import NarratedTrainer

    cfg = load_config(profile_name="smoke")
    iters = 6
    cfg.train.epochs, cfg.train.iters_per_epoch, cfg.train.milestones = 1, iters, []
    cfg.data.order = cfg.data.order[:1]
    result = NarratedTrainer(cfg, "finetune", build_benchmark(cfg), progress=False, tensorboard=False).fit()
    out = capsys.readouterr().out
    assert result.status == "done"
    assert f"finetune step 1/1 {cfg.data.order[0]}: training" in out
    assert f"iteration {iters}/{iters}, loss" in out and "(ETA 0 s)" in out
    assert "evaluated 2 test sets in" in out                       # the seen domain and the unseen set
