"""FATAL and ERROR log records of every matchd process pushed to Redis (docs/feed.md,
"Alerts"): when the config has ``[redis]``, a process's root logger gets a
``feed.alerts.AlertHandler`` beside its journal output, which pushes each ERROR and
CRITICAL record, deduplicated and rate-limited, as one line to the Redis list
``alert:message`` (ViaBTC's alertcenter key)."""

from __future__ import annotations

import logging

from core.errors import ConfigError
from daemon.feed_config import load_feed_config
from feed.alerts import AlertHandler, install_alerts

logger = logging.getLogger("matchd.alerts")


def start_alerts(config_text: str, process_name: str) -> AlertHandler | None:
    """Install the alert handler on the root logger if ``config_text`` has
    ``[redis]``; None otherwise (or if ``[redis]`` is wrong: the caller's own config
    check reports that)."""
    try:
        _, redis = load_feed_config(config_text)
    except ConfigError:
        return None
    if redis is None:
        return None
    handler = install_alerts(
        None,
        host=redis.host,
        port=redis.port,
        db=redis.db,
        password=redis.password.reveal() or None,
        socket_timeout_s=redis.timeout_s,
        connect_timeout_s=redis.timeout_s,
        process_name=process_name,
    )
    logger.info("alerts: ERROR and CRITICAL records go to %s alert:message", redis.address())
    return handler
