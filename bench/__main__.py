"""``python -m bench [name ...]``: run every bench module in ``bench/`` (or the named ones).

Each runs as ``python -m bench.<name>`` in an interpreter of its own, so that one bench's heap,
gc hooks and threads never skew the next. Exit status: 0 when all of them exited 0.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the bench modules present (``bench/<name>.py``, private ones excluded)."""
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    known = available()
    if any(name.startswith("-") for name in names) or not set(names) <= set(known):
        print(f"usage: python -m bench [name ...]; names: {' '.join(known)}", file=sys.stderr)
        return 2
    failed = []
    for name in names or known:
        print(f"==> python -m bench.{name}", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
