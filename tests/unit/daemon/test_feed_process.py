"""``matchd run`` with ``[feed]`` and ``[redis]``: the supervisor runs the feed beside
the server; SIGKILLed under load it is restarted, resumes from its state and the log,
and ends with the market data of a rebuild from the whole log (nothing lost, nothing
counted twice), in memory and in Redis. ``matchd feed`` refuses a config without
``[feed]``."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import redis
import zmq

from daemon import cli
from feed.market_data import MarketData
from feed.redis_out import SEQ_KEY, kline_key
from feed.state import state_files, state_seq
from ipc.client import Client
from persistence.history_batch import BatchDecoder
from persistence.journal import LOG_DIR
from persistence.log_reader import LogReader
from tests.support.scenario import config_text
from tests.unit.daemon.test_feed import REDIS_DB
from tests.unit.daemon.test_kill import SEED, Loader, fund, kill_child_under_load, start_run
from tests.unit.daemon.test_supervisor import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def feed_toml(tmp_path: Path) -> str:
    return (
        f'\n[feed]\npub = "ipc://{tmp_path}/pub.sock"\nrpc = "ipc://{tmp_path}/rpc.sock"\n'
        f"state_interval_s = 0.5\n\n[redis]\ndb = {REDIS_DB}\n"
    )


def test_feed_without_its_table_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "matchd.toml"
    config.write_text(config_text(), encoding="utf-8")
    assert cli.main(["feed", "--config", str(config), "--data-dir", str(tmp_path)]) == 2
    assert "has no [feed] table" in capsys.readouterr().err
    config.write_text(config_text() + '\n[feed]\npub = "nowhere"\n', encoding="utf-8")
    assert cli.main(["feed", "--config", str(config), "--data-dir", str(tmp_path)]) == 2
    assert "[feed] pub = 'nowhere' is not a ZeroMQ endpoint" in capsys.readouterr().err


def test_the_supervised_feed_survives_sigkill_and_equals_a_rebuild(tmp_path: Path) -> None:
    rdb = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    rdb.flushdb()
    config = tmp_path / "matchd.toml"
    text = config_text(max_orders=20_000, max_levels=500) + feed_toml(tmp_path)
    config.write_text(text, encoding="utf-8")
    endpoint = f"ipc://{tmp_path}/orders.sock"
    data = tmp_path / "data"
    daemon = start_run(config, data, endpoint)
    pid_file = data / "run" / "feed.pid"
    loader = Loader(endpoint, SEED)
    rpc = zmq.Context.instance().socket(zmq.DEALER)
    rpc.connect(f"ipc://{tmp_path}/rpc.sock")
    print(f"seed {SEED}")
    try:
        with Client(endpoint, timeout_s=2.0) as client:
            fund(client)
            wait_for(lambda: "feed" in client.status().consumers, 120)
            states = data / "feed"

            def traded_state() -> bool:  # a state holding deals: the restart starts there
                return any(state_seq(p) > status0.seq + 100 for p in state_files(states))

            status0 = client.status()
            kill_child_under_load(loader, pid_file, ready=traded_state)
            status = client.status()
            wait_for(lambda: int(rdb.get(SEQ_KEY) or 0) == status.durable_seq, 120)
        rpc.send(json.dumps({"method": "market.deals", "params": ["BTC_USDT", 10000, 0],
                             "id": 1}).encode())  # fmt: skip
        assert rpc.poll(10_000)
        deals = json.loads(rpc.recv())["result"]
    finally:
        loader.stop = True
        rpc.close(0)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(120) == 0
    from core.config import parse_config

    want = MarketData(parse_config(text))
    with LogReader(data / LOG_DIR) as reader:
        records = list(reader.read(1))
    want.add_events(BatchDecoder().decode(records).events)
    assert deals == want.deals("BTC_USDT", 10_000, 0)
    assert len(deals) > 20
    minutes = rdb.hgetall(kline_key("BTC_USDT", 60))
    series = want.klines.series(0, 60).candles()
    assert {int(k) for k in minutes} == {c.start for c in series}
    for c in series:
        assert json.loads(minutes[str(c.start).encode()]) == list(want.candle_fields(0, c))
    # The supervisor's ERROR about the killed feed reached the alert list (ViaBTC's key).
    alerts = [line.decode() for line in rdb.lrange("alert:message", 0, -1)]
    assert any(
        " matchd-run[" in a and " ERROR daemon.supervisor: feed (pid " in a and "-9" in a
        for a in alerts
    ), alerts
    rdb.flushdb()
    rdb.close()


def test_a_redis_killed_and_restarted_under_load_is_rewritten_whole(tmp_path: Path) -> None:
    """A private Redis (nothing on disk) is SIGKILLed while `matchd run` trades and the
    feed writes it, then started again empty: the feed notices, rewrites it from its
    state, and in the end Redis holds what a rebuild from the whole log gives."""
    from tests.support.redis_instance import RedisInstance

    with RedisInstance(tmp_path / "redis") as server:
        rdb = server.client()
        text = config_text(max_orders=20_000, max_levels=500) + (
            f'\n[feed]\npub = "ipc://{tmp_path}/pub.sock"\nrpc = "ipc://{tmp_path}/rpc.sock"\n'
            f"\n[redis]\nport = {server.port}\ntimeout_s = 0.5\n"
        )
        config = tmp_path / "matchd.toml"
        config.write_text(text, encoding="utf-8")
        endpoint = f"ipc://{tmp_path}/orders.sock"
        data = tmp_path / "data"
        daemon = start_run(config, data, endpoint)
        loader = Loader(endpoint, SEED)
        print(f"seed {SEED}")
        try:
            with Client(endpoint, timeout_s=2.0) as client:
                fund(client)
                loader.thread.start()
                loader.wait_for_acks(300)
                wait_for(lambda: int(rdb.get(SEQ_KEY) or 0) > 0, 60)
                server.kill()  # under load
                loader.wait_for_acks(300)
                server.start()  # empty
                loader.wait_for_acks(300)
                loader.stop = True
                loader.thread.join(60)
                status = client.status()
                wait_for(lambda: int(rdb.get(SEQ_KEY) or 0) == status.durable_seq, 120)
        finally:
            loader.stop = True
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(120) == 0
        from core.config import parse_config

        want = MarketData(parse_config(text))
        with LogReader(data / LOG_DIR) as reader:
            want.add_events(BatchDecoder().decode(list(reader.read(1))).events)
        for m, market in enumerate(want.config.markets):
            for base in (1, 60, 3600, 86400):
                stored = rdb.hgetall(kline_key(market.name, base))
                series = want.klines.series(m, base).candles()
                assert len(stored) == len(series)
                for c in series:
                    assert json.loads(stored[str(c.start).encode()]) == list(
                        want.candle_fields(m, c)
                    )
        assert len(want.klines.series(0, 1)) > 0
        rdb.close()
