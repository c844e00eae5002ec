"""The camera stream: frames in over a websocket, one reply per frame out (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlparse

import tornado.websocket

from matcher.store import InvalidName, check_collection_name
from server import protocol
from server.access import ANONYMOUS, RECOGNIZE, Access, Forbidden, Unauthorized
from server.catalog import Catalog, RequestRejected
from server.credentials import Credential
from server.handlers.base import FORBIDDEN_MESSAGE, UNAUTHORIZED_MESSAGE, presented_secret
from server.pool import Job, JobFailed
from server.scheduler import Scheduler, Stream, timing
from server.usage import UsageStats, token_of

log = logging.getLogger("catchlight.stream")

CLOSE_GOING_AWAY = 1001  # the server is stopping
CLOSE_NOT_READING = 1008  # replies piled up: the client does not read them
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNKNOWN_COLLECTION = 4404
CLOSE_COLLECTION_NOT_SERVED = 4421
CLOSE_TOO_MANY_STREAMS = 4429
CLOSE_STORE_UNAVAILABLE = 4503


class StreamHandler(tornado.websocket.WebSocketHandler):
    stream: Stream | None = None
    collection = ""
    credential: Credential | None = None
    _counted = False
    _unsent = 0
    _stopping = False
    _auth_timer: asyncio.TimerHandle | None = None

    @property
    def catalog(self) -> Catalog:
        catalog: Catalog = self.application.settings["catalog"]
        return catalog

    @property
    def scheduler(self) -> Scheduler:
        scheduler: Scheduler = self.application.settings["scheduler"]
        return scheduler

    @property
    def access(self) -> Access:
        access: Access = self.application.settings["access"]
        return access

    @property
    def handlers(self) -> set[StreamHandler]:
        handlers: set[StreamHandler] = self.application.settings["streams"]
        return handlers

    @property
    def usage(self) -> UsageStats | None:
        return self.application.settings.get("usage")

    @property
    def token_id(self) -> str | None:
        """The public id of the stream's credential, for usage statistics (None: anonymous)."""
        credential = self.credential
        return None if credential is None or credential is ANONYMOUS else credential.id

    def check_origin(self, origin: str) -> bool:
        allowed = self.application.settings["config"].server.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return urlparse(origin).netloc == self.request.host

    def prepare(self) -> None:
        """Before the upgrade: a credential given in the header or query is checked here, as in HTTP."""
        config = self.application.settings["config"]
        self.collection = self.get_query_argument("collection", "") or config.server.demo_collection
        secret = presented_secret(self.request)
        if secret is None and not self.access.open:
            return  # a browser: the credential comes as the first message
        try:
            self.credential = self.access.authenticate(secret)
            self.access.authorize(self.credential, RECOGNIZE, self.collection)
        except Unauthorized:
            self._refuse(401, protocol.UNAUTHORIZED, UNAUTHORIZED_MESSAGE)
        except Forbidden:
            self._refuse(403, protocol.FORBIDDEN, FORBIDDEN_MESSAGE)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self.set_status(status)
        if status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="catchlight"')
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": {"code": code, "message": message}}))

    async def open(self) -> None:
        self.handlers.add(self)
        if self.credential is None:
            timeout = self.application.settings["config"].server.auth_timeout_seconds
            loop = asyncio.get_running_loop()
            self._auth_timer = loop.call_later(timeout, self._auth_timed_out)
            return
        await self._start()

    def _auth_timed_out(self) -> None:
        if self.credential is None:
            self._close_with(protocol.UNAUTHORIZED, UNAUTHORIZED_MESSAGE, CLOSE_UNAUTHORIZED)

    async def _authenticate(self, token: str) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        try:
            credential = self.access.authenticate(token)
            self.access.authorize(credential, RECOGNIZE, self.collection)
        except Unauthorized:
            self._close_with(protocol.UNAUTHORIZED, UNAUTHORIZED_MESSAGE, CLOSE_UNAUTHORIZED)
            return
        except Forbidden:
            self._close_with(protocol.FORBIDDEN, FORBIDDEN_MESSAGE, CLOSE_FORBIDDEN)
            return
        self.credential = credential
        await self._start()

    async def _start(self) -> None:
        assert self.credential is not None
        config = self.application.settings["config"]
        try:
            check_collection_name(self.collection)
            # With the store unreachable this passes: the workers answer from memory, and a
            # collection they do not hold gets unknown_collection (or collection_not_served).
            await self.catalog.check_served(self.collection)
        except InvalidName as exc:
            self._close_with(protocol.UNKNOWN_COLLECTION, str(exc), CLOSE_UNKNOWN_COLLECTION)
            return
        except RequestRejected as exc:
            not_served = exc.code == protocol.COLLECTION_NOT_SERVED
            self._send({**protocol.error(exc.code, exc.message), **exc.details}, binary=True)  # names the group
            self.close(CLOSE_COLLECTION_NOT_SERVED if not_served else CLOSE_UNKNOWN_COLLECTION, exc.message[:120])
            return
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        if not self.access.open_stream(self.credential):
            limit = self.access.max_streams
            message = f"this credential has {limit} streams open already, the most allowed"
            self._close_with(protocol.TOO_MANY_STREAMS, message, CLOSE_TOO_MANY_STREAMS)
            return
        self._counted = True
        self.stream = self.scheduler.open_stream(self.collection)
        hello = protocol.hello(self.collection, config.server.max_message_bytes, config.matcher.frame_max_side)
        self._send(hello, binary=True)

    def _close_with(self, code: str, message: str, close_code: int) -> None:
        self._send(protocol.error(code, message), binary=True)
        self.close(close_code, message[:120])

    def on_message(self, message: str | bytes) -> None:
        binary = isinstance(message, bytes)
        server = self.application.settings["config"].server
        limit = server.max_message_bytes
        if len(message) > limit:
            self._send(protocol.error(protocol.MESSAGE_TOO_LARGE, f"messages are limited to {limit} bytes"), binary)
            return
        try:
            decoded = protocol.decode_client_message(message)
        except protocol.ProtocolError as exc:
            if self.credential is None:
                self._close_with(protocol.UNAUTHORIZED, UNAUTHORIZED_MESSAGE, CLOSE_UNAUTHORIZED)
            else:
                self._send(protocol.error(exc.code, exc.message, exc.frame_id), binary)
            return
        if isinstance(decoded, protocol.AuthMessage):
            if self.credential is None:
                asyncio.ensure_future(self._authenticate(decoded.token))
            return  # already authenticated: nothing to answer
        if self.credential is None:
            self._close_with(protocol.UNAUTHORIZED, UNAUTHORIZED_MESSAGE, CLOSE_UNAUTHORIZED)
            return
        if self._stopping:
            self._send(protocol.error(protocol.SHUTTING_DOWN, "the server is stopping", decoded.id), binary)
            return
        if self.stream is None:
            return  # not started yet, or closing
        if len(decoded.image) > server.max_image_bytes:
            message_text = f"the image is {len(decoded.image)} bytes, the limit is {server.max_image_bytes}"
            self._send(protocol.error(protocol.IMAGE_TOO_LARGE, message_text, decoded.id), binary)
            return
        if not self.access.frame_allowed(self.credential):
            message_text = "this credential sends more frames per second than it may"
            self._send(protocol.error(protocol.RATE_LIMITED, message_text, decoded.id), binary)
            return
        if self.usage is not None:
            self.usage.count_frame(self.collection, token_of(self))
        # `at`: when the frame arrived, so the worker's tracking knows how far apart in time its frames are
        # (the monotonic clock is the machine's, shared with the worker processes).
        job = self.stream.submit(
            {
                "op": "recognize",
                "collection": self.collection,
                "image": decoded.image,
                "stream": self.stream.id,
                "at": time.monotonic(),
            }
        )
        asyncio.ensure_future(self._answer(decoded.id, job, binary))

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
            counters = self.stream.counters() if self.stream is not None else None
            self._send(protocol.result(frame_id, reply, spent, counters), binary)

    def _send(self, message: dict[str, Any], binary: bool) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        data = protocol.encode(message, binary)
        limit = self.application.settings["config"].server.max_unsent_bytes
        if self._unsent + len(data) > limit:
            # The client does not read its replies (or its network cannot take them): stop here rather than
            # buffer without bound. The close frame may never arrive; tornado aborts the connection after a timeout.
            log.warning("closing a stream whose client has %d bytes of replies unread", self._unsent)
            self.close(CLOSE_NOT_READING, "replies are not being read")
            return
        self._unsent += len(data)
        try:
            written = self.write_message(data, binary=binary)
        except tornado.websocket.WebSocketClosedError:
            return
        size = len(data)
        written.add_done_callback(lambda _: self._written(size))

    def _written(self, size: int) -> None:
        self._unsent -= size

    def shut_down(self) -> None:
        """The server is stopping: answer the waiting frame (if any) and every later one with an error."""
        self._stopping = True
        if self.stream is not None:
            self.stream.fail_pending(JobFailed(protocol.SHUTTING_DOWN, "the server is stopping"))

    def on_close(self) -> None:
        self.handlers.discard(self)
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if self._counted and self.credential is not None:
            self.access.close_stream(self.credential)
            self._counted = False
