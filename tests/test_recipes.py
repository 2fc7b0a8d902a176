"""Paper recipes (lreid_core/recipes): each loads and validates, scaling keeps the profile's iterations per step and
the recipe's proportions, SGD + warm-up gives the official scheduler's rates, first_epochs shapes the clock, the
defaults change nothing, bad names and hostile files are one line, the CLI records the recipe and resume refuses
another, and the report shows the papers' numbers only on real order-1 data."""
import dataclasses
import math
from bisect import bisect_right
from pathlib import Path

import pytest
import torch
import yaml

from lreid_core import recipes
from lreid_core.cli import main
from lreid_core.config import ORDERS, Config, load_config, profile, save_config
from lreid_core.errors import LReIDError
from lreid_core.report import build_report
from lreid_core.results import RunResult
from lreid_core.train import build_optimizer, lr_factor, step_epochs

NAMES = ("dkp", "lstkc", "patchkd")
pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py


def raw(name):
    return yaml.safe_load((recipes.RECIPE_DIR / f"{name}.yaml").read_text())


def test_shipped_recipes_listed_and_packaged():
    assert tuple(recipes.list_recipes()) == NAMES
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"lreid_core.recipes" = ["*.yaml"]' in pyproject


@pytest.mark.parametrize("name", NAMES)
def test_paper_profile_applies_the_recipe_as_written(name):
    cfg = load_config(profile_name="paper", overrides={"recipe": name})
    assert cfg.recipe == name
    for section, values in raw(name).items():
        if section == "description":
            continue
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, (section, key)


@pytest.mark.parametrize("prof", ["demo", "smoke"])
@pytest.mark.parametrize("name", NAMES)
def test_scaled_recipe_keeps_budget_and_proportions(prof, name):
    base, cfg, r = profile(prof), load_config(profile_name=prof, overrides={"recipe": name}), raw(name)["train"]
    t, bt = cfg.train, base.train
    budget = bt.epochs * bt.iters_per_epoch
    assert t.epochs * t.iters_per_epoch == budget                     # a later step: the profile's iterations
    first = t.first_epochs or t.epochs
    r_first = r.get("first_epochs") or r["epochs"]
    assert abs(first / t.epochs - r_first / r["epochs"]) <= 0.5 / t.epochs   # first/later ratio, to rounding
    for m_new, m in zip(t.milestones, r["milestones"], strict=True):
        assert abs(m_new / t.epochs - m / r["epochs"]) <= 0.5 / t.epochs + 1e-12
    if r["warmup_epochs"]:
        assert t.warmup_epochs >= 1
        assert abs(t.warmup_epochs / t.epochs - r["warmup_epochs"] / r["epochs"]) <= 0.5 / t.epochs + 1e-12
    else:
        assert t.warmup_epochs == 0
    for key in ("optimizer", "lr", "weight_decay", "warmup_factor", "lr_decay", "lr_schedule", "milestone_lag",
                "label_smoothing"):
        assert getattr(t, key) == r[key], key
    if "momentum" in r:
        assert t.momentum == r["momentum"]
    # the budget stays the profile's: input size, model, batch
    assert (cfg.data.height, cfg.data.width, cfg.model, t.p_ids, t.k_imgs) == (
        base.data.height, base.data.width, base.model, bt.p_ids, bt.k_imgs)
    # the methods' own global-epoch milestones move with the epoch unit
    factor = t.epochs / bt.epochs
    assert cfg.method.sampler_milestones == [max(1, round(m * factor)) for m in base.method.sampler_milestones]


def test_demo_budget_fits_lstkc_exactly():
    """120 iterations a step = 60 epochs x 2: the recipe's epochs, milestone and warm-up survive unchanged."""
    t = load_config(profile_name="demo", overrides={"recipe": "lstkc"}).train
    assert (t.epochs, t.iters_per_epoch, t.first_epochs, t.milestones, t.warmup_epochs) == (60, 2, 80, [30], 10)


def test_sgd_with_warmup_gives_the_official_rates():
    """lr at given iterations vs WarmupMultiStepLR (reid/utils/lr_scheduler.py) written out here, stepped once per
    epoch (2 iterations an epoch), per-step clock, first step of 80 epochs."""
    cfg = load_config(profile_name="demo", overrides={"recipe": "lstkc"})
    t = cfg.train
    weight = torch.nn.Parameter(torch.zeros(3))
    opt, sched = build_optimizer(cfg, [weight], torch.device("cpu"), 80 * 2, step=0)
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, False, 1e-4)

    def official(epoch):                     # warmup_iters=10, warmup_factor=0.01, milestones [30], gamma 0.1
        warm = 0.01 * (1 - epoch / 10) + epoch / 10 if epoch < 10 else 1.0
        return 0.008 * warm * 0.1 ** bisect_right([30], epoch)

    seen = {}
    for it in range(160):
        seen[it] = group["lr"]
        opt.step()
        sched.step()
    for it in (0, 1, 2, 3, 9, 18, 19, 20, 21, 59, 60, 61, 159):
        assert math.isclose(seen[it], official(it // 2), rel_tol=1e-12), it
    assert math.isclose(seen[0], 0.008 * 0.01) and math.isclose(seen[20], 0.008) and math.isclose(seen[60], 0.0008)
    assert t.warmup_epochs == 10


def test_first_epochs_shapes_the_global_clock():
    cfg = load_config(profile_name="smoke", overrides={"train": {
        "lr_schedule": "global", "epochs": 3, "first_epochs": 5, "iters_per_epoch": 2, "milestones": [6],
        "milestone_lag": 0, "later_lr": 0.5}})
    ms = cfg.train.milestones
    assert [lr_factor(cfg, ms, 0, it, 10, 0.5) for it in range(10)] == [1.0] * 10      # epochs 0..4
    assert lr_factor(cfg, ms, 1, 0, 6, 0.5) == 0.5          # global epoch 5: after the first step
    assert math.isclose(lr_factor(cfg, ms, 1, 2, 6, 0.5), 0.05)   # epoch 6: the milestone
    assert math.isclose(lr_factor(cfg, [9], 2, 2, 6, 0.5), 0.05)  # step 3 starts at epoch 5 + 3 = 8; it 2 -> 9
    assert math.isclose(lr_factor(cfg, [9], 2, 1, 6, 0.5), 0.5)
    assert (step_epochs(cfg, 0), step_epochs(cfg, 1), step_epochs(cfg, 4)) == (5, 3, 3)
    assert step_epochs(cfg, 0, joint_steps=3) == 5 + 2 * 3                          # the whole order's epochs
    per_step = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr_schedule="per_step"))
    assert lr_factor(per_step, [3], 0, 5, 10) == 1.0 and math.isclose(lr_factor(per_step, [3], 0, 6, 10), 0.1)
    assert math.isclose(lr_factor(per_step, [2], 1, 4, 6), 0.1)   # later step: epoch 4 * 3 // 6 = 2


def test_defaults_leave_the_schedule_unchanged():
    """first_epochs=0 and warmup_epochs=0: the factor is the former formula's, on both clocks, joint included."""
    def former(cfg, milestones, step, it, total, later=1.0):
        t = cfg.train
        if t.lr_schedule == "global":
            epoch, after = it // t.iters_per_epoch + step * t.epochs, it // t.iters_per_epoch + step * t.epochs >= t.epochs
        else:
            epoch, after = it * t.epochs // total, step > 0
        return t.lr_decay ** sum(epoch >= m + t.milestone_lag for m in milestones) * (later if after else 1.0)

    assert (Config().recipe, Config().train.first_epochs, Config().train.warmup_epochs) == ("", 0, 0)
    for schedule in ("global", "per_step"):
        cfg = load_config(profile_name="paper", overrides={"train": {"lr_schedule": schedule}})
        for step in range(5):
            for it in range(0, 7500, 149):
                for total in (7500, 37500):
                    assert lr_factor(cfg, [25, 35], step, it, total, 0.3) == former(cfg, [25, 35], step, it, total, 0.3)
        assert [step_epochs(cfg, s) for s in range(5)] == [50] * 5 and step_epochs(cfg, 0, 5) == 250


def one_line(exc_info):
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_bad_recipe_name_is_one_line(tmp_path, capsys):
    for name in ("nope", "../recipes/lstkc", "reported"):
        with pytest.raises(LReIDError) as exc:
            load_config(profile_name="smoke", overrides={"recipe": name})
        assert "valid recipes: dkp, lstkc, patchkd" in one_line(exc)
    with pytest.raises(LReIDError):
        load_config(profile_name="smoke", overrides={"recipe": 3})
    assert main(["run", "--profile", "smoke", "--recipe", "nope", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lreid: error: unknown recipe 'nope'") and "\n" not in err
    assert not (tmp_path / "r").exists()
    assert main(["demo", "--profile", "smoke", "--recipe", "nope", "--out", str(tmp_path / "d")]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err and not (tmp_path / "d").exists()


HOSTILE = {
    "alias": "train: &a {lr: 1}\ndata: *a\n",
    "pytag": "train: !!python/object/apply:os.system ['true']\n",
    "unknown": "train:\n  lr: 0.1\n  not_a_key: 1\n",
    "section": "method:\n  name: lwf\n",
    "scalar": "just a string\n",
    "badtype": "train:\n  lr: fast\n",
    "badepochs": "train:\n  epochs: many\n",
    "badmilestones": "train:\n  epochs: 10\n  milestones: 3\n",
    "duplicate": "train:\n  lr: 0.1\n  lr: 0.2\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_recipe_file_is_refused(name, tmp_path, monkeypatch):
    (tmp_path / f"{name}.yaml").write_text(HOSTILE[name])
    monkeypatch.setattr(recipes, "RECIPE_DIR", tmp_path)
    with pytest.raises(LReIDError) as exc:
        load_config(profile_name="smoke", overrides={"recipe": name})
    text = one_line(exc)
    assert name in text or "recipe" in text


def test_run_records_recipe_and_resume_refuses_another(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--profile", "smoke", "--method", "finetune", "--recipe", "lstkc", "--out", str(out),
                 "--quiet", "--set", "train.first_epochs=2", "train.epochs=1", "train.iters_per_epoch=2"]) == 0
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["recipe"] == "lstkc" and stored["train"]["optimizer"] == "sgd"
    assert stored["train"]["first_epochs"] == 2          # --set wins over the recipe
    assert build_report([out]).groups[0].reported == []  # synthetic data: no paper rows
    capsys.readouterr()
    fresh = tmp_path / "fresh"                           # a run folder with its config, no checkpoint yet
    fresh.mkdir()
    save_config(load_config(profile_name="smoke", overrides={"recipe": "lstkc"}), fresh / "config.yaml")
    for flag in (["--recipe", "dkp"], ["--recipe", "patchkd"]):
        assert main(["run", "--resume", str(fresh), *flag, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "differs from the run's recipe lstkc" in err and "\n" not in err
    assert not (fresh / "metrics.json").exists()


def fake_real_run(path, method, synthetic):
    order, unseen = ORDERS["order1"], ["viper", "grid"]
    rows = [{d: {"mAP": 0.5, "R1": 0.6, "mINP": 0.1} for d in order[: t + 1] + unseen} for t in range(len(order))]
    RunResult(method, list(order), unseen, rows, list(order), {}, status="done", wall_s=1.0).save(path)
    cfg = load_config(profile_name="smoke", overrides={"method": {"name": method}, "data": {
        "order": list(order), "unseen": unseen, "synthetic": synthetic}})
    save_config(cfg, path / "config.yaml")
    return path


def test_report_shows_paper_rows_only_on_real_order1(tmp_path):
    real = build_report([fake_real_run(tmp_path / "real", "lwf", synthetic=False)])
    g = real.groups[0]
    assert [r.label for r in g.reported] == ["PatchKD (paper)", "LSTKC (paper)", "DKP (paper)"]
    assert g.reported[0].values == (43.69, 53.69, 49.09, 45.42)
    text = real.text()
    assert "reported (paper), not reproduced" in text
    assert text.index("| lwf |") < text.index("PatchKD (paper)")      # after the reproduced rows
    assert "| 50.00 | 60.00 |" in text                                  # the run's own Seen-Avg, untouched
    synth = build_report([fake_real_run(tmp_path / "synth", "lwf", synthetic=True)])
    assert synth.groups[0].reported == [] and "paper" not in synth.text()


def test_report_labels_a_recipe_row_by_its_name(tmp_path):
    """Runs of one method under the shared protocol and under a recipe: two rows, named by the recipe alone."""
    for name, recipe in (("shared", ""), ("lstkc", "lstkc")):
        run = tmp_path / name
        rows = [{d: {"mAP": 0.5, "R1": 0.6, "mINP": 0.1} for d in ["synth_a", "synth_b"][: t + 1] + ["synth_u1"]}
                for t in range(2)]
        RunResult("lwf", ["synth_a", "synth_b"], ["synth_u1"], rows, ["synth_a", "synth_b"], {}, status="done",
                  wall_s=1.0).save(run)
        cfg = load_config(profile_name="smoke", overrides={"recipe": recipe, "data": {
            "order": ["synth_a", "synth_b"], "unseen": ["synth_u1"]}})
        save_config(cfg, run / "config.yaml")
    labels = [r.label for r in build_report([tmp_path / "shared", tmp_path / "lstkc"]).groups[0].rows]
    assert sorted(labels) == ["lwf (recipe=lstkc)", "lwf (recipe=none)"]


def test_epochs_as_long_as_the_data():
    """train.iters_per_epoch=0 (LSTKC/DKP): images // (P x K) a step, refused on the global clock."""
    from lreid_core.data.benchmark import TrainSet
    from lreid_core.train import epoch_iters

    cfg = load_config(profile_name="paper", overrides={"recipe": "lstkc"})
    assert cfg.train.iters_per_epoch == 0 and cfg.train.p_ids * cfg.train.k_imgs == 128
    records = list(range(8600))                       # ~500 Market-1501 identities' images
    assert epoch_iters(cfg, TrainSet("market1501", records, [0] * 8600, 0, 500)) == 67
    assert epoch_iters(cfg, TrainSet("tiny", records[:100], [0] * 100, 0, 25)) == 1
    assert epoch_iters(profile("paper"), TrainSet("market1501", records, [0] * 8600, 0, 500)) == 150
    with pytest.raises(LReIDError) as exc:
        load_config(profile_name="paper", overrides={"recipe": "lstkc", "train": {"lr_schedule": "global"}})
    assert "per_step" in one_line(exc)
