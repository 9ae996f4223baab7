"""Shared pytest configuration."""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers used by the test suite."""
    config.addinivalue_line(
        "markers",
        "network: needs the package registries (skipped unless CTCNET_NETWORK_TESTS=1)",
    )


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests run torch single-threaded: the CI machine has 2 shared cores, and two OpenMP
    threads per process under oversubscription were several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    """The ``tiny`` preset, seeded, in eval mode: one per test module (tests may hook it)."""
    from ctcnet import build_model

    torch.manual_seed(0)
    return build_model("tiny").eval()
