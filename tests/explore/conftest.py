"""Fixtures shared by the benchmark providers' tests."""

import pytest


@pytest.fixture
def one_torch_thread():
    """Parallel test workers share two cores: more torch threads only make them wait. The
    baselines' tests ask for it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch  # here: only the torch baselines' tests need it

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
