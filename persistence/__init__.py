"""Durability and history: the append log (segments, checksums, group commit),
snapshots, recovery, the MySQL drainer and history queries.

May import: core, ipc.
"""
