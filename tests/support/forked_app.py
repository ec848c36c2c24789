"""A Tornado app run the production way: one socket, ``fork_processes(N)`` workers, the exporter
installed in each. Started by tests/test_workers.py as a subprocess (own session, so the
test can end the whole group); prints the shared port, then the parent babysits the workers.

    python tests/support/forked_app.py --workers 3 --dir /tmp/x [--interval 1] [--worker-port 9464]
                               [--crash-after-write --max-restarts 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.process
import tornado.web
from prometheus_client import CollectorRegistry

from tornado_memory_exporter import Config, install
from tornado_memory_exporter.workers import worker_id, worker_port


class WhoAmI(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"worker": worker_id(), "pid": os.getpid()})


async def serve(args: argparse.Namespace, sockets: list) -> None:
    app = tornado.web.Application([(r"/whoami", WhoAmI)])
    config = Config(
        worker_label=True,
        worker_dir=None if args.worker_port else args.dir,
        worker_interval=args.interval,
        census_interval=0,
    )
    exporter = install(
        app,
        path=None if args.worker_port else "/metrics",
        config=config,
        registry=CollectorRegistry(),
    )
    if args.crash_after_write:
        os._exit(1)  # a crash right after the first snapshot: fork_processes restarts the task id
    if args.worker_port:
        exporter.serve(worker_port(args.worker_port))
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    parent = os.getppid()
    stopped = asyncio.Event()

    def orphaned() -> None:  # never outlive the babysitter, whatever killed it
        if os.getppid() != parent:
            stopped.set()

    tornado.ioloop.PeriodicCallback(orphaned, 200).start()
    await stopped.wait()
    exporter.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--worker-port", type=int, default=0)
    parser.add_argument("--crash-after-write", action="store_true")
    parser.add_argument("--max-restarts", type=int, default=100)
    args = parser.parse_args()
    sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
    print(sockets[0].getsockname()[1], flush=True)
    tornado.process.fork_processes(args.workers, max_restarts=args.max_restarts)
    asyncio.run(serve(args, sockets))


if __name__ == "__main__":
    sys.exit(main())
