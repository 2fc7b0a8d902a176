"""Evaluation: ranking metrics (CMC, mAP, mINP) and distance matrices.

Section 1 (this part) is self-contained: it only needs numpy, torch and
:class:`lreid_core.errors.LReIDError`.

Public functions of section 1
-----------------------------
``rank_metrics``        vectorised CMC / mAP / mINP (torch, chunked over queries)
``rank_metrics_loop``   per-query numpy reference implementation (slow, obvious)
``euclidean_distmat``   plain Euclidean distance matrix (float32 torch tensor)

Their speed benchmark (``bench_rank_metrics``, ``format_bench``: ``lreid bench eval``) is in
:mod:`lreid_core.bench`.

Protocol (Market-1501 convention, shared by both implementations)
-----------------------------------------------------------------
* Each query's gallery is ranked by ascending distance with a *stable* sort:
  equal distances keep gallery-index order.
* Gallery items with the same pid AND the same camid as the query are removed
  from that query's ranked list before anything is counted.
* A query with no remaining same-pid gallery item is skipped (not counted).
  If every query is skipped, ``LReIDError`` is raised.
* ``cmc[k]`` is the fraction of counted queries whose first correct match is at
  (1-based) rank ``<= k + 1`` in the filtered list.  The array always has
  ``max_rank`` entries; entries past the end of the gallery repeat the last
  value (which is 1.0, since every counted query has a match somewhere).
* AP is non-interpolated: the mean over correct matches of precision at the
  match's position.  ``mAP`` is the mean AP over counted queries.
* INP = (number of correct matches) / (rank of the last correct match);
  ``mINP`` is its mean over counted queries.
* Distances may be any real dtype; NaN distances raise ``LReIDError``.
  pids and camids are compared as integers (pid -1 / 0 distractors are just
  ordinary identities that never match a real query).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lreid_core.errors import LReIDError

__all__ = [
    "rank_metrics",
    "rank_metrics_loop",
    "euclidean_distmat",
]

# Query rows processed together by ``rank_metrics`` (also capped so that
# rows * bins <= 2**21, see ``_bin_values``).  256 x 15913 needs two ~16 MB
# buffers (float32, int32), a 4 MB mask and ~5 MB of histograms.
_QUERY_CHUNK = 256


# ---------------------------------------------------------------------------
# input checking helpers
# ---------------------------------------------------------------------------


def _as_tensor(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise LReIDError(f"{name} cannot be converted to a tensor: {exc}") from None
    if device is not None:
        t = t.to(device)
    return t


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_shapes(dist_shape, q_shape, g_shape, qc_shape, gc_shape, max_rank) -> None:
    if len(dist_shape) != 2:
        raise LReIDError(f"distmat must be 2-D (num_query x num_gallery), got shape {tuple(dist_shape)}")
    nq, ng = dist_shape
    for name, shape, n in (
        ("q_pids", q_shape, nq),
        ("q_camids", qc_shape, nq),
        ("g_pids", g_shape, ng),
        ("g_camids", gc_shape, ng),
    ):
        if tuple(shape) != (n,):
            raise LReIDError(f"{name} must have shape ({n},) to match distmat {tuple(dist_shape)}, got {tuple(shape)}")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise LReIDError(f"max_rank must be a positive integer, got {max_rank!r}")


def _no_valid_query() -> LReIDError:
    return LReIDError("no query has a valid gallery match (every match shares the query's camera, or there are none)")


# ---------------------------------------------------------------------------
# vectorised implementation
# ---------------------------------------------------------------------------
#
# How ``rank_metrics`` avoids sorting every row
# ---------------------------------------------
# Only the *correct matches* ("positives", same pid / other camera) need a
# rank; a query has ~20 of them among ~16k gallery items.  The rank of a
# positive p in the filtered, stably sorted list is
#
#     1 + #{kept items j : (d_j, j) < (d_p, p)}
#
# Each chunk of query rows does:
#   1. bin every distance with a per-row map that is non-decreasing in the
#      distance (``_bin_values``): d_j < d_p  =>  bin_j <= bin_p;
#   2. histogram the kept items per (row, bin); a prefix sum gives, for each
#      bin, the number of kept items in all lower bins;
#   3. pull out the few items that share a bin with some positive and sort
#      only those by (bin, distance, gallery index) -- exactly the stable order;
#      a positive's offset inside its bin is its position in that run.
# So the rank of p = (kept items in lower bins) + (offset inside its bin) + 1.
# The ignored same-camera items are moved to a sentinel bin that is never
# counted.  Every full-matrix step is a flat element-wise pass, a histogram,
# a table lookup or a ``nonzero``; only the small "shares a bin" set is sorted.

_MAX_BINS = 4096
_EXACT_LIMIT = 2**21  # rows_per_chunk * bins must stay <= this (float32 exactness)


def _num_bins(num_gallery: int) -> int:
    """Bins per row: about four gallery items per bin, between 4 and 4096."""
    return max(4, min(_MAX_BINS, num_gallery // 4))


class _SameIdPairs:
    """All (query, gallery) pairs with equal pids, split into correct matches
    (different camera) and ignored items (same camera).

    Built once per ``rank_metrics`` call from a CSR index of the gallery pids,
    so finding them costs O(num_query + num_pairs) rather than a comparison of
    every query against every gallery pid.  Pairs are ordered by query row,
    then by gallery index.  ``pos_flat`` / ``ign_flat`` hold ``row * G + col``.
    """

    def __init__(self, qp: torch.Tensor, qc: torch.Tensor, gp: torch.Tensor, gc: torch.Tensor) -> None:
        dev = qp.device
        nq, G = qp.numel(), gp.numel()
        order = torch.sort(gp, stable=True).indices  # gallery index ascending within a pid
        uniq, counts = torch.unique_consecutive(gp[order], return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        if uniq.numel() == 0:  # empty gallery
            cnt = torch.zeros(nq, dtype=torch.int64, device=dev)
            idx = cnt
        else:
            idx = torch.searchsorted(uniq, qp).clamp_(max=uniq.numel() - 1)
            cnt = torch.where(uniq[idx] == qp, counts[idx], torch.zeros_like(idx))
        rows = torch.repeat_interleave(torch.arange(nq, device=dev), cnt)
        within = torch.arange(rows.numel(), device=dev) - (torch.cumsum(cnt, 0) - cnt)[rows]
        cols = order[starts[idx][rows] + within] if rows.numel() else rows
        is_pos = gc[cols] != qc[rows]
        flat = rows * G + cols
        self.pos_flat = flat[is_pos]
        self.ign_flat = flat[~is_pos]
        self.num_pos = torch.bincount(rows[is_pos], minlength=nq)  # (nq,)
        num_ign = torch.bincount(rows[~is_pos], minlength=nq)
        zero = torch.zeros(1, dtype=torch.int64, device=dev)
        # prefix counts, so that chunk [s, e) owns pos_flat[pos_cum[s]:pos_cum[e]]
        self.pos_cum = torch.cat([zero, torch.cumsum(self.num_pos, 0)])
        self.ign_cum = torch.cat([zero, torch.cumsum(num_ign, 0)])


def _bin_params(lo: torch.Tensor, hi: torch.Tensor, num_bins: int):
    """Per-row ``(scale, shift, fast)`` for ``bin = trunc(x * scale + shift)``
    relative to the row's base; ``fast`` marks rows where that two-pass form is
    provably exact enough (see ``_bin_values``)."""
    span = hi - lo  # finite only if lo and hi are
    scale = (num_bins - 2) / span
    scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))  # span 0 / tiny: one bin
    offset = lo * scale
    fast = torch.isfinite(span) & (offset.abs() < 2**20)
    shift = 1.0 - torch.where(fast, offset, torch.zeros_like(offset))
    return scale, shift, fast


def _bin_values(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    fast: bool,
    num_bins: int,
    tbuf: torch.Tensor,
    ibuf: torch.Tensor,
) -> None:
    """Writes into ``ibuf`` (int32, shape of ``x``) the flat bin id
    ``row * num_bins + bin`` of every value, ``bin`` in ``[0, num_bins)``.

    Correctness only needs monotonicity inside a row (``x[r, i] < x[r, j]``
    implies ``bin[r, i] <= bin[r, j]``).  Each step is a single correctly
    rounded element-wise op that is non-decreasing in ``x`` (clamp, subtract,
    multiply by a non-negative number, add, truncate) -- no fused multiply-add,
    whose rounding could differ between vector and scalar code paths -- so that
    holds for any real input, including infinities.

    Fast path (``fast``): ``x * scale + (rowbase + 1 - lo * scale)``.  The exact
    value lies in ``[rowbase + 1, rowbase + num_bins - 1]``; every magnitude is
    below ``2**22`` (``|lo * scale| < 2**20`` and ``rows * num_bins <= 2**21``), so
    each of the five roundings (lo * scale, 1 - ., rowbase + ., x * scale, the
    final add) errs by at most ``2**-3``, 0.625 in all, and truncation stays
    inside ``[rowbase, rowbase + num_bins)``.
    """
    B = x.shape[0]
    dev = x.device
    rowbase = torch.arange(B, device=dev, dtype=torch.float32).mul_(num_bins).unsqueeze(1)
    if fast:
        torch.mul(x, scale, out=tbuf)
        tbuf.add_(rowbase + shift)
    else:
        # General path: clamp to the finite range of each row (infinities go to
        # the end bins), subtract the minimum, then scale: (x - lo) is in
        # [0, span] and (x - lo) * (num_bins - 2) / span stays below num_bins - 1.
        fin = torch.isfinite(x)
        inf = torch.tensor(float("inf"), device=dev)
        lo = torch.where(fin, x, inf).amin(dim=1, keepdim=True)
        hi = torch.where(fin, x, -inf).amax(dim=1, keepdim=True)
        none = lo > hi  # no finite value in the row
        lo = torch.where(none, torch.zeros_like(lo), lo) * 0.5
        hi = torch.where(none, torch.zeros_like(hi), hi) * 0.5
        # halving keeps hi - lo finite even for +-3e38
        torch.mul(x, 0.5, out=tbuf)
        tbuf.clamp_(lo, hi).sub_(lo)
        s = (num_bins - 2) / (hi - lo)
        s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
        tbuf.mul_(s).add_(rowbase)
    ibuf.copy_(tbuf)


def _take(src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``src[idx]`` for 1-D tensors (index_select is much faster than advanced
    indexing on CPU)."""
    return torch.index_select(src, 0, idx)


def _flatnonzero(mask: torch.Tensor) -> torch.Tensor:
    """Ascending indices of the True entries of a sparse 1-D bool tensor whose
    length is a multiple of 8: scan it as int64 words first (8x fewer
    elements), then look inside the non-zero words only."""
    words = mask.view(torch.int64).nonzero().squeeze(1)
    cand = (words.unsqueeze(1) * 8 + torch.arange(8, device=mask.device)).view(-1)
    return cand[_take(mask, cand)]


def _chunk_positive_ranks(
    d: torch.Tensor,
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    fast: bool,
    pos_flat: torch.Tensor,
    ign_flat: torch.Tensor,
    num_bins: int,
    tbuf: torch.Tensor,
    ibuf: torch.Tensor,
    mbuf: torch.Tensor,
    hbuf: torch.Tensor,
    ubuf: torch.Tensor,
    kbuf: torch.Tensor,
) -> torch.Tensor:
    """1-based ranks of this chunk's correct matches, grouped by row (in row
    order) and, within a row, in ranked order.

    ``d`` is the chunk in its own dtype (used for exact comparisons), ``x`` the
    same values as float32 (used for binning); ``pos_flat`` / ``ign_flat`` are
    the ascending chunk-local ``row * G + col`` of the correct matches /
    ignored items.  Buffers (reused across chunks, since fresh large
    allocations cost page faults): ``tbuf`` / ``ibuf`` float32 / int32 shaped
    like ``d``; ``mbuf`` bool of ``d.numel()`` rounded up to a multiple of 8,
    tail False; ``hbuf`` / ``ubuf`` int32 and ``kbuf`` bool of at least
    ``rows * num_bins + 1`` entries.
    """
    B, G = d.shape
    K = num_bins
    n = B * G
    dev = d.device
    sentinel = B * K
    _bin_values(x, scale, shift, fast, K, tbuf, ibuf)
    bins = ibuf.view(-1)
    if ign_flat.numel():
        bins.index_fill_(0, ign_flat, sentinel)  # ignored items: never counted or pulled out
    pos_bins = _take(bins, pos_flat).long()

    # kept items per flat bin, and the running total over flat bins
    hist, upto, marked = hbuf[: sentinel + 1], ubuf[: sentinel + 1], kbuf[: sentinel + 1]
    hist.zero_()
    hist.index_add_(0, bins, torch.ones(1, dtype=torch.int32, device=dev).expand(n))
    torch.cumsum(hist, 0, dtype=torch.int32, out=upto)

    # items that share a bin with a correct match of their row
    marked.zero_()
    marked.index_fill_(0, pos_bins, True)
    torch.index_select(marked, 0, bins, out=mbuf[:n])
    hit = _flatnonzero(mbuf)  # ascending flat index
    hit_bin = _take(bins, hit).long()
    hit_val = _take(d.reshape(-1), hit)
    # is this pulled-out item a correct match?  (both lists are ascending)
    where = torch.searchsorted(pos_flat, hit).clamp_(max=pos_flat.numel() - 1)
    hit_pos = _take(pos_flat, where) == hit

    # Order by (bin, distance, gallery index) -- the stable order inside a bin.
    # Items arrive in gallery-index order within a row, so a stable sort on
    # (bin, distance) does it.
    if hit_val.dtype == torch.float32:
        # one sort on a packed int64 key: bin (< 2**31) above the distance's
        # order-preserving 32-bit pattern (+ 0.0 turns -0.0 into +0.0)
        bits = (hit_val + 0.0).view(torch.int32).to(torch.int64)
        bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + 2**31  # in [0, 2**32)
        o = torch.sort((hit_bin << 32) | bits, stable=True).indices
    else:
        o = torch.sort(hit_val, stable=True).indices
        o = _take(o, torch.sort(_take(hit_bin, o), stable=True).indices)
    hit_bin, hit_pos = _take(hit_bin, o), _take(hit_pos, o)
    offset_in_bin = torch.arange(hit_bin.numel(), device=dev) - torch.searchsorted(hit_bin, hit_bin)
    # rank = (kept items of this row in lower bins) + (offset in the bin) + 1;
    # the first term is a difference of the running total ``upto``
    row_start = torch.div(hit_bin, K, rounding_mode="floor") * K
    below = (_take(upto, hit_bin) - _take(hist, hit_bin)) - (_take(upto, row_start) - _take(hist, row_start))
    rank = below + offset_in_bin + 1
    return rank[hit_pos]


def _tail_false(mbuf: torch.Tensor, n: int) -> torch.Tensor:
    """``mbuf`` cut to ``n`` rounded up to a multiple of 8, with ``[n:]`` False."""
    out = mbuf[: -(-n // 8) * 8]
    out[n:] = False
    return out


def rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50) -> dict:
    """CMC, mAP and mINP for a query x gallery distance matrix (vectorised).

    Accepts numpy arrays or torch tensors (any device); the work runs with torch
    on ``distmat``'s device in chunks of query rows, with no per-query Python
    loop and no full sort of the rows (see the comment above ``_num_bins``).
    Protocol: see the module docstring; results equal ``rank_metrics_loop``.

    Returns ``{"mAP": float, "cmc": np.ndarray (max_rank,) float64,
    "mINP": float, "num_valid_query": int}``.  If ``max_rank`` exceeds the
    gallery size, ``cmc`` is still ``max_rank`` long and its tail repeats the
    last value.  Raises ``LReIDError`` for bad shapes or dtypes, NaN distances,
    or when no query has a valid match.
    """
    dist = _as_tensor(distmat, "distmat")
    dev = dist.device
    qp = _as_tensor(q_pids, "q_pids", dev)
    gp = _as_tensor(g_pids, "g_pids", dev)
    qc = _as_tensor(q_camids, "q_camids", dev)
    gc = _as_tensor(g_camids, "g_camids", dev)
    _check_shapes(dist.shape, qp.shape, gp.shape, qc.shape, gc.shape, max_rank)
    max_rank = int(max_rank)
    if dist.dtype == torch.bool or dist.is_complex():
        raise LReIDError(f"distmat must hold real numbers, got dtype {dist.dtype}")
    dist = dist.contiguous()
    nq, G = dist.shape
    qp, gp, qc, gc = (t.to(torch.int64) for t in (qp, gp, qc, gc))

    if dist.numel() == 0:
        raise _no_valid_query()

    # per-row range: one pass each over the whole matrix (NaN propagates)
    hi = torch.amax(dist, dim=1, keepdim=True)
    if dist.is_floating_point() and bool(torch.isnan(hi).any()):
        raise LReIDError("distmat contains NaN distances")
    lo = torch.amin(dist, dim=1, keepdim=True)

    pairs = _SameIdPairs(qp, qc, gp, gc)
    valid = pairs.num_pos > 0
    n = int(valid.sum().item())
    if n == 0:
        raise _no_valid_query()

    K = _num_bins(G)
    # rounding to float32 is non-decreasing, so the float32 min / max are the
    # min / max of the float32 values
    scale, shift, fast = _bin_params(lo.to(torch.float32), hi.to(torch.float32), K)
    all_fast = bool(fast.all())
    # (the last bound keeps per-chunk counts and flat indices inside int32)
    chunk = max(1, min(_QUERY_CHUNK, _EXACT_LIMIT // K, (2**31 - 1) // G))
    tbuf = torch.empty((min(chunk, nq), G), dtype=torch.float32, device=dev)
    ibuf = torch.empty((min(chunk, nq), G), dtype=torch.int32, device=dev)
    mbuf = torch.zeros(-(-min(chunk, nq) * G // 8) * 8, dtype=torch.bool, device=dev)
    nbins = min(chunk, nq) * K + 1
    hbuf = torch.empty(nbins, dtype=torch.int32, device=dev)
    ubuf = torch.empty(nbins, dtype=torch.int32, device=dev)
    kbuf = torch.empty(nbins, dtype=torch.bool, device=dev)
    bounds = list(range(0, nq, chunk)) + [nq]
    pos_cum = pairs.pos_cum[bounds].tolist()
    ign_cum = pairs.ign_cum[bounds].tolist()

    ranks = []
    for c in range(len(bounds) - 1):
        s, e = bounds[c], bounds[c + 1]
        if pos_cum[c + 1] == pos_cum[c]:
            continue  # no correct match in this chunk
        d = dist[s:e]
        B = e - s
        if d.dtype == torch.float32:
            x = d
        else:
            x = tbuf[:B]
            x.copy_(d)  # rounding to float32 is non-decreasing
        ranks.append(
            _chunk_positive_ranks(
                d,
                x,
                scale[s:e],
                shift[s:e],
                all_fast or bool(fast[s:e].all()),
                pairs.pos_flat[pos_cum[c] : pos_cum[c + 1]] - s * G,
                pairs.ign_flat[ign_cum[c] : ign_cum[c + 1]] - s * G,
                K,
                tbuf[:B],
                ibuf[:B],
                _tail_false(mbuf, B * G),
                hbuf,
                ubuf,
                kbuf,
            )
        )

    # ranks of all correct matches, grouped by query, ranked order inside
    rank = torch.cat(ranks).to(torch.float64)
    if rank.numel() != pos_cum[-1]:  # cannot happen; guards the bookkeeping
        raise RuntimeError(f"rank_metrics internal error: {rank.numel()} ranks for {pos_cum[-1]} matches")
    num_pos = pairs.num_pos
    row = torch.repeat_interleave(torch.arange(nq, device=dev), num_pos)
    first = pairs.pos_cum[:-1]
    k = torch.arange(rank.numel(), device=dev) - first[row]  # 0-based index among matches
    ap = torch.zeros(nq, dtype=torch.float64, device=dev).index_add_(0, row, (k + 1) / rank)
    npos = num_pos[valid].to(torch.float64)
    ap = ap[valid] / npos
    first_rank = rank[first[valid]]
    last_rank = rank[first[valid] + num_pos[valid] - 1]
    inp = npos / last_rank
    hist = torch.bincount(first_rank.to(torch.int64).clamp_(max=max_rank + 1), minlength=max_rank + 2)
    cmc = torch.cumsum(hist[1 : max_rank + 1], 0).to(torch.float64) / n
    return {
        "mAP": float(ap.sum().item()) / n,
        "cmc": cmc.cpu().numpy(),
        "mINP": float(inp.sum().item()) / n,
        "num_valid_query": n,
    }


# ---------------------------------------------------------------------------
# reference implementation
# ---------------------------------------------------------------------------


def rank_metrics_loop(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50) -> dict:
    """Per-query numpy reference for :func:`rank_metrics` (same API, same result).

    Deliberately plain: one stable argsort per query, filter, then read the
    metrics off the boolean match vector.  Slow; used by tests and benchmarks.
    """
    dist = _as_numpy(distmat)
    qp, gp = _as_numpy(q_pids), _as_numpy(g_pids)
    qc, gc = _as_numpy(q_camids), _as_numpy(g_camids)
    _check_shapes(dist.shape, qp.shape, gp.shape, qc.shape, gc.shape, max_rank)
    max_rank = int(max_rank)
    if dist.dtype.kind not in "iuf":
        raise LReIDError(f"distmat must hold real numbers, got dtype {dist.dtype}")
    if dist.dtype.kind == "f" and np.isnan(dist).any():
        raise LReIDError("distmat contains NaN distances")
    qp, gp, qc, gc = (a.astype(np.int64) for a in (qp, gp, qc, gc))

    cmc_sum = np.zeros(max_rank, dtype=np.float64)
    ap_list, inp_list = [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        same_pid = gp[order] == qp[i]
        same_cam = gc[order] == qc[i]
        keep = ~(same_pid & same_cam)
        matches = same_pid[keep]  # True = correct match, in ranked order
        if not matches.any():
            continue  # no valid match: skip this query
        hit_ranks = np.flatnonzero(matches) + 1  # 1-based positions of correct matches

        # CMC: 1 from the first correct match onward
        first = hit_ranks[0]
        if first <= max_rank:
            cmc_sum[first - 1 :] += 1.0

        # AP: mean of precision@k at each correct match k
        precisions = [(j + 1) / r for j, r in enumerate(hit_ranks)]
        ap_list.append(sum(precisions) / len(hit_ranks))

        # INP: matches / rank of the hardest (last) correct match
        inp_list.append(len(hit_ranks) / hit_ranks[-1])

    n = len(ap_list)
    if n == 0:
        raise _no_valid_query()
    return {
        "mAP": float(np.mean(ap_list)),
        "cmc": cmc_sum / n,
        "mINP": float(np.mean(inp_list)),
        "num_valid_query": n,
    }


# ---------------------------------------------------------------------------
# distances
# ---------------------------------------------------------------------------


def euclidean_distmat(qf, gf) -> torch.Tensor:
    """Plain (not squared) Euclidean distances, ``(num_query, num_gallery)`` float32.

    Uses the expansion ``|q|^2 + |g|^2 - 2 q.g`` (one matmul), clamps tiny
    negative round-off to 0, then takes the square root.  Inputs are numpy
    arrays or tensors of shape ``(n, dim)``; the result lives on ``qf``'s device.
    """
    q = _as_tensor(qf, "qf").float()
    g = _as_tensor(gf, "gf", q.device).float()
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise LReIDError(
            f"features must be 2-D with the same width, got qf {tuple(q.shape)} and gf {tuple(g.shape)}"
        )
    d2 = (q * q).sum(dim=1, keepdim=True) + (g * g).sum(dim=1).unsqueeze(0)
    d2.addmm_(q, g.t(), beta=1.0, alpha=-2.0)
    return d2.clamp_(min=0.0).sqrt_()


# ---------------------------------------------------------------------------------------------------
# Feature extraction and per-domain evaluation (used by the Trainer after every domain step)
# ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def extract_features(embed, images: torch.Tensor, batch_size: int, device: torch.device,
                     amp: bool = False) -> torch.Tensor:
    """Run ``embed`` over a uint8 image tensor (N, 3, H, W) in batches; float32 features on ``device``."""
    from .data.augment import normalize

    feats = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].to(device, non_blocking=True))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            feats.append(embed(x).float())
    return torch.cat(feats)


def evaluate_testset(trainer, testset, embed) -> dict[str, float]:
    """mAP / R1 / mINP of ``embed`` on one domain's query/gallery (Euclidean distance).

    Under torchrun every rank embeds its share of the query and gallery images and the features are gathered
    on every rank, which then computes the same metrics.
    """
    from . import distributed

    bs = trainer.cfg.train.eval_batch
    feats = []
    for part, records in (("query", testset.query), ("gallery", testset.gallery)):
        imgs = trainer.images(records, f"decode {testset.domain} {part}")[distributed.shard(len(records))]
        feats.append(distributed.gather_rows(extract_features(embed, imgs, bs, trainer.device, trainer.amp),
                                             len(records)))
    qf, gf = feats
    dist = euclidean_distmat(qf, gf)
    m = rank_metrics(dist, [r.pid for r in testset.query], [r.pid for r in testset.gallery],
                     [r.camid for r in testset.query], [r.camid for r in testset.gallery], max_rank=10)
    return {"mAP": float(m["mAP"]), "R1": float(m["cmc"][0]), "mINP": float(m["mINP"])}


def chance_level(testset, draws: int = 20, seed: int = 0) -> dict[str, float]:
    """mAP and R1 of a random ranking of ``testset``'s gallery (same protocol as ``evaluate_testset``): the mean
    over ``draws`` seeded uniform-random distance matrices. A model below this has learnt nothing usable."""
    gen = torch.Generator().manual_seed(seed)
    q, g = testset.query, testset.gallery
    pids = [r.pid for r in q], [r.pid for r in g]
    cams = [r.camid for r in q], [r.camid for r in g]
    maps, r1s = [], []
    for _ in range(draws):
        m = rank_metrics(torch.rand(len(q), len(g), generator=gen), pids[0], pids[1], cams[0], cams[1], max_rank=10)
        maps.append(float(m["mAP"]))
        r1s.append(float(m["cmc"][0]))
    return {"mAP": float(np.mean(maps)), "R1": float(np.mean(r1s))}


def chance_levels(bench) -> dict[str, dict[str, float]]:
    """``chance_level`` of every seen and unseen test set of a benchmark, by domain."""
    return {ts.domain: chance_level(ts) for ts in bench.seen + bench.unseen}
