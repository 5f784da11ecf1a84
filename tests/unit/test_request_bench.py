"""Protocol R's parts (unit): the requests it writes, and a small end-to-end run on
ML-100K with scripted fake LLMs and a tiny SASRec (the real models run it in
tests/integration/test_benchmarks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from cdarec.contract.request import Vocabulary, parse_request
from cdarec.data import load_dataset
from cdarec.evaluation.harness import ProtocolA
from cdarec.evaluation.protocols import request
from cdarec.graph.runtime import Resources
from cdarec.seqrec import artefacts as runtime
from cdarec.settings import Settings
from tests.conftest import REAL_HOME
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm
from tests.unit.test_accuracy_bench import TINY


def test_requests_come_from_the_held_out_item_in_plain_words() -> None:
    ds = load_dataset("ml-100k", REAL_HOME)
    proto = ProtocolA.build(ds, 120, seed=3)
    asks = [
        request.make_ask(ds, u, int(ds.sequence(u)[-1]), proto.histories[u], 3)
        for u in proto.sample
    ]
    assert asks == [
        request.make_ask(ds, u, int(ds.sequence(u)[-1]), proto.histories[u], 3)
        for u in proto.sample
    ], "seeded"
    assert len({a.kind for a in asks}) == 5 and len({a.text for a in asks}) > 60
    vocab = Vocabulary.build(
        ds.genres, [(i.item_id, i.title, i.label()) for i in ds.items], ds.popularity
    )
    for u, a in zip(proto.sample, asks, strict=True):
        label = ds.items[int(ds.sequence(u)[-1])]
        if a.like is None:
            assert a.satisfied(label.genres, label.year), "the held-out item meets its request"
            assert "Genres" not in a.text and "[" not in a.text, "no structured hint"
        # the request as the parser reads it names what the truth says (no title leaks)
        c = parse_request(a.text, vocab)
        if a.kind in ("genre", "genre2"):
            assert set(a.genres) <= set(c.genres), (a, c)
    assert sum(len(p) for p in request.PHRASINGS.values()) >= 8


def test_small_end_to_end_run(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    s = Settings(home=home, dataset="ml-100k", judge_top=4)
    script = by_task(PLAN, QUERIES, JUDGE)
    res = Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(script, "cloud"))
    out = home / "results"
    console = Console(record=True, width=200)
    rows = request.run(
        s,
        ["structured", "retrieval-only", "oracle-filter", "cdarec-no-slm"],
        6,
        seed=1,
        out_dir=out,
        console=console,
        resources=res,
    )
    by = {r.method: r for r in rows}
    assert by["oracle-filter"].satisfaction == pytest.approx(1.0)
    assert all(0 <= r.satisfaction <= 1 and r.users == 6 for r in rows)
    graph = by["cdarec-no-slm"]
    assert graph.grounded is not None and 0 <= graph.grounded <= 1
    assert graph.distinct is not None and graph.distinct >= 1
    assert "| **oracle-filter** | 6 |" in console.export_text()
    data = json.loads((out / "accuracy-request-ml-100k.json").read_text())
    assert len(data["requests"]) == 6 and {r["method"] for r in data["rows"]} == set(by)
    assert (out / "accuracy-request-ml-100k.png").stat().st_size > 1000
