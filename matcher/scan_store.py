"""Video scan jobs in Redis: what was asked, how far it got, what it saw.

Layout (prefix `cl` by default):
  cl:scans                    ZSET  scan ids by creation time
  cl:scan:{id}                HASH  job (JSON, fixed at creation), state, error, video, samples_done,
                                    samples_total, started, finished, heartbeat, resumed, webhook
  cl:scan:{id}:hits           LIST  JSON [sample, item, name, score], one per item seen per sample
  cl:scans:queue:{runner}     LIST  scan ids waiting for the runner that owns their video file

Progress and hits are written in one transaction per batch of samples, so a
runner that stops anywhere leaves a consistent prefix: a resumed scan
continues at `samples_done` and keeps every hit before it. No OpenCV here (the
server reads and creates scans through this module).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from matcher.redis_client import connect
from matcher.store import as_text, call_redis
from matcher.timeline import Hit, ItemTimeline, merge_hits

SCAN_ID = re.compile(r"^[0-9a-f]{16}$")
STATES = ("queued", "running", "done", "failed")
FINISHED = ("done", "failed")


class ScanNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ScanJob:
    """What a scan was asked to do; fixed when it is created."""

    scan: str
    collection: str
    filename: str
    video_path: str
    """Where the video is on the runner's machine."""
    keep_video: bool
    """False for uploads (deleted when the job ends); True for a file the command line was given."""
    sample_rate: float
    max_gap: int
    runner: str
    """Which runner may process it: the one that can read `video_path`."""
    created: float

    @staticmethod
    def new(
        collection: str,
        filename: str,
        video_path: str,
        keep_video: bool,
        sample_rate: float,
        max_gap: int,
        runner: str,
        scan: str | None = None,
    ) -> ScanJob:
        return ScanJob(
            scan or new_scan_id(),
            collection,
            filename,
            video_path,
            keep_video,
            float(sample_rate),
            int(max_gap),
            runner,
            round(time.time(), 3),
        )


@dataclass
class ScanRecord:
    job: ScanJob
    state: str
    error: dict[str, str] | None
    video: dict[str, Any] | None
    samples_done: int
    samples_total: int
    started: float | None
    finished: float | None
    heartbeat: float | None
    resumed: int
    webhook: dict[str, Any] | None
    hits: list[Hit] | None = None

    @property
    def finished_ok(self) -> bool:
        return self.state == "done"

    @property
    def sample_rate(self) -> float:
        """The rate used: the one asked for, capped at the video's frame rate once that is known."""
        return float(self.video["sample_rate"]) if self.video and self.video.get("sample_rate") else self.job.sample_rate

    def timelines(self) -> list[ItemTimeline]:
        duration = float(self.video["duration"]) if self.video and self.video.get("duration") else None
        return merge_hits(self.hits or [], self.sample_rate, self.job.max_gap, duration)

    def to_wire(self, with_items: bool = True) -> dict[str, Any]:
        total = self.samples_total
        body: dict[str, Any] = {
            "scan": self.job.scan,
            "collection": self.job.collection,
            "state": self.state,
            "error": self.error,
            "filename": self.job.filename,
            "sample_rate": self.sample_rate,
            "max_gap": self.job.max_gap,
            "video": self.video,
            "progress": {
                "samples_done": self.samples_done,
                "samples_total": total,
                "fraction": round(min(1.0, self.samples_done / total), 4) if total else (1.0 if self.finished_ok else None),
            },
            "created": self.job.created,
            "started": self.started,
            "finished": self.finished,
            "resumed": self.resumed,
            "webhook": self.webhook,
        }
        if self.hits is not None:
            timelines = self.timelines()
            body["items_found"] = len(timelines)
            if with_items:
                body["items"] = [t.to_wire() for t in timelines]
        return body


def new_scan_id() -> str:
    return secrets.token_hex(8)


def check_scan_id(scan: str) -> str:
    if not isinstance(scan, str) or not SCAN_ID.match(scan):
        raise ScanNotFound(f"no scan {scan}")
    return scan



def _float(value: Any) -> float | None:
    return None if value is None or value == b"" else float(value)


class ScanStore:
    def __init__(self, client: redis.Redis, prefix: str = "cl") -> None:
        self.redis = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "cl", timeout: float = 5.0) -> ScanStore:
        return cls(connect(url, timeout), prefix)

    def _k_all(self) -> str:
        return f"{self.prefix}:scans"

    def _k_scan(self, scan: str) -> str:
        return f"{self.prefix}:scan:{scan}"

    def _k_hits(self, scan: str) -> str:
        return f"{self.prefix}:scan:{scan}:hits"

    def _k_queue(self, runner: str) -> str:
        return f"{self.prefix}:scans:queue:{runner}"

    def _run(self, fn: Any, *args: Any) -> Any:
        return call_redis("the store", fn, *args)

    # -- writes ------------------------------------------------------------------

    def create(self, job: ScanJob, enqueue: bool = True) -> None:
        def write() -> None:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._k_scan(job.scan),
                    mapping={"job": json.dumps(asdict(job)), "state": "queued", "samples_done": 0, "samples_total": 0},
                )
                pipe.zadd(self._k_all(), {job.scan: job.created})
                if enqueue:
                    pipe.rpush(self._k_queue(job.runner), job.scan)
                pipe.execute()

        self._run(write)

    def start(self, scan: str, video: dict[str, Any], samples_total: int, resumed: bool) -> None:
        now = round(time.time(), 3)

        def write() -> None:
            with self.redis.pipeline(transaction=True) as pipe:
                key = self._k_scan(scan)
                pipe.hset(
                    key,
                    mapping={"state": "running", "video": json.dumps(video), "samples_total": samples_total, "heartbeat": now},
                )
                pipe.hsetnx(key, "started", now)
                if resumed:
                    pipe.hincrby(key, "resumed", 1)
                pipe.execute()

        self._run(write)

    def record(self, scan: str, samples_done: int, hits: Iterable[Hit]) -> None:
        """Samples up to `samples_done` are processed; `hits` are what the new ones saw (one transaction)."""
        rows = [json.dumps([h.sample, h.item, h.name, h.score]) for h in hits]

        def write() -> None:
            with self.redis.pipeline(transaction=True) as pipe:
                if rows:
                    pipe.rpush(self._k_hits(scan), *rows)
                pipe.hset(self._k_scan(scan), mapping={"samples_done": samples_done, "heartbeat": round(time.time(), 3)})
                pipe.execute()

        self._run(write)

    def finish(self, scan: str, state: str, error: dict[str, str] | None = None, samples_total: int | None = None) -> None:
        assert state in FINISHED
        mapping: dict[Any, str | int | float] = {"state": state, "finished": round(time.time(), 3)}
        if error is not None:
            mapping["error"] = json.dumps(error)
        if samples_total is not None:
            mapping["samples_total"] = samples_total
        self._run(lambda: self.redis.hset(self._k_scan(scan), mapping=mapping))

    def set_webhook(self, scan: str, outcome: dict[str, Any]) -> None:
        self._run(lambda: self.redis.hset(self._k_scan(scan), "webhook", json.dumps(outcome)))

    # -- the runner's queue -------------------------------------------------------

    def next_queued(self, runner: str, timeout: float) -> str | None:
        """The next scan id queued for `runner`, waiting up to `timeout` seconds."""
        popped = self._run(self.redis.blpop, [self._k_queue(runner)], max(1, round(timeout)))
        return as_text(popped[1]) if popped else None

    def unfinished(self, runner: str | None = None) -> list[ScanRecord]:
        """Scans not done or failed (of one runner), oldest first."""
        return [r for r in self.list(newest_first=False) if r.state not in FINISHED and (runner is None or r.job.runner == runner)]

    # -- reads -------------------------------------------------------------------

    def get(self, scan: str, with_hits: bool = True) -> ScanRecord:
        check_scan_id(scan)

        def read() -> tuple[dict[bytes, bytes], list[bytes]]:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._k_scan(scan))
                if with_hits:
                    pipe.lrange(self._k_hits(scan), 0, -1)
                replies = pipe.execute()
            return replies[0], replies[1] if with_hits else []

        fields, rows = self._run(read)
        if not fields:
            raise ScanNotFound(f"no scan {scan}")
        record = _record(fields)
        if with_hits:
            hits = [Hit(int(s), str(i), str(n), float(sc)) for s, i, n, sc in (json.loads(r) for r in rows)]
            record.hits = [h for h in hits if h.sample < record.samples_done]
        return record

    def list(self, limit: int = 100, newest_first: bool = True) -> list[ScanRecord]:
        def read() -> list[ScanRecord]:
            ids = [as_text(i) for i in (self.redis.zrevrange if newest_first else self.redis.zrange)(self._k_all(), 0, limit - 1)]
            with self.redis.pipeline(transaction=False) as pipe:
                for scan in ids:
                    pipe.hgetall(self._k_scan(scan))
                replies = pipe.execute()
            return [_record(f) for f in replies if f]

        result: list[ScanRecord] = self._run(read)
        return result

    def ping(self) -> None:
        self._run(self.redis.ping)


def _record(fields: dict[bytes, bytes]) -> ScanRecord:
    f = {as_text(k): v for k, v in fields.items()}
    job = ScanJob(**json.loads(f["job"]))
    return ScanRecord(
        job=job,
        state=as_text(f.get("state", b"queued")),
        error=json.loads(f["error"]) if f.get("error") else None,
        video=json.loads(f["video"]) if f.get("video") else None,
        samples_done=int(f.get("samples_done") or 0),
        samples_total=int(f.get("samples_total") or 0),
        started=_float(f.get("started")),
        finished=_float(f.get("finished")),
        heartbeat=_float(f.get("heartbeat")),
        resumed=int(f.get("resumed") or 0),
        webhook=json.loads(f["webhook"]) if f.get("webhook") else None,
    )
