"""The camera stream: frames in over a websocket, one reply per frame out (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlparse

import tornado.websocket

from matcher.store import InvalidName, StoreUnavailable, check_collection_name
from server import protocol
from server.catalog import Catalog
from server.pool import Job, JobFailed
from server.scheduler import Scheduler, Stream, timing
from server.usage import UsageStats, token_of

log = logging.getLogger("catchlight.stream")

CLOSE_UNKNOWN_COLLECTION = 4404
CLOSE_STORE_UNAVAILABLE = 4503


class StreamHandler(tornado.websocket.WebSocketHandler):
    stream: Stream | None = None
    collection = ""

    @property
    def catalog(self) -> Catalog:
        catalog: Catalog = self.application.settings["catalog"]
        return catalog

    @property
    def scheduler(self) -> Scheduler:
        scheduler: Scheduler = self.application.settings["scheduler"]
        return scheduler

    @property
    def usage(self) -> UsageStats | None:
        return self.application.settings.get("usage")

    def check_origin(self, origin: str) -> bool:
        allowed = self.application.settings["config"].server.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return urlparse(origin).netloc == self.request.host

    async def open(self) -> None:
        config = self.application.settings["config"]
        self.collection = self.get_query_argument("collection", "") or config.server.demo_collection
        try:
            check_collection_name(self.collection)
            known = await self.catalog.in_store(self.catalog.store.has_collection, self.collection)
        except InvalidName as exc:
            await self._close_with(protocol.UNKNOWN_COLLECTION, str(exc), CLOSE_UNKNOWN_COLLECTION)
            return
        except StoreUnavailable as exc:
            await self._close_with("store_unavailable", str(exc), CLOSE_STORE_UNAVAILABLE)
            return
        if not known:
            message = f"no collection {self.collection}"
            await self._close_with(protocol.UNKNOWN_COLLECTION, message, CLOSE_UNKNOWN_COLLECTION)
            return
        self.stream = self.scheduler.open_stream()
        hello = protocol.hello(self.collection, config.server.max_message_bytes, config.matcher.frame_max_side)
        self._send(hello, binary=True)

    async def _close_with(self, code: str, message: str, close_code: int) -> None:
        self._send(protocol.error(code, message), binary=True)
        self.close(close_code, message[:120])

    def on_message(self, message: str | bytes) -> None:
        binary = isinstance(message, bytes)
        if self.stream is None:
            return
        limit = self.application.settings["config"].server.max_message_bytes
        if len(message) > limit:
            self._send(
                protocol.error(protocol.MESSAGE_TOO_LARGE, f"messages are limited to {limit} bytes"), binary
            )
            return
        try:
            frame = protocol.decode_client_message(message)
        except protocol.ProtocolError as exc:
            self._send(protocol.error(exc.code, exc.message, exc.frame_id), binary)
            return
        if self.usage is not None:
            self.usage.count_frame(self.collection, token_of(self))
        job = self.stream.submit({"op": "recognize", "collection": self.collection, "image": frame.image})
        asyncio.ensure_future(self._answer(frame.id, job, binary))

    async def _answer(self, frame_id: int, job: Job, binary: bool) -> None:
        try:
            reply = await job.future
        except asyncio.CancelledError:
            return
        except JobFailed as exc:
            self._send(protocol.error(exc.code, exc.message, frame_id), binary)
            return
        except Exception:
            log.exception("frame %s failed", frame_id)
            self._send(protocol.error(protocol.INTERNAL, "internal error", frame_id), binary)
            return
        if reply is None:
            self._send(protocol.skipped(frame_id), binary)
        elif not reply.get("ok"):
            self._send(protocol.error(reply.get("code", protocol.INTERNAL), reply.get("message", ""), frame_id), binary)
        else:
            spent = timing(job, reply)
            if self.usage is not None:
                self.usage.count_frame_answered(spent["total_ms"] / 1000.0)
                self.usage.count_result(self.collection, [m["item"] for m in reply["items"]], token_of(self))
            self._send(protocol.result(frame_id, reply, spent), binary)

    def _send(self, message: dict[str, Any], binary: bool) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        try:
            self.write_message(protocol.encode(message, binary), binary=binary)
        except tornado.websocket.WebSocketClosedError:
            pass

    def on_close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
