"""Shared: what this process has measured of each model endpoint it calls over HTTP.

The device decides where a sub-task runs from what it measures of the cloud (issue 20):
the round trip to the endpoint (a ``GET /models`` probe, answered without touching the
model) and how long its recent model calls took, whether they failed. Every model call
made through ``call_structured`` is recorded here under the model's spec; the probe runs
in a background thread so that no turn waits for it (except the very first, up to
``FIRST_PROBE_WAIT_S``). Nothing here holds a prompt or a reply: durations and outcomes.

Hand-written: no library measures an OpenAI-compatible endpoint's round trip apart from
its generation time, and the numbers must come from this process's own calls.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

WINDOW_S = 120.0  # measurements older than this are forgotten: conditions change
PROBE_EVERY_S = 5.0
PROBE_TIMEOUT_S = 2.0
FIRST_PROBE_WAIT_S = 1.0


@dataclass(frozen=True)
class EndpointStats:
    """A snapshot of one endpoint: its probe round trip (None: no answer yet), whether
    it is unreachable now, the seconds of its recent successful model calls (None
    before two)."""

    rtt_ms: float | None
    down: bool
    call_s: float | None
    calls: int


@dataclass
class _Endpoint:
    url: str | None = None
    probes: deque[tuple[float, float | None]] = field(default_factory=lambda: deque(maxlen=5))
    calls: deque[tuple[float, float, bool]] = field(default_factory=lambda: deque(maxlen=8))
    probing: threading.Thread | None = None
    last_probe: float = 0.0
    on_down: Callable[[], object] | None = None
    probe_path: str = "/models"


class LinkStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._eps: dict[str, _Endpoint] = {}
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        """One client for every probe, made before any is timed (making one costs ~0.1 s
        of TLS set-up, which is not the link's)."""
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=PROBE_TIMEOUT_S)
            return self._client

    def _ep(self, key: str) -> _Endpoint:
        return self._eps.setdefault(key, _Endpoint())

    def register(
        self,
        key: str,
        url: str | None,
        on_down: Callable[[], object] | None = None,
        probe_path: str = "/models",
    ) -> None:
        """The HTTP base URL (``.../v1``) of the endpoint behind model spec ``key`` (or of
        another cloud service, probed at ``probe_path``);
        ``on_down`` is called (in the probe's thread) when a probe finds it unreachable:
        an embedded server restarts itself, so that a device that stopped calling a dead
        cloud learns when it is back."""
        with self._lock:
            ep = self._ep(key)
            if on_down is not None:
                ep.on_down = on_down
            ep.probe_path = probe_path
            if ep.url != url:
                ep.url, ep.last_probe = url, 0.0
                ep.probes.clear()

    def record_call(self, key: str, seconds: float, ok: bool) -> None:
        """One model call: how long it took, and whether the endpoint answered."""
        with self._lock:
            self._ep(key).calls.append((time.monotonic(), seconds, ok))

    def reset(self, key: str | None = None) -> None:
        """Forget what was measured (a benchmark's new condition)."""
        with self._lock:
            for k, ep in self._eps.items():
                if key is None or k == key:
                    ep.probes.clear()
                    ep.calls.clear()
                    ep.last_probe = 0.0

    def _probe(self, key: str, url: str, path: str) -> None:
        client = self._http()
        t0 = time.perf_counter()
        rtt: float | None
        try:
            # Any HTTP answer is a round trip (OpenAI answers /models 401 without a key):
            # only no answer at all makes the endpoint unreachable.
            client.get(f"{url.rstrip('/')}{path}")
            rtt = 1000 * (time.perf_counter() - t0)
        except (httpx.HTTPError, OSError):
            rtt = None
        with self._lock:
            ep = self._ep(key)
            if ep.url == url:
                ep.probes.append((time.monotonic(), rtt))
            hook = ep.on_down if rtt is None else None
        if hook is not None:
            with contextlib.suppress(Exception):  # a failed restart: seen by the next probe
                hook()

    def snapshot(self, key: str) -> EndpointStats:
        """What is known of ``key`` now; starts a probe in the background when the last one
        is older than ``PROBE_EVERY_S`` (and waits for it when none has answered yet)."""
        now = time.monotonic()
        with self._lock:
            ep = self._ep(key)
            waiter = None
            if ep.url and now - ep.last_probe > PROBE_EVERY_S and ep.probing is None:
                ep.last_probe = now
                url, path = ep.url, ep.probe_path

                def run(ep: _Endpoint = ep, url: str = url, path: str = path) -> None:
                    try:
                        self._probe(key, url, path)
                    finally:
                        with self._lock:
                            ep.probing = None

                ep.probing = threading.Thread(target=run, daemon=True, name=f"probe-{key}")
                ep.probing.start()
                if not ep.probes:
                    waiter = ep.probing
        if waiter is not None:
            waiter.join(FIRST_PROBE_WAIT_S)
        with self._lock:
            probes = [(t, r) for t, r in ep.probes if now - t <= WINDOW_S]
            calls = [(t, s, ok) for t, s, ok in ep.calls if now - t <= WINDOW_S]
        answered = [r for _, r in probes if r is not None]
        # Unreachable when the newest thing heard of it, probe or call, is a failure.
        events = sorted([(t, r is not None) for t, r in probes] + [(t, ok) for t, _, ok in calls])
        good = [s for _, s, ok in calls if ok][-3:]
        return EndpointStats(
            # The least of the last three: a probe that waited for a busy server measured
            # the server, not the link (the way TCP estimates its round trip).
            rtt_ms=min(answered[-3:]) if answered else None,
            down=bool(events) and not events[-1][1],
            # The least of the last three, once there are two: one cold call (a model
            # loading, a first prompt evaluated) does not make a cloud slow; a slow cloud's
            # every call is.
            call_s=min(good) if len(good) >= 2 else None,
            calls=len(good),
        )


def worst(stats: list[EndpointStats]) -> EndpointStats:
    """Several services of one cloud seen as one: down if any is, the slowest round trip."""
    rtts = [s.rtt_ms for s in stats if s.rtt_ms is not None]
    calls = [s.call_s for s in stats if s.call_s is not None]
    return EndpointStats(
        rtt_ms=max(rtts) if rtts else None,
        down=any(s.down for s in stats),
        call_s=max(calls) if calls else None,
        calls=sum(s.calls for s in stats),
    )


def catalogue_key(url: str) -> str:
    """The key a Chroma server's probe is kept under."""
    return f"chroma:{url}"


STATS = LinkStats()
