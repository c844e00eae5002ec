"""Bad input gets a clear error and the connection and server keep serving the next good frame."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator

import httpx
import msgpack
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import RunningServer
from tests.frames import composite
from tests.images import photo_bytes


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def good_frame() -> bytes:
    return composite(["coffee.png"], seed=7)[0]


@pytest.fixture(scope="module")
def collection(server: RunningServer) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reply = client.post(
            "/v1/collections/robust/items", files={"image": ("c", photo_bytes("coffee.png"))}, data={"name": "coffee"}
        )
        assert reply.status_code == 201
    return "robust"


@pytest.fixture
def ws(server: RunningServer, collection: str) -> Iterator[ClientConnection]:
    with connect(f"{server.ws_url}/v1/stream?collection={collection}", max_size=None) as conn:
        assert msgpack.unpackb(conn.recv(timeout=10))["type"] == "hello"
        yield conn


def reply_to(ws: ClientConnection, message: bytes | str) -> dict:
    ws.send(message)
    raw = ws.recv(timeout=30)
    return msgpack.unpackb(raw) if isinstance(raw, bytes) else json.loads(raw)


def frame(frame_id: int, image: bytes) -> bytes:
    return msgpack.packb({"type": "frame", "id": frame_id, "image": image})


def assert_still_serving(ws: ClientConnection, good_frame: bytes, frame_id: int) -> None:
    reply = reply_to(ws, frame(frame_id, good_frame))
    assert reply["type"] == "result" and reply["id"] == frame_id
    assert [i["name"] for i in reply["items"]] == ["coffee"]


@pytest.mark.parametrize(
    "image,code",
    [
        (b"this is not an image", "invalid_image"),
        (png_claiming(100_000, 100_000), "image_too_large"),
    ],
    ids=["not-an-image", "decompression-bomb"],
)
def test_bad_images_get_an_error_with_their_frame_id(
    ws: ClientConnection, good_frame: bytes, image: bytes, code: str
) -> None:
    reply = reply_to(ws, frame(5, image))
    assert reply == {"type": "error", "id": 5, "code": code, "message": reply["message"]}
    assert reply["message"]
    assert_still_serving(ws, good_frame, 6)


def test_truncated_jpeg_gets_an_error(ws: ClientConnection, good_frame: bytes) -> None:
    reply = reply_to(ws, frame(8, good_frame[: len(good_frame) // 3]))
    assert (reply["type"], reply["id"], reply["code"]) == ("error", 8, "invalid_image")
    assert_still_serving(ws, good_frame, 9)


@pytest.mark.parametrize(
    "message,code",
    [
        (b"\xc1\xc1\xc1 not msgpack", "bad_message"),
        (msgpack.packb([1, 2, 3]), "bad_message"),
        (msgpack.packb({"type": "hello"}), "unknown_type"),
        (msgpack.packb({"type": "frame", "image": b"x"}), "bad_frame"),
        (msgpack.packb({"type": "frame", "id": 3}), "bad_frame"),
        ("{not json", "bad_message"),
    ],
    ids=["garbage", "not-a-map", "unknown-type", "no-id", "no-image", "bad-json"],
)
def test_malformed_messages_get_an_error_code(ws: ClientConnection, good_frame: bytes, message: bytes | str, code: str) -> None:
    reply = reply_to(ws, message)
    assert reply["type"] == "error" and reply["code"] == code
    assert_still_serving(ws, good_frame, 10)


def test_oversized_message_gets_an_error_and_the_connection_stays_open(ws: ClientConnection, good_frame: bytes) -> None:
    huge = frame(11, b"\xff" * (4 * 1024 * 1024 + 1))
    reply = reply_to(ws, huge)
    assert (reply["type"], reply["code"]) == ("error", "message_too_large")
    assert_still_serving(ws, good_frame, 12)


def test_text_json_frames_are_answered_in_json(ws: ClientConnection, good_frame: bytes) -> None:
    message = json.dumps({"type": "frame", "id": 13, "image": base64.b64encode(good_frame).decode()})
    reply = reply_to(ws, message)
    assert reply["type"] == "result" and reply["id"] == 13
    assert [i["name"] for i in reply["items"]] == ["coffee"]


def test_unknown_collection_is_refused_with_an_error_and_close_code(server: RunningServer) -> None:
    with connect(f"{server.ws_url}/v1/stream?collection=no-such-thing") as conn:
        reply = msgpack.unpackb(conn.recv(timeout=10))
        assert (reply["type"], reply["code"]) == ("error", "unknown_collection")
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


@pytest.mark.parametrize(
    "body,status,code",
    [
        (b"not an image", 400, "invalid_image"),
        (png_claiming(100_000, 100_000), 413, "image_too_large"),
    ],
    ids=["not-an-image", "decompression-bomb"],
)
def test_http_recognize_refuses_bad_images(
    server: RunningServer, collection: str, body: bytes, status: int, code: str
) -> None:
    reply = httpx.post(f"{server.url}/v1/recognize?collection={collection}", content=body, timeout=30)
    assert reply.status_code == status
    assert reply.json()["error"]["code"] == code


def test_http_recognize_refuses_truncated_jpeg_and_unknown_collection(server: RunningServer, good_frame: bytes) -> None:
    truncated = httpx.post(f"{server.url}/v1/recognize?collection=robust", content=good_frame[:5000], timeout=30)
    assert (truncated.status_code, truncated.json()["error"]["code"]) == (400, "invalid_image")
    unknown = httpx.post(f"{server.url}/v1/recognize?collection=nothing-here", content=good_frame, timeout=30)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_collection")
    fine = httpx.post(f"{server.url}/v1/recognize?collection=robust", content=good_frame, timeout=30)
    assert [i["name"] for i in fine.json()["items"]] == ["coffee"]


def test_http_upload_larger_than_the_limit_is_refused(start_server, good_frame: bytes) -> None:  # type: ignore[no-untyped-def]
    small = start_server(env={"CATCHLIGHT_MAX_UPLOAD_BYTES": "100000"})
    reply = httpx.post(f"{small.url}/v1/recognize?collection=demo", content=b"\xff" * 150_000, timeout=30)
    assert (reply.status_code, reply.json()["error"]["code"]) == (413, "body_too_large")
    assert httpx.get(f"{small.url}/healthz").status_code == 200
