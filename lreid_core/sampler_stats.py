"""Is the PatchKD sampler on the person? Its argmax choices against the synthetic benchmark's person masks.

The paper's Figs. 3 and 7 show the sampled patches on the pedestrian. Here every query image of the given test
sets carries a ground-truth person mask (``data.person``), read at the feature grid as the share of each cell's
pixels on the person; a cell is *on the person* when at least half of it is. For each sampler (a step
checkpoint) and branch we report the share of its chosen cells that are on the person, beside the same share for
a uniformly random cell (its exact expectation: the share of each image's cells on the person) and the cells'
mean person cover. The notebook 02 and ``lreid study sampler`` print these tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .data.augment import normalize
from .data.cache import load_images
from .data.person import person_fractions
from .errors import LReIDError

ON_PERSON = 0.5      # a cell is on the person when at least this share of its pixels is


@dataclass
class PersonShare:
    """One sampler's choices over a set of images: per branch, the share of chosen cells on the person, their
    mean person cover and the share on the grid's outer ring; the first two for a uniformly random cell
    (``random_*``, exact expectations)."""
    on_person: list[float]
    cover: list[float]
    ring: list[float]
    random_on_person: float
    random_cover: float
    images: int

    @property
    def mean_on_person(self) -> float:
        return sum(self.on_person) / len(self.on_person)

    @property
    def lift(self) -> float:
        """The branches' mean share on the person over a random cell's (1: no better than chance)."""
        return self.mean_on_person / max(self.random_on_person, 1e-12)


def query_paths(testsets) -> list[str]:
    """Every query image of ``testsets``, in order."""
    return [r.path for ts in testsets for r in ts.query]


@torch.no_grad()
def chosen_cells(method, paths: list[str], size: tuple[int, int], batch: int = 256) -> tuple[torch.Tensor, tuple]:
    """A PatchKD ``method``'s argmax choices (eval mode, ``method.inspect``) on ``paths``: one-hot (N, K, h*w)
    masks and the feature grid (h, w)."""
    if not paths:
        raise LReIDError("sampler choices: no images given")
    parts = []
    for i in range(0, len(paths), batch):
        res = method.inspect(normalize(load_images(paths[i:i + batch], *size)))
        parts.append(res["masks"].float())
        grid = tuple(res["fmap"].shape[2:])
    return torch.cat(parts), grid


def ring_share(masks: torch.Tensor, grid: tuple[int, int]) -> list[float]:
    """Per branch, the share of the one-hot (N, K, h*w) choices on the grid's outer ring (first and last row and
    column: 2(h + w) - 4 of the h x w cells, 34 % of a 16 x 8 grid, so a uniform choice lands there that often)."""
    ring = torch.ones(grid)
    ring[1:-1, 1:-1] = 0
    return (masks * ring.flatten()).sum(-1).mean(0).tolist()


def person_share(method, paths: list[str], size: tuple[int, int], batch: int = 256) -> PersonShare:
    """``PersonShare`` of a PatchKD ``method``'s argmax choices on ``paths`` (``chosen_cells``)."""
    masks, grid = chosen_cells(method, paths, size, batch)              # (N, K, h*w) one-hot
    fracs = person_fractions(paths, size, grid)                         # (N, h*w)
    chosen = (masks * fracs[:, None]).sum(-1)                           # (N, K) cover of the chosen cell
    on = (fracs >= ON_PERSON).float()
    return PersonShare(on_person=(chosen >= ON_PERSON).float().mean(0).tolist(), cover=chosen.mean(0).tolist(),
                       ring=ring_share(masks, grid), random_on_person=on.mean().item(),
                       random_cover=fracs.mean().item(), images=len(paths))


def share_rows(shares: dict[str, PersonShare]) -> list[dict]:
    """Table rows (sampler, per-branch share on the person, mean, random cell, lift, mean cover) for printing."""
    rows = []
    for name, s in shares.items():
        row = {"sampler": name, "images": s.images}
        row |= {f"branch {r + 1}": round(v, 3) for r, v in enumerate(s.on_person)}
        row |= {"mean": round(s.mean_on_person, 3), "random cell": round(s.random_on_person, 3),
                "lift": round(s.lift, 2), "cover": round(sum(s.cover) / len(s.cover), 3),
                "random cover": round(s.random_cover, 3), "ring": round(sum(s.ring) / len(s.ring), 3)}
        rows.append(row)
    return rows


def verdict(trained: PersonShare, untrained: PersonShare, name: str = "the trained sampler") -> str:
    """One computed sentence: is ``trained`` more on the person than a random cell and than ``untrained``?"""
    vs_random = "more" if trained.mean_on_person > trained.random_on_person else "not more"
    vs_untrained = "more" if trained.mean_on_person > untrained.mean_on_person else "not more"
    return (f"{name} picks a cell on the person in {100 * trained.mean_on_person:.1f} % of its choices: "
            f"{vs_random} often than a random cell ({100 * trained.random_on_person:.1f} %) and {vs_untrained} than "
            f"the untrained step-1 sampler ({100 * untrained.mean_on_person:.1f} %)")
