"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdarec.graph.builder import build_graph
from cdarec.graph.runtime import Resources, use_resources
from cdarec.settings import Settings
from tests.conftest import REAL_HOME
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm


@pytest.fixture()
def settings(home: Path) -> Settings:
    """User 196 of ML-100K in a fresh home, on scripted fake models."""
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")
    s = Settings(home=home, dataset="ml-100k", user_id="196", judge_top=4, show_top=4)
    script = by_task(PLAN, QUERIES, JUDGE)
    use_resources(
        Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(script, "cloud"))
    )
    return s


@pytest.fixture()
def fake_graph(home: Path, checkpointer):
    """``make(...)`` -> (settings, resources, the compiled graph on this test's
    checkpointer: memory, SQLite and PostgreSQL in turn), user 196 of ML-100K on scripted
    fake models; settings given to ``make`` override the defaults."""
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")

    def make(
        plan: str = PLAN,
        user: str = "196",
        cloud_fail: bool = False,
        planner: str = "llm",  # most graph tests are about what the planner LLM writes
        queries: str = QUERIES,
        cloud_judge: str = JUDGE,  # what the cloud LLM answers a judgement prompt
        **overrides: object,
    ):
        s = Settings(
            home=home,
            dataset="ml-100k",
            user_id=user,
            judge_top=4,
            show_top=4,
            planner=planner,  # type: ignore[arg-type]
            **overrides,  # type: ignore[arg-type]
        )
        cloud = fake_llm(by_task(plan, queries, cloud_judge), "cloud", fail=cloud_fail)
        device = fake_llm(by_task(plan, queries, JUDGE), "device")
        res = use_resources(Resources(s, device_llm=device, cloud_llm=cloud))
        return s, res, build_graph(checkpointer)

    return make
