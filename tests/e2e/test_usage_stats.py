"""Usage statistics count exactly what was sent: /v1/stats, per-item counts, /metrics (this module's own server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from catchlight import Catchlight
from tests.conftest import RunningServer, wait_until
from tests.frames import composite, plain
from tests.images import photo_bytes

COLLECTION = "counted"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Catchlight]:
    with Catchlight(server.url) as cl:
        yield cl


@pytest.fixture(scope="module")
def sent(client: Catchlight) -> dict[str, str]:
    """7 stream frames showing item A, 3 HTTP recognitions showing item B, 1 of nothing: the traffic counted below."""
    client.create_collection(COLLECTION)
    a = client.add_item(COLLECTION, photo_bytes("coffee.png"), name="A")["item"]
    b = client.add_item(COLLECTION, photo_bytes("astronaut.png"), name="B")["item"]
    frames = [composite(["coffee.png"], seed=s)[0] for s in range(200, 207)]

    async def stream() -> list[dict]:
        return [reply async for reply in client.stream(COLLECTION, frames)]

    replies = asyncio.run(stream())
    assert [len(r["items"]) for r in replies] == [1] * 7
    for seed in (210, 211, 212):
        assert [m["item"] for m in client.recognize(COLLECTION, composite(["astronaut.png"], seed=seed)[0])["items"]] == [b]
    assert client.recognize(COLLECTION, plain("grass.png"))["items"] == []
    return {"A": a, "B": b}


def test_stats_count_exactly_the_frames_requests_and_recognitions_sent(client: Catchlight, sent: dict[str, str]) -> None:
    stats = client.stats("1h", collection=COLLECTION)
    # PUT collection + 2 uploads + 4 recognitions; the stream's frames are not requests.
    assert stats["totals"] == {"requests": 7, "frames": 7, "recognitions": 10}
    assert sum(p["frames"] for p in stats["series"]) == 7
    assert stats["resolution"] == "minute" and len(stats["series"]) == 60
    assert stats["collections"] == [{"collection": COLLECTION, "requests": 7, "frames": 7, "recognitions": 10}]
    assert stats["tokens"] == [{"token": "anonymous", "requests": 7, "frames": 7, "recognitions": 10}]
    assert [(t["item"], t["name"], t["recognitions"]) for t in stats["top_items"]] == [
        (sent["A"], "A", 7),
        (sent["B"], "B", 3),
    ]
    latency = {h["endpoint"]: h for h in stats["latency"]}
    assert latency["POST recognize"]["count"] == 4
    assert latency["stream frame"]["count"] == 7
    assert latency["POST items"]["count"] == 2
    assert sum(b["count"] for b in latency["stream frame"]["buckets"]) == 7
    # Other periods read other buckets of the same counts.
    assert client.stats("24h", collection=COLLECTION)["totals"] == stats["totals"]
    assert client.stats("30d", collection=COLLECTION)["totals"] == stats["totals"]


def test_each_items_recognitions_are_counted(client: Catchlight, sent: dict[str, str]) -> None:
    counts = client.item_stats(COLLECTION)
    assert {item: (c["total"], c["recent"]) for item, c in counts.items()} == {sent["A"]: (7, 7), sent["B"]: (3, 3)}


def test_metrics_expose_the_same_counts_to_prometheus(server: RunningServer, sent: dict[str, str]) -> None:
    text = httpx.get(server.url + "/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("catchlight_stream_frames_total", (("collection", COLLECTION),))] == 7
    assert samples[("catchlight_recognitions_total", (("collection", COLLECTION),))] == 10
    assert samples[("catchlight_requests_total", (("endpoint", "POST recognize"), ("status", "200")))] == 4
    assert samples[("catchlight_request_duration_seconds_count", (("endpoint", "stream frame"),))] == 7
    assert samples[("catchlight_active_streams", ())] == 0


def test_open_streams_are_counted_while_open(client: Catchlight, sent: dict[str, str]) -> None:
    async def run() -> int:
        first = await client.open_stream(COLLECTION)
        second = await client.open_stream(COLLECTION)
        during: int = client.stats("1h")["active_streams"]
        await first.close()
        await second.close()
        return during

    assert asyncio.run(run()) == 2
    wait_until(lambda: client.stats("1h")["active_streams"] == 0, timeout=5)


def test_stats_refuse_an_unknown_period(server: RunningServer) -> None:
    reply = httpx.get(server.url + "/v1/stats?range=forever")
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_request"


def test_keypoints_of_an_item_are_its_stored_features(client: Catchlight, sent: dict[str, str]) -> None:
    item = client.get_item(COLLECTION, sent["A"])
    keypoints = client.keypoints(COLLECTION, sent["A"])
    assert (keypoints["width"], keypoints["height"]) == (item["width"], item["height"])
    assert len(keypoints["points"]) == item["keypoints"]
    assert all(0 <= x <= item["width"] and 0 <= y <= item["height"] for x, y in keypoints["points"])


def test_inlier_points_only_when_asked_and_inside_the_outline(client: Catchlight, sent: dict[str, str]) -> None:
    image, _truth = composite(["coffee.png"], seed=220)
    assert "inlier_points" not in client.recognize(COLLECTION, image)["items"][0]
    match = client.recognize(COLLECTION, image, inliers=True)["items"][0]
    points = match["inlier_points"]
    assert abs(len(points) - match["inliers"]) <= max(3, match["inliers"] // 5)
    outline = np.array(match["corners"], np.float32)
    inside = [cv2.pointPolygonTest(outline, (float(x), float(y)), True) >= -2 for x, y in points]
    assert all(inside)
