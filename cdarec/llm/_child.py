"""Shared: runs ``llama_cpp.server`` as a child that dies with its parent.

``python -m cdarec.llm._child PARENT_PID <llama_cpp.server args>``: a daemon thread
watches the parent and exits when it is gone, so a cdarec process that is killed
(SIGTERM/SIGKILL, where ``atexit`` never runs) leaves no model server behind. A plain
``PR_SET_PDEATHSIG`` is not used: it fires when the *thread* that started the child
ends, and nodes start the server from short-lived worker threads.

The server's models are ``GrammarCheckedLlama`` (``cdarec.llm.sampling``): JSON-schema
replies check the sampled token against the grammar instead of the whole vocabulary,
as llama.cpp's own server does. The server looks ``llama_cpp.Llama`` up when it loads
a model, so replacing that name is all it takes.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time


def _watch(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1.0)


def use_grammar_checked_sampling() -> None:
    """Models the server loads from now on are ``GrammarCheckedLlama``."""
    import llama_cpp

    from cdarec.llm.sampling import GrammarCheckedLlama

    llama_cpp.Llama = GrammarCheckedLlama  # type: ignore[misc]


def main() -> None:
    parent = int(sys.argv[1])
    sys.argv = ["llama_cpp.server", *sys.argv[2:]]
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    use_grammar_checked_sampling()
    runpy.run_module("llama_cpp.server", run_name="__main__")


if __name__ == "__main__":
    main()
