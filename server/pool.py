"""The matcher process pool, seen from the event loop.

Each worker is a separate process (matcher.worker.run) connected by a pipe.
The loop writes one request to an idle worker and is woken when the reply is
readable, so no OpenCV work and no waiting happens on the loop. A worker that
dies or hangs is replaced and its job fails with a code instead of waiting
forever.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgpack
from tornado.ioloop import IOLoop

from matcher import worker as matcher_worker
from matcher.settings import MatcherSettings

log = logging.getLogger("catchlight.pool")

_START_TIMEOUT = 120.0  # loading a large collection from the store takes a while


class JobFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Job:
    request: dict[str, Any]
    future: asyncio.Future[dict[str, Any] | None]
    """The worker's reply; None when a newer frame of the same stream replaced this one."""
    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None
    on_done: Callable[[float], None] | None = None
    """Called with the seconds the worker spent on the job, when it answers."""


class Worker:
    def __init__(self, number: int, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.number = number
        self.process = process
        self.conn = conn
        self.job: Job | None = None
        self.ready = False
        self.jobs_done = 0
        self.timeout_handle: object | None = None
        self.follow: dict[str, Any] = {"state": "loading", "position": "0-0", "reloads": 0, "collections": {}}
        """The worker's last report on following the change log (matcher.worker.FollowStatus)."""
        self.follow_at = time.monotonic()

    @property
    def idle(self) -> bool:
        return self.ready and self.job is None


class WorkerPool:
    def __init__(
        self,
        size: int,
        settings: MatcherSettings,
        redis_url: str,
        prefix: str,
        job_timeout: float,
        on_idle: Callable[[], None],
        group: str = "",
    ) -> None:
        self.size = size
        self.group = group
        """The node group whose collections the workers hold ("": all of them)."""
        self.settings = settings
        self.redis_url = redis_url
        self.prefix = prefix
        self.job_timeout = job_timeout
        self.on_idle = on_idle
        self.workers: list[Worker] = []
        self.restarts = 0
        self._context = multiprocessing.get_context("spawn")
        self._closing = False
        self._ready_waiters: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        for number in range(self.size):
            self.workers.append(self._spawn(number))
        deadline = time.monotonic() + _START_TIMEOUT
        while not all(w.ready for w in self.workers):
            if time.monotonic() > deadline:
                raise RuntimeError("matcher workers did not become ready; see the log above")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._ready_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, 1.0)
            except TimeoutError:
                pass

    def _spawn(self, number: int) -> Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=matcher_worker.run,
            args=(child, self.settings, self.redis_url, self.prefix, self.group),
            name=f"catchlight-matcher-{number}",
            daemon=True,
        )
        process.start()
        child.close()
        worker = Worker(number, process, parent)
        IOLoop.current().add_handler(parent.fileno(), lambda fd, events: self._readable(worker), IOLoop.READ)
        return worker

    @property
    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.ready)

    def follow_states(self, stale_after: float = 15.0) -> list[dict[str, Any]]:
        """The change-log state of each ready worker; a follower silent for `stale_after` s counts as behind."""
        now = time.monotonic()
        states = []
        for worker in self.workers:
            if not worker.ready:
                continue  # being started or replaced: it answers no job yet
            state = dict(worker.follow)
            if now - worker.follow_at > stale_after:
                state["state"] = "behind"
            states.append(state)
        return states

    def idle_worker(self) -> Worker | None:
        for worker in self.workers:
            if worker.idle:
                return worker
        return None

    def forget_stream(self, number: int, stream_id: int) -> None:
        """Tell worker `number` to drop a stream's tracking state (no reply; safe while it works)."""
        if number >= len(self.workers) or self._closing:
            return
        worker = self.workers[number]
        try:
            worker.conn.send_bytes(msgpack.packb({"op": "forget_stream", "stream": stream_id}))
        except (BrokenPipeError, OSError):
            pass  # a dead worker's state is gone anyway; _readable replaces it

    def run(self, worker: Worker, job: Job) -> None:
        """Hand a job to an idle worker; its future resolves with the worker's reply."""
        assert worker.idle
        worker.job = job
        job.started = time.monotonic()
        try:
            worker.conn.send_bytes(msgpack.packb(job.request, use_bin_type=True))
        except (BrokenPipeError, OSError):
            self._replace(worker, JobFailed("worker_failed", "the matcher worker stopped; try again"))
            return
        worker.timeout_handle = IOLoop.current().call_later(self.job_timeout, self._timed_out, worker, job)

    def _timed_out(self, worker: Worker, job: Job) -> None:
        if worker.job is job:
            log.error("worker %d did not answer within %.0f s; replacing it", worker.number, self.job_timeout)
            self._replace(worker, JobFailed("timeout", "the frame took too long to process"))

    def _readable(self, worker: Worker) -> None:
        try:
            while worker.conn.poll():
                reply = msgpack.unpackb(worker.conn.recv_bytes(), raw=False)
                self._reply(worker, reply)
        except (EOFError, OSError):
            self._replace(worker, JobFailed("worker_failed", "the matcher worker stopped; try again"))

    def _reply(self, worker: Worker, reply: dict[str, Any]) -> None:
        if "follow" in reply:  # sent on its own by the worker's follower thread, not a job's answer
            worker.follow = reply["follow"]
            worker.follow_at = time.monotonic()
            return
        if reply.get("ready"):
            worker.ready = True
            log.info("matcher worker %d ready (pid %s)", worker.number, reply.get("pid"))
            for waiter in self._ready_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._ready_waiters.clear()
            self.on_idle()
            return
        job, worker.job = worker.job, None
        if worker.timeout_handle is not None:
            IOLoop.current().remove_timeout(worker.timeout_handle)
            worker.timeout_handle = None
        worker.jobs_done += 1
        if job is not None and job.on_done is not None and job.started is not None:
            job.on_done(time.monotonic() - job.started)
        if job is not None and not job.future.done():
            job.future.set_result(reply)
        self.on_idle()

    def _replace(self, worker: Worker, failure: JobFailed) -> None:
        job, worker.job = worker.job, None
        if job is not None and not job.future.done():
            job.future.set_exception(failure)
        IOLoop.current().remove_handler(worker.conn.fileno())
        if worker.timeout_handle is not None:
            IOLoop.current().remove_timeout(worker.timeout_handle)
        worker.conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        if self._closing:
            return
        self.restarts += 1
        log.warning("matcher worker %d exited (code %s); starting a new one", worker.number, worker.process.exitcode)
        self.workers[worker.number] = self._spawn(worker.number)

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until no worker is busy, so in-flight jobs are answered normally."""
        deadline = time.monotonic() + timeout
        while any(w.job is not None for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._closing = True
        for worker in self.workers:
            try:
                IOLoop.current().remove_handler(worker.conn.fileno())
            except (ValueError, OSError):
                pass
            job, worker.job = worker.job, None
            if job is not None and not job.future.done():
                job.future.set_exception(JobFailed("shutting_down", "the server is stopping"))
            worker.conn.close()  # the worker sees EOF and exits
        deadline = time.monotonic() + 5
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
