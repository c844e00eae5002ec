"""Python client for a Catchlight server: collections, one-off recognition, camera streams, video scans.

    from catchlight.client import Catchlight

    with Catchlight("http://127.0.0.1:8080") as cl:
        cl.add_item("posters", "abbey-road.jpg", name="Abbey Road", metadata={"url": "https://..."})
        result = cl.recognize("posters", open("photo.jpg", "rb").read())
        for item in result["items"]:
            print(item["name"], item["corners"])

    async for reply in cl.stream("posters", frames):   # frames: (async) iterable of JPEG bytes
        ...

    scan = cl.scan("posters", "shop-window.mp4")        # upload a video, wait for the scan
    for item in scan["items"]:
        print(item["name"], [(a["start"], a["end"]) for a in item["appearances"]])

Errors from the server raise CatchlightError with its HTTP status and error code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

ImageSource = bytes | str | Path


class CatchlightError(Exception):
    """The server refused a request: `status` (HTTP or websocket close code), `code`, `message`."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def _image_bytes(image: ImageSource) -> bytes:
    if isinstance(image, bytes):
        return image
    return Path(image).read_bytes()


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = error.pop("code"), error.pop("message")
    except (ValueError, KeyError, TypeError):
        code, message, error = "http_error", response.text[:200], {}
    raise CatchlightError(response.status_code, code, message, error)


class Stream:
    """One open camera stream: send frames, receive one reply per frame (see docs/protocol.md)."""

    def __init__(self, connection: ClientConnection, hello: dict[str, Any]) -> None:
        self.connection = connection
        self.hello = hello
        self._next_id = 0

    async def send(self, image: bytes, frame_id: int | None = None) -> int:
        """Send one encoded frame; returns its id."""
        if frame_id is None:
            frame_id = self._next_id
        self._next_id = frame_id + 1
        await self.connection.send(msgpack.packb({"type": "frame", "id": frame_id, "image": image}))
        return frame_id

    async def receive(self) -> dict[str, Any]:
        """The next reply: a `result`, `skipped` or `error` map."""
        raw = await self.connection.recv()
        reply: dict[str, Any] = msgpack.unpackb(raw) if isinstance(raw, bytes) else json.loads(raw)
        return reply

    async def close(self) -> None:
        await self.connection.close()


class Catchlight:
    """A Catchlight server at `url` (http://host:port), with an optional bearer token."""

    def __init__(self, url: str = "http://127.0.0.1:8080", token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Catchlight:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response

    # -- collections and items ----------------------------------------------

    def collections(self) -> list[dict[str, Any]]:
        collections: list[dict[str, Any]] = self._request("GET", "/v1/collections").json()["collections"]
        return collections

    def create_collection(self, collection: str, group: str | None = None) -> bool:
        """Create an empty collection (in node `group` if given); False if it existed."""
        body = {"json": {"group": group}} if group is not None else {}
        created: bool = self._request("PUT", f"/v1/collections/{quote(collection)}", **body).json()["created"]
        return created

    def place_collection(self, collection: str, group: str) -> dict[str, Any]:
        """Move a collection to node `group` (docs/deploy.md, "Node groups"); returns its summary."""
        summary: dict[str, Any] = self._request("PATCH", f"/v1/collections/{quote(collection)}", json={"group": group}).json()
        return summary

    def delete_collection(self, collection: str) -> None:
        self._request("DELETE", f"/v1/collections/{quote(collection)}")

    def items(self, collection: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._request("GET", f"/v1/collections/{quote(collection)}/items").json()["items"]
        return items

    def add_item(
        self,
        collection: str,
        image: ImageSource,
        name: str,
        metadata: dict[str, Any] | None = None,
        item: str | None = None,
    ) -> dict[str, Any]:
        """Upload a reference image; returns the stored item (with its `quality`)."""
        data = {"name": name, "metadata": json.dumps(metadata or {})}
        if item is not None:
            data["item"] = item
        filename = Path(image).name if not isinstance(image, bytes) else "image"
        response = self._request(
            "POST", f"/v1/collections/{quote(collection)}/items", files={"image": (filename, _image_bytes(image))}, data=data
        )
        stored: dict[str, Any] = response.json()
        return stored

    def get_item(self, collection: str, item: str) -> dict[str, Any]:
        found: dict[str, Any] = self._request("GET", f"/v1/collections/{quote(collection)}/items/{quote(item)}").json()
        return found

    def update_item(
        self, collection: str, item: str, name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if metadata is not None:
            changes["metadata"] = metadata
        updated: dict[str, Any] = self._request(
            "PATCH", f"/v1/collections/{quote(collection)}/items/{quote(item)}", json=changes
        ).json()
        return updated

    def delete_item(self, collection: str, item: str) -> None:
        self._request("DELETE", f"/v1/collections/{quote(collection)}/items/{quote(item)}")

    def thumbnail(self, collection: str, item: str) -> bytes:
        return self._request("GET", f"/v1/collections/{quote(collection)}/items/{quote(item)}/thumbnail").content

    def keypoints(self, collection: str, item: str) -> dict[str, Any]:
        """An item's keypoints: {"width", "height", "points": [[x, y], ...]} in pixels of the uploaded image."""
        found: dict[str, Any] = self._request(
            "GET", f"/v1/collections/{quote(collection)}/items/{quote(item)}/keypoints"
        ).json()
        return found

    # -- usage statistics -------------------------------------------------------

    def stats(self, range: str = "24h", collection: str | None = None) -> dict[str, Any]:
        """Usage over the last `range` ("1h", "24h", "7d", "30d"): series, totals, top items, latency."""
        params = {"range": range}
        if collection is not None:
            params["collection"] = collection
        summary: dict[str, Any] = self._request("GET", "/v1/stats", params=params).json()
        return summary

    def item_stats(self, collection: str, range: str = "24h") -> dict[str, dict[str, Any]]:
        """Item id -> {"name", "total", "recent"}: how often each item was recognized."""
        body = self._request("GET", f"/v1/collections/{quote(collection)}/stats", params={"range": range}).json()
        return {entry["item"]: entry for entry in body["items"]}

    # -- recognition ----------------------------------------------------------

    def recognize(self, collection: str, image: ImageSource, inliers: bool = False) -> dict[str, Any]:
        """Recognize one image: {"width", "height", "items": [...], "timing": {...}}.

        `inliers`: each item also gets `inlier_points`, where its supporting matches are in the image.
        """
        params = {"collection": collection}
        if inliers:
            params["inliers"] = "1"
        response = self._request(
            "POST",
            "/v1/recognize",
            params=params,
            content=_image_bytes(image),
            headers={"Content-Type": "application/octet-stream"},
        )
        result: dict[str, Any] = response.json()
        return result

    # -- video scans ------------------------------------------------------------

    def start_scan(self, collection: str, video: ImageSource, sample_rate: float | None = None, filename: str | None = None) -> dict[str, Any]:
        """Upload a video and queue a scan of it; returns the scan (state "queued") with its `scan` id.

        The video is sent as the raw body, so the server writes it to disk as it arrives.
        """
        params: dict[str, Any] = {"collection": collection}
        if sample_rate is not None:
            params["sample_rate"] = sample_rate
        if filename is None:
            filename = Path(video).name if not isinstance(video, bytes) else "video"
        params["filename"] = filename
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(video, bytes):
            response = self._request("POST", "/v1/scans", params=params, content=video, headers=headers)
        else:
            path = Path(video)
            headers["Content-Length"] = str(path.stat().st_size)
            with path.open("rb") as file:
                chunks = iter(lambda: file.read(1 << 16), b"")
                response = self._request("POST", "/v1/scans", params=params, content=chunks, headers=headers)
        scan: dict[str, Any] = response.json()
        return scan

    def get_scan(self, scan: str) -> dict[str, Any]:
        """A scan's state, progress and, per item, the time ranges where it appears."""
        found: dict[str, Any] = self._request("GET", f"/v1/scans/{quote(scan)}").json()
        return found

    def scans(self) -> list[dict[str, Any]]:
        """The latest scans, newest first (without their items)."""
        listed: list[dict[str, Any]] = self._request("GET", "/v1/scans").json()["scans"]
        return listed

    def wait_for_scan(self, scan: str, timeout: float = 600.0, interval: float = 0.25) -> dict[str, Any]:
        """Poll until the scan is done or failed; returns it. Raises TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.get_scan(scan)
            if found["state"] in ("done", "failed"):
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"scan {scan} still {found['state']} after {timeout} s")
            time.sleep(interval)

    def scan(self, collection: str, video: ImageSource, sample_rate: float | None = None, timeout: float = 600.0) -> dict[str, Any]:
        """Upload a video, wait for its scan to end and return it (check `state` and `error`)."""
        return self.wait_for_scan(self.start_scan(collection, video, sample_rate)["scan"], timeout)

    def stream_url(self, collection: str) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/v1/stream", f"collection={quote(collection)}", ""))

    async def open_stream(self, collection: str) -> Stream:
        """Open a camera stream; raises CatchlightError if the server refuses it."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        connection = await connect(self.stream_url(collection), additional_headers=headers, max_size=None)
        raw = await connection.recv()
        hello: dict[str, Any] = msgpack.unpackb(raw) if isinstance(raw, bytes) else json.loads(raw)
        if hello.get("type") == "error":
            code = 0
            try:
                await connection.recv()
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 0
            raise CatchlightError(code, hello.get("code", "error"), hello.get("message", ""))
        return Stream(connection, hello)

    async def stream(
        self,
        collection: str,
        frames: AsyncIterable[bytes] | Iterable[bytes],
        in_flight: int = 1,
        reconnect: bool = False,
        reconnect_timeout: float = 30.0,
    ) -> AsyncIterator[dict[str, Any]]:
        """Send each frame and yield every reply, keeping at most `in_flight` frames unanswered.

        Waiting for replies before sending more is what keeps a camera live on a slow
        network: the server then always works on a recent frame.

        With `reconnect`, a dropped connection (a node stopped behind a load balancer,
        a network blip) is reopened, with backoff, for up to `reconnect_timeout` seconds,
        and the stream goes on with the next frame. Frames sent but not answered when the
        connection dropped are not sent again (a live camera has newer ones): each gets an
        error reply `{"type": "error", "id": ..., "code": "connection_lost"}`. A refusal by
        the server (bad token, unknown collection) is never retried.
        """
        stream = await self.open_stream(collection)
        unanswered: list[int] = []
        try:
            async for frame in _as_async(frames):
                while len(unanswered) >= in_flight:
                    reply = await self._receive_or_lose(stream, unanswered, reconnect)
                    if reply is None:
                        stream = await self._reopen(collection, reconnect_timeout, stream)
                        for lost in unanswered:
                            yield _connection_lost(lost)
                        unanswered.clear()
                        continue
                    yield reply
                try:
                    unanswered.append(await stream.send(frame))
                except (ConnectionClosed, OSError):
                    if not reconnect:
                        raise
                    for lost in unanswered:
                        yield _connection_lost(lost)
                    unanswered.clear()
                    stream = await self._reopen(collection, reconnect_timeout, stream)
                    unanswered.append(await stream.send(frame))
            while unanswered:
                reply = await self._receive_or_lose(stream, unanswered, reconnect)
                if reply is None:
                    for lost in unanswered:
                        yield _connection_lost(lost)
                    break
                yield reply
        finally:
            await stream.close()

    @staticmethod
    async def _receive_or_lose(stream: Stream, unanswered: list[int], reconnect: bool) -> dict[str, Any] | None:
        """The next reply (taking its frame off `unanswered`), or None when the connection dropped."""
        try:
            reply = await stream.receive()
        except (ConnectionClosed, OSError):
            if not reconnect:
                raise
            return None
        if reply.get("id") in unanswered:
            unanswered.remove(reply["id"])
        elif unanswered and reply.get("type") in ("result", "skipped", "error"):
            unanswered.pop(0)
        return reply

    async def _reopen(self, collection: str, timeout: float, dropped: Stream) -> Stream:
        """Open the stream again, backing off from 0.1 s to 2 s between tries, for up to `timeout` s.

        Frame ids go on from where the dropped stream was, so they stay unique in one `stream()`.
        """
        await dropped.close()
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                stream = await self.open_stream(collection)
                stream._next_id = dropped._next_id
                return stream
            except CatchlightError as exc:
                if exc.status not in (0, 1001, 1006, 1011, 1012, 1013, 502, 503, 504):
                    raise  # the server refused the stream: trying again would not help
                failure: Exception = exc
            except (OSError, ConnectionClosed, InvalidStatus, InvalidHandshake) as exc:
                failure = exc
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"could not reopen the stream within {timeout} s: {failure}") from failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _connection_lost(frame_id: int) -> dict[str, Any]:
    return {
        "type": "error",
        "id": frame_id,
        "code": "connection_lost",
        "message": "the connection dropped before this frame was answered; the stream went on with the next frame",
    }


async def _as_async(frames: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(frames, AsyncIterable):
        async for frame in frames:
            yield frame
    else:
        for frame in frames:
            yield frame
