"""Command line: ``python -m tornado_memory_exporter demo``, ``generate`` (alerts, dashboards)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from . import Config

LEAK_NAMES = (  # demo.leaks.make_leaks()
    "handlers",
    "cache",
    "pool",
    "cycles",
    "cycles-per-request",
    "blocking",
    "http",
    "websockets",
    "slow-consumer",
    "timers",
)
# The demo takes a census every few seconds so that leaks show up within a minute.
DEMO_CENSUS_INTERVAL = 5.0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tornado-memory-exporter`` command."""
    parser = argparse.ArgumentParser(prog="tornado-memory-exporter")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a demo Tornado app with the exporter installed")
    demo.add_argument("--port", type=int, default=8888)
    demo.add_argument("--address", default="127.0.0.1")
    demo.add_argument("--namespace", default="tornado")
    demo.add_argument(
        "--leak",
        action="append",
        default=[],
        choices=LEAK_NAMES,
        help="switch a leak scenario on at start (repeatable; POST /leaks/<name> at run time)",
    )
    demo.add_argument(
        "--no-load", dest="load", action="store_false", help="no background request load"
    )
    demo.add_argument(
        "--no-stack",
        dest="stack",
        action="store_false",
        help="do not start prometheus/alertmanager even where installed",
    )
    from .mixin import cli as mixin_cli

    mixin_cli.add_command(commands)
    args = parser.parse_args(argv)
    if args.command == "generate":
        return mixin_cli.run(args, parser)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "demo":
        from .demo import serve

        try:
            config = Config(namespace=args.namespace, census_interval=DEMO_CENSUS_INTERVAL)
            asyncio.run(
                serve(
                    port=args.port,
                    address=args.address,
                    config=config,
                    leaks=args.leak,
                    load=args.load,
                    stack=args.stack,
                    announce=lambda line: print(line, flush=True),
                )
            )
        except ValueError as error:
            parser.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
