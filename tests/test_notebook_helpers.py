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


def test_overlay_rectangles_cover_their_cell_and_nest_only_where_cells_coincide():
    import numpy as np
    import torch

    from lreid_core.viz import branch_colors, nesting, overlay_array

    masks = torch.zeros(3, 8)
    masks[[0, 1, 2], [0, 5, 0]] = 1                           # branches 1 and 3 share cell 0; branch 2 alone
    assert nesting(masks, [0, 1, 2]) == [0, 0, 1] and nesting(masks, [1, 2]) == [0, 0]
    arr = overlay_array(torch.zeros(3, 64, 32, dtype=torch.uint8), masks, (4, 2), thickness=2)
    colors = (np.asarray(branch_colors(3)) * 255).astype(np.uint8)
    assert (arr[32, 16] == colors[1]).all() and (arr[47, 31] == colors[1]).all()   # cell 5 = rows 32-47, cols 16-31
    assert (arr[0, 0] == colors[0]).all() and (arr[2, 2] == colors[2]).all()      # branch 3 nested inside branch 1
    alone = overlay_array(torch.zeros(3, 64, 32, dtype=torch.uint8), masks, (4, 2), branches=[2], thickness=2)
    assert (alone[0, 0] == colors[2]).all()                   # shown alone, branch 3 covers its whole cell
