"""Node groups: two nodes of different groups on one store, each holding and serving only its group's collections.

Management goes through either node; recognition of another group's collection is refused
with `collection_not_served` naming the group; deploy/nginx-groups.conf sends each
collection's recognitions and streams to its group; moving a collection moves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgpack
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from catchlight.client import Catchlight
from matcher.embedded_redis import EmbeddedRedis, start_or_reuse
from tests.cluster.nginx import DEPLOYED, Nginx, nginx_binary
from tests.cluster.nodes import add, recognized
from tests.conftest import RunningServer, wait_until

GROUPS_CONFIG = DEPLOYED.parent / "nginx-groups.conf"


@pytest.fixture
def shared_store(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    store = start_or_reuse(tmp_path / "shared")
    yield store
    store.stop()


def held(node: RunningServer) -> dict[str, int]:
    health = httpx.get(f"{node.url}/healthz", timeout=10).json()
    workers = health["change_log"]["workers"]
    assert all(w["collections"] == health["collections"] for w in workers), workers
    collections: dict[str, int] = health["collections"]
    return collections


def refusal(node: RunningServer, collection: str) -> dict[str, str]:
    reply = httpx.post(
        f"{node.url}/v1/recognize", params={"collection": collection}, content=b"not looked at", timeout=30
    )
    assert reply.status_code == 421, reply.text
    error: dict[str, str] = reply.json()["error"]
    return error


def test_each_node_group_holds_and_serves_only_its_collections(
    shared_store: EmbeddedRedis, start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    env = {"REDIS_URL": shared_store.url, "CATCHLIGHT_DEMO_COLLECTION": ""}
    regular = start_server(env={**env, "CATCHLIGHT_NODE_GROUP": "default"}, args=["--pool-size", "1"])
    big = start_server(env={**env, "CATCHLIGHT_NODE_GROUP": "big"}, args=["--pool-size", "1"])

    # Management answers on every node, whichever group holds the collection.
    assert httpx.put(f"{regular.url}/v1/collections/archive", json={"group": "big"}).status_code == 201
    assert add(regular.url, "archive", "Astronaut", "astronaut.png").status_code == 201
    assert add(big.url, "posters", "Coffee", "coffee.png").status_code == 201  # never placed: group "default"
    groups = {c["collection"]: c["group"] for c in httpx.get(f"{big.url}/v1/collections").json()["collections"]}
    assert groups == {"archive": "big", "posters": "default"}

    wait_until(lambda: recognized(big.url, "archive", "astronaut.png") == ["Astronaut"], 10)
    wait_until(lambda: recognized(regular.url, "posters", "coffee.png") == ["Coffee"], 10)
    assert held(big) == {"archive": 1}
    assert held(regular) == {"posters": 1}
    assert httpx.get(f"{big.url}/healthz").json()["node_group"] == "big"

    error = refusal(regular, "archive")
    assert (error["code"], error["group"]) == ("collection_not_served", "big")
    error = refusal(big, "posters")
    assert (error["code"], error["group"]) == ("collection_not_served", "default")
    with connect(f"{regular.ws_url}/v1/stream?collection=archive", max_size=None) as ws:
        message = msgpack.unpackb(ws.recv(timeout=10))
        assert (message["type"], message["code"], message["group"]) == ("error", "collection_not_served", "big")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4421

    # Moving a collection: the other group's workers load it, its former group's drop it.
    client = Catchlight(big.url)
    try:
        assert client.place_collection("posters", "big")["group"] == "big"
    finally:
        client.close()
    wait_until(lambda: held(big) == {"archive": 1, "posters": 1} and held(regular) == {}, 10)
    assert recognized(big.url, "posters", "coffee.png") == ["Coffee"]
    assert refusal(regular, "posters")["group"] == "big"


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (scripts/setup --dev installs it)")
def test_nginx_sends_each_collection_to_its_group(
    shared_store: EmbeddedRedis, start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """deploy/nginx-groups.conf as shipped (its map places `archive` in group big), pointed at local nodes."""
    env = {"REDIS_URL": shared_store.url, "CATCHLIGHT_DEMO_COLLECTION": ""}
    regular = start_server(env={**env, "CATCHLIGHT_NODE_GROUP": "default"}, args=["--pool-size", "1"])
    big = start_server(env={**env, "CATCHLIGHT_NODE_GROUP": "big"}, args=["--pool-size", "1"])
    balancer = Nginx(
        tmp_path / "nginx", {"catchlight_default": [regular.port], "catchlight_big": [big.port]}, GROUPS_CONFIG
    )
    balancer.start()
    try:
        client = Catchlight(balancer.url)
        assert client.create_collection("archive", group="big")
        client.close()
        assert add(balancer.url, "archive", "Astronaut", "astronaut.png").status_code == 201
        assert add(balancer.url, "posters", "Coffee", "coffee.png").status_code == 201
        wait_until(lambda: recognized(balancer.url, "archive", "astronaut.png") == ["Astronaut"], 10)
        wait_until(lambda: recognized(balancer.url, "posters", "coffee.png") == ["Coffee"], 10)
        ws_url = balancer.url.replace("http://", "ws://")
        for collection in ("archive", "posters"):
            with connect(f"{ws_url}/v1/stream?collection={collection}", max_size=None) as ws:
                assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "hello"
    finally:
        balancer.stop()
