"""Grammar-checked sampling (``cdarec.llm.sampling``) on the real SmolLM2-135M model:
under greedy decoding it must write exactly what llama-cpp-python's own grammar path
writes, valid under the schema, including when the grammar has to overrule the model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_cpp import Llama

from cdarec.contract.judgement import judgement_schema
from cdarec.llm.sampling import GrammarCheckedLlama, GrammarCheckedSampler
from tests.conftest import REAL_HOME, need_asset

MODEL = REAL_HOME / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# The second schema's values are words the model would never write unprompted: the
# sampled token is rejected and the whole-vocabulary pass must pick an allowed one.
CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "Candidates: 1. Alien (1979) 2. Toy Story (1995) 3. Heat (1995). "
        "The user loves animation. Pick one and say why.",
        judgement_schema(3, 1),
    ),
    (
        "Name a fruit.",
        {
            "type": "object",
            "properties": {"code": {"type": "string", "enum": ["zqx-17", "wvk-3"]}},
            "required": ["code"],
        },
    ),
]


def _load(cls: type[Llama]) -> Llama:
    return cls(model_path=str(MODEL), n_ctx=512, n_threads=2, seed=0, verbose=False)


def _reply(llm: Llama, prompt: str, schema: dict[str, Any] | None) -> str:
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": prompt}],
        temperature=0.0,
        max_tokens=48,
        **({"response_format": {"type": "json_object", "schema": schema}} if schema else {}),
    )
    return str(out["choices"][0]["message"]["content"])


@pytest.fixture(scope="module")
def models() -> tuple[Llama, Llama]:
    need_asset(MODEL)
    return _load(Llama), _load(GrammarCheckedLlama)


def test_same_reply_as_the_stock_grammar_path(models: tuple[Llama, Llama]) -> None:
    stock, checked = models
    for prompt, schema in CASES:
        expected = _reply(stock, prompt, schema)
        got = _reply(checked, prompt, schema)
        assert got == expected
        sampler = checked._sampler
        assert isinstance(sampler, GrammarCheckedSampler)
        assert sampler.checked + sampler.resampled > 0
        value = json.loads(got)
        if "code" in schema["properties"]:
            assert value["code"] in ("zqx-17", "wvk-3")
            assert sampler.resampled > 0  # the grammar overruled the model
        else:
            assert 1 <= value["picks"][0]["n"] <= 3


def test_no_grammar_leaves_the_stock_sampler(models: tuple[Llama, Llama]) -> None:
    stock, checked = models
    prompt = "Say hello."
    assert _reply(checked, prompt, None) == _reply(stock, prompt, None)
    assert not isinstance(checked._sampler, GrammarCheckedSampler)


def test_judge_budget_holds_the_longest_reply_the_schema_allows(
    models: tuple[Llama, Llama],
) -> None:
    """A reply cut at the token budget cannot be parsed (8% of Protocol B turns were, at
    32 tokens): the budget must hold the schema's longest reply, one token a character."""
    from cdarec.contract.judgement import JUDGE_PICKS, REASON_MAX_CHARS, Judgement, judge_max_tokens

    reason = ("9.-" * REASON_MAX_CHARS)[:REASON_MAX_CHARS]
    picks = [{"n": 20 - i, "reason": reason} for i in range(JUDGE_PICKS)]
    reply = json.dumps({"picks": picks})
    Judgement.model_validate_json(reply, context={"n": 20})  # allowed by the schema
    _, checked = models
    n_tokens = len(checked.tokenize(reply.encode(), add_bos=False))
    assert n_tokens <= judge_max_tokens(JUDGE_PICKS)
    assert n_tokens > 32  # the old budget: this test would have failed
