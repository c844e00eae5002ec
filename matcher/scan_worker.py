"""Video scans: sample a video, recognize each sample, record progress and hits in the store.

`run_scan` does one job; the command line calls it in its own process, and the
server runs `run_runner` in one dedicated process per node (see
docs/architecture.md, "Video scans"). The runner takes jobs from its queue in
the store, resumes the ones a previous runner left unfinished, and calls the
configured webhook with the summary when a job ends.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import faiss

from matcher.decode import frame_from_array
from matcher.process_name import SCANS, set_process_name
from matcher.recognizer import Recognizer
from matcher.scan_store import ScanJob, ScanNotFound, ScanRecord, ScanStore
from matcher.settings import MatcherSettings
from matcher.store import CollectionStore, RedisCollectionStore, StoreError
from matcher.timeline import Hit
from matcher.video import VideoError, probe, sample_frames

log = logging.getLogger("catchlight.scans")

PROGRESS_EVERY_S = 0.5  # progress and hits are written at most this often (and at the end)
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_ATTEMPTS = 3
RUNNER_NICE = 10  # below the matcher workers: live camera frames get the cores first

ProgressCallback = Callable[[int, int], None]


class ScanFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def run_scan(
    job: ScanJob,
    collections: CollectionStore,
    scans: ScanStore,
    settings: MatcherSettings,
    on_progress: ProgressCallback | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> str:
    """Process `job` from where the store says it got to; returns the state it ends in.

    "running" means `keep_going` said stop: the job stays resumable. Store errors propagate.
    """
    path = Path(job.video_path)
    state = "running"
    try:
        record = scans.get(job.scan, with_hits=False)
        if not path.is_file():
            raise ScanFailed("video_missing", "the uploaded video is no longer on the server (it cannot be resumed)")
        info = probe(path)
        rate = min(job.sample_rate, info.fps)
        total = info.samples(rate)
        if not collections.has_collection(job.collection):
            raise ScanFailed("unknown_collection", f"no collection {job.collection}")
        recognizer = Recognizer(settings)
        recognizer.load(job.collection, list(collections.references(job.collection)))
        video = {
            "fps": round(info.fps, 3),
            "frames": info.frames,
            "width": info.width,
            "height": info.height,
            "duration": round(info.duration, 3),
            "sample_rate": rate,
        }
        first = record.samples_done
        scans.start(job.scan, video, total, resumed=record.state == "running" or first > 0)
        if on_progress:
            on_progress(first, total)
        pending: list[Hit] = []
        done = first
        written = time.monotonic()
        for sample in sample_frames(path, info, rate, first):
            if not keep_going():
                scans.record(job.scan, done, pending)
                return state
            result = recognizer.recognize_image(job.collection, frame_from_array(sample.frame, settings.frame_max_side))
            pending.extend(Hit(sample.index, m.item, m.name, m.score) for m in result.matches)
            done = sample.index + 1
            if time.monotonic() - written >= PROGRESS_EVERY_S:
                scans.record(job.scan, done, pending)
                pending = []
                written = time.monotonic()
                if on_progress:
                    on_progress(done, max(total, done))
        scans.record(job.scan, done, pending)
        if on_progress:
            on_progress(done, done)
        state = "done"
        scans.finish(job.scan, state, samples_total=done)
    except VideoError as exc:
        state = "failed"
        scans.finish(job.scan, state, {"code": exc.code, "message": exc.message})
    except ScanFailed as exc:
        state = "failed"
        scans.finish(job.scan, state, {"code": exc.code, "message": exc.message})
    except StoreError:
        raise  # the job stays resumable; the runner retries when the store is back
    except Exception as exc:
        log.exception("scan %s failed", job.scan)
        state = "failed"
        scans.finish(job.scan, state, {"code": "internal", "message": f"{type(exc).__name__}: {exc}"})
    finally:
        if state != "running" and not job.keep_video:
            path.unlink(missing_ok=True)
    return state


def call_webhook(url: str, summary: dict[str, Any]) -> dict[str, Any]:
    """POST the summary as JSON; returns the outcome stored with the scan (never raises)."""
    body = json.dumps({"event": "scan.finished", "scan": summary}, separators=(",", ":")).encode()
    outcome: dict[str, Any] = {}
    for attempt in range(WEBHOOK_ATTEMPTS):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "catchlight"}
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                return {"status": "delivered", "http_status": response.status, "attempts": attempt + 1}
        except urllib.error.HTTPError as exc:
            outcome = {"status": "failed", "http_status": exc.code, "attempts": attempt + 1}
            if exc.code < 500:
                return outcome
        except (urllib.error.URLError, OSError, ValueError) as exc:
            outcome = {"status": "failed", "message": str(getattr(exc, "reason", exc)), "attempts": attempt + 1}
        if attempt + 1 < WEBHOOK_ATTEMPTS:
            time.sleep(0.5 * 2**attempt)
    return outcome


def notify(scans: ScanStore, scan: str, webhook_url: str) -> None:
    if not webhook_url:
        return
    summary = scans.get(scan).to_wire()
    scans.set_webhook(scan, call_webhook(webhook_url, summary))


def cli_runner_id() -> str:
    return f"cli:{socket.gethostname()}:{os.getpid()}"


def _abandoned_by_cli(record: ScanRecord) -> bool:
    """A scan the command line was running on this machine, in a process that no longer exists."""
    kind, _, rest = record.job.runner.partition(":")
    host, _, pid = rest.rpartition(":")
    if kind != "cli" or host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def run_runner(settings: MatcherSettings, redis_url: str, prefix: str, runner: str, webhook_url: str) -> None:
    """Entry point of the scan process: resume unfinished scans, then take queued ones until the server goes."""
    set_process_name(SCANS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s scans[{os.getpid()}] %(levelname)s %(message)s")
    try:
        os.nice(RUNNER_NICE)
    except OSError:
        pass
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    # The server as multiprocessing knows it: right even when it died while this process started.
    server = multiprocessing.parent_process()

    def server_alive() -> bool:
        return server is None or server.is_alive()

    collections = RedisCollectionStore.from_url(redis_url, prefix)
    scans = ScanStore.from_url(redis_url, prefix)

    def process(record: ScanRecord) -> None:
        log.info("scan %s of %s: %s", record.job.scan, record.job.filename, "resuming" if record.samples_done else "starting")
        state = run_scan(record.job, collections, scans, settings, keep_going=server_alive)
        log.info("scan %s: %s", record.job.scan, state)
        if state != "running":
            notify(scans, record.job.scan, webhook_url)

    def sweep() -> None:
        for record in scans.unfinished():
            if record.job.runner == runner:
                process(record)
            elif _abandoned_by_cli(record):
                scans.finish(record.job.scan, "failed", {"code": "interrupted", "message": "the command that ran this scan stopped"})
                notify(scans, record.job.scan, webhook_url)

    swept = False
    while server_alive():
        try:
            if not swept:
                sweep()  # scans this node's previous runner left unfinished are resumed (or failed with a reason)
                swept = True
            scan = scans.next_queued(runner, 1.0)
            if scan is None:
                continue
            try:
                record = scans.get(scan, with_hits=False)
            except ScanNotFound:
                continue
            if record.state == "queued":
                process(record)
        except StoreError as exc:
            log.warning("store unreachable, retrying: %s", exc)
            swept = False  # a scan cut short by the outage is picked up again
            time.sleep(1.0)
        except Exception:
            log.exception("scan runner fault; continuing")
            time.sleep(1.0)
