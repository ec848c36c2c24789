"""One style for the whole tree: ruff's lint rules and formatter (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["exporter", "tests", "bench", ".ci"]


@pytest.mark.parametrize(
    "command",
    [["check", "--output-format", "concise"], ["format", "--check"]],
    ids=["check", "format"],
)
def test_ruff_finds_nothing(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *CHECKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
