"""The architecture is checked, not described: import-linter's contracts (pyproject.toml)
hold for the tree, and they break when a cloud module reaches device memory, when the
contract imports a side, or when the service imports an interface."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT.exists():
        pytest.fail("lint-imports is missing: run `bash scripts/test.sh` (dev dependencies)")
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        (
            "cloud/nodes.py",
            "from cdarec.device.memory import DeviceMemory",
            "never import each other",
        ),
        ("contract/state.py", "import cdarec.cloud.resources", "Layers"),
        ("service/chat.py", "import cdarec.cli.render", "imports none of them"),
        ("seqrec/metrics.py", "import cdarec.device.ranking", "shared foundation"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copytree(ROOT / "cdarec", tmp_path / "cdarec", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "cdarec" / module
    path.write_text(path.read_text() + f"\n{line}  # a violation planted by the test\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    report = " ".join(out.stdout.split())
    assert "BROKEN" in report
    assert any(broken in ln and "BROKEN" in ln for ln in report.split("KEPT")), report
