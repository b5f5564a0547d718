"""``[feed]`` and ``[redis]``: defaults, every mistake named by table and key, the
Redis password hidden and read from the environment."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from daemon.feed_config import FeedConfig, RedisConfig, load_feed_config


def test_missing_tables_are_none_and_defaults_are_the_design_cards() -> None:
    assert load_feed_config("[engine]\n") == (None, None)
    feed, redis = load_feed_config("[feed]\n[redis]\n")
    assert feed == FeedConfig()
    assert feed is not None
    assert (feed.pub, feed.rpc) == ("tcp://127.0.0.1:7416", "tcp://127.0.0.1:7417")
    assert redis == RedisConfig()
    feed, _ = load_feed_config('[feed]\ndepth_merge = ["0", "0.01", "10"]\n')
    assert feed is not None
    assert feed.depth_merge == ("0", "0.01", "10")


def test_the_password_is_hidden_and_may_come_from_the_environment() -> None:
    _, redis = load_feed_config('[redis]\npassword = "hunter2"\n')
    assert redis is not None
    assert "hunter2" not in repr(redis)
    assert redis.password.reveal() == "hunter2"
    _, redis = load_feed_config('[redis]\npassword_env = "RPW"\n', environ={"RPW": "s3"})
    assert redis is not None
    assert redis.password.reveal() == "s3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[feed]\npub = "nowhere"\n', "[feed] pub = 'nowhere' is not a ZeroMQ endpoint"),
        ("[feed]\nutc_offset_s = 30\n", "[feed] utc_offset_s = 30 must be a multiple of 60"),
        ("[feed]\nutc_offset_s = 54000\n", "within ±14 h"),
        ("[feed]\npublish_interval_s = 0\n", "[feed] publish_interval_s = 0.0 must be more"),
        ("[feed]\nstate_interval_s = -1\n", "[feed] state_interval_s = -1.0 must be more"),
        ("[feed]\nsend_hwm = 0\n", "[feed] send_hwm = 0 is outside 1..10000000"),
        ('[feed]\nsend_hwm = "big"\n', "[feed] send_hwm must be an integer, not 'big'"),
        ('[feed]\ndepth_merge = ["0.1"]\n', 'must start with "0"'),
        ('[feed]\ndepth_merge = ["0", "1", "1"]\n', "at most 16 different intervals"),
        ('[feed]\ndepth_merge = ["0", "1e-2"]\n', "'1e-2' is not a plain decimal"),
        ('[feed]\ndepth_merge = ["0", "-1"]\n', "'-1' is not a plain decimal"),
        ("[feed]\nfrequency = 1\n", "[feed] unknown setting 'frequency' (known: pub, rpc"),
        ("feed = 3\n", "[feed] must be a table"),
        ("[redis]\nport = 0\n", "[redis] port = 0 is outside 1..65535"),
        ("[redis]\ndb = 16\n", "[redis] db = 16 is outside 0..15"),
        ('[redis]\nhost = ""\n', "[redis] host = '' must be 1 to 255 printable characters"),
        ('[redis]\npassword_env = "1X"\n', "[redis] password_env = '1X' is not a variable"),
        ('[redis]\npassword_env = "NOT_SET_X"\n', "names NOT_SET_X, which is not set"),
        ('[redis]\npassword = "a"\npassword_env = "P"\n', "give password or password_env"),
        ("[redis]\ntimeout_s = 0\n", "[redis] timeout_s = 0.0 must be more than 0"),
        ("[redis\n", "config is not valid TOML"),
    ],
)
def test_every_mistake_names_table_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_feed_config(text, environ={"P": "x"})
    assert message in str(info.value)


def test_merge_intervals_in_ticks_are_truncated_as_viabtc_does() -> None:
    from daemon.feed import merge_ticks

    got = merge_ticks(("0", "0.001", "0.5", "10"), 2)
    assert got == [("0", 0), ("0.001", 0), ("0.5", 50), ("10", 1000)]
