"""Three nodes behind nginx on a primary + replicas + Sentinel store, all on loopback.

The deployment of docs/deploy.md in small: a change through one node reaches the
others, a node stopped mid-stream costs the stream a moment, and losing the Redis
primary costs management calls a few seconds and no acknowledged item.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from catchlight.client import Catchlight
from matcher.sentinel import ReplicatedStore, start_replicated
from tests.cluster.nginx import Nginx, nginx_binary
from tests.cluster.nodes import add, every_frame_sent_a_second_later_sees, recognized
from tests.conftest import RunningServer, wait_until
from tests.images import photo_bytes

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (scripts/setup --dev installs it)")


class Cluster:
    def __init__(self, store: ReplicatedStore, nodes: list[RunningServer], balancer: Nginx) -> None:
        self.store = store
        self.nodes = nodes
        self.balancer = balancer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    store = start_replicated(base / "redis", replicas=2, sentinels=1)
    nodes: list[RunningServer] = []
    balancer: Nginx | None = None
    try:
        env = {
            "CATCHLIGHT_REDIS_SENTINELS": ",".join(store.sentinel_addresses),
            "CATCHLIGHT_REDIS_MIN_REPLICAS": "1",
        }
        for number in range(3):
            nodes.append(RunningServer(base / f"node{number}", env=env, args=["--pool-size", "1"]).start(timeout=90))
        balancer = Nginx(base / "nginx", [n.port for n in nodes]).start()
        yield Cluster(store, nodes, balancer)
    finally:
        if balancer is not None:
            balancer.stop()
        for node in nodes:
            node.stop()
        store.stop()


def open_streams(node: RunningServer) -> int:
    found = re.search(r"^catchlight_active_streams (\S+)", httpx.get(f"{node.url}/metrics", timeout=10).text, re.M)
    return int(float(found.group(1))) if found else 0


def test_a_change_on_node_1_is_recognized_through_node_3_within_a_second(cluster: Cluster) -> None:
    first, _, third = cluster.nodes
    assert recognized(third.url, "shared", "coffee.png") == []
    assert add(first.url, "shared", "Coffee", "coffee.png").status_code == 201
    every_frame_sent_a_second_later_sees(third.url, "shared", "coffee.png", ["Coffee"])
    assert recognized(cluster.balancer.url, "shared", "coffee.png") == ["Coffee"]  # and through nginx


def test_a_node_stopped_mid_stream_costs_the_stream_a_moment(cluster: Cluster) -> None:
    assert add(cluster.balancer.url, "live", "Coffee", "coffee.png").status_code == 201
    wait_until(lambda: all(recognized(n.url, "live", "coffee.png") == ["Coffee"] for n in cluster.nodes), 10)
    frame = photo_bytes("coffee.png")
    replies: list[tuple[float, dict[str, object]]] = []
    stopped: list[RunningServer] = []

    async def camera() -> AsyncIterator[bytes]:
        for _ in range(400):
            yield frame
            await asyncio.sleep(0.02)

    async def run() -> None:
        client = Catchlight(cluster.balancer.url)
        try:
            async for reply in client.stream("live", camera(), reconnect=True, reconnect_timeout=30):
                replies.append((time.monotonic(), reply))
                if len(replies) == 5 and not stopped:
                    serving = [n for n in cluster.nodes if open_streams(n) > 0]
                    assert len(serving) == 1
                    stopped.append(serving[0])
                    serving[0].stop(signal.SIGKILL)  # no goodbye: the socket just drops
                if stopped and len([r for t, r in replies if t > stopped_at[0]]) >= 10:
                    break
        finally:
            client.close()

    stopped_at = [float("inf")]

    async def main() -> None:
        task = asyncio.ensure_future(run())
        while not stopped:
            await asyncio.sleep(0.01)
            if task.done():
                break
        stopped_at[0] = time.monotonic()
        await asyncio.wait_for(task, 60)

    asyncio.run(main())
    assert stopped, "the stream never started"
    cluster.nodes.remove(stopped[0])
    after = [(t, r) for t, r in replies if t > stopped_at[0]]
    results = [(t, r) for t, r in after if r.get("type") == "result"]
    assert results, f"no result after the node was stopped: {[r for _, r in after]}"
    gap = results[0][0] - stopped_at[0]
    assert gap < 5.0, f"the stream was silent for {gap:.1f} s"
    assert all(r.get("code") == "connection_lost" for _, r in after if r.get("type") == "error")
    assert [m["name"] for m in results[-1][1]["items"]] == ["Coffee"]  # type: ignore[index]


def test_losing_the_redis_primary_keeps_recognition_and_loses_no_acknowledged_item(cluster: Cluster) -> None:
    url = cluster.balancer.url
    acknowledged = []
    for photo in ("astronaut.png", "rocket.jpg", "chelsea.png", "camera.png", "motorcycle_left.png"):
        reply = add(url, "durable", photo, photo)
        assert reply.status_code == 201, reply.text
        acknowledged.append(reply.json()["item"])
    wait_until(lambda: all(recognized(n.url, "durable", "astronaut.png") for n in cluster.nodes), 10)

    primary = cluster.store.primary_port()
    assert primary is not None
    cluster.store.node_on(primary).stop(signal.SIGKILL)
    stopped = time.monotonic()

    # While Sentinel has not promoted a replica: recognition from memory, management 503.
    assert all(recognized(n.url, "durable", "astronaut.png") == ["astronaut.png"] for n in cluster.nodes)
    during = add(url, "durable", "late", "coffee.png")
    assert during.status_code in (201, 503), during.text  # a clean refusal, or already the new primary
    if time.monotonic() - stopped < 1.0:  # Sentinel waits 1 s before it even calls the primary down
        assert during.status_code == 503 and during.json()["error"]["code"] == "store_unavailable"

    def writes_again() -> bool:
        return add(url, "durable", "after failover", "coffee.png").status_code == 201

    wait_until(writes_again, 60, interval=0.25)
    failover_seconds = time.monotonic() - stopped
    assert cluster.store.primary_port() not in (None, primary)
    listed = {i["item"] for i in httpx.get(f"{url}/v1/collections/durable/items", timeout=10).json()["items"]}
    assert set(acknowledged) <= listed
    assert failover_seconds < 30
    wait_until(lambda: all(recognized(n.url, "durable", "coffee.png") for n in cluster.nodes), 10)
