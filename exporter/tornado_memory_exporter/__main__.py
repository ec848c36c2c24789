"""Command line: ``python -m tornado_memory_exporter demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging

from . import Config


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tornado-memory-exporter`` command."""
    parser = argparse.ArgumentParser(prog="tornado-memory-exporter")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a demo Tornado app with the exporter installed")
    demo.add_argument("--port", type=int, default=8888)
    demo.add_argument("--address", default="127.0.0.1")
    demo.add_argument("--namespace", default="tornado")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from .demo import serve

    try:
        asyncio.run(serve(port=args.port, address=args.address, config=Config(namespace=args.namespace)))
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
