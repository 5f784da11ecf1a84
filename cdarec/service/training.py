"""Service: the structured model's training in the background, started by `cdarec setup`.

The chat opens on the transition model meanwhile and switches to the trained SASRec when
it appears (``ChatSession.turn``). Used by the CLI; imports no interface.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cdarec.graph.runtime import Resources
from cdarec.settings import slug


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def background_training(res: Resources) -> Path | None:
    """Start `cdarec train` for the data set in the background unless its SASRec exists or
    a training is already running; returns the training's log file, or None."""
    if res.settings.sequence_model == "transition" or res.device.sasrec_path().exists():
        return None
    logs = res.settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = slug(res.dataset.name)
    log, pid_file = logs / f"train-{name}.log", logs / f"train-{name}.pid"
    if pid_file.exists() and _alive(pid_file):
        return log
    cmd = [
        sys.executable,
        "-m",
        "cdarec.cli",
        "train",
        "--home",
        str(res.settings.home),
        "--dataset",
        res.settings.dataset,
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(  # detached: it outlives the set-up command
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: os.nice(10),  # the chat stays responsive meanwhile
        )
    pid_file.write_text(str(proc.pid))
    return log


def training_in_progress(res: Resources) -> Path | None:
    """The log of a background training of this data set's SASRec still running, or None."""
    pid_file = res.settings.home / "logs" / f"train-{slug(res.dataset.name)}.pid"
    if res.device.sasrec_path().exists() or not pid_file.exists() or not _alive(pid_file):
        return None
    return pid_file.with_suffix(".log")
