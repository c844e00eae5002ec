"""Camera frames and recognize uploads leave no trace on disk, in the store or in the logs; neither do credentials."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import msgpack
import redis
from websockets.sync.client import connect

from tests.conftest import RunningServer, wait_until
from tests.frames import composite
from tests.images import photo_bytes
from tests.security.helpers import QUIET, frame, make_credential
from tests.security.test_access import _dump


def fingerprints(data: bytes, pieces: int = 6, size: int = 24) -> list[bytes]:
    """Short slices from all over `data` (headers are shared by every JPEG, so skip the first KiB)."""
    start, span = 1024, len(data) - 1024 - size
    return [data[start + span * i // pieces : start + span * i // pieces + size] for i in range(pieces)]


def traces(haystack: bytes, secrets: list[bytes]) -> list[bytes]:
    return [s for s in secrets if s in haystack]


def test_frames_uploads_and_credentials_are_kept_nowhere(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "data", env=QUIET).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as open_api:
            reference = open_api.post(
                "/v1/collections/private/items",
                files={"image": ("c.png", photo_bytes("coffee.png"))},
                data={"name": "coffee"},
            )
            assert reference.status_code == 201
        _, admin = make_credential(server.data_dir, "management")
        wrong = "clm_" + "W" * 43
        wait_until(lambda: httpx.get(f"{server.url}/v1/collections").status_code == 401, 10)

        frames = [composite(["coffee.png"], seed=900 + i)[0] for i in range(3)]
        upload = composite(["coffee.png"], seed=950, background="grass.png")[0]
        with connect(f"{server.ws_url}/v1/stream?collection=private&token={admin}", max_size=None) as ws:
            assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "hello"
            for number, image in enumerate(frames):
                ws.send(frame(number, image))
                assert msgpack.unpackb(ws.recv(timeout=30))["type"] == "result"
            ws.send(frame(9, frames[0][:5000]))  # a broken frame: its error must not echo the bytes either
            assert msgpack.unpackb(ws.recv(timeout=30))["code"] == "invalid_image"
        headers = {"Authorization": f"Bearer {admin}", "Content-Type": "image/jpeg"}
        answer = httpx.post(f"{server.url}/v1/recognize?collection=private", content=upload, headers=headers, timeout=30)
        assert answer.status_code == 200
        assert httpx.post(f"{server.url}/v1/recognize?collection=private&token={admin}", content=upload).status_code == 200
        refused = httpx.post(f"{server.url}/v1/recognize?collection=private&token={wrong}", content=upload, timeout=30)
        assert refused.status_code == 401  # logged as a warning: the line must not hold the token

        camera_bytes = [piece for image in [*frames, upload] for piece in fingerprints(image)]
        camera_bytes += [base64.b64encode(piece)[4:28] for piece in camera_bytes]
        tokens = [admin.encode(), wrong.encode(), admin[4:30].encode()]

        store = redis.Redis.from_url(server.redis_url)
        everything = b"".join(_dump(store, key) for key in store.scan_iter(count=1000))
        # The scan does see what is stored: the reference's thumbnail is found in it.
        item = reference.json()["item"]
        thumbnail = httpx.get(f"{server.url}/v1/collections/private/items/{item}/thumbnail?token={admin}").content
        assert traces(everything, fingerprints(thumbnail, size=16)), "the scan finds nothing, not even the thumbnail"
        assert traces(everything, camera_bytes + tokens) == []
    finally:
        server.stop()  # flushes the store's append-only file
        server.kill_orphans()

    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert any(p.suffix == ".aof" or "appendonly" in p.name for p in files), [p.name for p in files]
    assert any(traces(p.read_bytes(), fingerprints(thumbnail, size=16)) for p in files)
    for path in files:
        found = traces(path.read_bytes(), camera_bytes + tokens)
        assert found == [], f"{path} holds camera bytes or a credential"
    log = server.log().encode()
    assert b"401 POST /v1/recognize?..." in log  # the refusal is logged, without its query string
    assert traces(log, camera_bytes + tokens) == []
