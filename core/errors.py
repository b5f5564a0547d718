"""The project's small exception vocabulary.

Hot paths in core and ipc signal failure by returning a ``Result`` code, never by
raising. Exceptions are for set-up contract violations and programmer errors.
"""

from __future__ import annotations


class MatchdError(Exception):
    """Base class of every exception matchd raises on purpose."""


class ConfigError(MatchdError):
    """A configuration cannot be used; the message says which setting and why.

    Raised at load time only, never while trading.
    """


class ParseError(MatchdError, ValueError):
    """A decimal or other input text is malformed or out of range.

    Raised by the parsing helpers in ``core.fixed``; gateways turn it into
    ``invalid argument`` before anything reaches the engine.
    """


class ClosedError(MatchdError):
    """The object was closed by us; using it afterwards is a programmer error."""


class BrokenError(MatchdError):
    """A peer or a dependency failed; the cause is chained."""


class WouldBlock(MatchdError):
    """A ``*_nowait`` call could not proceed without blocking."""


class CorruptLogError(MatchdError):
    """A log record or snapshot failed its checksum; names file, offset and sequence."""


class InternalError(MatchdError):
    """An invariant of the engine does not hold. The process must fail-stop."""
