"""PatchKD: sampler masks and gradients, gradient routing between the sampler and the model, ablation
switches, inference invariance, checkpoints and one smoke run through the Trainer."""
import math

import pytest
import torch

from lreid_core.config import load_config
from lreid_core.data.benchmark import build_benchmark
from lreid_core.losses import confidence_loss, patch_logit_distill
from lreid_core.methods import create_method
from lreid_core.methods.patchkd import PatchKD
from lreid_core.models.patch import PatchSampler, cell_boxes, mask_cells, pool_patches, random_masks
from lreid_core.train import Trainer

CLASSES = 6


pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py


def make(**method) -> PatchKD:
    """A PatchKD method in its second domain step (teacher present), old and new models made to differ."""
    torch.manual_seed(0)
    cfg = load_config(profile_name="smoke", overrides={"method": method} if method else None)
    m = create_method("patchkd", cfg)
    m.before_step(0, CLASSES)
    m.after_step(0)
    m.before_step(1, CLASSES)
    with torch.no_grad():                                    # move the new backbone away from the teacher
        for p in m.model.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.train(True)
    return m


def batch(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 16, generator=g), torch.arange(n // 2).repeat_interleave(2) + CLASSES


def grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters() if p.grad is not None and p.grad.abs().sum() > 0]


# ---- sampler -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("gumbel", [True, False])
@pytest.mark.parametrize("branches", [3, 1])
def test_masks_one_hot(gumbel, branches):
    sampler = PatchSampler(16, k=3, hidden=8, branches=branches)
    scores = sampler(torch.randn(4, 16, 4, 2))
    assert scores.shape == (4, branches, 8)
    masks = sampler.sample(scores, gumbel=gumbel)
    assert masks.shape == (4, 3, 8)
    assert set(masks.unique().tolist()) <= {0.0, 1.0} and torch.all(masks.sum(-1) == 1)
    if branches == 1:                                         # single branch: K distinct cells per image
        assert torch.all(masks.sum(1) <= 1)
    soft = sampler.sample(scores, hard=False, gumbel=False)
    assert torch.allclose(soft.sum(-1), torch.ones(4, 3))
    if not gumbel and branches == 3:                          # argmax mode: the top-scoring cell per branch
        assert torch.equal(masks.argmax(-1), scores.argmax(-1))


def test_pool_patches_picks_the_cell_and_passes_mask_gradient():
    fmap = torch.randn(2, 5, 4, 3)
    masks = random_masks(2, 3, 12, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    patches = pool_patches(fmap, masks)                       # (B, K, C)
    rows, cols = mask_cells(masks, 3)
    for b in range(2):
        for k in range(3):
            assert torch.equal(patches[b, k], fmap[b, :, rows[b, k], cols[b, k]])
    patches.sum().backward()
    assert torch.allclose(masks.grad, fmap.flatten(2).sum(1)[:, None, :].expand(-1, 3, -1))
    boxes = cell_boxes(masks, (4, 3), (32, 24))               # cell = 8 x 8 pixels
    assert torch.equal(boxes[..., 0], cols * 8.0) and torch.equal(boxes[..., 1], rows * 8.0)
    assert torch.all(boxes[..., 2:] == 8)


def test_straight_through_gradient_reaches_scorer():
    m = make()
    x, y = batch()
    terms = m.loss(x, y)
    terms["conf"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.sampler.scorer[0].parameters())
    assert m.sampler.scorer[-1].weight.grad.abs().sum() > 0


# ---- gradient routing --------------------------------------------------------------------------------
# which modules each term trains: (sampler, backbone, phi_p), per routing (official code vs our Fig. 2 reading)
ROUTES = {
    "code": {"conf": (True, False, False), "div": (True, True, True), "pld": (False, True, True),
             "prd": (True, True, False)},
    "fig2": {"conf": (True, False, False), "div": (True, False, False), "pld": (False, True, True),
             "prd": (False, True, False)},
}


@pytest.mark.parametrize("routing", ["code", "fig2"])
@pytest.mark.parametrize("term", ["conf", "div", "pld", "prd"])
def test_gradient_routing_per_term(routing, term):
    m = make(routing=routing)
    x, y = batch()
    m.loss(x, y)[term].backward()
    sampler, backbone, patch_head = ROUTES[routing][term]
    assert bool(grads(m.sampler)) == sampler, f"{term} reaches the sampler: expected {sampler}"
    assert bool(grads(m.model.backbone)) == backbone, f"{term} reaches the backbone: expected {backbone}"
    assert bool(grads(m.extra["patch_head"])) == patch_head, f"{term} reaches phi_p: expected {patch_head}"
    assert not grads(m.model.head), f"{term} must not move phi"


def test_old_model_gets_no_gradient_and_one_pass_per_model():
    m = make()
    calls = {"new": 0, "old": 0}
    m.model.backbone.register_forward_hook(lambda *a: calls.__setitem__("new", calls["new"] + 1))
    m.old.backbone.register_forward_hook(lambda *a: calls.__setitem__("old", calls["old"] + 1))
    x, y = batch()
    terms = m.loss(x, y)
    assert set(terms) == {"ce", "triplet", "kd", "conf", "div", "pld", "prd"}
    sum(terms.values()).backward()
    assert calls == {"new": 1, "old": 1}
    assert all(not p.requires_grad and p.grad is None for p in m.old.parameters())
    assert grads(m.sampler) and grads(m.model.backbone)


def test_masks_shared_between_old_and_new():
    m = make()
    x, _ = batch()
    fmap, old_fmap = m.model(x)["fmap"], m.old(x)["fmap"]
    _, parts = m.patch_terms(fmap, old_fmap)
    rows, cols = mask_cells(parts["masks"], fmap.shape[3])
    b = torch.arange(len(x))[:, None]
    assert torch.equal(parts["patches"], fmap.detach().permute(0, 2, 3, 1)[b, rows, cols])
    assert torch.equal(parts["old_patches"], old_fmap.permute(0, 2, 3, 1)[b, rows, cols])


def test_first_step_is_the_plain_base_loss():
    cfg = load_config(profile_name="smoke")
    m = create_method("patchkd", cfg)
    m.before_step(0, CLASSES)
    x, y = batch()
    assert set(m.loss(x, y - CLASSES)) == {"ce", "triplet"}
    assert m.sampler is not None and m.extra["patch_head"].classifier.num_classes == CLASSES


# ---- ablations ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("switches, absent", [
    ({}, set()),
    ({"use_conf": False}, {"conf"}),
    ({"use_div": False}, {"div"}),
    ({"k": 1}, set()),
    ({"shared_classifier": True}, set()),
    ({"relation": "fc"}, set()),
    ({"random_patches": True}, {"conf", "div"}),
    ({"relation_distance": "raw"}, set()),
    ({"relation_reduction": "set"}, set()),
    ({"conf_as_kd": False}, set()),
    ({"div_on_bn": False}, set()),
    ({"div_offdiag": False}, set()),
    ({"kd_tau2": False}, set()),
    ({"kd_classes": "old"}, set()),
    ({"teacher_bn": "running"}, set()),
    ({"routing": "fig2"}, set()),
    ({"gamma3": 0.0, "gamma2": 0.0}, set()),
])
def test_every_switch_runs(switches, absent):
    m = make(**switches)
    x, y = batch()
    terms = m.loss(x, y)
    assert set(terms) == {"ce", "triplet", "kd", "conf", "div", "pld", "prd"} - absent
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    if switches.get("random_patches"):
        assert m.sampler is None
    if switches.get("shared_classifier"):
        assert "patch_head" not in m.extra and grads(m.model.head)
    if switches.get("k") == 1:
        assert m.sampler.sample(m.sampler(m.model(x)["fmap"])).shape[1] == 1


@pytest.mark.parametrize("conf_as_kd", [False, True])
def test_confidence_term_paper_and_official_forms(conf_as_kd):
    m = make(conf_as_kd=conf_as_kd)
    x, _ = batch()
    terms, parts = m.patch_terms(m.model(x)["fmap"], m.old(x)["fmap"])
    tau = m.cfg.method.tau
    logits = parts["old_patch_logits"]                        # phi^o(p^o), (B, K, old classes)
    expected = confidence_loss(logits / tau) * tau ** 2 if conf_as_kd else confidence_loss(logits)
    assert terms["conf"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["pld"].item() == pytest.approx(
        m.cfg.method.gamma2 * patch_logit_distill(
            m.patch_head(parts["patches"].flatten(0, 1))[1].view(*logits.shape[:2], -1), logits, tau, True).item(),
        rel=1e-4)


# ---- inference and checkpoints -----------------------------------------------------------------------
def test_embed_ignores_sampler_and_patch_head():
    m = make()
    x, _ = batch()
    m.train(False)
    before = m.embed(x)
    with torch.no_grad():
        for p in m.extra.parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(m.embed(x), before)
    plain = create_method("lwf", m.cfg)
    plain.before_step(0, CLASSES), plain.before_step(1, CLASSES)
    plain.model.load_state_dict(m.model.state_dict())
    plain.train(False)
    assert torch.equal(plain.embed(x), before)


def test_state_dict_round_trip_grows_patch_head():
    m = make()
    state = m.state_dict()
    assert state["patch_classes"] == [CLASSES, CLASSES]
    fresh = create_method("patchkd", m.cfg)
    fresh.load_state_dict(state)
    assert fresh.extra["patch_head"].classifier.num_classes == 2 * CLASSES
    for (k, a), b in zip(m.extra.state_dict().items(), fresh.extra.state_dict().values()):
        assert torch.equal(a, b), k
    x, _ = batch()
    m.train(False), fresh.train(False)
    assert torch.equal(fresh.embed(x), m.embed(x))
    assert torch.equal(fresh.inspect(x)["masks"], m.inspect(x)["masks"])


@pytest.fixture(scope="module")
def smoke():
    cfg = load_config(profile_name="smoke")
    return cfg, build_benchmark(cfg)


def test_smoke_run_end_to_end(smoke, tmp_path):
    cfg, bench = smoke
    run = tmp_path / "run"
    result = Trainer(cfg, "patchkd", bench, run, progress=False, tensorboard=False).fit()
    assert result.status == "done" and len(result.steps) == len(bench.order) == 2
    for row in result.steps:
        for metrics in row.values():
            assert all(math.isfinite(v) and 0 <= v <= 1 for v in metrics.values()), metrics
    ckpt = torch.load(run / "checkpoints" / "step2.pt", weights_only=True)
    assert ckpt["method"] == "patchkd"
    fresh = create_method("patchkd", cfg)
    fresh.load_state_dict(ckpt["state"])
    trained = create_method("patchkd", cfg)
    trained.load_state_dict(ckpt["state"])
    x = torch.randn(4, 3, cfg.data.height, cfg.data.width)
    fresh.train(False), trained.train(False)
    assert torch.equal(fresh.embed(x), trained.embed(x))
    assert fresh.old is not None and fresh.sampler is not None
    # the sampler has no teacher in step 1 (no gradient, still at its init) and trains in step 2
    step1 = torch.load(run / "checkpoints" / "step1.pt", weights_only=True)["state"]["extra"]
    key = "sampler.scorer.0.weight"
    assert not torch.equal(step1[key], ckpt["state"]["extra"][key])
