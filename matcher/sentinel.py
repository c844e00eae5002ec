"""A replicated store on one machine: a primary, replicas and Sentinels, all the bundled valkey-server.

For trying failover locally, the tests and the benchmark; production runs the same
three roles on separate machines (deploy/ has the configuration files, docs/deploy.md
the steps). Every process gets its own directory under `directory`.

  python -m matcher.sentinel --dir var/replicated     prints the redis_sentinels setting, runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from matcher.embedded_redis import RedisStartError, _free_port, server_binary, server_command
from matcher.redis_client import sentinel_url

MASTER_NAME = "catchlight"


def data_node_command(directory: Path, port: int, primary_port: int | None, min_replicas_to_write: int) -> list[str]:
    """A primary (primary_port None) or a replica of 127.0.0.1:primary_port, with persistence in `directory`."""
    args = server_command(directory, port)
    # The primary refuses writes when fewer replicas are connected and recent (lag <= 10 s):
    # a primary cut off from its replicas stops taking writes that a failover would discard.
    args += ["--min-replicas-to-write", str(min_replicas_to_write), "--min-replicas-max-lag", "10"]
    if primary_port is not None:
        args += ["--replicaof", "127.0.0.1", str(primary_port)]
    return args


def sentinel_command(directory: Path, port: int, primary_port: int, quorum: int, down_after_ms: int) -> list[str]:
    """A Sentinel watching 127.0.0.1:primary_port; it rewrites its config file as it learns, so it gets its own."""
    config = directory / "sentinel.conf"
    config.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"dir {directory}",
                f"logfile {directory / 'sentinel.log'}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}",
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} {max(down_after_ms * 4, 5000)}",
                f"sentinel parallel-syncs {MASTER_NAME} 1",
                "",
            ]
        )
    )
    return [str(server_binary()), str(config), "--sentinel"]


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@dataclass
class Node:
    role: str
    port: int
    directory: Path
    command: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ReplicatedStore:
    """A primary, `replicas` replicas and `sentinels` Sentinels on 127.0.0.1 free ports."""

    directory: Path
    data_nodes: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    @property
    def url(self) -> str:
        return sentinel_url(self.sentinel_addresses, MASTER_NAME)

    def primary_port(self) -> int | None:
        """The port of the primary as the Sentinels currently see it (None: none known)."""
        for node in self.sentinels:
            try:
                address = redis.Redis(port=node.port, socket_timeout=1).sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, OSError):
                continue
            if address:
                return int(address[1])
        return None

    def node_on(self, port: int) -> Node:
        return next(n for n in self.data_nodes if n.port == port)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            node.stop()


def start_replicated(
    directory: Path,
    replicas: int = 2,
    sentinels: int = 1,
    down_after_ms: int = 1000,
    min_replicas_to_write: int = 1,
    timeout: float = 30.0,
) -> ReplicatedStore:
    """Start the primary, then the replicas (waiting until they are in sync), then the Sentinels."""
    directory = directory.resolve()
    store = ReplicatedStore(directory)
    try:
        primary_port = _free_port()
        for number in range(replicas + 1):
            port = primary_port if number == 0 else _free_port()
            node_dir = directory / f"data{number}"
            node_dir.mkdir(parents=True, exist_ok=True)
            node = Node(
                "primary" if number == 0 else "replica",
                port,
                node_dir,
                data_node_command(node_dir, port, None if number == 0 else primary_port, min_replicas_to_write if replicas else 0),
            )
            node.start()
            store.data_nodes.append(node)
        _wait(lambda: all(_answers(n.port) for n in store.data_nodes), timeout, "the data nodes did not answer")
        primary = redis.Redis(port=primary_port, socket_timeout=2)

        def in_sync() -> bool:
            info = primary.info("replication")
            return int(info.get("connected_slaves", 0)) >= replicas and all(
                info.get(f"slave{i}", {}).get("state") == "online" for i in range(replicas)
            )

        _wait(in_sync, timeout, "the replicas did not come in sync with the primary")
        quorum = sentinels // 2 + 1
        for number in range(sentinels):
            port = _free_port()
            node_dir = directory / f"sentinel{number}"
            node_dir.mkdir(parents=True, exist_ok=True)
            node = Node("sentinel", port, node_dir, sentinel_command(node_dir, port, primary_port, quorum, down_after_ms))
            node.start()
            store.sentinels.append(node)
        _wait(lambda: store.primary_port() == primary_port, timeout, "the Sentinels did not find the primary")
        return store
    except BaseException:
        store.stop()
        raise


def _wait(condition: object, timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RedisStartError(f"{failure} within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("var/replicated"))
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--sentinels", type=int, default=3)
    args = parser.parse_args(argv)
    store = start_replicated(args.dir, args.replicas, args.sentinels)
    print(f"primary on {store.data_nodes[0].port}, replicas on {[n.port for n in store.data_nodes[1:]]}", flush=True)
    print(f"CATCHLIGHT_REDIS_SENTINELS={','.join(store.sentinel_addresses)}", flush=True)
    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    try:
        while not stopping[0]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
