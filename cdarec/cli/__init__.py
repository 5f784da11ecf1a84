"""CLI: cdarec's command line — set-up, catalogue, users, device memory, chat, benchmarks.

Every command builds its settings the same way (``settings_from``: flags > environment >
settings file > defaults) and runs the same graph as ``langgraph dev`` serves; the chat
itself is the service's (``cdarec.service.chat``). Each command group builds its own part
of the parser (``register``).
"""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape

from cdarec.assets import AssetError
from cdarec.cli import bench, chat, prompts, setup
from cdarec.cli.common import CliError, common_flags, err_console
from cdarec.data.atomic import DataError
from cdarec.device.memory import DeviceMemoryError
from cdarec.graph.checkpoint import CheckpointError
from cdarec.graph.runtime import UserNotFoundError
from cdarec.llm.factory import ModelSpecError
from cdarec.llm.server import ServerError
from cdarec.prompts import PromptError
from cdarec.service.access import AccessError
from cdarec.service.chat import ChatError

GROUPS = (setup, chat, bench, prompts)


def build_parser() -> argparse.ArgumentParser:
    common = common_flags()
    p = argparse.ArgumentParser(
        prog="cdarec",
        description="Cloud-device collaborative agents for sequential recommendation. The "
        "cloud LLM plans and retrieves from a Chroma catalogue; a small model on the device "
        "keeps the private history, models the sequence and ranks.",
        epilog="Settings: flags > CDAREC_* environment > $CDAREC_HOME/settings.toml > defaults.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ChatError) as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return err.code
    except UserNotFoundError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 2
    except (
        AssetError,
        DataError,
        ModelSpecError,
        PromptError,
        ServerError,
        DeviceMemoryError,
        AccessError,
        CheckpointError,
    ) as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
