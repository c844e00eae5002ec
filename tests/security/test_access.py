"""Credentials: who may do what over HTTP and the websocket, and what a refusal says (nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import redis
import yaml
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ROOT, RunningServer, wait_until
from tests.e2e.test_openapi import assert_documented
from tests.frames import composite
from tests.images import photo_bytes
from tests.security.helpers import QUIET, credentials_cli, frame, make_credential

UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "a valid credential is required"}}
FORBIDDEN = {"error": {"code": "forbidden", "message": "this credential does not allow this request"}}


class Secured:
    def __init__(self, server: RunningServer, admin: str, alpha: str, alpha_id: str) -> None:
        self.server = server
        self.admin = admin
        self.alpha = alpha  # recognition token for collection alpha
        self.alpha_id = alpha_id

    def client(self, secret: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A server that started open, got collections alpha and beta, then credentials."""
    server = RunningServer(tmp_path_factory.mktemp("secured"), env={**QUIET, "CATCHLIGHT_MAX_STREAMS_PER_CREDENTIAL": "2"})
    server.start()
    try:
        assert "OPEN: no credentials exist" in server.log()
        with httpx.Client(base_url=server.url, timeout=30) as open_client:
            for name in ("alpha", "beta"):
                reply = open_client.post(
                    f"/v1/collections/{name}/items",
                    files={"image": ("c.png", photo_bytes("coffee.png"))},
                    data={"name": "coffee", "item": "coffee"},
                )
                assert reply.status_code == 201, reply.text
        _, admin = make_credential(server.data_dir, "management", "--name", "admin")
        alpha_id, alpha = make_credential(server.data_dir, "recognition", "--collections", "alpha", "--name", "kiosk")
        # The first credential closes the open server within the refresh interval.
        wait_until(lambda: httpx.get(f"{server.url}/v1/collections").status_code == 401, 10)
        yield Secured(server, admin, alpha, alpha_id)
    finally:
        server.stop()
        server.kill_orphans()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def coffee_frame() -> bytes:
    return composite(["coffee.png"], seed=11)[0]


def test_missing_wrong_and_malformed_credentials_all_get_the_same_401(secured: Secured, spec: dict[str, Any]) -> None:
    attempts = [
        {},
        {"Authorization": "Bearer clm_not-a-real-secret"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": f"Bearer {secured.admin}x"},
    ]
    for headers in attempts:
        for method, path in [("GET", "/v1/collections"), ("DELETE", "/v1/collections/alpha"), ("POST", "/v1/recognize?collection=alpha")]:
            reply = httpx.request(method, secured.server.url + path, headers=headers, content=b"x", timeout=30)
            assert (reply.status_code, reply.json()) == (401, UNAUTHORIZED), (headers, path)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    reply = httpx.get(f"{secured.server.url}/v1/collections/alpha/items", timeout=30)
    assert_documented(spec, "/v1/collections/{collection}/items", "get", reply)
    # An unknown collection does not answer differently from a known one without a credential.
    assert httpx.get(f"{secured.server.url}/v1/collections/nope", timeout=30).json() == UNAUTHORIZED
    # Health and the API description stay open: they hold nothing private.
    assert httpx.get(f"{secured.server.url}/healthz", timeout=30).status_code == 200
    assert httpx.get(f"{secured.server.url}/v1/openapi.json", timeout=30).status_code == 200


def test_management_key_may_create_change_and_delete(secured: Secured) -> None:
    with secured.client(secured.admin) as admin:
        assert admin.put("/v1/collections/scratch").status_code == 201
        upload = admin.post(
            "/v1/collections/scratch/items", files={"image": ("c.png", photo_bytes("coffee.png"))}, data={"name": "c"}
        )
        assert upload.status_code == 201
        item = upload.json()["item"]
        assert admin.patch(f"/v1/collections/scratch/items/{item}", json={"name": "d"}).status_code == 200
        names = [c["collection"] for c in admin.get("/v1/collections").json()["collections"]]
        assert names == ["alpha", "beta", "scratch"]
        assert admin.delete("/v1/collections/scratch").status_code == 204


def test_recognition_token_recognizes_and_reads_only_its_collections(
    secured: Secured, coffee_frame: bytes, spec: dict[str, Any]
) -> None:
    with secured.client(secured.alpha) as kiosk:
        found = kiosk.post("/v1/recognize?collection=alpha", content=coffee_frame, headers={"Content-Type": "image/jpeg"})
        assert [m["item"] for m in found.json()["items"]] == ["coffee"]
        assert kiosk.get("/v1/collections/alpha/items").status_code == 200
        assert kiosk.get("/v1/collections/alpha/items/coffee/thumbnail").status_code == 200
        assert [c["collection"] for c in kiosk.get("/v1/collections").json()["collections"]] == ["alpha"]
        refused = [
            kiosk.post("/v1/recognize?collection=beta", content=coffee_frame, headers={"Content-Type": "image/jpeg"}),
            kiosk.post("/v1/recognize?collection=no-such", content=coffee_frame, headers={"Content-Type": "image/jpeg"}),
            kiosk.get("/v1/collections/beta/items"),
            kiosk.put("/v1/collections/alpha"),
            kiosk.delete("/v1/collections/alpha/items/coffee"),
            kiosk.patch("/v1/collections/alpha/items/coffee", json={"name": "mine"}),
            kiosk.post("/v1/collections/alpha/items", files={"image": ("c.png", photo_bytes("coffee.png"))}, data={"name": "x"}),
        ]
        for reply in refused:
            assert (reply.status_code, reply.json()) == (403, FORBIDDEN), reply.request.url
        assert_documented(spec, "/v1/collections/{collection}", "put", refused[3])
    # The browser form of the same credential: ?token= in the URL.
    query = httpx.get(f"{secured.server.url}/v1/collections/alpha/items?token={secured.alpha}", timeout=30)
    assert query.status_code == 200


def test_stream_takes_the_credential_as_header_query_or_first_message(secured: Secured, coffee_frame: bytes) -> None:
    url = f"{secured.server.ws_url}/v1/stream?collection=alpha"
    ways: list[tuple[str, dict[str, str], bytes | None]] = [
        (url, {"Authorization": f"Bearer {secured.alpha}"}, None),
        (f"{url}&token={secured.alpha}", {}, None),
        (url, {}, msgpack.packb({"type": "auth", "token": secured.alpha})),
    ]
    for number, (address, headers, first) in enumerate(ways):
        with connect(address, additional_headers=headers) as ws:
            if first is not None:
                ws.send(first)
            assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "hello"
            ws.send(frame(number, coffee_frame))
            reply = msgpack.unpackb(ws.recv(timeout=30))
            assert (reply["type"], reply["id"], [i["item"] for i in reply["items"]]) == ("result", number, ["coffee"])


def test_stream_refuses_bad_credentials_before_or_right_after_the_upgrade(secured: Secured) -> None:
    url = f"{secured.server.ws_url}/v1/stream?collection=alpha"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Authorization": "Bearer wrong"})
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as forbidden:
        connect(f"{secured.server.ws_url}/v1/stream?collection=beta&token={secured.alpha}")
    assert forbidden.value.response.status_code == 403

    def closed_with(first: bytes | None, collection: str = "alpha") -> tuple[str, int]:
        with connect(f"{secured.server.ws_url}/v1/stream?collection={collection}") as ws:
            if first is not None:
                ws.send(first)
            error = msgpack.unpackb(ws.recv(timeout=30))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None
            return error["code"], closed.value.rcvd.code

    assert closed_with(msgpack.packb({"type": "auth", "token": "wrong"})) == ("unauthorized", 4401)
    assert closed_with(msgpack.packb({"type": "frame", "id": 1, "image": b"x"})) == ("unauthorized", 4401)
    assert closed_with(msgpack.packb({"type": "auth", "token": secured.alpha}), "beta") == ("forbidden", 4403)


def test_stream_without_an_auth_message_is_closed_after_the_auth_timeout(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "data", env={**QUIET, "CATCHLIGHT_REQUIRE_CREDENTIALS": "true", "CATCHLIGHT_AUTH_TIMEOUT_SECONDS": "1"}
    )
    # require_credentials with none made: refuses to start, naming the fix.
    with pytest.raises(RuntimeError, match="python -m server.credentials create management"):
        server.start()
    make_credential(tmp_path / "data", "management")
    server.start()
    try:
        with connect(f"{server.ws_url}/v1/stream?collection=demo") as ws:
            started = time.monotonic()
            error = msgpack.unpackb(ws.recv(timeout=30))
            assert error["code"] == "unauthorized"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            assert time.monotonic() - started < 20
    finally:
        server.stop()
        server.kill_orphans()


def test_streams_per_credential_are_limited(secured: Secured) -> None:
    url = f"{secured.server.ws_url}/v1/stream?collection=alpha&token={secured.alpha}"
    with connect(url) as first, connect(url) as second:
        for ws in (first, second):
            assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "hello"
        with connect(url) as third:
            error = msgpack.unpackb(third.recv(timeout=10))
            assert error["code"] == "too_many_streams"
            with pytest.raises(ConnectionClosed) as closed:
                third.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    # Closed streams give their places back.
    def hello() -> bool:
        with connect(url) as again:
            return bool(msgpack.unpackb(again.recv(timeout=10))["type"] == "hello")

    wait_until(hello, 10, interval=0.2)


def test_frames_per_second_per_credential_are_limited(secured: Secured, coffee_frame: bytes) -> None:
    _, slow = make_credential(secured.server.data_dir, "recognition", "--collections", "alpha", "--fps", "2")
    url = f"{secured.server.ws_url}/v1/stream?collection=alpha&token={slow}"
    wait_until(lambda: httpx.get(f"{secured.server.url}/v1/collections?token={slow}").status_code == 200, 10)
    with connect(url) as ws:
        assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "hello"
        started = time.monotonic()
        for number in range(20):
            ws.send(frame(number, b"not an image"))  # cheap for the workers; still counts as a frame
        replies = [msgpack.unpackb(ws.recv(timeout=30)) for _ in range(20)]
        elapsed = time.monotonic() - started
    limited = [r for r in replies if r.get("code") == "rate_limited"]
    passed = [r for r in replies if r.get("code") != "rate_limited"]
    assert sorted(r["id"] for r in replies) == list(range(20))
    assert limited and len(passed) <= 2 + 2 * elapsed + 1
    # HTTP recognize counts against the same budget.
    with httpx.Client(base_url=secured.server.url, headers={"Authorization": f"Bearer {slow}"}, timeout=30) as client:
        codes = {client.post("/v1/recognize?collection=alpha", content=b"x").status_code for _ in range(6)}
    assert 429 in codes


def test_revoked_and_expired_credentials_stop_working(secured: Secured) -> None:
    token_id, token = make_credential(secured.server.data_dir, "recognition", "--collections", "alpha")
    _, short = make_credential(secured.server.data_dir, "recognition", "--collections", "alpha", "--expires-days", "0.00003")
    items = f"{secured.server.url}/v1/collections/alpha/items"
    wait_until(lambda: httpx.get(items, params={"token": token}).status_code == 200, 10)
    done = credentials_cli(secured.server.data_dir, "revoke", token_id)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: httpx.get(items, params={"token": token}).status_code == 401, 10)
    wait_until(lambda: httpx.get(items, params={"token": short}).status_code == 401, 10)
    assert httpx.get(items, params={"token": short}).json() == UNAUTHORIZED


def test_cli_lists_credentials_and_the_store_keeps_only_hashes(secured: Secured) -> None:
    listed = credentials_cli(secured.server.data_dir, "list")
    assert listed.returncode == 0
    assert secured.alpha_id in listed.stdout and "kiosk" in listed.stdout
    assert secured.alpha not in listed.stdout and secured.admin not in listed.stdout
    client = redis.Redis.from_url(secured.server.redis_url)
    everything = b"".join(_dump(client, key) for key in client.scan_iter(count=1000))
    for secret in (secured.admin, secured.alpha):
        assert secret.encode() not in everything
    bad = credentials_cli(secured.server.data_dir, "revoke", "nope")
    assert bad.returncode == 2 and "no credential nope" in bad.stderr


def _dump(client: redis.Redis, key: bytes) -> bytes:
    kind = client.type(key)
    if kind == b"string":
        value = client.get(key) or b""
    elif kind == b"hash":
        value = b"".join(k + v for k, v in client.hgetall(key).items())
    elif kind == b"set":
        value = b"".join(client.smembers(key))
    elif kind == b"stream":
        value = b"".join(repr(entry).encode() for entry in client.xrange(key))
    elif kind == b"list":
        value = b"".join(client.lrange(key, 0, -1))
    else:
        value = repr(client.zrange(key, 0, -1, withscores=True)).encode()
    return key + value


def test_network_address_without_credentials_refuses_to_start_and_with_them_starts(secured: Secured, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("CATCHLIGHT_")}
    command = [sys.executable, "-m", "server", "--port", "0", "--host", "0.0.0.0", "--pool-size", "1"]
    refused = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "empty")], cwd=ROOT, env={**env, **QUIET}, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert "no credentials exist and it listens on 0.0.0.0" in refused.stderr
    assert "python -m server.credentials create management" in refused.stderr
    # Pointed at the store that has credentials, the same command starts.
    network = RunningServer(tmp_path / "net", env={**QUIET, "REDIS_URL": secured.server.redis_url}, args=["--host", "0.0.0.0"])
    network.start()
    try:
        assert httpx.get(f"{network.url}/v1/collections", timeout=30).status_code == 401
        reply = httpx.get(f"{network.url}/v1/collections", headers={"Authorization": f"Bearer {secured.admin}"}, timeout=30)
        assert reply.status_code == 200
    finally:
        network.stop()


def test_video_scans_need_a_credential_for_their_collection(secured: Secured) -> None:
    video = b"\x00" * 2048  # refused as a video only after the credential is accepted
    with secured.client() as anonymous:
        assert anonymous.post("/v1/scans?collection=alpha", content=video).status_code == 401
        assert anonymous.get("/v1/scans").status_code == 401
    with secured.client(secured.alpha) as kiosk:
        assert kiosk.post("/v1/scans?collection=beta", content=video).json() == FORBIDDEN
        assert kiosk.get("/v1/scans").json() == FORBIDDEN  # the list spans every collection
        accepted = kiosk.post("/v1/scans?collection=alpha", content=video)
        assert accepted.status_code not in (401, 403), accepted.text
    with secured.client(secured.admin) as admin:
        assert admin.get("/v1/scans").status_code == 200
