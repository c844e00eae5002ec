"""Video scans as a service: accept uploads, create jobs, read progress and results; run the scan process.

Uploads are written to `<data_dir>/scans/` and handed to this node's scan
process (matcher.scan_worker.run_runner) through a queue in the store; the
process deletes the video when the job ends. Job state, progress and hits live
in the store (matcher.scan_store), so they survive a restart of the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import multiprocessing
import os
import re
import secrets
import socket
from pathlib import Path
from typing import IO, Any

from tornado.httputil import HTTPFile, parse_body_arguments
from tornado.ioloop import IOLoop, PeriodicCallback

from matcher import scan_worker
from matcher.scan_store import ScanJob, ScanNotFound, ScanStore, check_scan_id
from matcher.settings import MatcherSettings
from matcher.store import check_collection_name
from server.catalog import Catalog, RequestRejected
from server.config import ServerSettings

log = logging.getLogger("catchlight.scans")

MAX_SAMPLE_RATE = 60.0
SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class Upload:
    """A request body being written to a file (never held in memory whole)."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self.file: IO[bytes] | None = open(path, "wb")  # noqa: SIM115 - closed in finish()/discard()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise RequestRejected("body_too_large", f"the video is larger than the limit of {self.limit} bytes")
        assert self.file is not None
        self.file.write(chunk)

    def finish(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def discard(self) -> None:
        self.finish()
        self.path.unlink(missing_ok=True)


class Scans:
    def __init__(self, store: ScanStore, catalog: Catalog, settings: ServerSettings) -> None:
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self.folder = Path(settings.data_dir).resolve() / "scans"
        # The runner that can read this node's uploads: this machine, this data directory.
        self.runner = f"{socket.gethostname()}:{self.folder}"

    def open_upload(self) -> Upload:
        self.folder.mkdir(parents=True, exist_ok=True)
        return Upload(self.folder / f"upload-{secrets.token_hex(8)}.part", self.settings.max_scan_bytes)

    def sample_rate(self, value: str | None) -> float:
        if value is None or value == "":
            return self.settings.scan_sample_rate
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not (0 < rate <= MAX_SAMPLE_RATE):
            raise RequestRejected("invalid_request", f"sample_rate must be a number of frames per second, above 0 and at most {MAX_SAMPLE_RATE:g}")
        return rate

    async def video_of_form(self, upload: Upload, content_type: str) -> tuple[Path, str, dict[str, str]]:
        """The `video` file part of a multipart body (written to its own file) and the other fields."""

        def parse() -> tuple[Path, str, dict[str, str]]:
            arguments: dict[str, list[bytes]] = {}
            files: dict[str, list[HTTPFile]] = {}
            parse_body_arguments(content_type, upload.path.read_bytes(), arguments, files)
            fields = {k: v[0].decode("utf-8", errors="replace") for k, v in arguments.items() if v}
            for name, parts in files.items():
                if name != "video" and parts:
                    fields.setdefault(name, parts[0].body.decode("utf-8", errors="replace"))
            videos = files.get("video")
            if not videos or not videos[0].body:
                raise RequestRejected("invalid_request", "the multipart form needs a 'video' file")
            video = upload.path.with_suffix(".video")
            video.write_bytes(videos[0].body)
            return video, videos[0].filename or "video", fields

        try:
            return await self.catalog.in_store(parse)
        finally:
            upload.discard()

    async def create(self, video: Path, filename: str, collection: str | None, sample_rate: str | None) -> dict[str, Any]:
        """Queue a scan of the video at `video` (a file this service now owns)."""
        try:
            if not collection:
                raise RequestRejected("invalid_request", "name the collection: a 'collection' field or ?collection=NAME")
            check_collection_name(collection)
            rate = self.sample_rate(sample_rate)
            if os.path.getsize(video) == 0:
                raise RequestRejected("invalid_request", "the video is empty")
            await self.catalog.check_served(collection)  # the scan process loads it on this node
            suffix = Path(filename).suffix
            job = ScanJob.new(
                collection,
                Path(filename).name[:200] or "video",
                "",
                keep_video=False,
                sample_rate=rate,
                max_gap=self.settings.scan_max_gap,
                runner=self.runner,
            )
            # Keep the container's extension: FFmpeg guesses some formats from it.
            target = self.folder / f"{job.scan}{suffix if SAFE_SUFFIX.match(suffix) else '.video'}"
            video.rename(target)
            video = target
            job = dataclasses.replace(job, video_path=str(target))
            await self.catalog.in_store(self.store.create, job)
        except BaseException:
            video.unlink(missing_ok=True)
            raise
        return await self.get(job.scan)

    async def get(self, scan: str) -> dict[str, Any]:
        try:
            record = await self.catalog.in_store(self.store.get, check_scan_id(scan))
        except ScanNotFound:
            raise RequestRejected("not_found", f"no scan {scan}") from None
        return record.to_wire()

    async def list(self) -> list[dict[str, Any]]:
        records = await self.catalog.in_store(self.store.list)
        return [r.to_wire() for r in records]


class ScanProcess:
    """This node's scan runner: one process below the matcher workers' priority, restarted if it dies."""

    def __init__(self, settings: MatcherSettings, redis_url: str, prefix: str, runner: str, webhook_url: str) -> None:
        self.args = (settings, redis_url, prefix, runner, webhook_url)
        self._context = multiprocessing.get_context("spawn")
        self.process: multiprocessing.process.BaseProcess | None = None
        self._watch: PeriodicCallback | None = None
        self.restarts = 0

    def start(self) -> None:
        self._spawn()
        self._watch = PeriodicCallback(self._check, 2000)
        self._watch.start()

    def _spawn(self) -> None:
        self.process = self._context.Process(
            target=scan_worker.run_runner, args=self.args, name="catchlight-scans", daemon=True
        )
        self.process.start()

    def _check(self) -> None:
        if self.process is not None and not self.process.is_alive():
            self.restarts += 1
            log.warning("scan process exited (code %s); starting a new one", self.process.exitcode)
            self._spawn()  # it resumes the scan that was running

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        if self.process is not None and self.process.is_alive():
            self.process.terminate()  # the scan it was on stays "running" and is resumed at the next start
            await IOLoop.current().run_in_executor(None, self.process.join, 5)
            if self.process.is_alive():
                self.process.kill()
        await asyncio.sleep(0)
