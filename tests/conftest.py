"""Shared fixtures for the unit tests."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is as fast and avoids OpenMP spin-wait stalls when the 2 cores are
    shared; results do not depend on the thread count. Restores the setting for other modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """Two tiny synthetic domains in Market layout, one copy per test module, for tests that damage data (they
    copy it first or damage it knowingly)."""
    from lreid_core.data.synthetic import make_benchmark

    root = tmp_path_factory.mktemp("bad-data")
    make_benchmark(root, domains=["synth_a", "synth_b"], ids_per_domain=6, test_ids_per_domain=4, images_per_id=4,
                   progress=False)
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished tiny finetune run directory (2 steps, 2 iterations each), one per test module, to copy and
    damage."""
    from lreid_core.config import load_config
    from lreid_core.data.benchmark import build_benchmark
    from lreid_core.train import Trainer

    cfg = load_config(profile_name="smoke", overrides={"method": {"name": "finetune"},
                                                       "train": {"epochs": 1, "iters_per_epoch": 2, "milestones": [1]}})
    run = tmp_path_factory.mktemp("trained") / "run"
    Trainer(cfg, "finetune", build_benchmark(cfg), run, progress=False, tensorboard=False).fit()
    return run
