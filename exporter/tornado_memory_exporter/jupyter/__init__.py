"""Jupyter Server extension: the exporter inside a Jupyter server (JupyterLab, Notebook 7).

Enable it with ``jupyter server extension enable tornado_memory_exporter.jupyter`` (or
``c.ServerApp.jpserver_extensions = {"tornado_memory_exporter.jupyter": True}``); it then serves
``<base_url>tornado-memory/metrics`` on a registry of its own, behind Jupyter's token or login.
Options are ``c.TornadoMemoryExporter.*`` traits (see ``extension.py``). Importing this package
needs nothing of Jupyter; the hooks below import ``jupyter_server`` when Jupyter calls them.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "tornado_memory_exporter.jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    # Jupyter's loop is not running yet here, so install() waits for the start hook; the
    # options are checked now, so that a bad one fails the load with a message naming it.
    from .extension import load

    load(serverapp)


async def _start_jupyter_server_extension(serverapp: Any) -> None:
    from .extension import start

    start(serverapp)
