"""The demo: a Tornado service with switchable real leaks and the exporter installed, plus (when
``prometheus`` and ``prometheus-alertmanager`` are installed) a local Prometheus + Alertmanager
evaluating the shipped alerts in their fast profile. What ``make demo`` runs.

Modules: ``leaks`` (the scenarios), ``app`` (endpoints, switches, background load), ``webhook``
(the receiver that logs notifications), ``stack`` (the Prometheus/Alertmanager runner).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from collections.abc import Callable, Iterable

from ..config import Config
from ..install import install
from .app import DemoService, describe_leaks
from .stack import Stack, find_binaries
from .webhook import make_webhook_app

__all__ = ["DemoService", "serve"]

log = logging.getLogger("tornado_memory_exporter.demo")


async def serve(
    *,
    port: int,
    address: str,
    config: Config,
    leaks: Iterable[str] = (),
    load: bool = True,
    stack: bool = True,
    announce: Callable[[str], None] = log.info,
    stopped: asyncio.Event | None = None,
) -> None:
    """Run the demo until SIGINT/SIGTERM (or until ``stopped`` is set), then clean up everything.

    ``leaks`` names scenarios to switch on at start; ``stack=False`` skips Prometheus and
    Alertmanager even where installed; ``announce`` receives the banner lines (URLs).
    """
    service = DemoService()
    for name in leaks:
        service.leaks[name].switch(True)  # raises ValueError for an unavailable scenario
    stopped = stopped if stopped is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    app = service.make_app()
    server = app.listen(port, address=address)
    bound = next(iter(server._sockets.values())).getsockname()[1]
    local = f"127.0.0.1:{bound}"  # the demo calls itself and is scraped over loopback
    exporter = install(app, config=config)
    running: Stack | None = None
    webhook_server = None
    try:
        await service.start(exporter, f"http://{local}", load=load)
        shown = "127.0.0.1" if address in ("0.0.0.0", "") else address
        lines = [
            f"demo app:      http://{shown}:{bound}/",
            f"metrics:       http://{shown}:{bound}/metrics",
            f"leaks:         http://{shown}:{bound}/leaks",
            f"switch a leak: curl -X POST -d on http://{shown}:{bound}/leaks/<name>"
            "   (-d off to stop)",
        ]
        binaries = find_binaries() if stack else None
        if binaries is not None:
            webhook_server = make_webhook_app(deque(maxlen=200)).listen(0, address="127.0.0.1")
            webhook_port = next(iter(webhook_server._sockets.values())).getsockname()[1]
            webhook_url = f"http://127.0.0.1:{webhook_port}/"
            running = Stack(binaries=binaries, target=local, webhook_url=webhook_url)
            await running.start()
            lines += [
                f"prometheus:    {running.prometheus_url}/alerts",
                f"alertmanager:  {running.alertmanager_url}/#/alerts",
                f"webhook log:   {webhook_url}   (notifications are also logged here)",
                f"state dir:     {running.dir}   (removed on exit)",
            ]
        elif stack:
            lines.append("(install prometheus and prometheus-alertmanager to get alerts too)")
        lines += [
            "leak scenarios (name, alert, what):",
            describe_leaks(service.leaks),
            "Ctrl-C stops everything.",
        ]
        for line in lines:
            announce(line)
        await stopped.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if running is not None:
            running.stop()
        if webhook_server is not None:
            webhook_server.stop()
        await service.stop()
        exporter.stop()
        server.stop()
        await server.close_all_connections()
