"""A small Tornado service with the exporter installed: what ``make demo`` runs."""

from __future__ import annotations

import asyncio
import logging
import signal

import tornado.web

from . import Config, install

log = logging.getLogger("tornado_memory_exporter.demo")


class HelloHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"hello": "world"})


def make_app() -> tornado.web.Application:
    """The demo application, without the exporter."""
    return tornado.web.Application([(r"/", HelloHandler)])


async def serve(*, port: int, address: str, config: Config) -> None:
    """Run the demo until SIGINT/SIGTERM."""
    app = make_app()
    server = app.listen(port, address=address)
    exporter = install(app, config=config)
    bound = next(iter(server._sockets.values())).getsockname()[1]
    print(f"demo app:  http://{address}:{bound}/", flush=True)
    print(f"metrics:   http://{address}:{bound}/metrics", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    exporter.stop()
    server.stop()
