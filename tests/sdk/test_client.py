"""The Python SDK against a real server: what an app developer does with it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bench.scenes import corner_error
from catchlight import Catchlight, CatchlightError
from tests.conftest import RunningServer
from tests.frames import composite, plain
from tests.images import photo_bytes


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on its own loop in a thread: the browser tests' driver may own this thread's loop."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


@pytest.fixture
def client(server: RunningServer) -> Catchlight:
    with Catchlight(server.url) as cl:
        yield cl


def test_manage_a_collection_and_recognize_through_the_sdk(client: Catchlight) -> None:
    item = client.add_item("sdk", photo_bytes("coffee.png"), name="Coffee", metadata={"url": "https://example.org"})
    assert item["quality"] > 0.5
    assert [i["name"] for i in client.items("sdk")] == ["Coffee"]
    assert any(c["collection"] == "sdk" for c in client.collections())
    assert client.update_item("sdk", item["item"], metadata={"caption": "cup"})["metadata"] == {"caption": "cup"}

    image, truth = composite(["coffee.png"], seed=61)
    result = client.recognize("sdk", image)
    assert [i["name"] for i in result["items"]] == ["Coffee"]
    assert corner_error(result["items"][0]["corners"], truth["coffee.png"]) <= 5

    client.delete_item("sdk", item["item"])
    assert client.items("sdk") == []


def test_server_refusals_raise_with_status_and_code(client: Catchlight) -> None:
    with pytest.raises(CatchlightError) as refused:
        client.recognize("no-such-collection", plain("grass.png"))
    assert (refused.value.status, refused.value.code) == (404, "unknown_collection")
    with pytest.raises(CatchlightError) as poor:
        client.add_item("sdk2", b"not an image", name="x")
    assert poor.value.code == "invalid_image"


def test_stream_yields_one_reply_per_frame(client: Catchlight) -> None:
    client.add_item("sdk-stream", photo_bytes("astronaut.png"), name="Astronaut")
    frames = [composite(["astronaut.png"], seed=s)[0] for s in range(70, 75)] + [plain("grass.png")]

    async def collect() -> list[dict]:
        return [reply async for reply in client.stream("sdk-stream", frames)]

    replies = run(collect())
    assert [r["id"] for r in replies] == list(range(6))
    assert all(r["type"] == "result" for r in replies)
    assert [len(r["items"]) for r in replies] == [1, 1, 1, 1, 1, 0]


def test_opening_a_stream_on_an_unknown_collection_raises(client: Catchlight) -> None:
    with pytest.raises(CatchlightError) as refused:
        run(client.open_stream("nowhere"))
    assert (refused.value.status, refused.value.code) == (4404, "unknown_collection")
