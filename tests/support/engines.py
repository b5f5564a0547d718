"""The engine implementations the shared test suite runs against.

``core.engine.Engine`` (numba) joins ``ReferenceEngine`` as soon as its module exists;
a module that exists but fails to import is an error, not a skip.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from core.api import EngineAPI
from core.config import EngineConfig
from core.reference import ReferenceEngine


class EngineClass(Protocol):
    """An engine implementation: called with a config, it builds an engine."""

    __name__: str

    def __call__(self, config: EngineConfig) -> EngineAPI: ...


def _implementations() -> list[EngineClass]:
    found: list[EngineClass] = [ReferenceEngine]
    try:
        module = importlib.import_module("core.engine")
    except ModuleNotFoundError as exc:
        if exc.name != "core.engine":
            raise
        return found
    found.append(module.Engine)
    return found


IMPLEMENTATIONS: list[EngineClass] = _implementations()
