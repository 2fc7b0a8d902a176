"""LReID protocol: a domain order, 500 training identities per seen domain (seeded), one growing label
space, seen test sets (query/gallery of every seen domain) and unseen test sets."""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..catalog import resolve_order
from ..config import Config, default_cache_root
from ..errors import LReIDError
from .datasets import Record, Split, resolve


@dataclass
class TrainSet:
    """One seen domain's training data, relabelled into the global class space."""
    domain: str
    records: list[Record]
    labels: list[int]        # global labels: offset + local index
    offset: int              # first global label of this domain
    num_classes: int         # identities of this domain


@dataclass
class TestSet:
    domain: str
    query: list[Record]
    gallery: list[Record]


@dataclass
class Benchmark:
    train: list[TrainSet]    # in training order
    seen: list[TestSet]      # same order as train
    unseen: list[TestSet]

    @property
    def order(self) -> list[str]:
        return [t.domain for t in self.train]


INT64 = (-(2 ** 63), 2 ** 63 - 1)


def check_train_split(ts: TrainSet, k: int) -> None:
    """Every identity of a training set has >= 2 images when K >= 2 (a PK batch needs a positive); one line
    naming the identity's original pid and its one file otherwise."""
    if k < 2:
        return
    counts = Counter(ts.labels)
    for record, label in zip(ts.records, ts.labels):
        if counts[label] == 1:
            raise LReIDError(f"identity {record.pid} of {record.domain} has 1 image ({record.path}); PK batches of "
                             f"K={k} need >= 2 per identity (ids with 2..K-1 images are sampled with replacement)")


def check_test_split(ts: TestSet) -> None:
    """Before training: ids and cameras fit an int64, and some query has a gallery match from another camera
    (the evaluation protocol skips same-camera matches); one line naming the domain otherwise."""
    for part, records in (("query", ts.query), ("gallery", ts.gallery)):
        for r in records:
            for name, value in (("id", r.pid), ("camera", r.camid)):
                if not INT64[0] <= value <= INT64[1]:
                    raise LReIDError(f"{ts.domain} {part}: {name} {value} of {r.path} does not fit an int64")
    cams: dict[int, set[int]] = {}
    for r in ts.gallery:
        cams.setdefault(r.pid, set()).add(r.camid)
    if not any(cams.get(r.pid, set()) - {r.camid} for r in ts.query):
        raise LReIDError(f"{ts.domain}: no query has a gallery match from another camera, so nothing can be "
                         f"evaluated (check its query and gallery folders)")


def sample_identities(split: Split, n: int, seed: int, how: str = "first") -> TrainSet:
    """``n`` training identities (all if fewer); labels are local 0..n-1.

    ``how="first"``: the first n identities in sorted order (the official code's
    ``sorted(pids)[:num_identities_per_domain]``); ``"random"``: n drawn at random, seeded by (seed, domain)
    (the paper's text: "we randomly sample 500 identities from each seen dataset").
    """
    pids = sorted({r.pid for r in split.train})
    if not pids:
        raise LReIDError(f"{split.name}: the training split is empty")
    if len(pids) <= n:
        chosen = pids
    elif how == "first":
        chosen = pids[:n]
    else:
        chosen = sorted(random.Random(f"{seed}:{split.name}").sample(pids, n))
    local = {pid: i for i, pid in enumerate(chosen)}
    records = [r for r in split.train if r.pid in local]
    return TrainSet(split.name, records, [local[r.pid] for r in records], 0, len(chosen))


def build_benchmark(cfg: Config) -> Benchmark:
    """Load every domain of ``cfg.data`` (making the synthetic benchmark first when asked) and apply the protocol."""
    d = cfg.data
    root = Path(d.root).expanduser() if d.root else default_cache_root()
    order = resolve_order(d.order)
    if root.exists() and not root.is_dir():
        raise LReIDError(f"data root {root} is a file, not a folder")
    if d.synthetic:
        from .synthetic import benchmark_key, make_benchmark

        params = {"ids_per_domain": d.synth_train_ids, "test_ids_per_domain": d.synth_test_ids,
                  "images_per_id": d.synth_images_per_id, "seed": d.synth_seed, "variant": d.synth_variant}
        if not d.root:   # the shared cache: one folder per generator setting, so settings never overwrite each other
            root = root / benchmark_key(**params)
        make_benchmark(root, domains=order + list(d.unseen), **params)
    elif not root.is_dir():
        raise LReIDError(f"data root not found: {root}")
    if len(set(order)) != len(order):
        raise LReIDError(f"data.order lists a domain twice: {order}")
    train, seen, offset = [], [], 0
    for name in order:
        split = resolve(name, root)
        ts = sample_identities(split, d.ids_per_domain, cfg.train.seed, d.id_sampling)
        ts.offset = offset
        ts.labels = [offset + lab for lab in ts.labels]
        offset += ts.num_classes
        train.append(ts)
        seen.append(TestSet(name, split.query, split.gallery))
    unseen = [TestSet(name, split.query, split.gallery) for name, split in ((u, resolve(u, root)) for u in d.unseen)]
    if d.unseen_eval == "merged" and len(unseen) > 1:
        unseen = [merge_testsets(unseen)]
    return Benchmark(train, seen, unseen)


MERGED_UNSEEN = "unseen_merged"


def merge_testsets(sets: list[TestSet]) -> TestSet:
    """One query/gallery benchmark of several test sets (the official code's ``allgeneralizable``): identities
    renumbered so that no two datasets share one; each query still ranks the whole merged gallery."""
    ids: dict[tuple[str, int], int] = {}

    def renumber(records: list[Record]) -> list[Record]:
        return [r._replace(pid=ids.setdefault((r.domain, r.pid), len(ids))) for r in records]

    return TestSet(MERGED_UNSEEN, [q for t in sets for q in renumber(t.query)],
                   [g for t in sets for g in renumber(t.gallery)])
