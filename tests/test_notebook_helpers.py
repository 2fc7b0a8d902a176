"""lreid_core.notebook: finished runs are reused, missing ones trained, a folder holding another run left alone;
chance level of a random ranking."""
import copy

import pytest

from lreid_core.config import load_config
from lreid_core.data.benchmark import build_benchmark
from lreid_core.evaluate import chance_level
from lreid_core.notebook import reuse_or_train


@pytest.fixture(scope="module")
def smoke():
    cfg = load_config(profile_name="smoke")
    cfg.train.epochs, cfg.train.iters_per_epoch, cfg.train.milestones = 1, 2, []
    return cfg, build_benchmark(cfg)


def test_reuse_train_and_leave_alone(smoke, tmp_path, one_thread):
    cfg, bench = smoke
    first = reuse_or_train(cfg, ["finetune"], bench, tmp_path)["finetune"]
    assert not first.reused and first.folder == tmp_path / "finetune" and first.result.status == "done"
    again = reuse_or_train(cfg, ["finetune"], bench, tmp_path)["finetune"]
    assert again.reused and again.result.steps == first.result.steps
    other = copy.deepcopy(cfg)
    other.train.seed = 1                                   # another run: trained elsewhere, the folder untouched
    stamp = (tmp_path / "finetune" / "metrics.json").read_bytes()
    moved = reuse_or_train(other, ["finetune"], bench, tmp_path)["finetune"]
    assert not moved.reused and moved.folder != tmp_path / "finetune"
    assert (tmp_path / "finetune" / "metrics.json").read_bytes() == stamp


def test_chance_level(smoke):
    _, bench = smoke
    c = chance_level(bench.seen[0])
    assert 0 < c["mAP"] < 1 and 0 <= c["R1"] < 1 and c == chance_level(bench.seen[0])   # seeded
