"""``daemon.alerting.start_alerts``: with ``[redis]`` a process's ERROR records reach
the Redis list ``alert:message`` (db 15 here, emptied); without it nothing is
installed."""

from __future__ import annotations

import logging
import time

import redis

from daemon.alerting import start_alerts
from tests.unit.daemon.test_feed import REDIS_DB


def test_errors_reach_alert_message_only_with_redis_configured() -> None:
    root = logging.getLogger()
    assert start_alerts("[engine]\n", "matchd-test") is None
    assert start_alerts("[redis]\nport = 0\n", "matchd-test") is None  # reported elsewhere
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    handler = start_alerts(f"[redis]\ndb = {REDIS_DB}\n", "matchd-test")
    assert handler is not None
    try:
        logging.getLogger("matchd.test").info("not an alert")
        logging.getLogger("matchd.test").error("boom %d", 7)
        deadline = time.monotonic() + 10
        while not client.llen("alert:message") and time.monotonic() < deadline:
            time.sleep(0.01)
        (line,) = [x.decode() for x in client.lrange("alert:message", 0, -1)]
        assert " matchd-test[" in line
        assert line.endswith(" ERROR matchd.test: boom 7")
    finally:
        root.removeHandler(handler)
        handler.close()
        client.flushdb()
        client.close()
