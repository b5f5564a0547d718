"""Market data: klines, status, depth and deals derived from the log; publishers to
ZeroMQ PUB and Redis; alerts.

May import: core, ipc.
"""
