"""``python -m tornado_memory_exporter generate [--config FILE] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import TextIO

from .config import MixinConfig
from .write import write_all

EXAMPLE = """example config (TOML; keys are MixinConfig fields):
  selector = 'job="shop"'
  runbook_url = "https://git.example.com/ops/runbooks/tornado.md"
  trend_window = "12h"
"""


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register the ``generate`` subcommand."""
    generate = commands.add_parser(
        "generate",
        help="write alert rules, PrometheusRule, promtool tests and Grafana dashboards",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument(
        "--config", type=Path, help="TOML file of MixinConfig options (default: defaults)"
    )
    generate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory to write alerts/ (rules, tests, RUNBOOK.md) and dashboards/ into "
        "(default: the current directory)",
    )
    # A bad config is this subcommand's error: its usage, not the top-level one, goes with it.
    generate.set_defaults(generate_parser=generate)


def load_config(path: Path | None) -> MixinConfig:
    """The config in ``path`` (TOML), or the defaults; ``ValueError`` names what is wrong."""
    if path is None:
        return MixinConfig()
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"--config {str(path)!r}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"--config {str(path)!r} is not valid TOML: {error}") from None
    try:
        return MixinConfig.from_mapping(values)
    except ValueError as error:
        raise ValueError(f"--config {str(path)!r}: {error}") from None


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO = sys.stdout) -> int:
    """Write every artifact; a bad config exits 2 with the message and ``generate``'s usage,
    like any bad argument."""
    parser = getattr(args, "generate_parser", parser)
    try:
        config = load_config(args.config)
    except ValueError as error:
        parser.error(str(error))
    target = args.out
    if target is None:
        target = Path(".")
        print(f"no --out given: writing into the current directory, {Path.cwd()}", file=sys.stderr)
    out.writelines(f"wrote {path}\n" for path in write_all(config, target))
    return 0
