"""The latest heap censuses, kept in a small ring buffer for the explorer's growth tables."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..census.selection import OTHER

if TYPE_CHECKING:
    from ..census.snapshot import CensusSnapshot

KEPT = 30
"""Censuses kept: at the default 60 s interval, the last half hour (a few KiB each)."""
MAX_TYPES = 100
"""Rows of the types table; the census's exported set is already bounded, this bounds the page."""


class CensusHistory:
    """Ring buffer of the last ``kept`` census snapshots, fed with :meth:`observe`.

    Snapshots are immutable and hold only names and counts, never the counted objects, so
    keeping them costs the explorer a few KiB per census.
    """

    def __init__(self, kept: int = KEPT) -> None:
        self._snapshots: deque[CensusSnapshot] = deque(maxlen=kept)

    def observe(self, snapshot: CensusSnapshot | None) -> bool:
        """Keep ``snapshot`` unless it is ``None`` or already the newest; returns whether kept."""
        if snapshot is None or (self._snapshots and self._snapshots[-1] is snapshot):
            return False
        self._snapshots.append(snapshot)
        return True

    def __len__(self) -> int:
        return len(self._snapshots)

    def counts(self, name: str) -> list[int | None]:
        """Count of type ``name`` in each kept census, oldest first (``None``: not exported)."""
        return [snap.objects.get(name) for snap in self._snapshots]

    def types(
        self, baseline: Mapping[str, int] | None, limit: int = MAX_TYPES
    ) -> list[dict[str, Any]]:
        """Rows for every type exported by any kept census, fastest-growing first.

        ``growth`` is measured from ``baseline`` (the census selector's first census; when
        ``None``, from the oldest kept census), ``last_growth`` from the previous census;
        ``holder`` is the latest census's ``<ns>_object_holder_info`` label (``None``: none).
        """
        snaps = list(self._snapshots)
        if not snaps:
            return []
        names = {name for snap in snaps for name in snap.objects if name != OTHER}
        latest, previous = snaps[-1].objects, snaps[-2].objects if len(snaps) > 1 else None
        holders = snaps[-1].holders
        rows = []
        for name in names:
            count = latest.get(name, 0)
            start = (
                baseline.get(name, 0) if baseline is not None else (snaps[0].objects.get(name) or 0)
            )
            rows.append(
                {
                    "type": name,
                    "count": count,
                    "growth": count - start,
                    "last_growth": None
                    if previous is None or name not in previous
                    else count - previous[name],
                    "counts": [snap.objects.get(name) for snap in snaps],
                    "holder": holders.get(name),
                }
            )
        rows.sort(key=lambda row: (-row["growth"], -row["count"], row["type"]))
        return rows[:limit]

    def censuses(self) -> list[dict[str, Any]]:
        """One summary per kept census, oldest first."""
        return [
            {
                "finished_at": snap.finished_at,
                "scanned": snap.scanned,
                "tracked": snap.tracked,
                "distinct_types": snap.distinct_types,
                "duration_seconds": snap.duration,
                "max_stall_seconds": snap.max_stall,
            }
            for snap in self._snapshots
        ]

    def handlers(self) -> list[dict[str, Any]]:
        """Live ``RequestHandler`` instances at the latest census, most numerous first."""
        if not self._snapshots:
            return []
        latest = self._snapshots[-1]
        rows = [
            {"handler": h, "state": state, "count": n, "holder": latest.holders.get(h)}
            for (h, state), n in latest.handlers.items()
        ]
        rows.sort(key=lambda row: (-row["count"], row["handler"], row["state"]))
        return rows
