"""End to end: references uploaded over HTTP, frames recognized over HTTP and the websocket stream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import msgpack
import numpy as np
import pytest
from websockets.sync.client import ClientConnection, connect

from bench.scenes import corner_error
from tests.conftest import RunningServer
from tests.frames import REFERENCES, UNRELATED, WELL_TEXTURED, composite, plain
from tests.images import photo, photo_bytes

CORNER_TOLERANCE_PX = 5.0


@pytest.fixture(scope="module")
def posters(server: RunningServer) -> dict[str, str]:
    """A collection of real photos; maps file name -> item id."""
    ids = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name in REFERENCES:
            reply = client.post(
                "/v1/collections/posters/items",
                files={"image": (name, photo_bytes(name))},
                data={"name": name, "metadata": '{"url": "https://example.org/' + name + '"}'},
            )
            assert reply.status_code == 201, reply.text
            ids[name] = reply.json()["item"]
    return ids


@pytest.fixture
def stream(server: RunningServer, posters: dict[str, str]) -> Iterator[ClientConnection]:
    with connect(f"{server.ws_url}/v1/stream?collection=posters", max_size=None) as ws:
        hello = msgpack.unpackb(ws.recv(timeout=10))
        assert hello["type"] == "hello" and hello["protocol"] == 1
        yield ws


def send_frame(ws: ClientConnection, frame_id: int, image: bytes) -> None:
    ws.send(msgpack.packb({"type": "frame", "id": frame_id, "image": image}))


def receive(ws: ClientConnection, timeout: float = 30) -> dict:
    return msgpack.unpackb(ws.recv(timeout=timeout))


def recognize_over_stream(ws: ClientConnection, frame_id: int, image: bytes) -> dict:
    send_frame(ws, frame_id, image)
    reply = receive(ws)
    assert reply["id"] == frame_id, reply
    return reply


def found(reply: dict, posters: dict[str, str]) -> dict[str, dict]:
    names = {v: k for k, v in posters.items()}
    return {names[item["item"]]: item for item in reply["items"] if item["item"] in names}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reference_in_perspective_is_found_with_accurate_corners(
    stream: ClientConnection, posters: dict[str, str], seed: int
) -> None:
    name = WELL_TEXTURED[seed % len(WELL_TEXTURED)]
    image, truth = composite([name], seed)
    reply = recognize_over_stream(stream, seed, image)
    assert reply["type"] == "result", reply
    assert (reply["width"], reply["height"]) == (640, 480)
    items = found(reply, posters)
    assert list(items) == [name]
    item = items[name]
    assert corner_error(item["corners"], truth[name]) <= CORNER_TOLERANCE_PX
    assert item["name"] == name and item["metadata"] == {"url": f"https://example.org/{name}"}
    assert 0 < item["score"] <= 1 and item["inliers"] >= 10
    # The homography maps reference pixels to frame pixels: its image of the reference's
    # bottom-right corner is the reported bottom-right corner.
    h, w = photo(name).shape[:2]
    H = np.array(item["homography"]).reshape(3, 3)
    corner = H @ np.array([w, h, 1.0])
    assert np.allclose(corner[:2] / corner[2], item["corners"][2], atol=0.5)
    for key in ("queue_ms", "match_ms", "total_ms"):
        assert reply["timing"][key] >= 0


def test_http_recognize_gives_the_stream_result_shape(api: httpx.Client, posters: dict[str, str]) -> None:
    image, truth = composite(["coffee.png"], seed=11)
    reply = api.post("/v1/recognize", params={"collection": "posters"}, content=image)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) >= {"width", "height", "items", "timing"}
    items = found(body, posters)
    assert corner_error(items["coffee.png"]["corners"], truth["coffee.png"]) <= CORNER_TOLERANCE_PX
    multipart = api.post("/v1/recognize?collection=posters", files={"image": ("f.jpg", image)})
    assert found(multipart.json(), posters).keys() == {"coffee.png"}


def test_exif_orientation_is_honoured(api: httpx.Client, posters: dict[str, str]) -> None:
    import io

    from PIL import Image

    image, truth = composite(["astronaut.png"], seed=5)
    # Store the pixels rotated and say so in EXIF: a viewer (and we) must show the upright frame.
    rotated = Image.open(io.BytesIO(image)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    out = io.BytesIO()
    rotated.save(out, "JPEG", quality=90, exif=exif)
    body = api.post("/v1/recognize?collection=posters", content=out.getvalue()).json()
    assert (body["width"], body["height"]) == (640, 480)
    items = found(body, posters)
    assert corner_error(items["astronaut.png"]["corners"], truth["astronaut.png"]) <= CORNER_TOLERANCE_PX


@pytest.mark.parametrize("pair,seed", [(("coffee.png", "astronaut.png"), 21), (("motorcycle_left.png", "coffee.png"), 22)])
def test_two_references_in_one_frame_are_both_found(
    stream: ClientConnection, posters: dict[str, str], pair: tuple[str, str], seed: int
) -> None:
    image, truth = composite(list(pair), seed, size=(0.8, 0.95), rotation=10, tilt=15)
    items = found(recognize_over_stream(stream, seed, image), posters)
    assert set(items) == set(pair)
    for name in pair:
        assert corner_error(items[name]["corners"], truth[name]) <= CORNER_TOLERANCE_PX


def test_frames_of_unrelated_scenes_return_no_item(stream: ClientConnection, posters: dict[str, str]) -> None:
    for i, name in enumerate(UNRELATED):
        reply = recognize_over_stream(stream, 100 + i, plain(name))
        assert reply["type"] == "result"
        assert reply["items"] == [], (name, reply["items"])


def test_frames_sent_faster_than_processed_are_skipped_and_each_gets_one_reply(
    stream: ClientConnection, posters: dict[str, str]
) -> None:
    image, _ = composite(["coffee.png"], seed=31)
    ids = list(range(1000, 1040))
    for frame_id in ids:
        send_frame(stream, frame_id, image)
    replies = {}
    while len(replies) < len(ids):
        reply = receive(stream)
        assert reply["id"] not in replies, "two replies for one frame"
        replies[reply["id"]] = reply
    kinds = [replies[i]["type"] for i in ids]
    assert set(replies) == set(ids)
    assert kinds.count("skipped") > 0
    assert kinds[-1] == "result", "the newest frame is always processed"
    assert all(k in ("result", "skipped") for k in kinds)


def test_item_added_while_streaming_is_found_within_a_second_and_deleted_stops_being_found(
    server: RunningServer, api: httpx.Client
) -> None:
    assert api.post(
        "/v1/collections/live/items", files={"image": ("a", photo_bytes("astronaut.png"))}, data={"name": "astronaut"}
    ).status_code == 201
    image, _ = composite(["coffee.png"], seed=41)
    with connect(f"{server.ws_url}/v1/stream?collection=live", max_size=None) as ws:
        receive(ws)  # hello
        frame_ids = iter(range(1, 10_000))

        def seen_in_frames_sent_after(deadline: float, present: bool) -> None:
            """Stream until a frame sent after `deadline` has been answered; every such frame
            must show the item (or not). Frames sent earlier may go either way: a frame is
            judged by when it left the camera, so slow processing on a busy machine does not
            count against the change's propagation."""
            judged = 0
            while judged < 3:
                sent = time.monotonic()
                reply = recognize_over_stream(ws, next(frame_ids), image)
                if sent >= deadline:
                    assert ("coffee" in {i["name"] for i in reply["items"]}) == present
                    judged += 1

        first = recognize_over_stream(ws, next(frame_ids), image)
        assert first["items"] == []
        added = api.post(
            "/v1/collections/live/items", files={"image": ("c", photo_bytes("coffee.png"))}, data={"name": "coffee"}
        )
        assert added.status_code == 201
        seen_in_frames_sent_after(time.monotonic() + 1.0, present=True)

        assert api.delete(f"/v1/collections/live/items/{added.json()['item']}").status_code == 204
        seen_in_frames_sent_after(time.monotonic() + 1.0, present=False)


def test_collection_survives_a_restart(start_server) -> None:  # type: ignore[no-untyped-def]
    first = start_server()
    with httpx.Client(base_url=first.url, timeout=30) as client:
        added = client.post(
            "/v1/collections/kept/items",
            files={"image": ("r", photo_bytes("rocket.jpg"))},
            data={"name": "rocket", "metadata": '{"model": "falcon-9"}'},
        )
        assert added.status_code == 201
    assert first.stop() == 0
    second = start_server(data_dir=first.data_dir)
    with httpx.Client(base_url=second.url, timeout=30) as client:
        items = client.get("/v1/collections/kept/items").json()["items"]
        assert [(i["name"], i["metadata"]) for i in items] == [("rocket", {"model": "falcon-9"})]
        image, _ = composite(["rocket.jpg"], seed=51, size=(0.8, 0.9))
        body = client.post("/v1/recognize?collection=kept", content=image).json()
        assert [i["name"] for i in body["items"]] == ["rocket"]
