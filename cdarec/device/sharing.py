"""Device side: what the device lets the user vector become before a cloud sees it (issue 17).

By default the vector never leaves: collaborative retrieval runs on the device
(``Settings.collab_side = "device"``). With ``collab_side = "cloud"`` (a catalogue too
large for the device) it is sent only on turns whose plan runs collaborative retrieval,
as a unit vector - the inner-product order of items is unchanged by the scale - and,
with ``collab_noise = sigma``, perturbed by the Gaussian mechanism.

Privacy of the perturbed vector: for unit vectors, replacing a user's whole history
moves the vector by at most 2 (L2 sensitivity 2), so one release is (epsilon, delta)-
differentially private at the user level with epsilon = 2 sqrt(2 ln(1.25 / delta)) /
sigma (Dwork & Roth, Theorem A.1; the bound is stated for epsilon < 1). The noise is
drawn from a key only the device holds and the vector itself, so the same history
always gives the same noisy vector: a cloud that sees many turns of one unchanged
history cannot average the noise away.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from pathlib import Path

import numpy as np

DELTA = 1e-5
SENSITIVITY = 2.0  # two unit vectors are at most 2 apart


def gaussian_epsilon(sigma: float, delta: float = DELTA) -> float:
    """The user-level epsilon of one release at ``sigma`` (inf without noise)."""
    if sigma <= 0:
        return math.inf
    return SENSITIVITY * math.sqrt(2 * math.log(1.25 / delta)) / sigma


def device_key(folder: Path) -> bytes:
    """The device's secret noise key (32 random bytes, created on first use, 0600)."""
    path = folder / "noise.key"
    try:
        key = path.read_bytes()
        if len(key) == 32:
            return key
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.replace(tmp, path)  # two processes at once: one key wins, both read it next time
    return path.read_bytes()


def shared_vector(vector: np.ndarray, sigma: float, key: bytes) -> list[float]:
    """What the cloud gets: the unit vector, plus N(0, sigma^2) noise per coordinate."""
    v = np.asarray(vector, dtype=np.float64)
    unit = v / max(float(np.linalg.norm(v)), 1e-12)
    if sigma > 0:
        seed = hmac.new(key, np.round(unit, 6).tobytes(), hashlib.sha256).digest()
        rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
        unit = unit + rng.normal(0.0, sigma, size=unit.shape)
    return [round(float(x), 5) for x in unit]
