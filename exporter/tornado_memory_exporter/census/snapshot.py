"""The published result of one heap census: what scrapes (and the explorer) read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .streams import StreamTally


@dataclass(frozen=True)
class CensusSnapshot:
    """One finished census, as scrapes see it."""

    objects: Mapping[str, int]
    """Exported ``{type: count}``, including ``"other"``; sums to ``scanned``."""
    handlers: Mapping[tuple[str, str], int]
    """Live ``RequestHandler`` instances by ``(handler class name, state)``: ``"active"|"finished"``
    for HTTP handlers, ``"open"|"closed"`` for WebSocket handlers; only states with instances."""
    tracked: int
    """Length of ``gc.get_objects()`` (every gc-tracked object, the census's own included)."""
    scanned: int
    """Objects counted: ``tracked`` minus the census's own working objects."""
    distinct_types: int
    duration: float
    """Seconds from the start of the enumeration to the publication."""
    max_stall: float
    """Longest time one slice held the loop, the enumeration included."""
    finished_at: float
    """Wall-clock time (``time.time()``) of the publication."""
    streams: StreamTally = field(default_factory=StreamTally)
    """Open IOStreams and their buffers."""
