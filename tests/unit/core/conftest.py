"""Fixtures of the core tests: ``engine_cls`` runs a test once per implementation."""

from __future__ import annotations

import pytest

from tests.support.engines import IMPLEMENTATIONS, EngineClass


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda cls: cls.__name__)
def engine_cls(request: pytest.FixtureRequest) -> EngineClass:
    """An engine class (``ReferenceEngine``, and ``Engine`` once it exists)."""
    cls: EngineClass = request.param
    return cls
