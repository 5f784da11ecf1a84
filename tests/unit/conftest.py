"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdarec.graph.runtime import Resources, use_resources
from cdarec.settings import Settings
from tests.conftest import REAL_HOME
from tests.fakes import by_task, fake_llm
from tests.unit.test_graph_fake import JUDGE, PLAN, QUERIES


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
