"""A webhook receiver for Alertmanager that logs each notification: the demo's visible receiver.

``POST /`` takes an Alertmanager webhook payload and logs one line per alert; ``GET /`` returns
the last notifications received (newest last) as JSON. Run alone (the compose stack does) with::

    python -m tornado_memory_exporter.demo.webhook --address 0.0.0.0 --port 9095
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from collections import deque
from typing import Any

import tornado.web

log = logging.getLogger("tornado_memory_exporter.demo.webhook")

# Notifications kept for GET /: enough for a demo session, bounded so the receiver cannot leak.
KEEP = 200
MAX_BODY = 1 << 20


class WebhookHandler(tornado.web.RequestHandler):
    """Records Alertmanager notifications into a bounded deque and logs them."""

    def initialize(self, received: deque[dict[str, Any]]) -> None:
        self.received = received

    def get(self) -> None:
        self.write({"notifications": list(self.received)})

    def post(self) -> None:
        if len(self.request.body) > MAX_BODY:
            raise tornado.web.HTTPError(413)
        try:
            payload = json.loads(self.request.body)
            alerts = payload["alerts"]
            if not isinstance(alerts, list):
                raise TypeError("alerts is not a list")
        except (ValueError, KeyError, TypeError) as error:
            raise tornado.web.HTTPError(
                400, reason=f"not an Alertmanager payload: {error}"[:200]
            ) from None
        self.received.append(payload)
        for alert in alerts:
            labels = alert.get("labels", {})
            log.warning(
                "alert %s %s %s: %s",
                str(alert.get("status", "?")).upper(),
                labels.get("alertname", "?"),
                {k: v for k, v in sorted(labels.items()) if k != "alertname"},
                alert.get("annotations", {}).get("summary", ""),
            )
        self.write({"received": len(alerts)})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


def make_webhook_app(received: deque[dict[str, Any]] | None = None) -> tornado.web.Application:
    """The receiver as an application; ``received`` is where notifications are kept."""
    store = received if received is not None else deque(maxlen=KEEP)
    return tornado.web.Application([(r"/", WebhookHandler, {"received": store})])


async def _serve(address: str, port: int) -> None:
    server = make_webhook_app().listen(port, address=address)
    log.info("webhook logger listening on %s:%d", address, port)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    server.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line of the standalone receiver."""
    parser = argparse.ArgumentParser(prog="python -m tornado_memory_exporter.demo.webhook")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(args.address, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
