"""AKA: the knowledge graph as the official code builds it, each loss term's gradient reaches only what it names,
a teacher equal to the student distils nothing, the graph's own optimiser group, checkpoints and a smoke run."""
import math

import pytest
import torch
import torch.nn.functional as F

from lreid_core.config import load_config
from lreid_core.losses import batch_hard_triplet, plasticity_loss, stability_loss
from lreid_core.methods import create_method
from lreid_core.methods.aka import AKA
from lreid_core.models.metagraph import MetaGraph
from lreid_core.train import Trainer

from method_steps import batch, method_at

pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py


def make(steps: float = 2, **method) -> AKA:
    """AKA in its first step (``steps=1``), right after it (``1.5``: teacher = student) or in its second step."""
    return method_at("aka", steps, second=move_student_and_graph, **method)


def move_student_and_graph(m: AKA) -> None:
    with torch.no_grad():                                   # move the student and its graph from the teacher
        for p in m.model.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
        m.graph.vertices.add_(0.1 * torch.randn_like(m.graph.vertices))


# ---- the graph ---------------------------------------------------------------------------------------------------
def test_graph_edges_as_the_code_builds_them():
    torch.manual_seed(0)
    g = MetaGraph(dim=5, vertices=4, sigma=2.0, dropout=0.0)
    a = torch.randn(3, 5)
    diff = a[:, None, :] - a[None, :, :]                              # the code's (n, n, C) differences
    ref = torch.sigmoid(g.edge(diff)[..., 0])
    ref = ref * (1 - torch.eye(3)) + torch.eye(3)
    assert torch.allclose(g.adjacency(a), ref, atol=1e-6)
    cross = g.cross(a)                                                # (B, N), softmax over the batch
    assert cross.shape == (3, 4) and torch.allclose(cross.sum(0), torch.ones(4))
    d2 = torch.cdist(a, g.vertices) ** 2
    assert torch.allclose(cross, F.softmax(-d2 / 4.0, dim=0), atol=1e-5)
    protos = g(a)
    assert protos.shape == (3, 5) and protos.abs().max() < 1


def test_graph_layer_is_row_normalised_propagation():
    torch.manual_seed(0)
    g = MetaGraph(dim=4, vertices=2, dropout=0.0)
    p = torch.randn(3, 4)
    s = torch.cat([torch.cat([g.adjacency(p), g.cross(p)], 1),
                   torch.cat([g.cross(p).t(), g.adjacency(g.vertices)], 1)], 0) + torch.eye(5)
    ref = torch.tanh(torch.linalg.inv(torch.diag(s.sum(1))) @ s @ (torch.cat([p, g.vertices]) @ g.weight) + g.bias)
    assert torch.allclose(g(p), ref[:3], atol=1e-5)


# ---- the terms ---------------------------------------------------------------------------------------------------
def test_plasticity_is_a_triplet_on_softplus_distances():
    torch.manual_seed(0)
    f, pids = torch.randn(8, 6), torch.arange(4).repeat_interleave(2)
    d = torch.cdist(f, f).clamp_min(1e-6)
    same = pids[:, None] == pids[None]
    s = torch.log1p(torch.exp(d))
    ref = torch.relu(s.masked_fill(~same, -1e9).amax(1) - s.masked_fill(same, 1e9).amin(1) + 0.3).mean()
    assert torch.allclose(plasticity_loss(f, pids, 0.3), ref, atol=1e-5)
    assert plasticity_loss(f, pids, 0.3) != batch_hard_triplet(f, pids, 0.3)


def test_stability_is_zero_for_the_same_direction_and_normalised():
    v = torch.rand(4, 3)
    assert stability_loss(3.0 * v, v) < 1e-10
    assert torch.allclose(stability_loss(-v, v), torch.tensor(4.0))


def test_first_step_has_no_teacher_terms():
    m = make(steps=1)
    terms = m.loss(*batch(offset=0))
    assert set(terms) == {"ce", "plasticity"} and not m.logged


def test_teacher_equal_to_the_student_distils_nothing():
    m = make(steps=1.5)                                              # right after after_step: f^o = f, V^o = V
    x, y = batch(offset=0)
    terms = m.loss(x, y)
    assert set(terms) == {"ce", "plasticity", "kd", "stability"}
    assert abs(terms["kd"].item()) < 1e-5 and terms["stability"].item() < 1e-10


def owners(m: AKA) -> dict[str, list[torch.nn.Parameter]]:
    groups = {"backbone": m.model.backbone.parameters(), "head": m.model.head.parameters(),
              "graph_vertices": [m.graph.vertices],
              "graph_rest": [p for n, p in m.graph.named_parameters() if n != "vertices"]}
    return {k: [p for p in ps if p.requires_grad] for k, ps in groups.items()}


@pytest.mark.parametrize("term, reached", [
    ("ce", {"backbone", "head"}),
    ("plasticity", {"backbone", "graph_vertices", "graph_rest"}),
    ("kd", {"backbone", "head"}),
    ("stability", {"graph_vertices"}),
])
def test_each_term_trains_only_what_it_names(term, reached):
    m = make()
    torch.manual_seed(3)
    terms = m.loss(*batch())
    groups = owners(m)
    params = [p for ps in groups.values() for p in ps]
    grads = torch.autograd.grad(terms[term], params, allow_unused=True)
    by_param = {id(p): g for p, g in zip(params, grads)}
    got = {name for name, ps in groups.items()
           if any(by_param[id(p)] is not None and by_param[id(p)].abs().sum() > 0 for p in ps)}
    assert got == reached
    assert all(not p.requires_grad for p in m.old.parameters())


def test_teacher_modes_and_code_kd_log():
    x, y = batch()
    train, frozen = make(), make(aka_teacher="frozen")
    a, b = train.teacher(x)["logits"], frozen.teacher(x)["logits"]
    assert not torch.allclose(a, b)                                  # batch statistics vs running statistics
    before = [buf.clone() for buf in train.old.buffers()]
    train.teacher(x)
    assert all(torch.equal(u, v) for u, v in zip(before, train.old.buffers()))
    train.loss(x, y)
    assert set(train.logged) == {"kd_ce"} and not train.logged["kd_ce"].requires_grad
    assert load_config(profile_name="smoke", overrides={"form": "text"}).method.aka_teacher == "frozen"


def test_graph_has_its_own_optimiser_group_and_decay():
    m = make()
    model_group, graph_group = m.optim_groups()
    assert {id(p) for p in graph_group["params"]} == {id(p) for p in m.graph.parameters()}
    assert not {id(p) for p in model_group["params"]} & {id(p) for p in graph_group["params"]}
    paper = load_config(profile_name="paper").method
    assert (paper.aka_milestones, paper.aka_decay, paper.aka_vertices, paper.aka_stability) == \
        ([50, 100, 150, 200], 0.5, 64, 5e-4)
    assert graph_group["decay"] == 0.5


def test_state_dict_round_trip_keeps_graph_and_old_vertices():
    m = make()
    x, _ = batch()
    state = m.state_dict()
    fresh = create_method("aka", m.cfg)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.graph.vertices, m.graph.vertices)
    assert torch.equal(fresh.graph.old_vertices, m.graph.old_vertices)
    assert not torch.equal(fresh.graph.vertices, fresh.graph.old_vertices)
    fresh.train(False), m.train(False)
    assert torch.equal(fresh.embed(x), m.embed(x))


def test_smoke_run_end_to_end(tmp_path):
    cfg = load_config(profile_name="smoke", overrides={"method": {"name": "aka"}})
    from lreid_core.data.benchmark import build_benchmark

    result = Trainer(cfg, "aka", build_benchmark(cfg), tmp_path / "run", progress=False, tensorboard=False).fit()
    assert result.status == "done" and len(result.steps) == 2
    assert all(math.isfinite(v) and 0 <= v <= 1 for row in result.steps for mt in row.values() for v in mt.values())
