"""Durable device memory, with real processes: concurrent writers lose nothing, and a
writer killed with SIGKILL at any moment leaves a memory that loads and holds every
event it acknowledged.

The writers are separate Python processes on one device folder, as ``cdarec chat``,
``cdarec serve`` and ``langgraph dev`` are on one home.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdarec.device.memory import DeviceMemory, Interaction

pytestmark = pytest.mark.integration

WRITER = """
import sys
from pathlib import Path
from cdarec.device.memory import DeviceMemory
root, user, tag, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
mem = DeviceMemory(root, "ml-100k")
for i in range(n):
    mem.add_feedback(user, "dislike", item_id=f"{tag}-{i}")
    print(i, flush=True)  # acknowledged: add_feedback returned
"""


def writer(root: Path, tag: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), "u1", tag, str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def seeded(root: Path) -> DeviceMemory:
    mem = DeviceMemory(root, "ml-100k")
    mem.seed("u1", [Interaction(item_id=str(i), ts=float(i)) for i in range(50)])
    return mem


def test_two_processes_writing_one_user_lose_nothing(tmp_path: Path) -> None:
    n = 1000
    mem = seeded(tmp_path)
    procs = [writer(tmp_path, tag, n) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    ids = [f.item_id for f in mem.load("u1").feedback]
    assert len(ids) == 2 * n
    for tag in ("a", "b"):
        assert [i for i in ids if i and i.startswith(f"{tag}-")] == [f"{tag}-{i}" for i in range(n)]
    assert mem.load("u1").history_ids() == [str(i) for i in range(50)]


def _write_forever(root: str, tag: str, acks: str) -> None:
    """A writer that appends each acknowledged event's number to ``acks`` (one write of a
    whole line, after ``add_feedback`` returned)."""
    mem = DeviceMemory(Path(root), "ml-100k")
    fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for i in range(1_000_000):
        mem.add_feedback("u1", "dislike", item_id=f"{tag}-{i}")
        os.write(fd, f"{i}\n".encode())


def test_sigkill_mid_write_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """100 writers, each killed with SIGKILL at a random moment of its write loop; the
    memory is loaded after every kill and must hold every acknowledged event. Writers
    are forked from a fork server that has imported the memory module already (real
    processes, without paying Python's start-up a hundred times)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["cdarec.device.memory"])
    mem = seeded(tmp_path)
    rng = random.Random(7)
    acknowledged: list[str] = []
    for k in range(100):
        acks = tmp_path / f"acks-{k}"
        p = ctx.Process(target=_write_forever, args=(str(tmp_path), f"k{k}", str(acks)))
        p.start()
        deadline = time.monotonic() + 30
        while not (acks.exists() and acks.read_bytes().count(b"\n") >= 1):
            assert p.is_alive() and time.monotonic() < deadline, f"writer {k} did not start"
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))
        assert p.pid is not None
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        # only whole lines are acknowledgements
        acknowledged += [f"k{k}-{int(x)}" for x in acks.read_text().split("\n")[:-1]]
        rec = mem.load("u1")  # loads after every kill
        have = {f.item_id for f in rec.feedback}
        missing = [a for a in acknowledged if a not in have]
        assert not missing, f"kill {k}: lost {missing[:5]}"
    assert len(acknowledged) >= 100
    assert len(mem.load("u1").history) == 50
