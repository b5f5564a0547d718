"""Inter-process plumbing: shared-memory regions and SPSC rings (posix-ipc), the ZeroMQ
wire protocol and the client SDK that speaks it.

May import: core.
"""
