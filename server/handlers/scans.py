"""Video scans over HTTP (docs/api.md): upload a video, follow the job, read where each item appears."""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.http1connection import HTTP1Connection

from matcher.store import check_collection_name
from server.access import MANAGE, READ, RECOGNIZE
from server.catalog import RequestRejected
from server.handlers.base import ApiHandler
from server.scans import Scans, Upload
from server.usage import collection_or_blank

_REFUSED_BODY_BYTES = 1 << 20


@tornado.web.stream_request_body
class ScansHandler(ApiHandler):
    """GET: the latest scans. POST: a video (multipart `video` file, or the raw body) starts a scan."""

    upload: Upload | None = None
    refusal: Exception | None = None

    @property
    def scans(self) -> Scans:
        scans: Scans = self.application.settings["scans"]
        return scans

    def prepare(self) -> None:
        if self.request.method != "POST":
            return
        # Credentials before the body: a refused caller never gets to upload a video. Its (small)
        # body is still read and dropped so that it gets its 401/403 instead of a reset connection.
        query_collection = self.get_query_argument("collection", None)
        try:
            self.allow(RECOGNIZE, check_collection_name(query_collection) if query_collection else None)
        except Exception as refusal:
            self.refusal = refusal
            connection = self.request.connection
            if isinstance(connection, HTTP1Connection):
                connection.set_max_body_size(_REFUSED_BODY_BYTES)
            return
        limit = self.scans.settings.max_scan_bytes
        length = int(self.request.headers.get("Content-Length") or 0)
        if length > limit:
            raise RequestRejected("body_too_large", f"the video is {length} bytes, the limit is {limit}")
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            connection.set_max_body_size(limit + (64 << 10))  # room for the form around the video
        self.upload = self.scans.open_upload()

    def data_received(self, chunk: bytes) -> None:
        if self.upload is not None:
            self.upload.write(chunk)

    async def get(self) -> None:
        self.allow(MANAGE)  # the list spans every collection
        self.send_json({"scans": await self.scans.list()})

    async def post(self) -> None:
        if self.refusal is not None:
            raise self.refusal
        assert self.upload is not None
        self.upload.finish()
        content_type = self.request.headers.get("Content-Type", "")
        fields: dict[str, str] = {}
        if content_type.startswith("multipart/form-data"):
            video, filename, fields = await self.scans.video_of_form(self.upload, content_type)
        else:
            video, filename = self.upload.path, self.get_query_argument("filename", "video")
        self.upload = None  # the service owns the file now

        def field(name: str) -> Any:
            return fields.get(name) or self.get_query_argument(name, None)

        collection = field("collection")
        if collection:
            self.allow(RECOGNIZE, check_collection_name(collection))
        body = await self.scans.create(video, filename, field("collection"), field("sample_rate"))
        self.set_header("Location", f"/v1/scans/{body['scan']}")
        self.send_json(body, 202)

    def on_finish(self) -> None:
        if self.upload is not None:
            self.upload.discard()
        super().on_finish()

    def usage_collection(self) -> str:
        return collection_or_blank(self.get_query_argument("collection", ""))

    def on_connection_close(self) -> None:
        if self.upload is not None:
            self.upload.discard()
            self.upload = None


class ScanHandler(ApiHandler):
    def usage_collection(self) -> str:
        return ""  # the path holds a scan id, not a collection

    async def get(self, scan: str) -> None:
        self.allow(READ)
        found = await self.application.settings["scans"].get(scan)
        self.allow(READ, found.get("collection"))
        self.send_json(found)
