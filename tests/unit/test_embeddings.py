"""The embedder's cache of recurring texts (the device embeds catalogue items' texts turn
after turn): the real ONNX MiniLM, the cached vectors equal a fresh embedding's."""

from __future__ import annotations

import numpy as np

from cdarec.llm import embeddings
from cdarec.llm.embeddings import MiniLMEmbeddings
from tests.conftest import REAL_HOME

TEXTS = ["Toy Story (1995). Animation, Comedy", "Heat (1995). Action, Crime", "Alien (1979)"]


def test_cached_vectors_equal_fresh_ones_and_stay_bounded(monkeypatch) -> None:
    emb = MiniLMEmbeddings.from_home(REAL_HOME)
    fresh = emb.embed_array(TEXTS)
    calls: list[list[str]] = []
    real = emb.embed_array
    monkeypatch.setattr(emb, "embed_array", lambda ts: calls.append(list(ts)) or real(ts))
    first = emb.embed_cached([TEXTS[0], TEXTS[1], TEXTS[0]])
    assert calls == [[TEXTS[0], TEXTS[1]]]  # each new text once, in one batch
    np.testing.assert_allclose(first, fresh[[0, 1, 0]], atol=1e-5)
    again = emb.embed_cached(TEXTS)
    assert calls[1:] == [[TEXTS[2]]]  # only the one not seen before
    np.testing.assert_allclose(again, fresh, atol=1e-5)
    monkeypatch.setattr(embeddings, "CACHE_TEXTS", 2)
    emb.embed_cached(["another text"])
    assert len(emb._cache) == 2 and "another text" in emb._cache  # oldest dropped
    assert emb.embed_cached([]).shape == (0, 384)
