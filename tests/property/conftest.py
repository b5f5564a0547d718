"""Hypothesis profiles of the property tests, and the engines they run against.

``HYPOTHESIS_PROFILE`` picks the profile: ``ci`` (the default; hypothesis' own 100
examples x 50 steps, no deadline, failures printed with a reproduction blob) or
``nightly`` (10,000 examples, TESTING.md scenario 6). Under ``NUMBA_DISABLE_JIT=1``
the numba engine runs as plain Python, tens of times slower, so that run uses a tenth
of the examples (CI runs the kernel tests once that way for coverage and tracebacks).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.engines import IMPLEMENTATIONS, EngineClass

settings.register_profile(
    "ci",
    max_examples=100,
    stateful_step_count=50,
    deadline=None,  # compiled kernels load on first use; timing per example is noise
    derandomize=False,
    print_blob=True,
)
settings.register_profile("nightly", settings.get_profile("ci"), max_examples=10_000)

_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
    _base = settings.get_profile(_PROFILE)
    settings.register_profile(
        f"{_PROFILE}-nojit", _base, max_examples=max(10, _base.max_examples // 10)
    )
    _PROFILE = f"{_PROFILE}-nojit"
settings.load_profile(_PROFILE)

#: A nightly run takes hours; the suite's per-test timeout (pyproject.toml) is for CI.
NIGHTLY_TIMEOUT_S = 6 * 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the nightly profile, give this directory's tests the nightly timeout."""
    if not _PROFILE.startswith("nightly"):
        return
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.timeout(NIGHTLY_TIMEOUT_S))


@pytest.fixture(scope="session", params=IMPLEMENTATIONS, ids=lambda cls: cls.__name__)
def engine_cls(request: pytest.FixtureRequest) -> EngineClass:
    """An engine class: ``ReferenceEngine`` and ``Engine``."""
    cls: EngineClass = request.param
    return cls
