"""Every limit has a setting and a clear error; origins and CORS are explicit.

Message size, upload size and pixel count are tested in tests/e2e/test_bad_input.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import msgpack
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import RunningServer
from tests.frames import composite
from tests.images import photo_bytes
from tests.security.helpers import QUIET, frame

APP = "https://app.example"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(
        tmp_path_factory.mktemp("limited"),
        env={
            **QUIET,
            "CATCHLIGHT_MAX_IMAGE_BYTES": "1000000",
            "CATCHLIGHT_MAX_ITEMS_PER_COLLECTION": "2",
            "CATCHLIGHT_ALLOWED_ORIGINS": APP,
            "CATCHLIGHT_CORS_ORIGINS": APP,
        },
    )
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reply = client.post(
            "/v1/collections/lim/items", files={"image": ("c.png", photo_bytes("coffee.png"))}, data={"name": "c", "item": "one"}
        )
        assert reply.status_code == 201, reply.text
    yield server
    server.stop()
    server.kill_orphans()


def big_jpeg() -> bytes:
    data = composite(["coffee.png"], seed=5, quality=100)[0]
    return data + b"\0" * max(0, 1_000_001 - len(data))  # trailing bytes: still a valid JPEG, just too many bytes


def test_image_bytes_over_the_limit_are_refused_on_stream_recognize_and_upload(limited: RunningServer) -> None:
    image = big_jpeg()
    assert len(image) > 1_000_000
    with connect(f"{limited.ws_url}/v1/stream?collection=lim", max_size=None) as ws:
        assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "hello"
        ws.send(frame(3, image))
        reply = msgpack.unpackb(ws.recv(timeout=30))
        assert (reply["type"], reply["id"], reply["code"]) == ("error", 3, "image_too_large")
    found = httpx.post(f"{limited.url}/v1/recognize?collection=lim", content=image, timeout=30)
    assert (found.status_code, found.json()["error"]["code"]) == (413, "image_too_large")
    upload = httpx.post(
        f"{limited.url}/v1/collections/lim/items", files={"image": ("big.jpg", image)}, data={"name": "big"}, timeout=30
    )
    assert (upload.status_code, upload.json()["error"]["code"]) == (413, "image_too_large")


def test_items_per_collection_are_limited_but_replacing_one_is_allowed(limited: RunningServer) -> None:
    def upload(**data: str) -> httpx.Response:
        files = {"image": ("a.png", photo_bytes("astronaut.png"))}
        return httpx.post(f"{limited.url}/v1/collections/lim/items", files=files, data={"name": "a", **data}, timeout=30)

    assert upload(item="two").status_code == 201
    full = upload()
    assert full.status_code == 409
    assert full.json()["error"]["code"] == "collection_full"
    assert "the limit is 2" in full.json()["error"]["message"]
    assert upload(item="two").status_code == 201  # replacing keeps the count


def test_metadata_over_the_limit_is_refused(limited: RunningServer) -> None:
    metadata = json.dumps({"note": "x" * 17_000})
    reply = httpx.post(
        f"{limited.url}/v1/collections/lim/items",
        files={"image": ("c.png", photo_bytes("coffee.png"))},
        data={"name": "c", "item": "one", "metadata": metadata},
        timeout=30,
    )
    assert (reply.status_code, reply.json()["error"]["code"]) == (413, "metadata_too_large")


def test_stream_origin_must_be_the_servers_own_or_listed(limited: RunningServer) -> None:
    url = f"{limited.ws_url}/v1/stream?collection=lim"
    for origin in (APP, f"http://127.0.0.1:{limited.port}", None):
        headers = {"Origin": origin} if origin else {}
        with connect(url, additional_headers=headers) as ws:
            assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "hello"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403


def test_cors_is_explicit_for_the_listed_origins_only(limited: RunningServer) -> None:
    preflight = httpx.options(
        f"{limited.url}/v1/recognize",
        headers={"Origin": APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
        timeout=30,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    listed = httpx.get(f"{limited.url}/v1/collections", headers={"Origin": APP}, timeout=30)
    assert listed.headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in listed.headers["Vary"]
    for reply in (
        httpx.options(f"{limited.url}/v1/recognize", headers={"Origin": "https://evil.example"}, timeout=30),
        httpx.get(f"{limited.url}/v1/collections", headers={"Origin": "https://evil.example"}, timeout=30),
    ):
        assert "Access-Control-Allow-Origin" not in reply.headers
        assert "Access-Control-Allow-Methods" not in reply.headers
