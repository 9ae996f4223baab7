"""Shared pytest configuration."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers used by the test suite."""
    config.addinivalue_line(
        "markers",
        "network: needs the package registries (skipped unless CTCNET_NETWORK_TESTS=1)",
    )
