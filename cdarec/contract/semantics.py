"""Contract: semantic modelling, one interface for both sides.

The request and the abstract become an ``Intent`` (search queries and genre filters).
``interpret`` is the one implementation; the side only chooses the model it calls: the
cloud LLM (``cloud.nodes.model_semantics``) or the device SLM
(``device.nodes.model_semantics_on_device``), with the same prompt, the same schema and
the same code paths that need no model at all (no request: the abstract's genres; a
request the code read completely: its words and a catalogue-style query).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig

from cdarec.contract.plan import choose_strategy
from cdarec.contract.request import Constraints
from cdarec.contract.schemas import Intent, UserAbstract, intent_json_schema
from cdarec.llm.factory import LLM
from cdarec.llm.structured import Structured, call_structured
from cdarec.prompts import Prompt

INTENT_MAX_TOKENS = 60


def prompt_values(
    genres: Sequence[str],
    retrieval_k: int,
    abstract: UserAbstract,
    request: str,
    constraints: Constraints | None,
) -> dict[str, Any]:
    """The variables of the planning and semantics prompts, on either side. Both start with
    the same system text, abstract and request, so a second call reuses the first's
    evaluated prefix."""
    constraints = constraints or Constraints()
    rule, why = choose_strategy(abstract, constraints, request)
    return {
        "genres": ", ".join(genres),
        "retrieval_k": retrieval_k,
        "abstract": abstract.describe(),
        "request": request.strip() or "(no request: recommend what fits)",
        "reading": constraints.describe(),
        "suggested": f"{rule} ({why})",
    }


def fallback_intent(request: str, abstract: UserAbstract) -> Intent:
    """Documented fallback: the request itself, plus the abstract's genres, no filters."""
    parts = [request]
    if abstract.top_genres:
        parts.append(" ".join(abstract.top_genres) + " movies")
    return Intent(queries=[" ".join(p for p in parts if p).strip() or "popular movies"])


def constraint_query(constraints: Constraints) -> str:
    """A catalogue-style query from what the request asks ("Comedy, Romance movie from the
    1990s"), written by code when the parser read the whole request."""
    parts = [", ".join(constraints.genres) or "", "movie"]
    if constraints.years_text():
        parts.append("from " + constraints.years_text())
    if constraints.like_labels:
        parts.append("like " + " and ".join(constraints.like_labels))
    return " ".join(p for p in parts if p)


def code_intent(
    request: str, abstract: UserAbstract, constraints: Constraints
) -> tuple[Intent, str] | None:
    """The intent when code can write it (and why), None when a model must read words."""
    if not request:
        # Nothing to interpret: the query comes from the abstract, no model call is made.
        intent = fallback_intent(request, abstract)
        return intent, "no request: query from the abstract; " + " | ".join(intent.queries)
    if not constraints.empty and not constraints.residual:
        # Code read every word of the request: a model would only paraphrase it (and cost
        # ~6 s on the 1.5B here). The user's words and a catalogue-style query are searched.
        intent = Intent(queries=[request, constraint_query(constraints)])
        return intent, "read by code: " + " | ".join(intent.queries)
    return None


def interpret(
    llm: LLM,
    prompt: Prompt,
    values: dict[str, Any],
    genres: Sequence[str],
    request: str,
    abstract: UserAbstract,
    config: RunnableConfig | None = None,
) -> tuple[Intent, Structured[Intent]]:
    """The intent a model writes from the prompt's ``values``; the user's own words are
    always among the queries (small models paraphrase badly)."""
    out = call_structured(
        llm,
        Intent,
        prompt.messages(**values),
        max_tokens=INTENT_MAX_TOKENS,
        json_schema=intent_json_schema(list(genres)),
        context={"genres": set(genres)},
        fallback=lambda: fallback_intent(request, abstract),
        config=config,
    )
    intent = out.value
    if request and request not in intent.queries:
        intent = intent.model_copy(update={"queries": [request, *intent.queries][:3]})
    return intent, out


def describe(intent: Intent, out: Structured[Intent]) -> str:
    filters = ", ".join(intent.genres)
    return out.error or " | ".join(intent.queries) + (f" [{filters}]" if filters else "")
