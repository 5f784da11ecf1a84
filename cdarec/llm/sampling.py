"""Shared: grammar-constrained sampling the way llama.cpp's own server does it.

Why by hand: llama-cpp-python puts the grammar sampler in the sampler chain, so every
generated token checks the grammar against all ~152k vocabulary entries (Qwen): ~25-40 ms
a token on this 2-core machine, a third of a 1.5B model's decoding time. llama.cpp's
``common_sampler_sample`` (common/sampling.cpp, used by ``llama-server``) samples from
the chain first, checks only the chosen token against the grammar, and applies the
grammar to the whole vocabulary only when that token is rejected. With greedy decoding
(cdarec's default) the result is the same token: the most likely token, if the grammar
allows it, is also the most likely allowed one. Nothing else in llama-cpp-python offers
this; ``GrammarCheckedLlama`` swaps it in by overriding one method, for the device model
in process and, through ``cdarec.llm._child``, in the embedded cloud server.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp._internals import LlamaSampler
from llama_cpp.llama_grammar import LlamaGrammar


class GrammarCheckedSampler:
    """The chain (penalties, temperature, greedy/dist) plus a grammar checked on demand.

    Duck-types the one method ``Llama.generate`` calls: ``sample(ctx, idx)``.
    """

    def __init__(self, chain: LlamaSampler, grammar: LlamaGrammar, llama: Llama) -> None:
        self.chain = chain  # owns the chain's C sampler: keep it alive
        self.grammar = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self.grammar:
            raise ValueError("llama.cpp could not parse the grammar")
        self.n_vocab = llama.n_vocab()
        self._data = (llama_cpp.llama_token_data * self.n_vocab)()
        self._view = np.ctypeslib.as_array(self._data)
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._one = (llama_cpp.llama_token_data * 1)()
        self.checked = 0  # tokens the grammar accepted at once
        self.resampled = 0  # tokens that needed the whole-vocabulary pass

    def _candidates(self, ctx: Any, idx: int) -> llama_cpp.llama_token_data_array:
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(ctx.ctx, idx), shape=(self.n_vocab,)
        )
        self._view["id"] = self._ids
        self._view["logit"] = logits
        self._view["p"] = 0.0
        return llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._data, llama_cpp.llama_token_data_p),
            size=self.n_vocab,
            selected=-1,
            sorted=False,
        )

    def _allowed(self, token: int) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        one = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p),
            size=1,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(one))
        return not math.isinf(self._one[0].logit)

    def sample(self, ctx: Any, idx: int = -1) -> int:
        cur = self._candidates(ctx, idx)
        llama_cpp.llama_sampler_apply(self.chain.sampler, ctypes.byref(cur))
        token = int(cur.data[cur.selected].id)
        if self._allowed(token):
            self.checked += 1
        else:
            self.resampled += 1
            cur = self._candidates(ctx, idx)
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(cur))
            llama_cpp.llama_sampler_apply(self.chain.sampler, ctypes.byref(cur))
            token = int(cur.data[cur.selected].id)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        return token

    def close(self) -> None:
        grammar, self.grammar = getattr(self, "grammar", None), None
        if grammar:
            llama_cpp.llama_sampler_free(grammar)

    def __del__(self) -> None:
        self.close()


class GrammarCheckedLlama(Llama):
    """``llama_cpp.Llama`` whose grammar-constrained generation checks the sampled token
    first (see the module docstring); without a grammar nothing changes."""

    def _init_sampler(self, *args: Any, grammar: LlamaGrammar | None = None, **kwargs: Any) -> Any:
        chain = super()._init_sampler(*args, grammar=None, **kwargs)
        return chain if grammar is None else GrammarCheckedSampler(chain, grammar, self)
