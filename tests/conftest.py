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
