"""Tests for the ranking metrics in lreid_core.evaluate (CMC / mAP / mINP)."""

import numpy as np
import pytest
import torch

from lreid_core.bench import bench_rank_metrics, format_bench
from lreid_core.errors import LReIDError
from lreid_core.evaluate import (
    euclidean_distmat,
    rank_metrics,
    rank_metrics_loop,
)

TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py


def assert_same(a: dict, b: dict) -> None:
    assert a["num_valid_query"] == b["num_valid_query"]
    assert a["mAP"] == pytest.approx(b["mAP"], abs=TOL)
    assert a["mINP"] == pytest.approx(b["mINP"], abs=TOL)
    assert a["cmc"].shape == b["cmc"].shape
    np.testing.assert_allclose(a["cmc"], b["cmc"], rtol=0, atol=TOL)


# ---------------------------------------------------------------------------
# a hand-computed case
# ---------------------------------------------------------------------------
#
# gallery   idx:   0     1     2     3     4     5
#           pid:   1     2     1     3     1     2
#           cam:   0     1     1     0     2     1
#
# q0: pid 1, cam 0, distances [.1 .2 .3 .4 .5 .6]
#     idx 0 is pid 1 / cam 0 -> ignored.  Filtered ranking: 1 2* 3 4* 5
#     correct matches at ranks 2 and 4:
#     AP = (1/2 + 2/4) / 2 = 0.5, first match at rank 2, INP = 2/4 = 0.5
# q1: pid 2, cam 0, distances [.9 .1 .5 .5 .3 .5]  (ties at 0.5)
#     stable order: 1* (.1), 4 (.3), 2, 3, 5* (.5, .5, .5 in index order), 0 (.9)
#     correct matches at ranks 1 and 5:
#     AP = (1/1 + 2/5) / 2 = 0.7, first match at rank 1, INP = 2/5 = 0.4
# q2: pid 3, cam 0 -- its only pid-3 item (idx 3) is on cam 0 -> skipped
# q3: pid 7 -- not in the gallery -> skipped
#
# mAP = (0.5 + 0.7) / 2 = 0.6,  mINP = (0.5 + 0.4) / 2 = 0.45
# CMC: first matches at ranks 2 and 1 -> cmc = [0.5, 1, 1, ...]

HAND_G_PIDS = np.array([1, 2, 1, 3, 1, 2])
HAND_G_CAMS = np.array([0, 1, 1, 0, 2, 1])
HAND_Q_PIDS = np.array([1, 2, 3, 7])
HAND_Q_CAMS = np.array([0, 0, 0, 0])
HAND_DIST = np.array(
    [
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.9, 0.1, 0.5, 0.5, 0.3, 0.5],
        [0.3, 0.2, 0.1, 0.4, 0.5, 0.6],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize("fn", [rank_metrics, rank_metrics_loop])
def test_hand_computed(fn):
    r = fn(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=3)
    assert r["num_valid_query"] == 2
    assert r["mAP"] == pytest.approx(0.6, abs=1e-12)
    assert r["mINP"] == pytest.approx(0.45, abs=1e-12)
    np.testing.assert_allclose(r["cmc"], [0.5, 1.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("fn", [rank_metrics, rank_metrics_loop])
def test_max_rank_beyond_gallery_pads_with_last_value(fn):
    r = fn(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=10)
    assert r["cmc"].shape == (10,)
    np.testing.assert_allclose(r["cmc"], [0.5] + [1.0] * 9, atol=1e-12)


def test_stable_tie_break_uses_gallery_order():
    # all distances equal: the ranking is the gallery order (minus ignored items)
    d = np.zeros((1, 5), dtype=np.float32)
    g_pids = np.array([9, 4, 9, 4, 4])
    g_cams = np.array([1, 1, 1, 0, 1])
    for fn in (rank_metrics, rank_metrics_loop):
        r = fn(d, np.array([4]), g_pids, np.array([0]), g_cams, max_rank=5)
        # idx 3 is same cam -> ignored; ranking 0, 1*, 2, 4* -> ranks 2 and 4
        assert r["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
        assert r["mINP"] == pytest.approx(2 / 4)
        np.testing.assert_allclose(r["cmc"], [0, 1, 1, 1, 1])


# ---------------------------------------------------------------------------
# vectorised vs. per-query loop on random cases
# ---------------------------------------------------------------------------


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    nq = int(rng.integers(1, 60))
    ng = int(rng.integers(1, 150))
    num_ids = int(rng.integers(1, 12))  # few ids -> duplicate ids in the gallery
    num_cams = int(rng.integers(1, 4))  # 1 camera -> every query is skipped
    # -1 and 0 act as distractor / junk ids
    q_pids = rng.integers(-1, num_ids, nq)
    g_pids = rng.integers(-1, num_ids, ng)
    q_cams = rng.integers(0, num_cams, nq)
    g_cams = rng.integers(0, num_cams, ng)
    kind = seed % 5
    if kind == 0:
        dist = rng.random((nq, ng), dtype=np.float32)
    elif kind == 1:  # integer-valued: many ties
        dist = rng.integers(0, 4, (nq, ng)).astype(np.float32)
    elif kind == 2:  # integer dtype, even more ties
        dist = rng.integers(0, 2, (nq, ng))
    elif kind == 3:  # float64, negative values, an offset
        dist = rng.standard_normal((nq, ng)) * 10 + 100
    else:  # float32 with +-0.0 and infinities
        dist = rng.standard_normal((nq, ng)).astype(np.float32)
        dist[rng.random((nq, ng)) < 0.2] = 0.0
        dist[rng.random((nq, ng)) < 0.2] = -0.0
        dist[rng.random((nq, ng)) < 0.1] = np.inf
    max_rank = int(rng.integers(1, 2 * ng + 2))  # often larger than the gallery
    return dist, q_pids, g_pids, q_cams, g_cams, max_rank


@pytest.mark.parametrize("seed", range(50))
def test_vectorised_matches_loop(seed):
    dist, qp, gp, qc, gc, max_rank = random_case(seed)
    try:
        ref = rank_metrics_loop(dist, qp, gp, qc, gc, max_rank)
    except LReIDError:
        with pytest.raises(LReIDError):
            rank_metrics(dist, qp, gp, qc, gc, max_rank)
        return
    got = rank_metrics(dist, qp, gp, qc, gc, max_rank)
    assert got["cmc"].shape == (max_rank,)
    assert_same(got, ref)


@pytest.mark.parametrize("seed", range(3))
def test_vectorised_matches_loop_several_chunks(seed):
    # more queries than one chunk (256 rows), enough gallery items for many bins
    rng = np.random.default_rng(100 + seed)
    nq, ng = 300, 800
    qp = rng.integers(0, 150, nq)
    gp = rng.integers(0, 150, ng)
    qc = rng.integers(0, 6, nq)
    gc = rng.integers(0, 6, ng)
    dist = rng.random((nq, ng), dtype=np.float32)
    if seed == 1:
        dist = np.round(dist * 50).astype(np.float32)  # ties across bins
    if seed == 2:
        dist[:, ::7] = dist[:, :1]  # many exact duplicates of one value
    ref = rank_metrics_loop(dist, qp, gp, qc, gc)
    assert_same(rank_metrics(dist, qp, gp, qc, gc), ref)


def test_queries_with_only_same_camera_matches_are_skipped():
    g_pids = np.array([1, 1, 2, 3])
    g_cams = np.array([0, 0, 1, 0])
    q_pids = np.array([1, 2])  # q0's matches are all on its own camera
    q_cams = np.array([0, 0])
    d = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    for fn in (rank_metrics, rank_metrics_loop):
        r = fn(d, q_pids, g_pids, q_cams, g_cams, max_rank=4)
        assert r["num_valid_query"] == 1
        # q1: ranking 3, 2*, ... -> rank 2
        assert r["mAP"] == pytest.approx(0.5)
        np.testing.assert_allclose(r["cmc"], [0, 1, 1, 1])


# ---------------------------------------------------------------------------
# input types
# ---------------------------------------------------------------------------


def test_numpy_and_torch_inputs_agree():
    dist, qp, gp, qc, gc, _ = random_case(5)
    a = rank_metrics(dist, qp, gp, qc, gc, 20)
    b = rank_metrics(torch.from_numpy(dist), torch.from_numpy(qp), torch.from_numpy(gp),
                     torch.from_numpy(qc), torch.from_numpy(gc), 20)
    c = rank_metrics_loop(torch.from_numpy(dist), torch.from_numpy(qp), torch.from_numpy(gp),
                          torch.from_numpy(qc), torch.from_numpy(gc), 20)
    assert isinstance(b["mAP"], float) and isinstance(b["mINP"], float)
    assert isinstance(b["cmc"], np.ndarray) and b["cmc"].shape == (20,)
    assert_same(a, b)
    assert_same(a, c)
    # plain lists work too
    d = rank_metrics(dist.tolist(), qp.tolist(), gp.tolist(), qc.tolist(), gc.tolist(), 20)
    assert_same(a, d)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_matches_cpu():
    dist, qp, gp, qc, gc, _ = random_case(10)
    cpu = rank_metrics(dist, qp, gp, qc, gc, 20)
    gpu = rank_metrics(*(torch.from_numpy(a).cuda() for a in (dist, qp, gp, qc, gc)), 20)
    assert_same(cpu, gpu)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [rank_metrics, rank_metrics_loop])
def test_no_valid_query_raises(fn):
    d = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    with pytest.raises(LReIDError, match="no query"):
        # every gallery item shares pid and camera with the query, or has another pid
        fn(d, np.array([1, 2, 5]), np.array([1, 1, 2, 3]), np.array([0, 0, 0]), np.array([0, 0, 0, 0]))


@pytest.mark.parametrize("fn", [rank_metrics, rank_metrics_loop])
def test_bad_inputs_raise(fn):
    d = np.zeros((2, 3), dtype=np.float32)
    ids = np.array([1, 2]), np.array([1, 2, 1]), np.array([0, 0]), np.array([1, 1, 1])
    with pytest.raises(LReIDError, match="g_pids"):
        fn(d, ids[0], ids[1][:2], ids[2], ids[3])
    with pytest.raises(LReIDError, match="2-D"):
        fn(d[0], *ids)
    with pytest.raises(LReIDError, match="max_rank"):
        fn(d, *ids, max_rank=0)
    d_nan = d.copy()
    d_nan[1, 2] = np.nan
    with pytest.raises(LReIDError, match="NaN"):
        fn(d_nan, *ids)


# ---------------------------------------------------------------------------
# distances and benchmark
# ---------------------------------------------------------------------------


def test_euclidean_distmat():
    rng = np.random.default_rng(0)
    qf = rng.standard_normal((7, 16)).astype(np.float32)
    gf = rng.standard_normal((9, 16)).astype(np.float32)
    gf[0] = qf[0]
    d = euclidean_distmat(qf, gf)
    assert d.dtype == torch.float32 and d.shape == (7, 9)
    ref = torch.cdist(torch.from_numpy(qf).double(), torch.from_numpy(gf).double())
    np.testing.assert_allclose(d.double().numpy(), ref.numpy(), atol=1e-4, rtol=1e-5)
    assert float(d[0, 0]) < 1e-2 and bool((d >= 0).all())
    with pytest.raises(LReIDError):
        euclidean_distmat(qf, gf[:, :8])


def test_bench_small():
    r = bench_rank_metrics(num_query=120, num_gallery=400, num_ids=40, num_cams=3, loop_queries=50, threads=1)
    assert r["num_query"] == 120 and r["num_gallery"] == 400
    assert r["loop_extrapolated"] is True and r["loop_queries"] == 50
    assert r["vectorised_s"] > 0 and r["loop_s"] > 0 and r["speedup"] > 0
    assert r["max_abs_diff"] <= 1e-6 and r["torch_threads"] == 1
    line = format_bench(r).splitlines()[0]
    assert line.startswith("rank_metrics: 120 x 400 in ") and "(vectorised) vs" in line
    assert line.endswith("x") and "(per-query loop) ->" in line
