"""Open Tornado IOStreams and the bytes they hold: ``<ns>_iostreams_open`` and the buffer gauges.

A push server writing to a client that stops reading queues the data in that connection's
``IOStream`` write buffer, without bound unless ``max_write_buffer_size`` is set. Tornado keeps
no registry of streams, so the heap census counts them: ``BaseIOStream`` instances are among the
gc-tracked objects it enumerates anyway, and each costs a few dict lookups.

Bytes queued are ``_total_write_index - _total_write_done_index`` (two ints every stream keeps
from tornado 6.4.2 through 6.6; ``_write_buffer`` itself is dropped on close), bytes read but
not consumed are ``_read_buffer_size``. Closed streams hold no write buffer and are not counted.
:func:`add_stream` is pure (see ``handler_states``: instance dicts read through the base
class's own descriptor, no user code, no loop): a forked child can run it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import tornado.iostream

from .handler_states import handler_classes, stream_dict


@dataclass
class StreamTally:
    """Open streams and their buffers, summed over one census."""

    open: int = 0
    write_buffer_bytes: int = 0
    """Bytes queued to be written, summed over open streams."""
    write_buffer_max_bytes: int = 0
    """The largest single stream's queue."""
    read_buffer_bytes: int = 0
    """Bytes read from sockets and not yet consumed, summed over open streams."""


def stream_classes() -> frozenset[type]:
    """``BaseIOStream`` and its live subclasses (``IOStream``, ``SSLIOStream``...)."""
    return frozenset(handler_classes(tornado.iostream.BaseIOStream))


def _count(value: object) -> int:
    return value if type(value) is int and value > 0 else 0


def add_stream(tally: StreamTally, stream: object) -> None:
    """Add ``stream`` to ``tally`` if it is an open ``BaseIOStream``."""
    state = stream_dict(stream)
    if state.get("_closed", True):
        return
    queued = _count(state.get("_total_write_index")) - _count(state.get("_total_write_done_index"))
    queued = max(queued, 0)
    tally.open += 1
    tally.write_buffer_bytes += queued
    tally.write_buffer_max_bytes = max(tally.write_buffer_max_bytes, queued)
    tally.read_buffer_bytes += _count(state.get("_read_buffer_size"))
