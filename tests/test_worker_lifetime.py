"""Matcher and scan processes never outlive their server, even while they still wait for the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A server stand-in: starts one child the way the server does, against a store that is not there.
PARENT = """
import multiprocessing, sys, time
from matcher import scan_worker, worker
from matcher.settings import MatcherSettings
if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    store = "redis://127.0.0.1:1/0"
    if sys.argv[1] == "worker":
        ours, theirs = context.Pipe()
        child = context.Process(target=worker.run, args=(theirs, MatcherSettings(), store, "cl"))
    else:
        child = context.Process(target=scan_worker.run_runner, args=(MatcherSettings(), store, "cl", "node-1", ""))
    child.start()
    print(child.pid, flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for init to reap it is gone too.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.parametrize("child", ["worker", "scans"])
@pytest.mark.parametrize("killed_after", [0.0, 2.0], ids=["while-starting", "while-waiting-for-the-store"])
def test_a_child_exits_when_its_server_is_killed(tmp_path: Path, child: str, killed_after: float) -> None:
    script = tmp_path / "server_stand_in.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), child],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    pid = None
    try:
        pid = int(parent.stdout.readline())
        time.sleep(killed_after)
        assert _alive(pid)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15.0
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), f"the {child} process outlived its server"
    finally:
        parent.kill()
        if pid is not None and _alive(pid):
            os.kill(pid, 9)
