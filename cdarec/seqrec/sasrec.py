"""Shared: SASRec's NumPy forward pass and file format (the device runs it; the cloud ships it).

The architecture (mirrored exactly by the PyTorch model in ``cdarec.cloud.training.sasrec``):

* input ``x = E[item] + P[position]``; items are shifted by one internally so that row 0
  of ``E`` is padding (never a candidate). Sequences are right-aligned: the most recent
  item always sits at position ``max_len - 1`` and shorter histories are left-padded;
* ``blocks`` pre-LayerNorm transformer blocks: ``x += Attn(LN(x))`` (causal, padding
  keys masked, every position may attend to itself) then ``x += FFN(LN(x))`` with a
  tanh-approximated GELU;
* a final LayerNorm; the user vector is its output at the last position and an item's
  score is the dot product with that item's (tied) embedding.

Only the last position's query is needed in the last block, which is what ``user_vector``
computes, so scoring a history of length ``L`` costs ``O(L^2)`` in the earlier blocks and
``O(L)`` in the last.

The artefact is one ``.npz``: the weight arrays plus a JSON header with the format
version, the architecture and free-form training metadata.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
_HEADER_KEY = "__header__"
_BLOCK_PARAMS = (
    "ln1_w",
    "ln1_b",
    "wq",
    "bq",
    "wk",
    "bk",
    "wv",
    "bv",
    "wo",
    "bo",
    "ln2_w",
    "ln2_b",
    "w1",
    "b1",
    "w2",
    "b2",
)


@dataclass(frozen=True)
class Arch:
    """What the forward pass needs to know besides the weights."""

    n_items: int
    hidden: int
    blocks: int
    heads: int
    ffn_dim: int
    max_len: int
    ln_eps: float = 1e-6

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, f = self.hidden, self.ffn_dim
        shapes: dict[str, tuple[int, ...]] = {
            "item_emb": (self.n_items + 1, d),
            "pos_emb": (self.max_len, d),
            "lnf_w": (d,),
            "lnf_b": (d,),
        }
        per_block = {
            "ln1_w": (d,),
            "ln1_b": (d,),
            "wq": (d, d),
            "bq": (d,),
            "wk": (d, d),
            "bk": (d,),
            "wv": (d, d),
            "bv": (d,),
            "wo": (d, d),
            "bo": (d,),
            "ln2_w": (d,),
            "ln2_b": (d,),
            "w1": (d, f),
            "b1": (f,),
            "w2": (f, d),
            "b2": (d,),
        }
        for i in range(self.blocks):
            for name in _BLOCK_PARAMS:
                shapes[f"b{i}.{name}"] = per_block[name]
        return shapes


@dataclass
class SASRecWeights:
    """Trained weights (float32, ``x @ W + b`` convention) and training metadata."""

    arch: Arch
    params: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        a = self.arch
        if min(a.n_items, a.hidden, a.blocks, a.heads, a.ffn_dim, a.max_len) < 1:
            raise ValueError(f"SASRec weights: invalid architecture {a}")
        if a.hidden % a.heads:
            raise ValueError(f"SASRec weights: hidden {a.hidden} not divisible by {a.heads}")
        expected = a.param_shapes()
        missing = sorted(set(expected) - set(self.params))
        extra = sorted(set(self.params) - set(expected))
        if missing or extra:
            raise ValueError(f"SASRec weights: missing {missing[:5]}, unexpected {extra[:5]}")
        for name, shape in expected.items():
            arr = self.params[name]
            if arr.shape != shape:
                raise ValueError(f"SASRec weights: {name} has shape {arr.shape}, expected {shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"SASRec weights: {name} has non-finite values")


@functools.cache
def _blas_threads_local() -> Callable[[int], int] | None:
    """NumPy's bundled OpenBLAS ``openblas_set_num_threads_local`` (per calling thread),
    or None where this NumPy has no such library."""
    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for lib in sorted(libdir.glob("libscipy_openblas*.so*")):
        try:
            fn = ctypes.CDLL(str(lib)).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run the forward pass's many small matrix products on one BLAS thread.

    Per-sequence attention is thousands of small GEMMs; with two BLAS threads each one
    pays a thread hand-off, and on a busy (or ``nice``d) two-core machine a hand-off can
    wait milliseconds for a descheduled thread: scoring 6,040 ML-1M users took 45-75 s
    that way against about 3 s on one thread. Only the calling thread is affected.
    """
    fn = _blas_threads_local()
    if fn is None:
        yield
        return
    prev = fn(1)
    try:
        yield
    finally:
        fn(prev)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return xc / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


class SASRecModel:
    """A ``SequenceScorer`` over trained SASRec weights; NumPy only."""

    name = "sasrec"

    def __init__(self, weights: SASRecWeights, *, batch_size: int = 256) -> None:
        weights.validate()
        self.weights = weights
        self.arch = weights.arch
        self.n_items = weights.arch.n_items
        self.max_len = weights.arch.max_len
        self.batch_size = batch_size
        self._p = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.params.items()}
        # Candidate matrix without the padding row: score = user_vector @ items.T.
        self._items = self._p["item_emb"][1:]

    @property
    def meta(self) -> dict[str, Any]:
        return self.weights.meta

    # -- scoring --------------------------------------------------------------------------
    def item_vectors(self) -> np.ndarray:
        """(n_items, hidden) float32; row ``i`` is dataset item ``i``."""
        return self._items

    def user_vector(self, history: np.ndarray) -> np.ndarray:
        """(hidden,) float32 final hidden state for one history (oldest first)."""
        return self.user_vectors([history])[0]

    def user_vectors(self, histories: list[np.ndarray]) -> np.ndarray:
        """(B, hidden) user vectors; histories are batched by similar length."""
        out = np.empty((len(histories), self.arch.hidden), dtype=np.float32)
        if not histories:
            return out
        seqs = [self._clip(h) for h in histories]
        order = np.argsort([len(s) for s in seqs], kind="stable")
        with _one_blas_thread():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                out[idx] = self._encode_last([seqs[i] for i in idx])
        return out

    def scores(self, history: np.ndarray, *, demote_seen: bool = False) -> np.ndarray:
        """A score per catalogue item (float64) for one history; see ``scores_batch``."""
        return self.scores_batch([history], demote_seen=demote_seen)[0].astype(np.float64)

    def scores_batch(self, histories: list[np.ndarray], *, demote_seen: bool = False) -> np.ndarray:
        """(B, n_items) float32 scores. ``demote_seen`` moves every item already in a
        history below all unseen items (keeping their order): in data where an item is
        consumed once, a watched item cannot be the next one."""
        s = self.user_vectors(histories) @ self._items.T
        if demote_seen:
            from cdarec.seqrec.metrics import demote_seen as _demote

            for row, h in zip(s, histories, strict=True):
                _demote(row, h)
        return s

    def _clip(self, history: np.ndarray) -> np.ndarray:
        h = np.asarray(history).astype(np.int64, copy=False).ravel()
        if h.size and (h.min() < 0 or h.max() >= self.n_items):
            raise ValueError(f"history has item indices outside 0..{self.n_items - 1}")
        # Internal ids: 0 = padding. An empty history is a lone padding token.
        return (h[-self.max_len :] + 1) if h.size else np.zeros(1, dtype=np.int64)

    def _encode_last(self, seqs: list[np.ndarray]) -> np.ndarray:
        a, p = self.arch, self._p
        n_b, n_l = len(seqs), max(len(s) for s in seqs)
        ids = np.zeros((n_b, n_l), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, n_l - len(s) :] = s
        x = p["item_emb"][ids] + p["pos_emb"][a.max_len - n_l :]
        # mask[b, q, k]: causal, padding keys hidden, and every position sees itself.
        allowed = np.tril(np.ones((n_l, n_l), dtype=bool))[None] & (ids != 0)[:, None, :]
        allowed |= np.eye(n_l, dtype=bool)[None]
        bias = np.where(allowed, 0.0, -np.inf).astype(np.float32)[:, None]  # (B,1,L,L)
        nh, dh = a.heads, a.hidden // a.heads
        for i in range(a.blocks):
            g = f"b{i}."
            last = i == a.blocks - 1
            y = _layer_norm(x, p[g + "ln1_w"], p[g + "ln1_b"], a.ln_eps)
            yq = y[:, -1:] if last else y
            n_q = yq.shape[1]
            q = (yq @ p[g + "wq"] + p[g + "bq"]).reshape(n_b, n_q, nh, dh).transpose(0, 2, 1, 3)
            k = (y @ p[g + "wk"] + p[g + "bk"]).reshape(n_b, n_l, nh, dh).transpose(0, 2, 3, 1)
            v = (y @ p[g + "wv"] + p[g + "bv"]).reshape(n_b, n_l, nh, dh).transpose(0, 2, 1, 3)
            att = (q @ k) * np.float32(1.0 / math.sqrt(dh)) + (bias[:, :, -1:] if last else bias)
            att -= att.max(axis=-1, keepdims=True)
            np.exp(att, out=att)
            att /= att.sum(axis=-1, keepdims=True)
            o = (att @ v).transpose(0, 2, 1, 3).reshape(n_b, n_q, a.hidden)
            x = (x[:, -1:] if last else x) + (o @ p[g + "wo"] + p[g + "bo"])
            y = _layer_norm(x, p[g + "ln2_w"], p[g + "ln2_b"], a.ln_eps)
            x = x + (_gelu(y @ p[g + "w1"] + p[g + "b1"]) @ p[g + "w2"] + p[g + "b2"])
        return _layer_norm(x[:, -1], p["lnf_w"], p["lnf_b"], a.ln_eps).astype(np.float32)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write one ``.npz`` atomically (weights + JSON header)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "format": "cdarec-sasrec",
            "format_version": FORMAT_VERSION,
            "arch": self.arch.__dict__,
            "meta": self.weights.meta,
        }
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in self.weights.params.items()}
        arrays[_HEADER_KEY] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | str, **kwargs: Any) -> SASRecModel:
        """Read a file written by ``save``; anything wrong with it raises ValueError."""
        path = Path(path)
        with path.open("rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise ValueError(f"{path}: not a .npz archive (corrupted SASRec model file)")
        try:
            with np.load(path, allow_pickle=False) as z:
                if _HEADER_KEY not in z.files:
                    raise ValueError("no header (not a cdarec SASRec model)")
                header = json.loads(z[_HEADER_KEY].tobytes().decode("utf-8"))
                params = {k: z[k] for k in z.files if k != _HEADER_KEY}
        except FileNotFoundError:
            raise
        except ValueError as e:
            raise ValueError(f"{path}: unreadable SASRec model: {e}") from e
        except (OSError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise ValueError(
                f"{path}: corrupted SASRec model file ({type(e).__name__}: {e})"
            ) from e
        if not isinstance(header, dict) or header.get("format") != "cdarec-sasrec":
            raise ValueError(f"{path}: not a cdarec SASRec model")
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: SASRec format version {header.get('format_version')!r}, this "
                f"build reads version {FORMAT_VERSION}; retrain the model"
            )
        try:
            arch = Arch(**header["arch"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: bad SASRec architecture header: {e}") from e
        weights = SASRecWeights(arch=arch, params=params, meta=dict(header.get("meta") or {}))
        try:
            return cls(weights, **kwargs)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
