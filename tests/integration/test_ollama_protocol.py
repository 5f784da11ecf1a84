"""ChatOllama and the ollama client over real HTTP against the llama.cpp Ollama fixture."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import ollama
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_ollama import ChatOllama
from pydantic import BaseModel

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "smollm2:135m"
MODEL_PATH = (
    Path(os.environ.get("CDAREC_HOME", Path.home() / ".cache" / "cdarec"))
    / "models"
    / "SmolLM2-135M-Instruct.Q4_1.gguf"
)
READY_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ollama_url() -> Iterator[str]:
    if not MODEL_PATH.is_file():
        pytest.fail(f"model file missing: {MODEL_PATH} (run the project's set-up first)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "tests.fixtures.ollama_server",
                "--model", str(MODEL_PATH), "--name", MODEL_NAME,
                "--host", "127.0.0.1", "--port", str(port), "--threads", "2",
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_ready(proc, url, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, url: str, log: IO[str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read()}")
        try:
            if httpx.get(f"{url}/api/version", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"server not ready after {READY_TIMEOUT_S:.0f} s:\n{log.read()}")
        time.sleep(0.2)


def _chat(url: str, **kwargs) -> ChatOllama:
    params = {"model": MODEL_NAME, "base_url": url, "num_predict": 16, "temperature": 0}
    return ChatOllama(**(params | kwargs))


def test_list_shows_the_model(ollama_url: str) -> None:
    listed = ollama.Client(host=ollama_url).list()
    names = [m.model for m in listed.models]
    assert names == [MODEL_NAME]
    model = listed.models[0]
    assert model.size and model.size > 1_000_000
    assert model.details is not None
    assert model.details.format == "gguf"
    assert model.details.family == "llama"


def test_show_parses(ollama_url: str) -> None:
    shown = ollama.Client(host=ollama_url).show(MODEL_NAME)
    assert shown.capabilities == ["completion"]
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"


def test_invoke_returns_content_and_usage(ollama_url: str) -> None:
    reply = _chat(ollama_url).invoke("Say hi")
    assert isinstance(reply, AIMessage)
    assert isinstance(reply.content, str) and reply.content.strip()
    usage = reply.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert reply.response_metadata["done_reason"] in {"stop", "length"}
    assert reply.response_metadata["model_name"] == MODEL_NAME


def test_stream_yields_several_chunks(ollama_url: str) -> None:
    chunks = list(_chat(ollama_url).stream("Count from one to five."))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 1
    assert "".join(texts).strip()
    # Ollama's last line (done: true) carries the counters; the aggregate has the usage.
    total = sum(chunks[1:], chunks[0])
    assert total.usage_metadata is not None
    assert total.usage_metadata["input_tokens"] > 0
    assert total.usage_metadata["output_tokens"] > 1


def test_non_streaming_client_chat(ollama_url: str) -> None:
    reply = ollama.Client(host=ollama_url).chat(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "Say hi"}],
        options={"num_predict": 4, "temperature": 0},
        stream=False,
    )
    assert reply.done is True
    assert reply.done_reason == "length"
    assert reply.eval_count == 4
    assert reply.message.content


class Review(BaseModel):
    title: str
    score: int


def test_structured_output_json_schema(ollama_url: str) -> None:
    structured = _chat(ollama_url, num_predict=64).with_structured_output(
        Review, method="json_schema"
    )
    result = structured.invoke(
        "Review the movie Alien as JSON with a short title and a score from 1 to 10."
    )
    assert isinstance(result, Review)
    assert result.title.strip()


def test_unknown_model_is_a_404(ollama_url: str) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        _chat(ollama_url, model="no-such-model:1b").invoke("Say hi")
    assert err.value.status_code == 404
    assert err.value.error == "model 'no-such-model:1b' not found"


def test_device_judge_runs_on_ollama_inside_a_graph_turn(
    ollama_url: str, smol_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production device runtime (ChatOllama over HTTP) inside a real graph turn."""
    from cdarec.graph.builder import build_graph
    from cdarec.graph.runtime import get_resources
    from cdarec.settings import Settings

    monkeypatch.setenv("OLLAMA_HOST", ollama_url)
    s = Settings(
        **{**smol_settings.model_dump(), "device_model": f"ollama:{MODEL_NAME}", "planner": "fixed"}
    )
    assert get_resources(s).device.device_llm.provider == "ollama"
    out = build_graph().invoke({"request": "an adventure"}, context=s)
    step = next(r for r in out["trace"] if r.node == "rank_on_device")
    assert out["plan"].judge and out["plan"].source == "default"
    assert step.model == MODEL_NAME and step.tokens_in > 0, step
    assert out["ranking"]
