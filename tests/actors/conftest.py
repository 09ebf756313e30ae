"""Fixtures for actor tests."""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest


@pytest.fixture
def _stop_all() -> Iterator[None]:
    """Stop every pykka actor after the test (pykka's own pattern)."""
    yield
    pykka.ActorRegistry.stop_all(timeout=10)
