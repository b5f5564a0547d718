"""What shared-memory objects have in common: used as a context manager, the creator
unlinks and closes on exit, an attacher closes."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self


class SharedLifetime:
    """Mixin for ``ShmAllocator`` and ``SpscRing``: they define ``owner``, ``unlink``
    and ``close``."""

    @property
    def owner(self) -> bool:
        raise NotImplementedError

    def unlink(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Unlink (if ``owner``), then close; after an exception in the block, a
        ``BufferError`` from close is suppressed so the original one propagates."""
        try:
            if self.owner:
                self.unlink()
        finally:
            if exc_type is None:
                self.close()
            else:
                with contextlib.suppress(BufferError):
                    self.close()
