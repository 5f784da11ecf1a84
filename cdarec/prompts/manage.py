"""Shared: managing prompts — list, show, edit, diff, reset, and the LangSmith prompt hub.

A user's edited copy lives in ``$CDAREC_HOME/prompts/<name>.md`` and wins over the
packaged file. Every change is validated before it takes effect (an edit that breaks a
prompt is kept as ``<name>.md.rejected`` and the previous version stays in force), and
nothing is thrown away: ``reset`` moves the override to ``<name>.md.bak``.

Hub sync (``push``/``pull``) converts a prompt to a LangChain ``ChatPromptTemplate``
(f-string templates, the same ``{var}`` syntax as our files) and records the commit it
pushed or pulled in ``prompts/hub.json``, so a pull is pinned to a commit.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cdarec.prompts import EXPECTED, PromptError, load_prompt, packaged_text, parse_prompt


class PromptInfo(BaseModel):
    name: str
    side: str
    variables: list[str]
    source: str  # "packaged" or "override"
    path: str


def _check_name(name: str) -> None:
    if name not in EXPECTED:
        raise PromptError(f"no prompt named '{name}'; known: {', '.join(sorted(EXPECTED))}")


def override_path(override_dir: Path, name: str) -> Path:
    _check_name(name)
    return override_dir / f"{name}.md"


def list_prompts(override_dir: Path) -> list[PromptInfo]:
    out = []
    for name in sorted(EXPECTED):
        path = override_dir / f"{name}.md"
        prompt = load_prompt(name, override_dir)
        out.append(
            PromptInfo(
                name=name,
                side=prompt.side,
                variables=sorted(EXPECTED[name]),
                source="override" if path.exists() else "packaged",
                path=str(path) if path.exists() else f"cdarec/prompts/{name}.md",
            )
        )
    return out


def effective_text(name: str, override_dir: Path) -> str:
    path = override_path(override_dir, name)
    return path.read_text("utf-8") if path.exists() else packaged_text(name)


def validate(name: str, text: str, path: str) -> None:
    """Refuse a prompt whose sections or variables are wrong (names the variable)."""
    parse_prompt(text, path, EXPECTED[name])


def write_override(name: str, text: str, override_dir: Path) -> Path:
    path = override_path(override_dir, name)
    validate(name, text, str(path))
    override_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)
    return path


def edit(name: str, override_dir: Path, editor: str | None = None) -> tuple[bool, str]:
    """Open the prompt in ``$EDITOR`` on a draft; install it only if it validates.

    Returns (changed, message)."""
    path = override_path(override_dir, name)
    override_dir.mkdir(parents=True, exist_ok=True)
    before = effective_text(name, override_dir)
    draft = path.with_name(path.name + ".draft")
    draft.write_text(before, "utf-8")
    command = editor or os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        subprocess.run([*shlex.split(command), str(draft)], check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        draft.unlink(missing_ok=True)
        raise PromptError(f"the editor '{command}' failed ({err}); set $EDITOR") from err
    after = draft.read_text("utf-8")
    if after == before:
        draft.unlink()
        return False, f"{name}: unchanged"
    try:
        validate(name, after, str(path))
    except PromptError as err:
        rejected = path.with_name(path.name + ".rejected")
        draft.replace(rejected)
        raise PromptError(
            f"{err}\nyour edit is kept in {rejected}; the previous version stays in force"
        ) from err
    draft.replace(path)
    return True, f"{name}: saved to {path}"


def diff(name: str, override_dir: Path) -> str:
    path = override_path(override_dir, name)
    if not path.exists():
        return ""
    return "".join(
        difflib.unified_diff(
            packaged_text(name).splitlines(keepends=True),
            path.read_text("utf-8").splitlines(keepends=True),
            fromfile=f"cdarec/prompts/{name}.md (packaged)",
            tofile=str(path),
        )
    )


def reset(name: str, override_dir: Path) -> Path | None:
    """Back to the packaged prompt; the override is kept as ``<name>.md.bak``."""
    path = override_path(override_dir, name)
    if not path.exists():
        return None
    bak = path.with_name(path.name + ".bak")
    path.replace(bak)
    return bak


# -- LangSmith prompt hub --------------------------------------------------------------------
def _hub_file(override_dir: Path) -> Path:
    return override_dir / "hub.json"


def hub_pins(override_dir: Path) -> dict[str, str]:
    path = _hub_file(override_dir)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise PromptError(f"{path} is damaged ({err}); delete it to forget the pins") from err
    return {str(k): str(v) for k, v in data.items()}


def _pin(override_dir: Path, name: str, commit: str) -> None:
    pins = hub_pins(override_dir)
    pins[name] = commit
    override_dir.mkdir(parents=True, exist_ok=True)
    tmp = _hub_file(override_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(pins, indent=2, sort_keys=True), "utf-8")
    tmp.replace(_hub_file(override_dir))


def hub_name(name: str) -> str:
    return f"cdarec-{name.replace('_', '-')}"


def _client(client: Any | None) -> Any:
    if client is not None:
        return client
    if not (os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY")):
        raise PromptError(
            "prompt hub sync needs a LangSmith key: set LANGSMITH_API_KEY "
            "(and LANGSMITH_ENDPOINT for a self-hosted LangSmith)"
        )
    from langsmith import Client

    return Client()


def _commit_of(url_or_ref: str) -> str:
    """The commit hash at the end of a hub URL or reference."""
    path = url_or_ref.split("?", 1)[0].rstrip("/")
    return path.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def push(name: str, override_dir: Path, client: Any | None = None) -> str:
    from langchain_core.prompts import ChatPromptTemplate

    prompt = load_prompt(name, override_dir)
    template = ChatPromptTemplate.from_messages(
        [("system", prompt.system), ("human", prompt.user)], template_format="f-string"
    )
    url = _client(client).push_prompt(
        hub_name(name), object=template, description=f"cdarec prompt {name} ({prompt.side})"
    )
    commit = _commit_of(str(url))
    _pin(override_dir, name, commit)
    return commit


def pull(
    name: str, override_dir: Path, commit: str | None = None, client: Any | None = None
) -> str:
    """Fetch the prompt at ``commit`` (default: the pinned one, else the latest), validate
    it against the variables the code supplies, and install it as the override."""
    _check_name(name)
    commit = commit or hub_pins(override_dir).get(name)
    ref = hub_name(name) + (f":{commit}" if commit else "")
    template = _client(client).pull_prompt(ref)
    parts: dict[str, str] = {}
    for msg in getattr(template, "messages", []):
        role = {"SystemMessagePromptTemplate": "system"}.get(type(msg).__name__, "user")
        parts[role] = msg.prompt.template  # type: ignore[union-attr]
    packaged = parse_prompt(packaged_text(name), f"cdarec/prompts/{name}.md")
    text = (
        f"---\nname: {name}\nside: {packaged.side}\n"
        f"variables: {', '.join(sorted(EXPECTED[name]))}\n---\n"
        f"<!-- pulled from the LangSmith hub: {ref} -->\n"
        f"## system\n{parts.get('system', '')}\n\n## user\n{parts.get('user', '')}\n"
    )
    write_override(name, text, override_dir)
    pinned = commit or str((getattr(template, "metadata", None) or {}).get("lc_hub_commit_hash"))
    _pin(override_dir, name, pinned)
    return pinned
