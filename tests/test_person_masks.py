"""Where the person is: the generator's person masks, their reading at the feature grid, the sampler's share of
choices on the person, and ``lreid study sampler`` in the smoke profile."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from lreid_core.cli import main
from lreid_core.data import synthetic as S
from lreid_core.data.person import mask_path, person_fractions
from lreid_core.errors import LReIDError
from lreid_core.sampler_stats import person_share, verdict


def test_mask_draws_nothing_from_the_rng_and_covers_the_person():
    cam = S.make_camera("synth_a", 0, 0)
    ident = S.sample_identity("synth_a", np.random.default_rng(3))
    attrs = S.sample_appearance(ident, "synth_a", cam, np.random.default_rng(4))
    img = S.render_person(attrs, "synth_a", cam, np.random.default_rng(5), 128, 64)
    img2, mask = S.render_person_with_mask(attrs, "synth_a", cam, np.random.default_rng(5), 128, 64)
    assert np.array_equal(img, img2) and mask.shape == (128, 64) and mask.dtype == bool
    assert 0.1 < mask.mean() < 0.8                              # a person, not the whole crop
    assert mask[:, 28:36].mean() > mask[:, :4].mean()            # centred on the body axis


def test_occluder_removes_the_hidden_part():
    style = S.get_style("synth_d")
    cam = S.make_camera(style, 0, 0)
    attrs = S.sample_appearance(S.sample_identity(style, np.random.default_rng(1)), style, cam, np.random.default_rng(2))
    masks = [S.render_person_with_mask(attrs, style, cam, np.random.default_rng(s), 128, 64)[1] for s in range(40)]
    covers = np.array([m.mean() for m in masks])
    assert covers.min() < 0.75 * np.median(covers)            # some images of this occluded domain lose a part


def test_benchmark_writes_one_mask_per_image(synth_root):
    for split in S.SPLITS:
        images = sorted((synth_root / "synth_a" / split).glob("*.jpg"))
        assert images and all(mask_path(p).is_file() for p in images)
        m = np.asarray(Image.open(mask_path(images[0])))
        assert m.dtype == bool and m.shape == (128, 64) and 0 < m.mean() < 1
    assert S.domain_complete(synth_root / "synth_a", json_params(synth_root / "synth_a"))
    mask_path(images[0]).unlink()                              # a missing mask makes the domain incomplete
    try:
        assert not S.domain_complete(synth_root / "synth_a", json_params(synth_root / "synth_a"))
    finally:
        Image.fromarray(m).save(mask_path(images[0]))


def json_params(folder):
    import json
    return json.loads((folder / "synthetic.json").read_text())["params"]


def test_person_fractions_are_the_mask_averaged_per_cell(synth_root):
    paths = [str(p) for p in sorted((synth_root / "synth_b" / "query").glob("*.jpg"))]
    fr = person_fractions(paths, (128, 64), (4, 2))
    assert fr.shape == (len(paths), 8) and torch.all((fr >= 0) & (fr <= 1))
    m = torch.from_numpy(np.asarray(Image.open(mask_path(paths[0])), dtype=np.float32))
    by_hand = m.reshape(4, 32, 2, 32).mean(dim=(1, 3)).flatten()
    assert torch.allclose(fr[0], by_hand, atol=1e-6)


def test_missing_masks_are_refused_in_one_line(tmp_path):
    img = tmp_path / "d" / "query" / "0001_c1s1_000001_00.jpg"
    img.parent.mkdir(parents=True)
    Image.new("RGB", (64, 128)).save(img)
    with pytest.raises(LReIDError, match="no person mask .*0001_c1s1_000001_00.png"):
        person_fractions([str(img)], (128, 64), (4, 2))


class _FixedSampler:
    """A stand-in PatchKD method whose argmax choices are given cells."""

    def __init__(self, cells: list[list[int]], grid=(4, 2)):
        self.cells, self.grid = torch.tensor(cells), grid

    def inspect(self, x):
        n = len(x)
        masks = torch.zeros(n, self.cells.shape[1], self.grid[0] * self.grid[1])
        masks.scatter_(-1, self.cells[:n, :, None], 1.0)
        return {"masks": masks, "fmap": torch.zeros(n, 1, *self.grid)}


def test_person_share_counts_chosen_cells_on_the_person(synth_root):
    paths = [str(p) for p in sorted((synth_root / "synth_b" / "query").glob("*.jpg"))]
    fr = person_fractions(paths, (128, 64), (4, 2))
    best, worst = fr.argmax(-1), fr.argmin(-1)
    share = person_share(_FixedSampler(torch.stack([best, worst], 1).tolist()), paths, (128, 64), batch=3)
    assert share.on_person[0] == pytest.approx((fr.max(-1).values >= 0.5).float().mean().item())
    assert share.on_person[1] == pytest.approx((fr.min(-1).values >= 0.5).float().mean().item())
    assert share.random_on_person == pytest.approx((fr >= 0.5).float().mean().item())
    assert share.on_person[0] > share.random_on_person > share.on_person[1]
    assert "more often than a random cell" in verdict(share, share)
    off = person_share(_FixedSampler(torch.stack([worst, worst], 1).tolist()), paths, (128, 64))
    assert "not more often than a random cell" in verdict(off, share)


def test_sampler_study_command_trains_measures_and_resumes(tmp_path, capsys, one_thread):
    out = tmp_path / "sampler"
    args = ["study", "sampler", "--profile", "smoke", "--routing", "code", "--gamma3", "100,0", "--out", str(out),
            "--quiet"]
    assert main(args) == 0
    lines = list(csv.reader((out / "sampler.csv").read_text().splitlines()))
    assert lines[0][0] == "variant" and {r[0] for r in lines[1:]} == {"code-g100", "code-g0"}
    steps = {r[3] for r in lines[1:]}
    assert steps == {"1", "2"} and (out / "sampler.png").stat().st_size > 0
    first = [r for r in lines[1:] if r[3] == "1"]
    assert first[0][5:] == first[1][5:]                 # step 1 has no old model: gamma3 cannot matter yet
    capsys.readouterr()
    assert main(args) == 0                               # finished runs are reused, not retrained
    assert "on person" in capsys.readouterr().out
    assert main(["study", "sampler", "--profile", "smoke", "--routing", "nope", "--out", str(out)]) == 2
