"""The processes: supervisor, sequencer, pair workers, gateways (ZeroMQ, HTTP,
WebSocket), their configuration and the entry points.

May import: everything.
"""
