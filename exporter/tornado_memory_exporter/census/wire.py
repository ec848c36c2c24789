"""The forked child's answer on the pipe: one ``marshal`` blob behind a magic and a version.

``marshal`` (a builtin, already loaded: the child imports nothing) writes the dicts, tuples,
strings and numbers the child produces in one C call and reads them back in one; the parent
checks the header and the shape before using anything, so a child that died half-way or wrote
garbage is a counted failure, never a crash.
"""

from __future__ import annotations

import marshal
from typing import Any

MAGIC = b"TMEC"
VERSION = 2
"""2: the census answer is a tuple of ``child.ChildCensus`` fields (1: a dict)."""
_HEADER = MAGIC + bytes([VERSION])
OK = "ok"
ERROR = "error"


def encode(kind: str, value: Any) -> bytes:
    """``value`` (marshal-able: dict, list, tuple, str, int, float, bool, None) as wire bytes."""
    return _HEADER + marshal.dumps((kind, value))


def decode(data: bytes) -> tuple[str, Any]:
    """``(kind, value)`` of :func:`encode` bytes; ``ValueError`` for anything else (a child
    killed mid-write, a foreign writer)."""
    if not data.startswith(_HEADER):
        raise ValueError(f"not a census answer ({len(data)} bytes, header {data[:5]!r})")
    try:
        kind, value = marshal.loads(data[len(_HEADER) :])
    except (EOFError, ValueError, TypeError) as error:
        raise ValueError(f"truncated census answer ({len(data)} bytes): {error}") from None
    if kind not in (OK, ERROR):
        raise ValueError(f"unknown census answer kind {kind!r}")
    return kind, value
