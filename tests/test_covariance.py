"""Multi-head covariance (seed 2): head freezing, pair construction + Eqs. 1-2, N-task growth, both evaluation
modes, a smoke run through the Trainer, the SGD + CLR path and checkpoint round trip."""
import copy
import math

import pytest
import torch

from lreid_core.config import load_config
from lreid_core.data.benchmark import build_benchmark
from lreid_core.errors import LReIDError
from lreid_core.losses import covariance_loss
from lreid_core.methods import create_method, list_methods
from lreid_core.methods.covariance import (acting_alpha, agnostic_features, covariance_gradients, pk_pairs,
                                          seed_two_phase_config)
from lreid_core.train import Trainer, build_optimizer


@pytest.fixture(scope="module")
def smoke():
    cfg = load_config(profile_name="smoke")
    return cfg, build_benchmark(cfg)


def short(cfg, iters: int = 2):
    cfg = copy.deepcopy(cfg)
    cfg.train.epochs, cfg.train.iters_per_epoch, cfg.train.milestones = 1, iters, []
    return cfg


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_registered():
    assert "covariance" in list_methods()


def test_frozen_head_untouched_by_next_step(smoke):
    cfg, bench = smoke
    trainer = Trainer(short(cfg), "covariance", bench, progress=False, tensorboard=False)
    method = trainer.method
    trainer.train_step(0, bench.train[0])
    head0, trunk = snapshot(method.model.heads[0]), snapshot(method.model.trunk)
    trainer.train_step(1, bench.train[1])
    model = method.model
    assert model.num_tasks == 2
    assert not any(p.requires_grad for p in model.heads[0].parameters())
    assert all(p.grad is None for p in model.heads[0].parameters())
    assert all(p.requires_grad for p in model.heads[1].parameters())
    method.train(True)
    assert not model.heads[0].training and model.heads[1].training and model.trunk.training
    after = model.heads[0].state_dict()
    for k, v in head0.items():           # weights, BN running mean/var and num_batches_tracked
        assert torch.equal(v, after[k]), k
    assert any(not torch.equal(v, model.trunk.state_dict()[k]) for k, v in trunk.items()), "trunk did not train"
    ids = {id(p) for p in method.parameters()}
    assert not ids & {id(p) for p in model.heads[0].parameters()}


def test_pairs_from_pk_batch():
    pos, neg = pk_pairs(torch.tensor([7, 7, 7, 3, 3, 3]))      # P=2 ids x K=3 images
    assert pos.tolist() == [1, 2, 0, 4, 5, 3] and neg.tolist() == [3, 4, 5, 0, 1, 2]
    labels = torch.tensor([1, 2, 1, 3, 3, 3, 2])                # ungrouped, uneven
    pos, neg = pk_pairs(labels)
    assert torch.all(labels[pos] == labels) and torch.all(labels[neg] != labels)
    assert sorted(pos.tolist()) == list(range(7))
    with pytest.raises(LReIDError):
        pk_pairs(torch.tensor([4, 4, 4]))


def test_covariance_hand_case_through_pairs(smoke):
    cfg = copy.deepcopy(smoke[0])
    cfg.method.cov_lambda, cfg.method.cov_alpha, cfg.method.cov_beta = 1.0, 1.0, 0.0
    method = create_method("covariance", cfg)
    labels = torch.tensor([0, 0, 1, 1])           # pos = [1, 0, 3, 2], neg = [2, 3, 0, 1]
    delta = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [0.0, 0.0]])   # pipeline 2 - pipeline 1
    feats = torch.stack([torch.zeros(4, 2), delta])                            # (T=2, B=4, D=2)
    # s_b = sum_d delta_b = [1, 2, 4, 0]; A_b summed over d = s[pos_b] - s[neg_b] = [-2, 1, -1, 2]
    assert method.covariance_term(feats, labels).item() == pytest.approx(4 + 1 + 1 + 4)
    cfg.method.cov_lambda = 2.0
    assert method.covariance_term(feats, labels).item() == pytest.approx(4 * 10)
    cfg.method.cov_lambda, cfg.method.cov_beta = 1.0, 1.0     # sum_d A_b = s[pos]-s[neg] - D*beta
    assert method.covariance_term(feats, labels).item() == pytest.approx(16 + 1 + 9 + 0)
    cfg.method.cov_beta, cfg.method.cov_alpha = 0.0, 1e-9     # seed defaults: alpha^2 scaling
    assert method.covariance_term(feats, labels).item() == pytest.approx(10e-18, rel=1e-5)
    # one pipeline: the constant lambda^2 beta^2 D^2 B, no gradient
    cfg.method.cov_beta = 0.5
    one = method.covariance_term(feats[:1].requires_grad_(), labels)
    assert one.item() == pytest.approx(0.25 * 4 * 4) and not one.requires_grad


def test_loss_uses_all_pipelines_and_local_labels(smoke):
    cfg = copy.deepcopy(smoke[0])
    cfg.method.cov_alpha = 1e-3
    method = create_method("covariance", cfg)
    method.before_step(0, 5)
    method.before_step(1, 4)
    method.train(True)
    x = torch.randn(8, 3, cfg.data.height, cfg.data.width)
    labels = torch.tensor([5, 5, 6, 6, 7, 7, 8, 8])            # global labels of step 1 (offset 5)
    torch.manual_seed(0)
    terms = method.loss(x, labels)
    assert set(terms) == {"ce", "cov"} and all(torch.isfinite(v) for v in terms.values())
    feats = method.model(x)["feats"]
    pos, neg = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6]), torch.tensor([2, 3, 4, 5, 6, 7, 0, 1])
    expect = covariance_loss(feats[:, pos], feats[:, neg], cfg.method.cov_lambda, cfg.method.cov_alpha, 0.0)
    assert terms["cov"].item() == pytest.approx(expect.item(), rel=1e-4)
    terms["cov"].backward()
    trunk_grad = sum(float(p.grad.abs().sum()) for p in method.model.trunk.parameters() if p.grad is not None)
    assert trunk_grad > 0 and method.model.heads[1].fc.weight.grad is None


def test_triplet_term_and_acting_alpha(smoke):
    cfg = copy.deepcopy(smoke[0])
    cfg.method.cov_triplet = 1.0
    method = create_method("covariance", cfg)
    method.before_step(0, 5)
    method.before_step(1, 4)
    method.train(False)                                       # BN on running statistics: the probes agree
    x = torch.randn(8, 3, cfg.data.height, cfg.data.width)
    labels = torch.tensor([5, 5, 6, 6, 7, 7, 8, 8])
    assert set(method.loss(x, labels)) == {"ce", "cov", "triplet"}
    alpha = acting_alpha(method, x, labels)
    method.cfg.method.cov_alpha = alpha
    trunk = lambda term: covariance_gradients(method, x, labels, term)["groups"][0]["grad_norm"]   # noqa: E731
    assert 0.25 < trunk("cov") / trunk("ce") < 4            # comparable to CE (alpha rounded to one digit)


def test_three_tasks_three_heads(smoke):
    cfg = smoke[0]
    method = create_method("covariance", cfg)
    for step, n in enumerate((5, 4, 3)):
        method.before_step(step, n)
    model = method.model
    assert model.num_tasks == 3 and method.class_blocks() == [5, 4, 3] and method.label_offset == 9
    assert [any(p.requires_grad for p in h.parameters()) for h in model.heads] == [False, False, True]
    n = model.n
    head = model.heads[2]
    assert head.block1[0].in_channels == n and head.block1[0].out_channels == n // 2
    assert head.block2[0].in_channels == n // 2 and head.block2[0].out_channels == n
    out = model(torch.randn(6, 3, cfg.data.height, cfg.data.width))
    assert out["feats"].shape == (3, 6, n) and out["logits"].shape == (6, 3)
    method.before_step(1, 4)                                       # existing step: no-op
    assert model.num_tasks == 3
    with pytest.raises(LReIDError):
        method.before_step(5, 2)


def test_evaluation_modes(smoke):
    cfg = copy.deepcopy(smoke[0])
    method = create_method("covariance", cfg)
    method.before_step(0, 5)
    method.before_step(1, 4)
    method.train(False)
    x = torch.randn(5, 3, cfg.data.height, cfg.data.width)
    n = method.model.n
    agnostic = method.embed(x)
    assert agnostic.shape == (5, 2 * n)
    own0 = method.model.heads[0].features(method.model.trunk(x))
    aware = method.embed(x, task=0, variant="task_aware")
    assert aware.shape == (5, n) and torch.allclose(aware, own0)
    assert torch.allclose(agnostic[:, :n], own0)                # concat keeps head order
    assert not torch.allclose(method.embed(x, task=1, variant="task_aware"), own0)
    assert torch.allclose(method.embed(x, task=None, variant="task_aware"), agnostic)   # unseen -> agnostic
    cfg.method.cov_eval = "mean"
    mean = method.embed(x)
    assert mean.shape == (5, n) and not torch.allclose(mean, aware)
    assert torch.allclose(mean, agnostic_features(method.model.head_features(x), "mean"))
    with pytest.raises(LReIDError):
        method.embed(x, variant="nope")


def test_smoke_run_and_checkpoint_round_trip(smoke, tmp_path):
    cfg, bench = smoke
    run = tmp_path / "run"
    result = Trainer(cfg, "covariance", bench, run, progress=False, tensorboard=False).fit()
    assert result.status == "done" and len(result.steps) == len(bench.order)
    assert list(result.variants) == ["task_aware"] and len(result.variants["task_aware"]) == len(bench.order)
    rows = result.expanded()
    assert [r.method for r in rows] == ["covariance", "covariance[task_aware]"]
    for r in rows:
        s = r.summary()
        assert all(0 <= s[k] <= 1 for k in ("seen_mAP", "seen_R1", "unseen_mAP", "unseen_R1")), s
        assert math.isfinite(s["forgetting_mAP"])
    # step 1: one head, so task-aware and agnostic features coincide
    assert result.variants["task_aware"][0] == result.steps[0]
    ckpt = torch.load(run / "checkpoints" / f"step{len(bench.order)}.pt", weights_only=True)
    assert ckpt["state"]["classes"] == [t.num_classes for t in bench.train]
    fresh = create_method("covariance", cfg)
    fresh.load_state_dict(ckpt["state"])
    trained = Trainer(cfg, "covariance", bench, progress=False, tensorboard=False).method
    trained.load_state_dict(ckpt["state"])
    assert fresh.class_blocks() == trained.class_blocks() == ckpt["state"]["classes"]
    assert not any(p.requires_grad for p in fresh.model.heads[0].parameters())
    x = torch.randn(4, 3, cfg.data.height, cfg.data.width)
    fresh.train(False), trained.train(False)
    for task, variant in ((None, ""), (0, "task_aware"), (1, "task_aware")):
        assert torch.allclose(fresh.embed(x, task, variant), trained.embed(x, task, variant), atol=1e-5)  # channels_last


def test_seed_two_phase_sgd_clr_path(smoke):
    base, bench = smoke
    cfg = seed_two_phase_config(short(base, iters=2))
    assert cfg.train.optimizer == "sgd_clr" and (cfg.train.p_ids, cfg.train.k_imgs) == (8, 4)
    assert cfg.data.order == base.data.order[:2] and cfg.method.name == "covariance"
    assert base.train.optimizer == "adam"                         # input untouched
    trainer = Trainer(cfg, "covariance", bench, progress=False, tensorboard=False)
    trainer.method.before_step(0, bench.train[0].num_classes)
    opt, sched = build_optimizer(cfg, trainer.method.parameters(), trainer.device, 2)
    assert isinstance(opt, torch.optim.SGD) and isinstance(sched, torch.optim.lr_scheduler.CyclicLR)
    trainer.train_step(0, bench.train[0])
    trainer.train_step(1, bench.train[1])
    assert trainer.global_iter == 4 and trainer.method.model.num_tasks == 2
    with pytest.raises(LReIDError):
        seed_two_phase_config(base, "synth_a", "synth_a")
