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
