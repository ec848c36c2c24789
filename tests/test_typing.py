"""The package as a typed dependency: ``mypy --strict`` accepts a small user app, and pools hand
out their objects typed (``Lease[T]``), so a wrong attribute is caught before it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the test extra")

APP = Path(__file__).parent / "support" / "typed_app.py"
MISUSE = """
from tornado_memory_exporter import ObjectPool

class Connection:
    def query(self, sql: str) -> list[str]:
        return [sql]

async def use(pool: ObjectPool[Connection]) -> None:
    async with pool.acquire() as conn:
        conn.no_such_method()
    with pool.acquire_sync() as conn2:
        conn2.no_such_method()
    lease = await pool.lease()
    lease.obj.no_such_method()
"""


def mypy(tmp_path: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_mypy_strict_accepts_a_user_app(tmp_path: Path) -> None:
    result = mypy(tmp_path, APP)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pooled_objects_are_typed_not_any(tmp_path: Path) -> None:
    misuse = tmp_path / "misuse.py"
    misuse.write_text(MISUSE)
    result = mypy(tmp_path, misuse)
    errors = [line for line in result.stdout.splitlines() if "error:" in line]
    assert len(errors) == 3 and all(
        '"Connection" has no attribute "no_such_method"' in e for e in errors
    ), result.stdout
