"""``PoolSnapshot``: the one reading every registered pool answers (the pool-like protocol)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..buckets import BucketCounts


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One consistent reading of a pool.

    ``capacity``, ``in_use``, ``idle`` and ``waiting`` are required; a field left ``None`` is
    not exported for that pool. ``capacity`` may be ``math.inf`` (unbounded overflow). A
    pool-like object answers ``pool_snapshot()`` with one of these, or with a mapping of the
    same keys::

        def pool_snapshot(self):
            return {"capacity": self.size, "in_use": len(self.busy), "idle": len(self.free),
                    "waiting": len(self.waiters)}
    """

    capacity: float
    in_use: int
    idle: int
    waiting: int
    acquires: int | None = None
    created: int | None = None
    discarded: int | None = None
    timeouts: int | None = None
    leaked: int | None = None
    oldest_checkout_seconds: float | None = None
    wait: BucketCounts | None = None
    """How long acquirers waited for an object, in seconds."""
    hold: BucketCounts | None = None
    """How long each checkout was held, in seconds, observed when it was given back."""


FIELDS = frozenset(f.name for f in fields(PoolSnapshot))
REQUIRED = ("capacity", "in_use", "idle", "waiting")
HISTOGRAMS = frozenset({"wait", "hold"})


def as_snapshot(name: str, value: Any) -> PoolSnapshot:
    """Check a pool-like object's answer; ``ValueError`` naming what is wrong with it."""
    if isinstance(value, Mapping):
        missing = [k for k in REQUIRED if k not in value]
        unknown = sorted(set(value) - FIELDS)
        if missing or unknown:
            raise ValueError(
                f"pool {name!r}: pool_snapshot() mapping lacks {missing} / "
                f"has unknown keys {unknown}"
            )
        value = PoolSnapshot(**value)
    if not isinstance(value, PoolSnapshot):
        raise ValueError(f"pool {name!r}: pool_snapshot() returned {value!r}, not a PoolSnapshot")
    for key in FIELDS - HISTOGRAMS:
        number = getattr(value, key)
        if number is None and key not in REQUIRED:
            continue
        if (
            not isinstance(number, (int, float))
            or isinstance(number, bool)
            or math.isnan(number)
            or number < 0
        ):
            raise ValueError(f"pool {name!r}: pool_snapshot() gave {key}={number!r}")
    for key in HISTOGRAMS:
        histogram = getattr(value, key)
        if histogram is not None and not isinstance(histogram, BucketCounts):
            raise ValueError(
                f"pool {name!r}: pool_snapshot() gave {key}={histogram!r}, not BucketCounts"
            )
    return value
