"""Operator and developer tools: load generators, benchmarks, the ``matchctl`` CLI and
the log inspector.

May import: everything.
"""
