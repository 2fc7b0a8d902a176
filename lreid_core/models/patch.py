"""The differentiable patch sampler of PatchKD (Sec. 4.2) and patch pooling (Eq. 6).

A *patch* is one cell of the last feature map psi(x) (B, C, h, w): its feature is the (C,) vector at that
cell, so it has the pooled feature's dimension and the BN-neck heads apply to it directly. Masks are
one-hot over the h*w cells, shaped (B, K, h*w), one row per sampler branch.

Example::

    sampler = PatchSampler(in_channels=256, k=3)
    scores = sampler(fmap.detach())             # (B, K, h*w)   Eq. 4 logits
    masks = sampler.sample(scores)              # (B, K, h*w)   Eq. 5, one-hot forward, straight-through grad
    patches = pool_patches(fmap, masks)         # (B, K, C)     Eq. 6
    rows, cols = mask_cells(masks, w)           # (B, K) each   for overlays
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchSampler(nn.Module):
    """K-branch scorer over the feature-map grid (Sec. 4.2, "sampling with multiple branches").

    The scorer is the paper's two-layer perceptron applied to every cell (equivalently a 1x1 conv C -> hidden,
    BN, ReLU, then a 1x1 conv hidden -> branches); ``hidden`` defaults to 2C (4096 for ResNet-50, as in Sec. 5.2).
    Each branch r gives a score map s_r over the h*w cells, and P(p_r = psi(x)_j) = softmax(s_r)_j (Eq. 4).

    ``branches`` defaults to ``k``. ``branches=1`` with ``k > 1`` is the single-branch sampler of Fig. 3a /
    Table 3 "w/o multi-branch": one score map, K cells drawn from it without replacement (Gumbel top-k).
    """

    def __init__(self, in_channels: int, k: int, hidden: int = 0, branches: int | None = None):
        super().__init__()
        self.k = k
        self.branches = k if branches is None else branches
        if self.branches not in (1, k):
            raise ValueError(f"branches must be 1 or k={k}, got {self.branches}")
        hidden = hidden or 2 * in_channels
        # the official code's 1x1 conv C -> hidden (with bias), BatchNorm2d, ReLU, 1x1 conv hidden -> branches,
        # written as an MLP over the h*w cells: the same function, parameters and initialisation (a 1x1 conv's fan-in
        # is C, as a Linear's), BatchNorm1d on (B*h*w, hidden) has BatchNorm2d's statistics, and it costs less host
        # time than cuDNN 1x1 convs. The first bias cancels in the BN's batch statistics (no gradient) but enters
        # its running mean, which eval mode (``inspect``) reads.
        self.scorer = nn.Sequential(
            nn.Linear(in_channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, self.branches),
        )

    def _load_from_state_dict(self, state: dict, prefix: str, *args) -> None:
        """States written before the first layer had its bias load with a zero bias: the same function."""
        key = prefix + "scorer.0.bias"
        if prefix + "scorer.0.weight" in state and key not in state:
            state[key] = torch.zeros_like(self.scorer[0].bias)
        super()._load_from_state_dict(state, prefix, *args)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        """Score logits s of Eq. 4: (B, C, h, w) -> (B, branches, h*w)."""
        b, c, h, w = fmap.shape
        cells = fmap.permute(0, 2, 3, 1).reshape(b * h * w, c)   # (B*h*w, C), a view for channels_last maps
        return self.scorer(cells).view(b, h * w, -1).transpose(1, 2)

    def sample(self, scores: torch.Tensor, hard: bool = True, tau: float = 1.0, gumbel: bool = True,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Masks (B, K, h*w) from scores (B, branches, h*w).

        ``gumbel=True``: Gumbel-max (Eq. 5), argmax_j (s + G)_j with G i.i.d. Gumbel(0, 1); ``gumbel=False``:
        plain argmax of the scores (deterministic, for visualisation). ``hard=True`` returns one-hot masks
        whose forward values are exactly 0/1 and whose gradient is that of softmax((s + G) / tau)
        (straight-through estimator); ``hard=False`` returns that soft distribution itself.
        """
        return sample_masks(scores, self.k, hard=hard, tau=tau, gumbel=gumbel, generator=generator)

    @staticmethod
    def random_masks(b: int, k: int, n: int, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniformly random one-hot masks (B, K, n) (the random-patch sanity baseline); see ``random_masks``."""
        return random_masks(b, k, n, device, generator, dtype)


def gumbel_noise(shape: torch.Size, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """i.i.d. Gumbel(0, 1) samples: -log(E) with E ~ Exp(1) (equals -log(-log U) for U ~ Uniform(0, 1))."""
    e = torch.empty(shape, device=device, dtype=torch.float32).exponential_(generator=generator)
    return -e.log()


def sample_masks(scores: torch.Tensor, k: int, hard: bool = True, tau: float = 1.0, gumbel: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The body of ``PatchSampler.sample``: (B, branches, n) scores -> (B, k, n) masks, branches in {1, k}."""
    s = scores.float()                                           # (B, R, n); softmax/argmax in fp32
    if gumbel:
        s = s + gumbel_noise(s.shape, s.device, generator)
    soft = F.softmax(s if tau == 1.0 else s / tau, dim=-1)       # (B, R, n)
    if s.shape[1] == k:
        idx = s.argmax(dim=-1, keepdim=True)                     # (B, K, 1)
        hard_mask = torch.zeros_like(soft).scatter_(-1, idx, 1.0)
    else:                                                        # one branch, K draws without replacement
        idx = s.topk(k, dim=-1).indices.transpose(1, 2)          # (B, K, 1)
        hard_mask = torch.zeros(s.shape[0], k, s.shape[2], device=s.device).scatter_(-1, idx, 1.0)
        soft = soft.expand(-1, k, -1)                            # (B, K, n)
    if not hard:
        return soft
    # straight-through: forward values are exactly hard_mask (soft - soft.detach() == 0), gradient is soft's
    return hard_mask + (soft - soft.detach())


def random_masks(b: int, k: int, n: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One uniformly random cell per (image, branch): one-hot (B, K, n), no gradient, no host sync."""
    idx = torch.randint(n, (b, k, 1), device=device, generator=generator)
    return torch.zeros(b, k, n, device=device, dtype=dtype).scatter_(-1, idx, 1.0)


def pool_patches(fmap: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq. 6, p = M ⊙ psi(x) summed over the grid: (B, C, h, w) x (B, K, h*w) -> (B, K, C).

    With a one-hot mask this is the feature vector of the chosen cell; as a contraction it is differentiable
    with respect to both the feature map and the mask (the mask gradient is what trains the sampler).
    """
    cells = fmap.flatten(2).transpose(1, 2)                      # (B, h*w, C), a view for channels_last maps
    return torch.bmm(masks.to(cells.dtype), cells)               # (B, K, h*w) @ (B, h*w, C)


def mask_cells(masks: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen (row, col) grid cell per image and branch: (B, K, h*w) -> two (B, K) long tensors."""
    idx = masks.detach().argmax(dim=-1)                          # (B, K)
    return idx // width, idx % width


def cell_boxes(masks: torch.Tensor, grid: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """Image-space rectangles of the chosen cells: (B, K, 4) as (x0, y0, cell_w, cell_h) in pixels.

    ``grid`` is the feature map's (h, w), ``image_size`` the image's (H, W); a cell covers H/h x W/w pixels.
    """
    (h, w), (big_h, big_w) = grid, image_size
    rows, cols = mask_cells(masks, w)
    cell_h, cell_w = big_h / h, big_w / w
    return torch.stack([cols * cell_w, rows * cell_h, torch.full_like(rows, 1) * cell_w,
                        torch.full_like(rows, 1) * cell_h], dim=-1).float()


def sampler_health(masks: torch.Tensor, probs: torch.Tensor | None = None) -> dict[str, float]:
    """Collapse diagnostics of a sampler over a set of N images: ``masks`` (N, K, h*w), ``probs`` (N, R, h*w).

    ``distinct``: distinct cells per image (mean; K when every branch picks its own cell); ``top_share``: the
    share of images on which the most frequent cell is chosen (1.0: one cell on every image); ``max_prob``: the
    mean max probability of the score maps (1.0: one-hot maps), NaN without ``probs``; ``spread``: how much the
    choice depends on the image, the share of (image, branch) choices off their branch's most frequent cell
    (0.0: every image gets the same cells). Healthy means distinct >= K - 0.5 and top_share <= 0.5.
    """
    chosen = masks.detach().amax(dim=1) > 0                      # (N, h*w): cells picked by any branch
    per_branch = masks.detach().float().sum(0)                   # (K, h*w): choice counts per branch
    return {"distinct": chosen.sum(-1).float().mean().item(),
            "top_share": (chosen.sum(0).max() / len(masks)).item(),
            "spread": 1.0 - (per_branch.amax(-1) / len(masks)).mean().item(),
            "max_prob": float("nan") if probs is None else probs.detach().amax(-1).mean().item()}
