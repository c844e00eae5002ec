"""Usage statistics: counted in memory on the hot path, flushed to Redis once a second.

Handlers call `count_*`: a few dict increments, no I/O, so a frame's path stays as
fast as before. A periodic flush writes what was counted in one pipelined round
trip (HINCRBY) from a thread, so the event loop never waits on Redis. Every node
adds to the same keys, so the numbers are for the whole deployment.

Layout (prefix `cl` by default); each time bucket is one hash:
  cl:stats:m:{minute}     HASH  (kept 3 hours)   } fields:
  cl:stats:h:{hour}       HASH  (kept 8 days)    }   requests|{collection}|{token}   API requests
  cl:stats:d:{day}        HASH  (kept 400 days)  }   frames|{collection}|{token}     stream frames received
                                                 }   found|{collection}|{token}      items recognized
                                                 }   item|{collection}|{item}        recognitions of one item
                                                 }   lat|{endpoint}|{le}             latency histogram (ms bucket)
                                                 }   lat|{endpoint}|sum_us           latency sum in microseconds
  cl:stats:items:{collection}   HASH item -> recognitions since it was added (no expiry)
  cl:stats:streams:{node}       INT  open streams of a node (expires unless refreshed)
  cl:stats:nodes                SET  nodes that reported streams

Buckets are Unix minutes/hours/days (UTC), so keys sort and need no calendar.
A collection field is "" for requests that name none; a token is "anonymous"
until requests carry one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from tornado.ioloop import PeriodicCallback

from matcher.store import COLLECTION_NAME, as_text, call_redis

log = logging.getLogger("catchlight.usage")

T = TypeVar("T")

ANONYMOUS = "anonymous"
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
"""Upper bounds of the latency histogram, in ms; one more bucket ("inf") holds the rest."""
FLUSH_SECONDS = 1.0
STREAMS_TTL_SECONDS = 15
TOP_ITEMS = 10


@dataclass(frozen=True)
class Resolution:
    name: str
    seconds: int
    keep_seconds: int


MINUTE = Resolution("minute", 60, 3 * 3600)
HOUR = Resolution("hour", 3600, 8 * 86400)
DAY = Resolution("day", 86400, 400 * 86400)
RESOLUTIONS = (MINUTE, HOUR, DAY)

# What `range` a reader may ask for: how many buckets of which resolution.
RANGES: dict[str, tuple[Resolution, int]] = {
    "1h": (MINUTE, 60),
    "24h": (HOUR, 24),
    "7d": (HOUR, 168),
    "30d": (DAY, 30),
}


class UnknownRange(ValueError):
    pass


def latency_bucket(ms: float) -> str:
    """The histogram bucket (its upper bound in ms, or "inf") that `ms` falls in."""
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return str(bound)
    return "inf"


def token_of(handler: Any) -> str:
    """Who made a request: the id of its token once requests carry one (`token_id`), else anonymous."""
    token = getattr(handler, "token_id", None)
    return str(token) if token else ANONYMOUS


def collection_or_blank(name: Any) -> str:
    return name if isinstance(name, str) and COLLECTION_NAME.match(name) else ""


class UsageStats:
    """Counts requests, frames, recognitions and latencies; reads them back for /v1/stats."""

    def __init__(self, client: redis.Redis, prefix: str = "cl", clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.prefix = prefix
        self.clock = clock
        self.node = secrets.token_hex(6)
        self._pending: Counter[str] = Counter()
        self._items: Counter[tuple[str, str]] = Counter()
        # One thread: a read queued after a flush sees what the flush wrote.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage")
        self._flusher: PeriodicCallback | None = None
        self._flushing = False
        self.active_streams: Callable[[], int] = lambda: 0
        self._last_failure_logged = 0.0

        # Per-process metrics for operators (GET /metrics); Redis holds the deployment-wide ones.
        self.registry = CollectorRegistry()
        self.requests_total = PromCounter(
            "catchlight_requests", "HTTP API requests answered.", ["endpoint", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "catchlight_request_duration_seconds",
            "Time to answer an HTTP API request, or a stream frame (endpoint 'stream frame').",
            ["endpoint"],
            buckets=[b / 1000.0 for b in LATENCY_BUCKETS_MS],
            registry=self.registry,
        )
        self.frames_total = PromCounter(
            "catchlight_stream_frames", "Frames received over stream websockets.", ["collection"], registry=self.registry
        )
        self.recognitions_total = PromCounter(
            "catchlight_recognitions", "Items recognized (one per item per image).", ["collection"], registry=self.registry
        )
        self.streams_gauge = Gauge("catchlight_active_streams", "Open stream websockets.", registry=self.registry)
        self.streams_gauge.set_function(lambda: self.active_streams())

    # -- the hot path: memory only ----------------------------------------------

    def count_request(self, endpoint: str, status: int, seconds: float, collection: str = "", token: str = ANONYMOUS) -> None:
        """One HTTP API request answered."""
        self.requests_total.labels(endpoint, str(status)).inc()
        self._latency(endpoint, seconds)
        self._pending[f"requests|{collection}|{token}"] += 1

    def count_frame(self, collection: str, token: str = ANONYMOUS) -> None:
        """One stream frame received (answered or skipped)."""
        self.frames_total.labels(collection).inc()
        self._pending[f"frames|{collection}|{token}"] += 1

    def count_frame_answered(self, seconds: float) -> None:
        self._latency("stream frame", seconds)

    def count_result(self, collection: str, items: Iterable[str], token: str = ANONYMOUS) -> None:
        """The items recognized in one image (HTTP or stream)."""
        found = 0
        for item in items:
            self._items[(collection, item)] += 1
            found += 1
        if found:
            self.recognitions_total.labels(collection).inc(found)
            self._pending[f"found|{collection}|{token}"] += found

    def _latency(self, endpoint: str, seconds: float) -> None:
        ms = seconds * 1000.0
        self.request_seconds.labels(endpoint).observe(seconds)
        self._pending[f"lat|{endpoint}|{latency_bucket(ms)}"] += 1
        self._pending[f"lat|{endpoint}|sum_us"] += int(round(ms * 1000.0))

    # -- flushing -------------------------------------------------------------------

    def start(self) -> None:
        """Flush every FLUSH_SECONDS from now on (call on the event loop)."""
        self._flusher = PeriodicCallback(self._tick, FLUSH_SECONDS * 1000)
        self._flusher.start()

    def _tick(self) -> None:
        if not self._flushing:
            asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Write what was counted so far; returns when it is in Redis (or kept for the next try)."""
        pending, items = self._pending, self._items
        self._pending, self._items = Counter(), Counter()
        self._flushing = True
        try:
            written = await self.run(self._write, pending, items)
        finally:
            self._flushing = False
        if not written:  # merged back here, on the loop, where the counting happens
            self._pending.update(pending)
            self._items.update(items)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking read or write of the statistics off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _key(self, resolution: Resolution, bucket: int) -> str:
        return f"{self.prefix}:stats:{resolution.name[0]}:{bucket}"

    def _write(self, pending: Counter[str], items: Counter[tuple[str, str]]) -> bool:
        now = self.clock()
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for resolution in RESOLUTIONS:
                    if not pending and not items:
                        break
                    key = self._key(resolution, int(now // resolution.seconds))
                    for field, n in pending.items():
                        pipe.hincrby(key, field, n)
                    for (collection, item), n in items.items():
                        pipe.hincrby(key, f"item|{collection}|{item}", n)
                    pipe.expire(key, resolution.keep_seconds)
                for (collection, item), n in items.items():
                    pipe.hincrby(f"{self.prefix}:stats:items:{collection}", item, n)
                pipe.set(f"{self.prefix}:stats:streams:{self.node}", self.active_streams(), ex=STREAMS_TTL_SECONDS)
                pipe.sadd(f"{self.prefix}:stats:nodes", self.node)
                pipe.execute()
            return True
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            # Kept for the next flush rather than lost; said once a minute.
            if now - self._last_failure_logged > 60:
                self._last_failure_logged = now
                log.warning("usage statistics not written, kept for later: %s", exc)
            return False

    async def close(self) -> None:
        """Stop flushing and write what is left."""
        if self._flusher is not None:
            self._flusher.stop()
        await self.flush()
        self._executor.shutdown(wait=False)

    # -- reading ------------------------------------------------------------------

    def item_totals(self, collection: str) -> dict[str, int]:
        """Recognitions of each item of `collection` since it was added (items never seen: absent)."""
        raw = self._run(self.redis.hgetall, f"{self.prefix}:stats:items:{collection}")
        return {as_text(k): int(v) for k, v in raw.items()}

    def item_counts(self, collection: str, range_name: str) -> dict[str, int]:
        """Recognitions of each item of `collection` within the range."""
        counts: Counter[str] = Counter()
        for _t, fields in self._buckets(range_name):
            for field, n in fields.items():
                kind, c, rest = _split(field)
                if kind == "item" and c == collection:
                    counts[rest] += n
        return dict(counts)

    def summary(
        self,
        range_name: str,
        collection: str | None = None,
        name_of: Callable[[str, str], str | None] = lambda collection, item: None,
    ) -> dict[str, Any]:
        """Everything the dashboard plots, for the last `range_name` ("1h", "24h", "7d", "30d").

        `name_of(collection, item)` names the top items (None for one since deleted).
        """
        resolution, count = _range(range_name)
        series = []
        totals: Counter[str] = Counter()
        per_collection: dict[str, Counter[str]] = {}
        per_token: dict[str, Counter[str]] = {}
        items: Counter[tuple[str, str]] = Counter()
        latency: dict[str, Counter[str]] = {}
        for start, fields in self._buckets(range_name):
            point: Counter[str] = Counter()
            for field, n in fields.items():
                kind, c, rest = _split(field)
                if kind in ("requests", "frames", "found"):
                    if collection is not None and c != collection:
                        continue
                    name = "recognitions" if kind == "found" else kind
                    point[name] += n
                    per_collection.setdefault(c, Counter())[name] += n
                    per_token.setdefault(rest, Counter())[name] += n
                elif kind == "item":
                    if collection is None or c == collection:
                        items[(c, rest)] += n
                elif kind == "lat":
                    latency.setdefault(c, Counter())[rest] += n
            totals.update(point)
            series.append({"t": start, **_kinds(point)})
        return {
            "range": range_name,
            "resolution": resolution.name,
            "collection": collection,
            "generated": round(self.clock(), 3),
            "totals": _kinds(totals),
            "series": series,
            "collections": [
                {"collection": c, **_kinds(v)} for c, v in sorted(per_collection.items()) if c
            ],
            "tokens": [{"token": t, **_kinds(v)} for t, v in sorted(per_token.items())],
            "top_items": [
                {"collection": c, "item": i, "name": name_of(c, i), "recognitions": n}
                for (c, i), n in sorted(items.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ITEMS]
            ],
            "latency": [_histogram(endpoint, counts) for endpoint, counts in sorted(latency.items())],
            "active_streams": self.streams_now(),
        }

    def streams_now(self) -> int:
        """Open streams over every node that reported in the last few seconds."""

        def read() -> int:
            nodes = [as_text(n) for n in self.redis.smembers(f"{self.prefix}:stats:nodes")]
            if not nodes:
                return 0
            values = self.redis.mget([f"{self.prefix}:stats:streams:{n}" for n in nodes])
            gone = [n for n, v in zip(nodes, values, strict=True) if v is None and n != self.node]
            if gone:
                self.redis.srem(f"{self.prefix}:stats:nodes", *gone)
            return sum(int(v) for v in values if v is not None)

        result: int = self._run(read)
        return result

    def _buckets(self, range_name: str) -> list[tuple[int, dict[str, int]]]:
        """(bucket start in Unix seconds, fields) of every bucket of the range, oldest first."""
        resolution, count = _range(range_name)
        last = int(self.clock() // resolution.seconds)
        numbers = list(range(last - count + 1, last + 1))

        def read() -> list[Any]:
            with self.redis.pipeline(transaction=False) as pipe:
                for n in numbers:
                    pipe.hgetall(self._key(resolution, n))
                replies: list[Any] = pipe.execute()
                return replies

        replies = self._run(read)
        return [
            (n * resolution.seconds, {as_text(k): int(v) for k, v in reply.items()})
            for n, reply in zip(numbers, replies, strict=True)
        ]

    def _run(self, fn: Any, *args: Any) -> Any:
        return call_redis("the statistics store", fn, *args)

    def metrics(self) -> bytes:
        """The Prometheus text exposition of this process's metrics."""
        return generate_latest(self.registry)


def _range(name: str) -> tuple[Resolution, int]:
    try:
        return RANGES[name]
    except KeyError:
        raise UnknownRange(f"range must be one of {', '.join(RANGES)}") from None


def _split(field: str) -> tuple[str, str, str]:
    kind, _, rest = field.partition("|")
    middle, _, last = rest.rpartition("|")
    return kind, middle, last


def _kinds(counts: Counter[str]) -> dict[str, int]:
    return {k: int(counts[k]) for k in ("requests", "frames", "recognitions")}


def _histogram(endpoint: str, counts: Counter[str]) -> dict[str, Any]:
    total = sum(n for k, n in counts.items() if k != "sum_us")
    bounds = [*map(str, LATENCY_BUCKETS_MS), "inf"]
    return {
        "endpoint": endpoint,
        "count": total,
        "mean_ms": round(counts["sum_us"] / 1000.0 / total, 2) if total else 0.0,
        "buckets": [{"le_ms": None if b == "inf" else float(b), "count": int(counts[b])} for b in bounds],
        "p50_ms": _quantile(bounds, counts, total, 0.5),
        "p95_ms": _quantile(bounds, counts, total, 0.95),
    }


def _quantile(bounds: list[str], counts: Counter[str], total: int, q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile (None when it is the open-ended bucket)."""
    if not total:
        return None
    seen = 0
    for b in bounds:
        seen += counts[b]
        if seen >= math.ceil(q * total):
            return None if b == "inf" else float(b)
    return None

