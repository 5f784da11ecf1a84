"""Shared: every prompt is a file in this folder, one per sub-task (each names its side).

A prompt file has a front matter (``name``, ``side``, ``variables``, optionally
``system: <other prompt>`` to share that prompt's system section), optional HTML
comments (stripped), and ``## system`` / ``## user`` sections in ``str.format`` syntax.
The cloud prompts share one system prompt (``cloud_context.md``) and start their user
messages alike, so the model's prompt cache serves the common prefix.
A user's edited copy in ``$CDAREC_HOME/prompts/<name>.md`` takes precedence over the
packaged one and survives upgrades. A prompt whose placeholders do not match the
variables the code supplies is refused at load, naming the file and the variable.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

# The variables the code passes to each prompt (the contract an edited prompt must keep).
EXPECTED: dict[str, frozenset[str]] = {
    "cloud_context": frozenset({"genres", "retrieval_k"}),
    "plan_strategy": frozenset({"abstract", "request", "reading", "suggested"}),
    "model_semantics": frozenset({"abstract", "request"}),
    "model_semantics_device": frozenset({"request"}),
    "rank_on_device": frozenset({"recent", "request", "candidates"}),
    "judge_on_cloud": frozenset({"abstract", "request", "candidates"}),
    # The cloud-only baseline (benchmarks only): raw history goes to the cloud by design.
    "cloud_only_profile": frozenset({"genres", "history"}),
    "cloud_only_rank": frozenset({"recent", "request", "candidates"}),
}

_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_SECTION = re.compile(r"^##\s*(system|user)\s*$", re.MULTILINE)


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class Prompt:
    name: str
    side: str
    system: str
    user: str
    path: str
    shared_system: str | None = None

    def messages(self, **values: object) -> list[BaseMessage]:
        return [
            SystemMessage(content=self.system.format(**values)),
            HumanMessage(content=self.user.format(**values)),
        ]


def _placeholders(text: str, path: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as err:
        raise PromptError(
            f"{path}: bad placeholder syntax ({err}); escape braces as {{{{ }}}}"
        ) from err


def parse_prompt(text: str, path: str, expected: frozenset[str] | None = None) -> Prompt:
    meta: dict[str, str] = {}
    body = text
    if text.startswith("---"):
        head, sep, body = text[3:].partition("\n---")
        if not sep:
            raise PromptError(f"{path}: front matter is not closed with '---'")
        for line in head.strip().splitlines():
            key, _, value = line.partition(":")
            meta[key.strip()] = value.strip()
    body = _COMMENT.sub("", body)
    parts = _SECTION.split(body)
    sections = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    shared = meta.get("system")
    if shared:
        if "system" in sections:
            raise PromptError(f"{path}: has a '## system' section and 'system: {shared}'")
        sections["system"] = ""
    if "system" not in sections or ("user" not in sections and not meta.get("shared")):
        raise PromptError(f"{path}: needs a '## system' and a '## user' section")
    sections.setdefault("user", "")
    name = meta.get("name") or Path(path).stem
    expected = EXPECTED.get(name) if expected is None else expected
    used = _placeholders(sections["system"], path) | _placeholders(sections["user"], path)
    if expected is not None:
        for var in sorted(used - expected):
            raise PromptError(
                f"{path}: unknown variable {{{var}}}; expected: "
                f"{', '.join('{' + v + '}' for v in sorted(expected))}"
            )
        for var in sorted(expected - used):
            raise PromptError(
                f"{path}: missing variable {{{var}}}; expected: "
                f"{', '.join('{' + v + '}' for v in sorted(expected))}"
            )
    return Prompt(name, meta.get("side", "?"), sections["system"], sections["user"], path, shared)


def packaged_text(name: str) -> str:
    ref = resources.files("cdarec.prompts").joinpath(f"{name}.md")
    if not ref.is_file():
        raise PromptError(f"no prompt named '{name}'; known: {', '.join(sorted(EXPECTED))}")
    return ref.read_text("utf-8")


def load_prompt(name: str, override_dir: Path | None = None) -> Prompt:
    prompt = None
    if override_dir is not None:
        path = override_dir / f"{name}.md"
        if path.exists():
            prompt = parse_prompt(path.read_text("utf-8"), str(path))
    if prompt is None:
        prompt = parse_prompt(packaged_text(name), f"cdarec/prompts/{name}.md")
    if prompt.shared_system:
        base = load_prompt(prompt.shared_system, override_dir)
        prompt = replace(prompt, system=base.system)
    return prompt


def load_all(override_dir: Path | None = None) -> dict[str, Prompt]:
    return {name: load_prompt(name, override_dir) for name in EXPECTED}
