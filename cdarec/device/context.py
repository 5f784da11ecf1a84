"""Device side: the device's context, measured live, in the coarse buckets the plan reads.

- the cloud link: the median round trip of the cloud endpoint's ``/models`` probe
  (``cdarec.llm.linkstats``): ``fast`` under ``SLOW_LINK_MS``, ``slow`` above, ``down``
  when the newest probe or call failed, ``unknown`` before anything was heard;
- the cloud model's speed: the median seconds of its recent successful calls, ``slow``
  above ``SLOW_CLOUD_S``;
- the device's load: the share of the machine's CPU that *other* programs kept busy
  since the last turn (this process and its children, the embedded cloud server among
  them, are subtracted, so cdarec's own model calls never make the device look busy),
  ``busy`` above ``BUSY_SHARE``, or with ``BUSY_TURNS`` or more *other* turns in flight
  on this device (sessions of a `cdarec serve` or a LangGraph server at once: they queue
  for its one model, so a turn that would wait for theirs answers without it instead);
- low power: the setting, or on battery below ``LOW_BATTERY_PERCENT``;
- the user's privacy setting.

The thresholds are where `cdarec bench placement` showed the other side answering sooner
on this project's 2-core machine (docs/results/placement.md). Measured, not reported: no
number here says anything about the user's history.
"""

from __future__ import annotations

import threading
import time

import psutil

from cdarec.contract.placement import DeviceContext
from cdarec.llm.linkstats import STATS, catalogue_key, worst
from cdarec.settings import Settings

SLOW_LINK_MS = 150.0  # a loopback or LAN probe answers in a few ms; a poor mobile link in 300+
SLOW_CLOUD_S = 6.0  # warm cloud calls took 2-4 s here (docs/results/speed.md)
# Another program keeping a third of the machine busy: with cdarec's own model threads
# competing, two busy processes on this 2-core machine measured 35-60%, an idle one 0-5%.
BUSY_SHARE = 0.3
# Two other turns in flight: a device-model judgement here waits for theirs (~1.5 s each on
# this machine, docs/results/speed.md) before its own; `cdarec bench load` measured 20
# sessions at once at 41 s p50 with every turn calling the model (docs/results/speed.md).
BUSY_TURNS = 2
# A turn that never reached its end (an error ended it) stops counting after this long.
TURN_TTL_S = 180.0
LOW_BATTERY_PERCENT = 20
MIN_INTERVAL_S = 0.2  # the first sample waits this long for a measurable interval; a
# later one sooner than this returns the last (turns at once would queue on the wait)


def _tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of this process and every live descendant."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return (
        t.user
        + t.system
        + getattr(t, "nice", 0.0)
        + getattr(t, "irq", 0.0)
        + getattr(t, "softirq", 0.0)
    )


class ContextMonitor:
    """One per device (its resources): samples the load between turns, reads the link."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = psutil.Process()
        self._ncpu = psutil.cpu_count() or 1
        self._at = time.monotonic()
        self._busy = _machine_busy()
        self._own = _tree_cpu(self._proc)
        self.last_share = 0.0
        self._sampled = False
        self._turns: dict[str, float] = {}  # turns in flight: key -> when it started

    def turn_started(self, key: str | None) -> int:
        """A turn begins on this device (``key``: its thread and turn; None: not counted,
        e.g. a run with no thread). Returns how many *other* turns are in flight."""
        now = time.monotonic()
        with self._lock:
            for k, t in list(self._turns.items()):
                if now - t > TURN_TTL_S:
                    del self._turns[k]
            others = sum(k != key for k in self._turns)
            if key is not None:
                self._turns[key] = now
            return others

    def turn_ended(self, key: str | None) -> None:
        with self._lock:
            self._turns.pop(key or "", None)

    def other_load(self) -> float:
        """The share of all cores other programs kept busy since the last call."""
        with self._lock:
            if time.monotonic() - self._at < MIN_INTERVAL_S:
                if self._sampled:  # sessions at once: the last interval's share is recent
                    return self.last_share
                time.sleep(MIN_INTERVAL_S)  # the first sample only
            self._sampled = True
            now, busy, own = time.monotonic(), _machine_busy(), _tree_cpu(self._proc)
            wall = max(now - self._at, 1e-6) * self._ncpu
            share = max(0.0, (busy - self._busy) - max(0.0, own - self._own)) / wall
            self._at, self._busy, self._own = now, busy, own
            self.last_share = min(1.0, share)
            return self.last_share

    @staticmethod
    def low_power(settings: Settings) -> bool:
        if settings.low_power is not None:
            return settings.low_power
        try:
            battery = psutil.sensors_battery()
        except (NotImplementedError, RuntimeError, OSError):
            return False
        return bool(battery and not battery.power_plugged and battery.percent < LOW_BATTERY_PERCENT)

    def snapshot(self, settings: Settings, others: int = 0) -> tuple[DeviceContext, str]:
        """The context now for a run with ``settings`` (``others``: the other turns in flight
        on this device, from ``turn_started``), and the measurements behind it (for the
        trace)."""
        keys = [settings.cloud_model]
        if settings.chroma_url:  # the cloud's catalogue is a server of its own
            keys.append(catalogue_key(settings.chroma_url))
        cloud = worst([STATS.snapshot(k) for k in keys])
        if cloud.down:
            link = "down"
        elif cloud.rtt_ms is None:
            link = "unknown"
        else:
            link = "slow" if cloud.rtt_ms > SLOW_LINK_MS else "fast"
        speed = (
            "unknown"
            if cloud.call_s is None
            else ("slow" if cloud.call_s > SLOW_CLOUD_S else "fast")
        )
        share = self.other_load()
        ctx = DeviceContext(
            link=link,  # type: ignore[arg-type]
            cloud_speed=speed,  # type: ignore[arg-type]
            load="busy" if share > BUSY_SHARE or others >= BUSY_TURNS else "idle",
            low_power=self.low_power(settings),
            privacy=settings.privacy,
        )
        rtt = "no probe answer" if cloud.rtt_ms is None else f"rtt {cloud.rtt_ms:.0f} ms"
        call = "" if cloud.call_s is None else f", cloud calls {cloud.call_s:.1f} s"
        queue = f", {others} other turn{'s' * (others != 1)} in flight" if others else ""
        measured = f"{rtt}{call}, other load {share:.0%}{queue}"
        return ctx, measured
