"""PK identity sampler: each batch holds P identities x K images (Sec. 5.2: 32 x 4)."""
from __future__ import annotations

import torch

from ..errors import LReIDError


class PKSampler:
    """Draws index batches of P distinct identities with K images each, from a seeded CPU generator.

    Identities with fewer than K images are sampled with replacement. ``state_dict`` holds the generator
    state so a resumed run draws the same batches.
    """

    def __init__(self, labels: torch.Tensor | list[int], p: int, k: int, seed: int = 0, where: str = "training set"):
        labels = torch.as_tensor(labels)
        ids, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        if len(ids) < p:
            raise LReIDError(f"a batch needs P={p} identities but the {where} has only {len(ids)}")
        if k > 1 and int(counts.min()) < 2:
            lonely = int(ids[counts.argmin()])
            raise LReIDError(f"identity (label {lonely}) of the {where} has 1 image; PK batches of K={k} need >= 2 "
                             f"per identity (ids with 2..K-1 images are sampled with replacement)")
        self.p, self.k, self.num_ids = p, k, len(ids)
        self.counts = counts
        order = torch.argsort(inverse, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        cols = torch.arange(int(counts.max()))
        # (num_ids, max_count) table of sample indices per identity; padding points at the id's first sample
        within = torch.minimum(cols[None, :], counts[:, None] - 1)
        self.table = order[starts[:, None] + within]
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        """Indices (P*K,) grouped by identity: [id0 x K, id1 x K, ...]."""
        g = self.generator
        ids = torch.randperm(self.num_ids, generator=g)[: self.p]                  # (P,)
        counts = self.counts[ids]
        keys = torch.rand(self.p, self.table.shape[1], generator=g)
        keys[torch.arange(self.table.shape[1])[None, :] >= counts[:, None]] = 2.0  # padding sorts last
        cols = torch.argsort(keys, dim=1)[:, : self.k]                             # without replacement
        short = torch.arange(self.k)[None, :] >= counts[:, None]                   # id has < K images
        rand_cols = (torch.rand(self.p, self.k, generator=g) * counts[:, None]).long()
        cols = torch.where(short, rand_cols, cols)
        return self.table[ids[:, None], cols].reshape(-1)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class DistributedPKSampler(PKSampler):
    """This rank's share of a global PK batch: every rank draws the same global batch of P identities x K images
    (same seed, same generator state) and keeps identities ``[rank * P / W, (rank + 1) * P / W)``.

    Each rank thus sees whole identities (its triplet loss has positives and negatives), the global batch does
    not depend on the world size W, and the union of the ranks' shares is the single-process batch.
    """

    def __init__(self, labels: torch.Tensor | list[int], p: int, k: int, seed: int = 0, where: str = "training set",
                 rank: int = 0, world_size: int = 1):
        if p % world_size:
            raise LReIDError(f"train.p_ids={p} identities per batch cannot be split over {world_size} processes "
                             f"(P must be divisible by the world size)")
        if world_size > 1 and p // world_size < 2:
            raise LReIDError(f"train.p_ids={p} gives each of {world_size} processes {p // world_size} identity; the "
                             f"triplet loss needs >= 2 per process (P >= {2 * world_size})")
        super().__init__(labels, p, k, seed, where)
        self.rank, self.world_size = rank, world_size

    def __next__(self) -> torch.Tensor:
        """Indices (P/W*K,) of this rank's identities, grouped by identity like :class:`PKSampler`."""
        per_rank = self.p // self.world_size
        return super().__next__().view(self.p, self.k)[self.rank * per_rank: (self.rank + 1) * per_rank].reshape(-1)
