"""Faults the server survives: a killed worker, a store outage, SIGTERM, a client that never reads."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgpack
import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from matcher.process_name import WORKER
from tests.conftest import EmbeddedStoreControl, RunningServer, wait_until
from tests.frames import composite
from tests.images import photo_bytes
from tests.security.helpers import QUIET, RawWebSocket, frame

REPLY_TYPES = {"result", "skipped", "error"}


@pytest.fixture(scope="module")
def coffee_frame() -> bytes:
    return composite(["coffee.png"], seed=21)[0]


def started_with_coffee(server: RunningServer, collection: str = "faults") -> RunningServer:
    server.start()
    reply = httpx.post(
        f"{server.url}/v1/collections/{collection}/items",
        files={"image": ("c.png", photo_bytes("coffee.png"))},
        data={"name": "coffee", "item": "coffee"},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    return server


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningServer]:
    server = started_with_coffee(RunningServer(tmp_path / "data", env=QUIET))
    yield server
    server.stop()
    server.kill_orphans()


@contextmanager
def open_stream(server: RunningServer, collection: str = "faults") -> Iterator[ClientConnection]:
    with connect(f"{server.ws_url}/v1/stream?collection={collection}", max_size=None) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30))["type"] == "hello"
        yield ws


def found(ws: ClientConnection, frame_id: int, image: bytes) -> list[str]:
    ws.send(frame(frame_id, image))
    reply = msgpack.unpackb(ws.recv(timeout=60))
    assert reply["id"] == frame_id and reply["type"] == "result", reply
    return [i["item"] for i in reply["items"]]


def worker_pids(server: RunningServer) -> set[int]:
    return {
        child.pid
        for child in psutil.Process(server.pid).children()
        if child.name() == WORKER
    }


def test_killed_workers_are_replaced_and_every_frame_is_answered(running: RunningServer, coffee_frame: bytes) -> None:
    with open_stream(running) as ws:
        assert found(ws, 0, coffee_frame) == ["coffee"]
        before = worker_pids(running)
        assert len(before) == 2
        ws.send(frame(1, coffee_frame))
        ws.send(frame(2, coffee_frame))
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        replies = [msgpack.unpackb(ws.recv(timeout=60)) for _ in range(2)]
        assert sorted(r["id"] for r in replies) == [1, 2]
        for reply in replies:
            assert reply["type"] in REPLY_TYPES
            if reply["type"] == "error":
                assert reply["code"] == "worker_failed"
        # The same stream goes on once the replacements are ready; nothing waits forever meanwhile.
        frame_id = 3
        deadline = time.monotonic() + 90
        while True:
            ws.send(frame(frame_id, coffee_frame))
            reply = msgpack.unpackb(ws.recv(timeout=60))
            assert reply["id"] == frame_id and reply["type"] in REPLY_TYPES
            if reply["type"] == "result":
                assert [i["item"] for i in reply["items"]] == ["coffee"]
                break
            assert time.monotonic() < deadline, reply
            frame_id += 1
    wait_until(lambda: httpx.get(f"{running.url}/healthz").json()["workers_ready"] == 2, 90, interval=0.2)
    after = worker_pids(running)
    assert len(after) == 2 and not after & before


def test_store_outage_keeps_recognition_going_and_fails_management_with_503(
    running: RunningServer, coffee_frame: bytes
) -> None:
    store = EmbeddedStoreControl(running.data_dir)
    with httpx.Client(base_url=running.url, timeout=30) as api:
        # Written just before the outage: must survive it (append-only file, flushed on SIGTERM).
        assert api.put("/v1/collections/written-before").status_code == 201
        with open_stream(running) as ws:
            store.stop()
            assert found(ws, 1, coffee_frame) == ["coffee"]
            answer = api.post("/v1/recognize?collection=faults", content=coffee_frame, headers={"Content-Type": "image/jpeg"})
            assert [m["item"] for m in answer.json()["items"]] == ["coffee"]
            with open_stream(running) as late:  # a stream opened during the outage works from memory too
                assert found(late, 2, coffee_frame) == ["coffee"]
            for reply in (
                api.get("/v1/collections"),
                api.put("/v1/collections/during"),
                api.post("/v1/collections/faults/items", files={"image": ("c.png", photo_bytes("astronaut.png"))}, data={"name": "a"}),
            ):
                assert (reply.status_code, reply.json()["error"]["code"]) == (503, "store_unavailable")
            store.start()
            wait_until(lambda: api.put("/v1/collections/after").status_code == 201, 30, interval=0.2)
            names = [c["collection"] for c in api.get("/v1/collections").json()["collections"]]
            assert names == ["after", "faults", "written-before"]
            # Workers follow the change log again: an item added now is found on the old stream.
            upload = api.post(
                "/v1/collections/faults/items",
                files={"image": ("a.png", photo_bytes("astronaut.png"))},
                data={"name": "astronaut", "item": "astronaut"},
            )
            assert upload.status_code == 201
            both = composite(["coffee.png", "astronaut.png"], seed=4)[0]
            wait_until(lambda: sorted(found(ws, 3, both)) == ["astronaut", "coffee"], 30, interval=0.1)
    assert "Traceback" not in running.log()


def test_sigterm_answers_in_flight_frames_closes_streams_with_1001_and_keeps_the_collection(
    tmp_path: Path, coffee_frame: bytes
) -> None:
    server = started_with_coffee(RunningServer(tmp_path / "data", env=QUIET))
    try:
        answered = {}
        with open_stream(server) as ws:
            assert found(ws, 0, coffee_frame) == ["coffee"]
            for frame_id in (1, 2, 3):
                ws.send(frame(frame_id, coffee_frame))
            server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    reply = msgpack.unpackb(ws.recv(timeout=60))
                    answered[reply["id"]] = reply
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert sorted(answered) == [1, 2, 3]
        for reply in answered.values():
            assert reply["type"] in REPLY_TYPES
            if reply["type"] == "error":
                assert reply["code"] == "shutting_down"
        assert server.stop() == 0
        server.start()
        again = httpx.post(f"{server.url}/v1/recognize?collection=faults", content=coffee_frame, timeout=30)
        assert [m["item"] for m in again.json()["items"]] == ["coffee"]
    finally:
        server.stop()
        server.kill_orphans()


def test_client_that_never_reads_is_closed_before_the_server_buffers_much(tmp_path: Path) -> None:
    server = started_with_coffee(RunningServer(tmp_path / "data", env={**QUIET, "CATCHLIGHT_MAX_UNSENT_BYTES": "65536"}))
    try:
        stuck = RawWebSocket(server, "/v1/stream?collection=faults", receive_buffer=4096)
        rss_before = psutil.Process(server.pid).memory_info().rss
        sent = 0
        deadline = time.monotonic() + 120
        with pytest.raises(OSError):  # the server gave up on us: reset or broken pipe
            while time.monotonic() < deadline:
                for _ in range(200):
                    stuck.send(b"\xc1", opcode=0x2)  # each answered by a bad_message error nobody reads
                sent += 200
                stuck.sock.settimeout(5)
        stuck.close()
        assert "closing a stream whose client has" in server.log()
        growth = psutil.Process(server.pid).memory_info().rss - rss_before
        assert growth < 50 * 1024 * 1024, f"{sent} messages made the server grow by {growth} bytes"
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
    finally:
        server.stop()
        server.kill_orphans()


def test_raw_socket_helper_speaks_websocket(running: RunningServer) -> None:
    """The misbehaving client above is a real websocket client when it does read."""
    raw = RawWebSocket(running, "/v1/stream?collection=faults")
    try:
        raw.sock.settimeout(30)
        data = b""
        while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
            chunk = raw.sock.recv(4096)
            assert chunk
            data += chunk
        assert msgpack.unpackb(data[2 : 2 + (data[1] & 0x7F)])["type"] == "hello"
    finally:
        raw.close()
