"""Shared fixtures: a real Catchlight server (real store, real worker pool) on a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"Catchlight is ready: http://[^:]+:(\d+)/")


class RunningServer:
    """`python -m server` in a subprocess; its output is kept for failure reports."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.args = args or []
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> RunningServer:
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("CATCHLIGHT_")}
        env.update({"PYTHONUNBUFFERED": "1", **self.env})
        self.output = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", "0", "--data-dir", str(self.data_dir), "--pool-size", "2", *self.args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)
                found = READY.search(line)
                if found:
                    self.port = int(found.group(1))
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill_orphans(self) -> None:
        """Stop an embedded store left behind by a server that was killed."""
        pid_file = self.data_dir / "redis" / "server.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass

    def log(self) -> str:
        return "".join(self.output)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def redis_url(self) -> str:
        """The address of the embedded store this server started."""
        return (self.data_dir / "redis" / "url").read_text().strip()


class EmbeddedStoreControl:
    """Stop and start a server's embedded valkey-server for real: same binary, port, directory and options."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = (data_dir / "redis").resolve()
        self.url = (self.directory / "url").read_text().strip()
        self.process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (valkey flushes its append-only file on it) and wait until the process is gone."""
        pid = int((self.directory / "server.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or _is_zombie(pid), timeout)

    def start(self, timeout: float = 20.0) -> None:
        import redis

        from matcher.embedded_redis import server_command

        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        self.process = subprocess.Popen(
            server_command(self.directory, port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )

        def answers() -> bool:
            try:
                return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
            except (redis.RedisError, OSError):
                return False

        wait_until(answers, timeout, interval=0.05)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers on demand (each on its own data dir unless given one); all are stopped afterwards."""
    started: list[RunningServer] = []

    def start(data_dir: Path | None = None, **kwargs: object) -> RunningServer:
        server = RunningServer(data_dir or tmp_path / f"data{len(started)}", **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
        server.kill_orphans()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for a whole test module, with the demo collection loaded."""
    running = RunningServer(tmp_path_factory.mktemp("server-data")).start()
    yield running
    running.stop()
    running.kill_orphans()


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.02) -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
