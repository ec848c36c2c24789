"""The published result of one heap census: what scrapes (and the explorer) read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .streams import StreamTally


@dataclass(frozen=True, kw_only=True)
class CensusSnapshot:
    """One finished census, as scrapes see it."""

    objects: Mapping[str, int]
    """Exported ``{type: count}``, including ``"other"``; sums to ``scanned``."""
    sizes: Mapping[str, int] | None = None
    """Exported ``{type: shallow bytes}`` on the label set of ``objects`` (fork mode only)."""
    reachability: bool = False
    """Whether reachable objects were told from garbage (fork mode): then ``objects`` and
    ``sizes`` count reachable objects only, and ``unreachable`` the garbage."""
    unreachable: Mapping[str, int] | None = None
    """Exported ``{type: count}`` of cyclic garbage waiting for the collector, with ``"other"``."""
    unreachable_sizes: Mapping[str, int] | None = None
    """Exported ``{type: shallow bytes}`` of that garbage, on the label set of ``unreachable``."""
    handlers: Mapping[tuple[str, str], int]
    """Live ``RequestHandler`` instances by ``(handler class name, state)``: ``"active"|"finished"``
    for HTTP handlers, ``"open"|"closed"`` for WebSocket handlers, ``"unreachable"`` for either
    kind in a reference cycle (fork mode); only states with instances."""
    timers: Mapping[str, int] = field(default_factory=dict)
    """Exported ``{callback: scheduled timers}`` on the census's loop, with ``"other"``."""
    holders: Mapping[str, str] = field(default_factory=dict)
    """``{type: holder label}`` (``census.holders``) for the growing types and the handler
    classes with reachable finished or closed instances (fork mode)."""
    tracked: int = 0
    """Length of ``gc.get_objects()`` (every gc-tracked object, the census's own included)."""
    scanned: int = 0
    """Objects counted: ``tracked`` (plus, forked, ``untracked``) minus the census's own."""
    distinct_types: int = 0
    duration: float = 0.0
    """Seconds from the start of the enumeration (or the fork) to the publication."""
    max_stall: float = 0.0
    """Longest time one slice held the loop: the enumeration, or the fork, included."""
    finished_at: float = 0.0
    """Wall-clock time (``time.time()``) of the publication."""
    streams: StreamTally = field(default_factory=StreamTally)
    """Open IOStreams and their buffers."""
    mode: str = "inloop"
    """Where the census ran: ``"inloop"`` or ``"fork"``."""
    own: int = 0
    """Tracked objects taken out as the census's own: ``tracked + untracked`` is ``scanned +
    own`` plus, forked, the unreachable total."""
    untracked: int | None = None
    """Objects not tracked by gc that the forked census reached and counted."""
    pymalloc: Mapping[str, int] | None = field(default=None)
    """pymalloc's arenas, pools and blocks at the fork (``child.parse_pymalloc``)."""
    child_seconds: float | None = None
    """Wall time of the census in the child."""
    child_private_bytes: int | None = None
    """The child's private memory at the end of its count (pages copied on write)."""

    def parts(self) -> list[Any]:
        """The snapshot and the containers it holds (the census's own objects)."""
        out: list[Any] = [self]
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, dict | list | tuple | StreamTally):
                out.append(value)
        return out
