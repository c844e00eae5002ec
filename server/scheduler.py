"""Who gets the next idle worker: latest frame wins per stream, streams take turns.

Each stream holds at most one waiting frame; a newer frame replaces it and the
replaced one is answered `skipped`, so a slow pool never builds a backlog and
memory stays bounded by the number of streams. A stream keeps its place in the
turn order when its frame is replaced, so a fast sender cannot crowd out the
others. One-off HTTP jobs wait in one bounded queue that takes its turn like a
stream, on any worker.

Each stream is pinned to one worker, which keeps its tracking state
(matcher/session.py). Streams cost their worker unequally (a camera on a
tracked item costs a few ms a frame, one pointed at nothing runs full
recognition on every frame), and a busy worker serves its streams in turn, so
every stream of a worker gets as many frames through as the others there. So
streams are spread by what they cost, not by count: each stream's worker time
per frame is followed (a moving average), a new stream goes to the worker whose
streams cost least, and when one worker's streams cost well over another's
while frames wait, one stream moves (losing only its tracking state) at most
once a second. A replaced worker keeps its number, so its streams stay pinned
to the new process and start again from recognition.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from typing import Any

from server.pool import Job, WorkerPool

_COST_SMOOTHING = 0.2
"""Weight of a stream's latest frame in its moving average of worker time per frame."""
_UNEVEN = 0.1
"""Streams move when one worker's streams cost this much more than another's (a share of the costlier)."""
_MOVE_EVERY_S = 1.0
"""At most one stream moves per this many seconds: a moved stream's next frame is a full recognition."""
_CHECK_EVERY_S = 0.2
"""How often dispatching looks at the workers' load at all (it runs on the event loop, for every frame)."""
_SETTLE_S = 5.0
"""A stream that moved stays put this long, so its moving average forgets the recognition the move cost."""


class Overloaded(Exception):
    """The HTTP job queue is full."""


class Stream:
    """One websocket's claim on the pool."""

    _ids = itertools.count(1)

    def __init__(self, scheduler: Scheduler, collection: str = "") -> None:
        self.id = next(self._ids)
        self.scheduler = scheduler
        self.collection = collection
        self.opened = time.time()
        self.worker: int | None = None
        """Number of the worker this stream's frames go to (its tracking state lives there)."""
        self.pending: Job | None = None
        self.cost: float | None = None
        """Moving average of the worker seconds one of its frames takes; None before the first."""
        self.moved_at = 0.0
        self.received = 0
        self.processed = 0
        self.skipped = 0

    def counters(self) -> dict[str, int]:
        return {"received": self.received, "processed": self.processed, "skipped": self.skipped}

    def to_wire(self) -> dict[str, Any]:
        return {
            "stream": self.id,
            "collection": self.collection,
            "worker": self.worker,
            "opened": round(self.opened, 3),
            **self.counters(),
            "worker_ms": None if self.cost is None else round(self.cost * 1000.0, 2),
        }

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

    def record_cost(self, seconds: float) -> None:
        self.cost = seconds if self.cost is None else self.cost + _COST_SMOOTHING * (seconds - self.cost)

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
        self._moved_at = 0.0
        self._checked_at = 0.0
        self.moves = 0
        """Streams moved to another worker to even the workers' load."""

    def attach(self, pool: WorkerPool) -> None:
        self.pool = pool

    def open_stream(self, collection: str = "") -> Stream:
        stream = Stream(self, collection)
        self.streams[stream.id] = stream
        stream.worker = self._least_loaded()
        return stream

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)
        try:
            self._ready.remove(stream)
        except ValueError:
            pass
        if stream.worker is not None:
            self._tell_worker(stream.worker, stream.id)
        self._rebalance()

    # -- pinning --------------------------------------------------------------

    def _worker_count(self) -> int:
        return len(self.pool.workers) if self.pool is not None else 0

    def _costs(self) -> dict[int, float]:
        """Each stream's cost per frame; a stream not measured yet counts as a typical one (the mean of the others)."""
        known = [s.cost for s in self.streams.values() if s.cost is not None]
        typical = sum(known) / len(known) if known else 1.0
        return {s.id: typical if s.cost is None else s.cost for s in self.streams.values()}

    def _loads(self, costs: dict[int, float] | None = None) -> list[float]:
        """Per worker: the summed cost of the streams pinned to it."""
        costs = self._costs() if costs is None else costs
        loads = [0.0] * self._worker_count()
        for stream in self.streams.values():
            if stream.worker is not None and stream.worker < len(loads):
                loads[stream.worker] += costs[stream.id]
        return loads

    def _least_loaded(self) -> int | None:
        loads = self._loads()
        return loads.index(min(loads)) if loads else None

    def _rebalance(self, only_if_waiting: bool = False) -> None:
        """Move the one stream that best evens the costliest worker with the cheapest, when they differ by
        more than _UNEVEN (and, if `only_if_waiting`, frames wait for the costlier: an idle pool needs no move)."""
        now = time.monotonic()
        if now - self._moved_at < _MOVE_EVERY_S or (only_if_waiting and now - self._checked_at < _CHECK_EVERY_S):
            return
        self._checked_at = now
        costs = self._costs()
        loads = self._loads(costs)
        if len(loads) < 2:
            return
        busiest, idlest = loads.index(max(loads)), loads.index(min(loads))
        gap = loads[busiest] - loads[idlest]
        if gap <= _UNEVEN * loads[busiest]:
            return
        if only_if_waiting and not any(s is not None and s.worker == busiest for s in self._ready):
            return
        # Moving a stream of cost c leaves a gap of |gap - 2c|: the best is c nearest half the gap, and only c < gap helps.
        movable = [
            s for s in self.streams.values() if s.worker == busiest and now - s.moved_at >= _SETTLE_S and costs[s.id] < gap
        ]
        if not movable:
            return
        stream = min(movable, key=lambda s: abs(costs[s.id] - gap / 2))
        self._tell_worker(busiest, stream.id)
        stream.worker = idlest
        stream.moved_at = self._moved_at = now
        self.moves += 1

    def _tell_worker(self, number: int, stream_id: int) -> None:
        if self.pool is not None:
            self.pool.forget_stream(number, stream_id)

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
        """Give every idle worker the next job in turn: the first waiting stream pinned to it, or an HTTP job."""
        if self.pool is None:
            return
        self._rebalance(only_if_waiting=True)
        for worker in list(self.pool.workers):
            while worker.idle and self._ready:
                job = self._next_for(worker.number)
                if job is None:
                    break
                self.pool.run(worker, job)

    def _next_for(self, number: int) -> Job | None:
        position = 0
        while position < len(self._ready):
            turn = self._ready[position]
            if turn is None:
                del self._ready[position]
                job = self._next_request()
                if self._requests:
                    self._ready.append(None)
                if job is not None:
                    return job
                continue
            if not self._usable(turn.worker):
                # Its worker is gone or still starting (replaced after a crash): move on without waiting.
                turn.worker = number
            if turn.worker != number:
                position += 1
                continue
            del self._ready[position]
            job, turn.pending = turn.pending, None
            if job is not None:
                turn.processed += 1
                job.on_done = turn.record_cost
                return job
        return None

    def _usable(self, number: int | None) -> bool:
        return number is not None and number < self._worker_count() and self.pool is not None and self.pool.workers[number].ready

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
