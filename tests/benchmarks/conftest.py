import pytest
import torch


@pytest.fixture
def one_thread():
    # As the benchmarks run their rounds: tiny heads are many times faster on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
