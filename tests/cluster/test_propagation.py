"""Two nodes on one store: a change through one is recognized through the other, and a cut-off node catches up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from matcher.embedded_redis import EmbeddedRedis, start_or_reuse
from tests.cluster.nodes import add, every_frame_sent_a_second_later_sees, recognized
from tests.cluster.proxy import CuttableProxy
from tests.conftest import RunningServer, wait_until


@pytest.fixture
def shared_store(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    store = start_or_reuse(tmp_path / "shared")
    yield store
    store.stop()


def test_a_change_through_one_node_is_recognized_through_another_within_a_second(
    shared_store: EmbeddedRedis, start_server: Callable[..., RunningServer]
) -> None:
    a = start_server(env={"REDIS_URL": shared_store.url})
    b = start_server(env={"REDIS_URL": shared_store.url})
    assert recognized(b.url, "prop", "coffee.png") == []
    assert add(a.url, "prop", "Coffee", "coffee.png").status_code == 201
    every_frame_sent_a_second_later_sees(b.url, "prop", "coffee.png", ["Coffee"])

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
        assert add(a.url, "gap", "Coffee", "coffee.png").status_code == 201
        wait_until(lambda: recognized(b.url, "gap", "coffee.png") == ["Coffee"], 10)

        proxy.cut()
        wait_until(lambda: httpx.get(f"{b.url}/healthz").json()["status"] == "store_unavailable", 30, interval=0.1)
        assert recognized(b.url, "gap", "coffee.png") == ["Coffee"]  # answers from memory meanwhile
        item = httpx.get(f"{a.url}/v1/collections/gap/items").json()["items"][0]["item"]
        assert httpx.delete(f"{a.url}/v1/collections/gap/items/{item}").status_code == 204
        assert add(a.url, "gap", "Astronaut", "astronaut.png").status_code == 201

        proxy.restore()
        wait_until(lambda: httpx.get(f"{b.url}/healthz").json()["status"] == "ok", 30, interval=0.1)
        assert recognized(b.url, "gap", "astronaut.png") == ["Astronaut"]
        assert recognized(b.url, "gap", "coffee.png") == []
    finally:
        proxy.stop()


def test_a_restarted_node_loads_what_changed_while_it_was_down(
    shared_store: EmbeddedRedis, start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    a = start_server(env={"REDIS_URL": shared_store.url})
    b = start_server(env={"REDIS_URL": shared_store.url})
    b.stop()
    assert add(a.url, "restart", "Coffee", "coffee.png").status_code == 201
    b.start()
    assert httpx.get(f"{b.url}/healthz").json()["status"] == "ok"
    assert recognized(b.url, "restart", "coffee.png") == ["Coffee"]
