"""The usage counters without a server: buckets, summaries, and counts kept while the store is away."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from matcher.embedded_redis import start_or_reuse
from server.usage import UsageStats, latency_bucket

HOUR = 3600.0
START = 1_800_000_000.0  # a fixed time at the start of an hour (and of a minute)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    embedded = start_or_reuse(Path(tmp_path_factory.mktemp("usage-store")))
    client = redis.Redis.from_url(embedded.url)
    yield client
    client.close()
    embedded.stop()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_latency_buckets_hold_their_upper_bound() -> None:
    assert [latency_bucket(ms) for ms in (0, 5, 5.01, 99, 10000, 10001)] == ["5", "5", "10", "100", "10000", "inf"]


def test_counts_land_in_the_bucket_of_their_hour_and_sum_over_the_range(store: redis.Redis) -> None:
    clock = Clock(START)
    usage = UsageStats(store, prefix="t1", clock=clock)

    async def run() -> None:
        usage.count_frame("shop")
        usage.count_result("shop", ["a", "b"])
        await usage.flush()
        clock.now = START + 2 * HOUR + 5
        for _ in range(3):
            usage.count_request("POST recognize", 200, 0.03, "shop")
            usage.count_result("shop", ["a"])
        usage.count_request("GET collections", 200, 0.001)
        await usage.flush()

    asyncio.run(run())
    summary = usage.summary("24h")
    assert summary["totals"] == {"requests": 4, "frames": 1, "recognitions": 5}
    by_hour = {p["t"]: p for p in summary["series"]}
    assert by_hour[int(START)] == {"t": int(START), "requests": 0, "frames": 1, "recognitions": 2}
    assert by_hour[int(START + 2 * HOUR)]["recognitions"] == 3
    assert len(summary["series"]) == 24 and summary["series"][-1]["t"] == int(START + 2 * HOUR)
    assert [(t["item"], t["recognitions"]) for t in summary["top_items"]] == [("a", 4), ("b", 1)]
    assert [c["collection"] for c in summary["collections"]] == ["shop"]  # requests naming none are only in totals
    recognize = next(h for h in summary["latency"] if h["endpoint"] == "POST recognize")
    assert (recognize["count"], recognize["mean_ms"], recognize["p50_ms"]) == (3, 30.0, 50.0)
    # The minute view only sees the last hour.
    assert usage.summary("1h")["totals"] == {"requests": 4, "frames": 0, "recognitions": 3}
    assert usage.item_totals("shop") == {"a": 4, "b": 1}
    assert usage.item_counts("shop", "1h") == {"a": 3}


def test_counts_are_kept_while_the_store_is_unreachable_and_written_once_it_is_back(store: redis.Redis) -> None:
    away = redis.Redis(port=closed_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    usage = UsageStats(away, prefix="t2", clock=Clock(START))

    async def run() -> None:
        for _ in range(7):
            usage.count_frame("shop")
        await usage.flush()  # fails: nothing lost, nothing raised
        usage.count_frame("shop")
        usage.redis = store
        await usage.flush()

    asyncio.run(run())
    assert usage.summary("1h")["totals"]["frames"] == 8
