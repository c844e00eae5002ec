"""Two nodes on one store: a change through one is recognized through the other, and a cut-off node catches up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from matcher.embedded_redis import EmbeddedRedis, start_or_reuse
from tests.cluster.proxy import CuttableProxy
from tests.conftest import RunningServer, wait_until
from tests.images import photo_bytes


@pytest.fixture
def shared_store(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    store = start_or_reuse(tmp_path / "shared")
    yield store
    store.stop()


def recognized(node: RunningServer, collection: str, photo: str) -> list[str]:
    reply = httpx.post(f"{node.url}/v1/recognize", params={"collection": collection}, content=photo_bytes(photo), timeout=30)
    if reply.status_code != 200:
        return []
    return [m["name"] for m in reply.json()["items"]]


def add(node: RunningServer, collection: str, name: str, photo: str) -> str:
    reply = httpx.post(
        f"{node.url}/v1/collections/{collection}/items",
        files={"image": (photo, photo_bytes(photo))},
        data={"name": name},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["item"])


def within(seconds: float, condition: Callable[[], object]) -> float:
    """Seconds until `condition` holds; fails past `seconds`."""
    started = time.monotonic()
    wait_until(condition, seconds, interval=0.02)
    return time.monotonic() - started


def test_a_change_through_one_node_is_recognized_through_another_within_a_second(
    shared_store: EmbeddedRedis, start_server: Callable[..., RunningServer]
) -> None:
    a = start_server(env={"REDIS_URL": shared_store.url})
    b = start_server(env={"REDIS_URL": shared_store.url})
    assert recognized(b, "prop", "coffee.png") == []
    add(a, "prop", "Coffee", "coffee.png")
    # One recognition takes a few hundred ms on a busy machine: the change itself must arrive within 1 s.
    elapsed = within(10, lambda: recognized(b, "prop", "coffee.png") == ["Coffee"])
    assert elapsed < 1.0, f"seen through node B after {elapsed:.2f} s"

    def same_position() -> bool:
        health = [httpx.get(f"{n.url}/healthz").json() for n in (a, b)]
        return len({h["change_log"]["position"] for h in health}) == 1 and all(h["status"] == "ok" for h in health)

    wait_until(same_position, 10, interval=0.1)  # both nodes report being current to the same change


def test_a_node_cut_off_from_the_store_says_so_and_catches_up_when_it_is_back(
    shared_store: EmbeddedRedis, start_server: Callable[..., RunningServer]
) -> None:
    host, port = shared_store.url.split("//")[1].split("/")[0].split(":")
    proxy = CuttableProxy(host, int(port)).start()
    try:
        a = start_server(env={"REDIS_URL": shared_store.url})
        b = start_server(env={"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"})
        add(a, "gap", "Coffee", "coffee.png")
        wait_until(lambda: recognized(b, "gap", "coffee.png") == ["Coffee"], 10)

        proxy.cut()
        wait_until(lambda: httpx.get(f"{b.url}/healthz").json()["status"] == "store_unavailable", 30, interval=0.1)
        assert recognized(b, "gap", "coffee.png") == ["Coffee"]  # answers from memory meanwhile
        item = httpx.get(f"{a.url}/v1/collections/gap/items").json()["items"][0]["item"]
        assert httpx.delete(f"{a.url}/v1/collections/gap/items/{item}").status_code == 204
        add(a, "gap", "Astronaut", "astronaut.png")

        proxy.restore()
        wait_until(lambda: httpx.get(f"{b.url}/healthz").json()["status"] == "ok", 30, interval=0.1)
        assert recognized(b, "gap", "astronaut.png") == ["Astronaut"]
        assert recognized(b, "gap", "coffee.png") == []
    finally:
        proxy.stop()


def test_a_restarted_node_loads_what_changed_while_it_was_down(
    shared_store: EmbeddedRedis, start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    a = start_server(env={"REDIS_URL": shared_store.url})
    b = start_server(env={"REDIS_URL": shared_store.url})
    b.stop()
    add(a, "restart", "Coffee", "coffee.png")
    b.start()
    assert httpx.get(f"{b.url}/healthz").json()["status"] == "ok"
    assert recognized(b, "restart", "coffee.png") == ["Coffee"]
