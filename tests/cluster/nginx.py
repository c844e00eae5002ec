"""nginx from the system's package, run by a test with deploy/nginx.conf pointed at local nodes."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import httpx

from tests.conftest import ROOT, wait_until

DEPLOYED = ROOT / "deploy" / "nginx.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_config(nodes: list[int] | dict[str, list[int]], port: int, prefix: Path, source: Path = DEPLOYED) -> str:
    """A deploy/ nginx config with its upstream servers, listen address and log paths made local.

    `nodes`: the ports of the one upstream, or the ports of each upstream by name.
    """
    text = source.read_text()
    groups = nodes if isinstance(nodes, dict) else {None: nodes}
    for name, ports in groups.items():
        servers = "".join(f"        server 127.0.0.1:{n} max_fails=2 fail_timeout=10s;\n" for n in ports)
        upstream = r"upstream \w+ \{" if name is None else rf"upstream {re.escape(name)} \{{"
        text, count = re.subn(rf"({upstream}[^}}]*?\n)((?:        server 10\.0\.0\.\d+:8080[^\n]*\n)+)",
                              lambda m, servers=servers: m.group(1) + servers, text)  # fmt: skip
        assert count == 1, f"{source.name}'s upstream {name or ''} servers changed shape"
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    text = text.replace("/var/log/nginx/catchlight.access.log", str(prefix / "access.log"))
    text = text.replace("worker_processes auto;", f"worker_processes 1;\npid {prefix / 'nginx.pid'};")
    assert f"127.0.0.1:{port}" in text
    return text


class Nginx:
    def __init__(self, prefix: Path, nodes: list[int] | dict[str, list[int]], source: Path = DEPLOYED) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "nginx.conf").write_text(local_config(nodes, self.port, self.prefix, source))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        binary = nginx_binary()
        assert binary is not None
        command = [binary, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-e", str(self.prefix / "error.log"),
                   "-g", "daemon off;"]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {self.process.stderr.read().decode() if self.process.stderr else ''}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_until(answers, 20, interval=0.1)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
