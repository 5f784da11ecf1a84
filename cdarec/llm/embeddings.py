"""Shared: offline sentence embeddings, all-MiniLM-L6-v2 (int8 ONNX), for the catalogue and the
device.

Why by hand: Chroma's default embedding function downloads its model on first use (no
network here), and its ONNX class pads every batch to 256 tokens (about 20x slower).
This runs the same MiniLM with onnxruntime + tokenizers (both already Chroma
dependencies), padding each batch to its longest text, with mean pooling and L2
normalisation as sentence-transformers does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from cdarec.assets import ensure_asset

MAX_TOKENS = 128
CACHE_TEXTS = 20_000  # ~30 MB of vectors


class MiniLMEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over an ONNX MiniLM; 384-dim, unit length."""

    def __init__(self, model_dir: Path, threads: int = 2, batch_size: int = 64) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.model_dir / "model.onnx"),
            sess_options=opts,
            providers=["CPUExecutionProvider"],
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tok.enable_truncation(max_length=MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pads to the batch's longest
        self._tokenizer = tok
        self._lock = threading.Lock()
        self.batch_size = batch_size
        # Vectors of texts embedded before (``embed_cached``), newest last. Hand-rolled:
        # LangChain's CacheBackedEmbeddings lives in the full `langchain` package, which
        # cdarec does not otherwise need, and it stores lists through a byte store.
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def from_home(
        cls, home: Path, name: str = "minilm-l6-int8", threads: int = 2
    ) -> MiniLMEmbeddings:
        paths = ensure_asset(home, "embedders", name)
        return cls(paths[0].parent, threads=threads)

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        enc = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        with self._lock:
            hidden = self._session.run(None, feed)[0]  # (batch, tokens, 384)
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def embed_cached(self, texts: Sequence[str]) -> np.ndarray:
        """``embed_array`` for texts that recur (catalogue items' texts, turn after turn):
        only those not seen lately are embedded, in one batch; at most ``CACHE_TEXTS``
        vectors kept."""
        with self._cache_lock:
            have = {t: self._cache[t] for t in texts if t in self._cache}
            for t in have:
                self._cache.move_to_end(t)
        missing = [t for t in dict.fromkeys(texts) if t not in have]
        if missing:
            have.update(zip(missing, self.embed_array(missing), strict=True))
            with self._cache_lock:
                for t in missing:
                    self._cache[t] = have[t]
                while len(self._cache) > CACHE_TEXTS:
                    self._cache.popitem(last=False)
        out = np.empty((len(texts), 384), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = have[t]
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()
