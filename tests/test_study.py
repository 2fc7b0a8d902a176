"""The regime study: regimes as configs, train.later_lr on the global clock, the calibration rule, and one
resumable smoke-profile study through the CLI."""
import csv

import pytest

from lreid_core.cli import main
from lreid_core.config import load_config, profile
from lreid_core.errors import LReIDError
from lreid_core.results import RunResult
from lreid_core.study import Cell, Regime, choose, parse_regimes
from lreid_core.demo import Criterion
from lreid_core.train import build_optimizer, lr_factor


def test_regime_sets_iterations_rate_and_batch_keeping_the_clock():
    cfg = profile("demo")
    c = Regime(480, 0.2, 16).apply(cfg)
    assert (c.train.epochs, c.train.iters_per_epoch, c.train.later_lr, c.train.p_ids) == (6, 80, 0.2, 16)
    assert c.train.milestones == cfg.train.milestones and cfg.train.iters_per_epoch == 20     # cfg untouched
    with pytest.raises(LReIDError, match="multiple of train.epochs=6"):
        Regime(100, 1.0, 8).apply(cfg)
    with pytest.raises(LReIDError, match="train.later_lr must be in"):
        Regime(120, 2.0, 8).apply(cfg)
    assert [r.name for r in parse_regimes("480,120", "0.05,1", "8")] == [
        "it120-lr1-p8", "it120-lr0.05-p8", "it480-lr1-p8", "it480-lr0.05-p8"]
    with pytest.raises(LReIDError, match="--p-ids"):
        parse_regimes("120", "1", "8,x")


def test_later_lr_scales_every_step_after_the_first_on_the_global_clock():
    cfg = load_config(profile_name="demo", overrides={"train": {"later_lr": 0.05}})
    e, ipe = cfg.train.epochs, cfg.train.iters_per_epoch
    total = e * ipe
    ms = cfg.train.milestones                                          # [27]: the order's last two epochs
    assert lr_factor(cfg, ms, 0, total - 1, total, 0.05) == 1.0        # step 1 unchanged
    assert lr_factor(cfg, ms, 1, 0, total, 0.05) == pytest.approx(0.05)
    assert lr_factor(cfg, ms, 4, total - 1, total, 0.05) == pytest.approx(0.005)   # x the late decay
    joint_total = 5 * total                                            # a joint step reads the same clock
    assert lr_factor(cfg, ms, 0, total - 1, joint_total, 0.05) == 1.0
    assert lr_factor(cfg, ms, 0, total, joint_total, 0.05) == pytest.approx(0.05)
    per_step = load_config(profile_name="demo", overrides={"train": {"lr_schedule": "per_step"}})
    assert lr_factor(per_step, [], 0, 5, total, 0.05) == 1.0 and lr_factor(per_step, [], 1, 0, total, 0.05) == 0.05


def test_patchkd_sampler_keeps_its_own_schedule_under_later_lr():
    import torch

    from lreid_core.methods import create_method

    cfg = load_config(profile_name="smoke", overrides={"method": {"name": "patchkd"},
                                                             "train": {"later_lr": 0.1, "milestones": [50]}})
    m = create_method("patchkd", cfg)
    m.before_step(0, 4)
    m.after_step(0)
    m.before_step(1, 4)
    groups = m.optim_groups()
    opt, sched = build_optimizer(cfg, groups, torch.device("cpu"), 8, step=1)
    model_lr, sampler_lr = sched.get_last_lr()
    assert model_lr == pytest.approx(cfg.train.lr * 0.1) and sampler_lr == pytest.approx(cfg.train.lr)


def _cell(regime: Regime, seed: int, ok: bool) -> Cell:
    return Cell(regime, seed, {}, [Criterion("calibration", ok, "")])


def test_choose_is_the_cheapest_regime_passing_on_every_seed():
    a, b, c, d = Regime(120, 1.0, 8), Regime(120, 0.2, 8), Regime(120, 0.2, 16), Regime(480, 0.2, 8)
    cells = [_cell(a, 1, True), _cell(a, 2, False), _cell(b, 1, True), _cell(c, 1, True), _cell(c, 2, True),
             _cell(d, 1, True), _cell(d, 2, True)]
    assert choose(cells, [a, b, c, d], [1, 2]) == c           # b lacks seed 2, a fails on it
    cells.append(_cell(b, 2, True))
    assert choose(cells, [a, b, c, d], [1, 2]) == b
    cells.append(_cell(Regime(120, 0.05, 8), 1, True))
    cells.append(_cell(Regime(120, 0.05, 8), 2, True))
    assert choose(cells, [a, b, c, d, Regime(120, 0.05, 8)], [1, 2]) == Regime(120, 0.05, 8)   # tie: lower lr
    assert choose([_cell(a, 1, False)], [a], [1]) is None


def test_study_command_trains_tabulates_and_resumes(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["study", "regime", "--profile", "smoke", "--synth-seeds", "1", "--iters", "8", "--later-lr", "1,0.2",
            "--p-ids", "4", "--out", str(out), "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.count("trained in") == 8 and "chosen (cheapest regime" in text
    assert (out / "study.png").stat().st_size > 0 and (out / "synth1" / "random_init.json").is_file()
    lines = list(csv.reader((out / "study.csv").read_text().splitlines()))
    assert lines[0][:4] == ["regime", "synth_seed", "finetune", "lwf"] and len(lines) == 3
    ring = [float(v) for v in lines[1][-2].split("/")]
    assert len(ring) == 3 and all(0 <= v <= 1 for v in ring)
    finished = RunResult.load(out / "synth1" / "it8-lr0.2-p4" / "lwf")
    assert finished.status == "done" and len(finished.steps) == 2
    assert main(args) == 0                                             # everything reused, nothing trained
    again = capsys.readouterr().out
    assert "trained in" not in again and again.count("reused") == 8
    assert main(args[:-1] + ["--table-only", "--quiet"]) == 0 and "reused" not in capsys.readouterr().out
    assert main(["study", "regime", "--profile", "smoke", "--synth-seeds", "0", "--out", str(out)]) == 2
    assert "reported generator seed" in capsys.readouterr().err


def test_a_setting_added_later_matches_its_profiles_default():
    """A run stored before a setting existed stays reusable when the request holds the default of the stored
    run's profile (the demo's own aka_milestones, not the dataclass's), and not when it holds another value."""
    from lreid_core.results import config_differences

    cfg = profile("demo")
    stored = cfg.to_dict()
    del stored["method"]["aka_milestones"]
    assert cfg.method.aka_milestones != profile("paper").method.aka_milestones
    assert config_differences(stored, cfg.to_dict()) == []
    cfg.method.aka_milestones = [1]
    assert config_differences(stored, cfg.to_dict()) == ["method.aka_milestones"]


def test_every_method_puts_its_model_on_the_later_lr_clock():
    """``train.later_lr`` reaches every registered method's model parameters (the regime axis means the same for
    all); only second optimisers (PatchKD's sampler, AKA's graph) keep their own schedules."""
    from lreid_core.methods import create_method, list_methods

    for name in list_methods():
        cfg = load_config(profile_name="smoke", overrides={"method": {"name": name}, "train": {"later_lr": 0.2}})
        m = create_method(name, cfg)
        m.before_step(0, 4)
        on_clock = {id(p) for g in m.optim_groups() if g.get("later_lr") == 0.2 for p in g["params"]}
        assert all(id(p) in on_clock for p in m.model.parameters() if p.requires_grad), name
