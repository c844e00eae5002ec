"""Who gets the next idle worker: latest frame wins per stream, streams take turns.

Each stream holds at most one waiting frame; a newer frame replaces it and the
replaced one is answered `skipped`, so a slow pool never builds a backlog and
memory stays bounded by the number of streams. One-off HTTP jobs wait in one
bounded queue that takes its turn like a stream.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from typing import Any

from server.pool import Job, WorkerPool


class Overloaded(Exception):
    """The HTTP job queue is full."""


class Stream:
    """One websocket's claim on the pool."""

    _ids = itertools.count(1)

    def __init__(self, scheduler: Scheduler) -> None:
        self.id = next(self._ids)
        self.scheduler = scheduler
        self.pending: Job | None = None
        self.received = 0
        self.processed = 0
        self.skipped = 0

    def submit(self, request: dict[str, Any]) -> Job:
        """Queue a frame; its future gives the worker's reply, or None if a newer frame replaced it."""
        self.received += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.pending is not None:
            self.pending.future.set_result(None)
            self.skipped += 1
        job = self.pending = Job(request, future)
        self.scheduler.wake(self)
        return job

    def fail_pending(self, failure: Exception) -> None:
        """Answer the waiting frame (if any) with `failure` instead of running it (server stopping)."""
        if self.pending is not None and not self.pending.future.done():
            self.pending.future.set_exception(failure)
        self.pending = None

    def close(self) -> None:
        if self.pending is not None and not self.pending.future.done():
            self.pending.future.cancel()
        self.pending = None
        self.scheduler.forget(self)


class Scheduler:
    def __init__(self, max_queued_requests: int) -> None:
        self.pool: WorkerPool | None = None
        self.max_queued_requests = max_queued_requests
        self.streams: dict[int, Stream] = {}
        self._ready: deque[Stream | None] = deque()  # None stands for the HTTP queue's turn
        self._requests: deque[Job] = deque()

    def attach(self, pool: WorkerPool) -> None:
        self.pool = pool

    def open_stream(self) -> Stream:
        stream = Stream(self)
        self.streams[stream.id] = stream
        return stream

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)
        try:
            self._ready.remove(stream)
        except ValueError:
            pass

    def submit_request(self, request: dict[str, Any]) -> Job:
        """Queue a one-off job (HTTP recognize, reference description)."""
        if len(self._requests) >= self.max_queued_requests:
            raise Overloaded("too many requests are waiting for a matcher worker")
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        job = Job(request, future)
        self._requests.append(job)
        if None not in self._ready:
            self._ready.append(None)
        self.dispatch()
        return job

    def wake(self, stream: Stream) -> None:
        if stream not in self._ready:
            self._ready.append(stream)
        self.dispatch()

    def dispatch(self) -> None:
        """Give every idle worker the next job in turn."""
        if self.pool is None:
            return
        while self._ready:
            worker = self.pool.idle_worker()
            if worker is None:
                return
            turn = self._ready.popleft()
            if turn is None:
                job = self._next_request()
                if self._requests:
                    self._ready.append(None)
            else:
                job, turn.pending = turn.pending, None
                if job is not None:
                    turn.processed += 1
            if job is not None:
                self.pool.run(worker, job)

    def _next_request(self) -> Job | None:
        while self._requests:
            job = self._requests.popleft()
            if not job.future.done():
                return job
        return None

    @property
    def queued_requests(self) -> int:
        return len(self._requests)


def timing(job: Job, reply: dict[str, Any]) -> dict[str, float]:
    """Where a frame's time went, in ms: queue, match (in the worker) and total, plus the worker's steps."""
    now = time.monotonic()
    out = dict(reply.get("timing") or {})
    out["queue_ms"] = round(((job.started or now) - job.enqueued) * 1000.0, 2)
    out["total_ms"] = round((now - job.enqueued) * 1000.0, 2)
    return out
