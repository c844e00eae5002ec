"""What the security tests share: credentials made with the real command line, raw websocket clients."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from pathlib import Path

import msgpack

from tests.conftest import ROOT, RunningServer

QUIET = {"CATCHLIGHT_DEMO_COLLECTION": "", "CATCHLIGHT_CREDENTIALS_REFRESH_SECONDS": "0.1"}


def credentials_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("CATCHLIGHT_")}
    return subprocess.run(
        [sys.executable, "-m", "server.credentials", "--data-dir", str(data_dir), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_credential(data_dir: Path, *args: str) -> tuple[str, str]:
    """(id, secret) of a new credential made with `python -m server.credentials create ...`."""
    done = credentials_cli(data_dir, "create", *args)
    assert done.returncode == 0, done.stderr
    first, secret = done.stdout.strip().splitlines()[-2:]
    return first.split()[3].rstrip(";"), secret.strip()


def frame(frame_id: int, image: bytes) -> bytes:
    return msgpack.packb({"type": "frame", "id": frame_id, "image": image})


class RawWebSocket:
    """A websocket client on a plain socket that can misbehave: send and never read."""

    def __init__(self, server: RunningServer, path: str, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "connection closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, payload: bytes, opcode: int = 0x2) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, 0x80 | n])
        elif n < 1 << 16:
            header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def close(self) -> None:
        self.sock.close()
