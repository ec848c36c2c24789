"""The memory a process may use before it is killed: its cgroup limit, else the host's memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil


class MemoryLimit:
    """Reads the tightest cgroup memory limit of this process (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``) along its cgroup path up to the mount root; falls back to the
    host's total memory when there is none.

    A limit read is kept for ``ttl`` seconds: limits change when an operator reconfigures the
    container, not between scrapes, and reading one (a few cgroup files and /proc/meminfo) cost
    a third of a scrape's own work (bench/scrape.py). Failures are not kept: each read retries.

    ``root`` lets tests point it at a fixture tree laid out like ``/``.
    """

    def __init__(
        self,
        *,
        root: str | Path = "/",
        host_total: Callable[[], int] = lambda: psutil.virtual_memory().total,
        host_available: Callable[[], int] = lambda: psutil.virtual_memory().available,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root = Path(root)
        self._host_total = host_total
        self._host_available = host_available
        self._ttl = ttl
        self._clock = clock
        self._kept: tuple[float, int] | None = None  # (expires at, limit)

    def bytes(self) -> int:
        """The limit in bytes; a cgroup limit above the host's memory counts as no limit."""
        now = self._clock()
        if self._kept is not None and now < self._kept[0]:
            return self._kept[1]
        limit = self._read()
        self._kept = (now + self._ttl, limit)
        return limit

    def available(self) -> int:
        """Bytes this process could still allocate before a limit bites: the least of the
        host's available memory and, for each cgroup along its path with a limit, that limit
        minus the cgroup's current usage. Read afresh each time (before a fork, not per scrape)."""
        room = [self._host_available()]
        for limit, usage in self._cgroup_limits(with_usage=True):
            if usage is not None:
                room.append(max(0, limit - usage))
        return min(room)

    def _read(self) -> int:
        host = self._host_total()
        limits = [limit for limit, _ in self._cgroup_limits() if limit < host]
        return min(limits, default=host)

    def _cgroup_limits(self, *, with_usage: bool = False) -> list[tuple[int, int | None]]:
        """(limit, current usage or ``None``) of each cgroup along the path that has a limit."""
        try:
            lines = (self._root / "proc/self/cgroup").read_text().splitlines()
        except OSError:
            return []
        cgroup_fs = self._root / "sys/fs/cgroup"
        limits: list[tuple[int, int | None]] = []
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # cgroup v2 unified hierarchy
                mount, files = _v2_mount(cgroup_fs), ("memory.max", "memory.current")
            elif "memory" in controllers.split(","):
                mount, files = (
                    cgroup_fs / "memory",
                    ("memory.limit_in_bytes", "memory.usage_in_bytes"),
                )
            else:
                continue
            limits.extend(_limits_along(mount, path, files[0], files[1] if with_usage else None))
        return limits


def _v2_mount(cgroup_fs: Path) -> Path:
    # Hybrid hosts mount the v2 hierarchy at /sys/fs/cgroup/unified.
    unified = cgroup_fs / "unified"
    return unified if (unified / "cgroup.controllers").exists() else cgroup_fs


def _limits_along(
    mount: Path, cgroup_path: str, filename: str, usage_file: str | None = None
) -> list[tuple[int, int | None]]:
    """Limits in the process's cgroup and each ancestor; in a cgroup namespace the mount root
    is the process's own cgroup, so the root is always read too."""
    parts = [p for p in cgroup_path.split("/") if p]
    candidates = [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    limits = []
    for directory in candidates:
        try:
            text = (directory / filename).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (v2) means unlimited
            limits.append((int(text), _read_int(directory / usage_file) if usage_file else None))
    return limits


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
