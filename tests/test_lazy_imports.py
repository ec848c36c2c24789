"""Importing the package imports nothing the application does not use: no numpy (pympler's
``asizeof`` imports it at module level, +12 MiB RSS where it is installed), no pympler, no
pycurl (libcurl: +5.8 MiB RSS), no mixin, no Jupyter, no explorer (off by default), no
``tornado.websocket`` (the census classifies WebSockets only in apps that loaded it);
``watch()`` imports pympler when a census first measures a watched object."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

HEAVY = (
    "numpy",
    "pympler",
    "pycurl",
    "tornado_memory_exporter.mixin",
    "tornado_memory_exporter.explorer",
    "jupyter_server",
    "yaml",
    "tornado.websocket",
)


def imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_importing_the_package_imports_no_numpy_even_where_it_is_installed():
    if importlib.util.find_spec("numpy") is None:  # the test extra installs it
        message = "numpy is not installed: pip install -e '.[test]'"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert imported_after("import tornado_memory_exporter") == []
    assert imported_after("from tornado_memory_exporter import install, start_in_thread") == []


def test_a_watched_object_brings_pympler_in_on_first_measurement():
    code = """
import asyncio
from prometheus_client import CollectorRegistry
from tornado_memory_exporter import Config, install

async def main():
    exporter = install(None, None, config=Config(census_interval=0), registry=CollectorRegistry())
    exporter.watch("cache", {"a": [1, 2, 3]})
    await exporter.census_now()
    exporter.stop()

asyncio.run(main())
"""
    assert "pympler" in imported_after(code)
