"""The official-code recipe (DESIGN 4): every text-vs-code switch changes the quantity it names, the RKD relation
term vanishes for identical models, its scale matches CE's, the global learning-rate schedule, per-step BN necks,
the teacher's batch-statistics necks and the ``form: text`` preset."""
import copy

import pytest
import torch

from lreid_core.config import TEXT_FORM, load_config
from lreid_core.methods import create_method
from lreid_core.methods.patchkd import PatchKD
from lreid_core.models.heads import BNNeckHead, batch_statistics
from lreid_core.train import build_optimizer, lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py
CLASSES = 6


def make(profile: str = "smoke", **overrides) -> PatchKD:
    """PatchKD in its second step (teacher present), the student moved away from the teacher."""
    torch.manual_seed(0)
    m = create_method("patchkd", load_config(profile_name=profile, overrides=overrides or None))
    m.before_step(0, CLASSES)
    m.after_step(0)
    m.before_step(1, CLASSES)
    with torch.no_grad():
        for p in m.model.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.train(True)
    return m


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 16, generator=g), torch.arange(n // 2).repeat_interleave(2) + CLASSES


def terms_of(m: PatchKD) -> dict[str, float]:
    x, y = batch()
    torch.manual_seed(5)                                      # the same Gumbel noise for every variant
    return {k: v.item() for k, v in m.loss(x, y).items()}


# each switch, flipped from the official code's default to the text's form, and the terms it must change
SWITCHES = [
    ({"method": {"relation_distance": "raw"}}, {"prd"}),
    ({"method": {"relation_reduction": "set"}}, {"prd"}),
    ({"method": {"kd_tau2": False}}, {"kd", "pld"}),
    ({"method": {"conf_as_kd": False}}, {"conf"}),
    ({"method": {"kd_classes": "old"}}, {"kd", "pld"}),
    ({"method": {"teacher_bn": "running"}}, {"kd", "conf", "pld"}),
    ({"method": {"div_on_bn": False}}, {"div"}),
    ({"method": {"div_offdiag": False}}, {"div"}),
    ({"method": {"routing": "fig2"}}, set()),                # values equal; gradients differ (test_patchkd)
    ({"train": {"label_smoothing": 0.0}}, {"ce"}),
    ({"train": {"ce_classes": "seen"}}, {"ce"}),
]


@pytest.mark.parametrize("switch, changed", SWITCHES, ids=lambda v: str(v))
def test_each_switch_changes_what_it_names(switch, changed):
    base, flipped = terms_of(make()), terms_of(make(**switch))
    assert set(base) == set(flipped)
    for name in base:
        same = abs(base[name] - flipped[name]) <= 1e-6 * max(1.0, abs(base[name]))
        assert same != (name in changed), f"{switch}: {name} {base[name]:.6g} -> {flipped[name]:.6g}"


def test_relation_loss_zero_for_a_copy_of_the_teacher():
    m = make()
    teacher = copy.deepcopy(m.model).eval()
    m.train(False)
    x, _ = batch()
    terms, _ = m.patch_terms(m.model(x)["fmap"], teacher(x)["fmap"])
    assert terms["prd"].item() == pytest.approx(0.0, abs=1e-6)
    assert m.inspect(x, teacher=teacher)["loss_prd"].item() == pytest.approx(0.0, abs=1e-6)


def step_two_terms(distance: str) -> dict[str, float]:
    """Demo profile, iteration 0 of step 2 after 60 iterations of step 1 on images of 100 colour prototypes:
    the student equals the teacher except for its BN mode (train vs eval)."""
    torch.manual_seed(0)
    m = create_method("patchkd", load_config(profile_name="demo", overrides={"method": {"relation_distance": distance}}))
    classes = 100
    m.before_step(0, classes)
    m.label_space = 5 * classes
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(classes, 3, 1, 1, generator=g)

    def draw(offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(classes, (8,), generator=g).repeat_interleave(4)
        return protos[y] + 0.3 * torch.rand(len(y), 3, 64, 32, generator=g), y + offset

    opt, _ = build_optimizer(m.cfg, m.optim_groups(), torch.device("cpu"), 100)
    m.train(True)
    for _ in range(60):                                       # the BN running statistics settle
        loss = sum(m.loss(*draw(0)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.after_step(0)
    m.before_step(1, classes)
    m.train(True)
    return {k: v.item() for k, v in m.loss(*draw(classes)).items()}


def test_weighted_relation_term_is_of_the_order_of_ce_at_the_start_of_step_two():
    """gamma3 = 100 belongs to RKD-normalised distances: with them the weighted L_PRD is of the order of CE;
    raw distances (what made PatchKD stop learning new domains) are orders of magnitude larger."""
    rkd, raw = step_two_terms("rkd"), step_two_terms("raw")
    msg = f"weighted L_PRD {rkd['prd']:.3f} (raw distances: {raw['prd']:.1f}) vs CE {rkd['ce']:.3f}"
    assert 0 < rkd["prd"] <= 3 * rkd["ce"], msg
    assert raw["prd"] > 30 * rkd["prd"], msg


def test_global_schedule_trains_later_steps_at_a_hundredth():
    cfg = load_config(profile_name="smoke")                   # 2 epochs x 4 iterations, milestone 1, lag 1
    total = cfg.train.epochs * cfg.train.iters_per_epoch
    assert [lr_factor(cfg, [1], 0, it, total) for it in range(total)] == [1.0] * 8
    cfg.train.milestone_lag = 0
    assert [lr_factor(cfg, [1], 0, it, total) for it in range(total)] == [1.0] * 4 + [pytest.approx(0.1)] * 4
    paper = load_config(profile_name="paper")
    total = paper.train.epochs * paper.train.iters_per_epoch
    assert lr_factor(paper, paper.train.milestones, 0, 0, total) == 1.0
    assert lr_factor(paper, paper.train.milestones, 0, 26 * 150, total) == pytest.approx(0.1)   # epoch 26
    assert lr_factor(paper, paper.train.milestones, 0, 25 * 150, total) == 1.0                  # code's lag
    for step in (1, 2, 4):
        assert lr_factor(paper, paper.train.milestones, step, 0, total) == pytest.approx(0.01)
    sampler = paper.method.sampler_milestones                 # 75, 85 on the global epoch
    assert lr_factor(paper, sampler, 1, 0, total) == 1.0
    assert lr_factor(paper, sampler, 1, 30 * 150, total) == pytest.approx(0.1)                  # global 80
    assert lr_factor(paper, sampler, 2, 0, total) == pytest.approx(0.01)
    joint = 5 * total                                         # the joint step: the whole order's epochs at once
    assert lr_factor(paper, paper.train.milestones, 0, 26 * 150, joint) == pytest.approx(0.1)     # the same clock
    assert lr_factor(paper, paper.train.milestones, 0, 200 * 150, joint) == pytest.approx(0.01)
    paper.train.lr_schedule = "per_step"
    assert lr_factor(paper, paper.train.milestones, 2, 0, total) == 1.0
    assert lr_factor(paper, paper.train.milestones, 0, 26 * 150, joint) == 1.0   # per step: at the same fraction,
    assert lr_factor(paper, paper.train.milestones, 0, 26 * 5 * 150, joint) == pytest.approx(0.1)   # 5 x later


def test_optimizer_groups_give_the_sampler_its_own_schedule():
    m = make(profile="smoke", train={"lr": 1e-3}, method={"sampler_lr": 5e-4})
    opt, sched = build_optimizer(m.cfg, m.optim_groups(), torch.device("cpu"), 8, step=1)
    main, sampler = opt.param_groups
    assert {id(p) for p in sampler["params"]} == {id(p) for p in m.sampler.parameters()}
    assert len(main["params"]) + len(sampler["params"]) == len(m.parameters())
    assert sched.get_last_lr() == [pytest.approx(1e-3 * 0.1), pytest.approx(5e-4)]   # smoke milestone [1]: global epoch 2


def test_per_step_necks_and_retrieval_on_the_latest():
    head = BNNeckHead(4, per_step=True)
    head.grow(3)
    head.grow(2)
    assert len(head.necks) == 2 and head.neck is head.necks[1]
    with torch.no_grad():
        head.necks[0].weight.fill_(2.0)
    head.eval()
    feat = torch.randn(5, 4)
    bn, logits = head(feat)
    assert torch.allclose(bn, head.necks[1](feat)) and logits.shape == (5, 5)
    assert torch.allclose(logits[:, :3], head.classifier.blocks[0](head.necks[0](feat)))
    shared = BNNeckHead(4, per_step=False)
    shared.grow(3)
    shared.grow(2)
    assert len(shared.necks) == 1


def test_teacher_batch_statistics_leave_running_stats_alone():
    head = BNNeckHead(4)
    head.grow(3)
    head.eval()
    before = head.neck.running_mean.clone()
    feat = 5 + torch.randn(16, 4)
    with batch_statistics(head):
        bn, _ = head(feat)
    assert torch.allclose(bn.mean(0), torch.zeros(4), atol=1e-5)           # normalised with the batch's stats
    assert torch.equal(head.neck.running_mean, before) and not head.training
    assert head.neck.track_running_stats
    bn_eval, _ = head(feat)
    assert not torch.allclose(bn_eval.mean(0), torch.zeros(4), atol=1e-2)  # eval mode: running statistics


def test_text_form_sets_every_switch_and_explicit_keys_win():
    code = load_config(profile_name="paper")
    text = load_config(profile_name="paper", overrides={"form": "text", "method": {"kd_tau2": True}})
    for key, value in TEXT_FORM.items():
        section, name = key.split(".")
        got = getattr(getattr(text, section), name)
        if key == "method.kd_tau2":
            assert got is True
            continue
        assert got == value, key
        assert getattr(getattr(code, section), name) != value, f"{key}: the default must be the code's form"


def test_identity_sampling_and_merged_unseen_benchmark():
    from lreid_core.data.benchmark import MERGED_UNSEEN, TestSet, merge_testsets, sample_identities
    from lreid_core.data.datasets import Record, Split

    train = [Record(f"/x/{p}_{i}.jpg", p, i % 2, "d") for p in (5, 1, 9, 3, 7) for i in range(2)]
    split = Split("d", train, [], [])
    assert sample_identities(split, 3, 0, "first").records == [r for r in train if r.pid in (1, 3, 5)]
    chosen = {sample_identities(split, 3, seed, "random").records[0].pid for seed in range(20)}
    assert len(chosen) > 1                                    # the seed decides the subset
    a = TestSet("a", [Record("q", 0, 0, "a")], [Record("g", 0, 1, "a"), Record("h", 1, 1, "a")])
    b = TestSet("b", [Record("q2", 0, 0, "b")], [Record("g2", 0, 1, "b")])
    merged = merge_testsets([a, b])
    assert merged.domain == MERGED_UNSEEN
    assert [r.pid for r in merged.query] == [0, 1] and [r.pid for r in merged.gallery] == [0, 2, 1]   # (a,0) (b,0) (a,1)
    paper = load_config(profile_name="paper")
    assert paper.data.unseen_eval == "merged" and paper.data.id_sampling == "first"


# ---- the official code's stem, scorer, logged KD values and mixed precision (issue 23) ----------------------
@pytest.mark.filterwarnings("ignore:no ImageNet weights")
def test_stem_without_relu_gives_bn1_bias_no_gradient_and_text_form_has_the_relu():
    from lreid_core.models.backbone import build_backbone

    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 32)
    code = build_backbone("resnet50", stem_relu=False).train()
    assert isinstance(code.body[2], torch.nn.Identity)
    fmap = code(x)
    (fmap * torch.randn_like(fmap)).sum().backward()
    bias, weight = code.body[1].bias.grad, code.body[1].weight.grad
    # a per-channel shift passes the max-pool and layer1's first BNs remove it: only float noise is left
    assert bias.abs().max() < 1e-4 * weight.abs().max()
    torch.manual_seed(0)
    text = build_backbone("resnet50", stem_relu=True).train()
    assert isinstance(text.body[2], torch.nn.ReLU)
    fmap = text(x)
    (fmap * torch.randn_like(fmap)).sum().backward()
    assert text.body[1].bias.grad.abs().max() > 1e-2 * text.body[1].weight.grad.abs().max()   # a real signal
    assert load_config(profile_name="paper", overrides={"form": "text"}).model.stem_relu is True
    assert load_config(profile_name="paper").model.stem_relu is False


def test_scorer_first_layer_has_a_bias_that_only_the_running_mean_sees():
    from lreid_core.models.patch import PatchSampler

    torch.manual_seed(0)
    s = PatchSampler(8, k=3, hidden=6).train()
    assert s.scorer[0].bias is not None
    fmap = torch.randn(4, 8, 4, 2)
    s(fmap).sum().backward()
    assert s.scorer[0].bias.grad.abs().max() < 1e-5           # cancels in the BN's batch statistics
    s.scorer[1].reset_running_stats()
    with torch.no_grad():
        s.scorer[0].bias.fill_(1.0)
        s(fmap)
    assert torch.all(s.scorer[1].running_mean > 0.05)          # momentum 0.1 x (mean + bias 1)
    old = {k: v for k, v in s.state_dict().items() if k != "scorer.0.bias"}   # a state written without the bias
    fresh = PatchSampler(8, k=3, hidden=6)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.scorer[0].bias, torch.zeros(6))


def test_logged_code_values_are_kl_plus_teacher_entropy_and_not_trained():
    m = make()
    x, y = batch()
    torch.manual_seed(5)
    terms = m.loss(x, y)
    assert set(m.logged) == {"kd_ce", "pld_ce"}
    assert all(not v.requires_grad for v in m.logged.values())
    tau, g0 = m.cfg.method.tau, m.cfg.method.gamma0
    old = m.teacher(x)["logits"]
    p = torch.softmax(old / tau, -1)
    entropy = -(p * p.log()).sum(-1).mean()
    assert torch.allclose(m.logged["kd_ce"], terms["kd"].detach() + g0 * tau ** 2 * entropy, rtol=1e-4)
    assert m.logged["pld_ce"] > terms["pld"].detach()
    student = torch.randn(8, 2 * CLASSES, requires_grad=True)       # the CE's gradient is the KL's
    from lreid_core.losses import kd_cross_entropy, kd_loss
    kl = kd_loss(student, old, tau, True)
    ce = -(torch.nn.functional.pad(p, (0, CLASSES)) * torch.log_softmax(student / tau, -1)).sum(-1).mean() * tau ** 2
    assert torch.allclose(kd_cross_entropy(kl, old, tau, True), ce.detach(), rtol=1e-5)
    g_kl, = torch.autograd.grad(kl, student)
    g_ce, = torch.autograd.grad(ce, student)
    assert torch.allclose(g_kl, g_ce, atol=1e-7)


def test_amp_modes_and_old_bool_configs(tmp_path):
    from lreid_core.config import config_from_dict
    from lreid_core.results import config_differences

    assert load_config(profile_name="paper").train.amp == "fp16"
    assert load_config(profile_name="smoke", overrides={"train": {"amp": "bf16"}}).train.amp == "bf16"
    assert load_config(profile_name="smoke", overrides={"train": {"amp": False}}).train.amp == "off"
    path = tmp_path / "old.yaml"
    path.write_text("train:\n  amp: true\n")
    assert load_config(path, profile_name="smoke").train.amp == "fp16"
    with pytest.raises(Exception, match="train.amp"):
        load_config(profile_name="smoke", overrides={"train": {"amp": "fp8"}})
    stored = load_config(profile_name="paper").to_dict()
    stored["train"]["amp"] = True                              # a run folder written before the switch
    del stored["model"]["stem_relu"]
    cfg = config_from_dict(stored)
    assert cfg.train.amp == "fp16" and cfg.model.stem_relu is True   # resnet50 then had the stem ReLU
    assert not config_differences(stored, cfg.to_dict())


def test_checkpoint_carries_the_grad_scaler_state(tmp_path):
    from lreid_core.data.benchmark import build_benchmark
    from lreid_core.train import Trainer

    cfg = load_config(profile_name="smoke")
    t = Trainer(cfg, "lwf", build_benchmark(cfg), tmp_path, progress=False, tensorboard=False)
    assert not t.scaler.is_enabled()                           # CPU: no autocast, no scaling
    t.checkpoint({"step": 0, "iter": 0})
    assert "scaler" in torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)


def test_trainer_writes_logged_values_beside_the_terms_and_out_of_the_total(tmp_path):
    from tqdm import tqdm

    from lreid_core.data.benchmark import build_benchmark
    from lreid_core.train import LOGGED, Trainer

    cfg = load_config(profile_name="smoke")
    t = Trainer(cfg, "lwf", build_benchmark(cfg), None, progress=False, tensorboard=False)
    written = {}

    class Writer:
        def add_scalar(self, key, value, step):
            written[key] = value

    t.writer = Writer()
    running = {"ce": torch.tensor(4.0), "kd": torch.tensor(2.0), LOGGED + "kd_ce": torch.tensor(10.0)}
    t.log(0, 1, running, 2, 0.1, tqdm(disable=True))
    assert written["loss/kd_ce"] == 5.0 and written["loss/kd"] == 1.0 and written["loss/total"] == 3.0
