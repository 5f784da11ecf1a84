"""Who should judge a cold-start device's shortlist: the device SLM or the cloud LLM?

A measurement for issue 20's movable judgement (not a test). Each request runs twice on
a fresh cold-start device (no history, no feedback), once with the default placement
(the device SLM judges) and once with ``cloud-judge`` (the cloud LLM judges the
shortlist), the two alternating so that both see the same machine. Both sessions are
warmed first (models loaded, system prompts evaluated, one turn each not counted).
Prints a Markdown table: the median turn time and judgement time, how often the judge
gave a reason that was shown (it passed the device's fact check), and the reasons.

    .venv/bin/python scripts/cold_judge.py [--requests N] [--dataset ml-1m]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from cdarec.graph.runtime import get_resources
from cdarec.service.chat import ChatSession
from cdarec.settings import Settings

REQUESTS = [
    "a funny romantic comedy from the 1990s",
    "something scary from the 80s",
    "a war film",
    "animated movies for my kids",
    "a classic western",
    "sci fi from the 1970s",
    "a crime thriller",
    "a musical please",
    "a documentary",
    "an adventure film from the 1960s",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=len(REQUESTS))
    ap.add_argument("--dataset", default="ml-1m")
    args = ap.parse_args()
    placements = ("default", "cloud-judge")
    sessions = {}
    for pl in placements:
        user = f"cold-{pl}-{uuid.uuid4().hex[:6]}"
        s = Settings(dataset=args.dataset, user_id=user, placement=pl)  # type: ignore[arg-type]
        get_resources(s).memory.seed(user, [])  # an empty (cold-start) device
        sessions[pl] = ChatSession(s, None, warm_up="prime")
    for session in sessions.values():
        session.warming.join()  # type: ignore[union-attr]
        session.turn("a comedy")  # warm: not counted
    rows: dict[str, dict[str, list]] = {
        p: {"turn": [], "judge": [], "shown": [], "reasons": []} for p in placements
    }
    for request in REQUESTS[: args.requests]:
        for pl in placements:
            t = time.perf_counter()
            values = sessions[pl].turn(request)
            wall = time.perf_counter() - t
            steps = {r.node: r for r in values["trace"]}
            judge = steps.get("judge_on_cloud") if pl == "cloud-judge" else None
            judge_ms = judge.ms if judge else steps["rank_on_device"].ms
            source = "cloud" if pl == "cloud-judge" else "slm"
            model = [r for r in values["ranking"] if r.reason_source == source]
            r = rows[pl]
            r["turn"].append(wall)
            r["judge"].append(judge_ms / 1000)
            r["shown"].append(bool(model))
            r["reasons"].append(f"{model[0].label}: {model[0].reason}" if model else "-")
    print("| judge | turns | turn p50 | judgement p50 | model reason shown |")
    print("|---|---|---|---|---|")
    for pl in placements:
        r = rows[pl]
        who = "device SLM (default)" if pl == "default" else "cloud LLM (cloud-judge)"
        print(
            f"| {who} | {len(r['turn'])} | {statistics.median(r['turn']):.2f} s | "
            f"{statistics.median(r['judge']):.2f} s | {sum(r['shown'])}/{len(r['shown'])} |"
        )
    print()
    for i, request in enumerate(REQUESTS[: args.requests]):
        print(f"- {request}")
        for pl in placements:
            print(f"  - {pl}: {rows[pl]['reasons'][i]}")


if __name__ == "__main__":
    main()
