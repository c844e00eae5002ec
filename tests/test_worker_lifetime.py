"""A matcher worker never outlives its server, even while it still waits for the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A server stand-in: starts one worker the way the pool does, against a store that is not there.
PARENT = """
import multiprocessing, time
from matcher import worker
from matcher.settings import MatcherSettings
if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=worker.run, args=(theirs, MatcherSettings(), "redis://127.0.0.1:1/0", "cl"))
    process.start()
    print(process.pid, flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for init to reap it is gone too.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_worker_waiting_for_the_store_exits_when_its_server_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "server_stand_in.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        worker = int(parent.stdout.readline())
        time.sleep(2.0)  # the worker is now retrying the unreachable store
        assert _alive(worker)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10.0
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its server"
    finally:
        parent.kill()
        if "worker" in locals() and _alive(worker):
            os.kill(worker, 9)
