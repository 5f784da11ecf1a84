"""Contract: step records for the trace — which node ran, on which side, when, and what it cost."""

from __future__ import annotations

import time

from cdarec.contract.schemas import Side, StepRecord
from cdarec.llm.structured import Usage


class Step:
    """Times one node run; ``done`` turns it into a ``StepRecord``."""

    def __init__(self, node: str, side: Side, turn: int) -> None:
        self.node, self.side, self.turn = node, side, turn
        self.start = time.time()

    def done(
        self,
        *,
        model: str | None = None,
        usage: Usage | None = None,
        status: str = "ok",
        detail: str = "",
    ) -> list[StepRecord]:
        return [
            StepRecord(
                turn=self.turn,
                node=self.node,
                side=self.side,
                start=self.start,
                end=time.time(),
                model=model,
                tokens_in=usage.input_tokens if usage else 0,
                tokens_out=usage.output_tokens if usage else 0,
                status=status,  # type: ignore[arg-type]
                detail=detail[:300],
            )
        ]
