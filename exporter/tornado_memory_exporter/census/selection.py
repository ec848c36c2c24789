"""Which types get their own ``<ns>_objects{type}`` series: a bounded, churn-free set."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from itertools import repeat
from operator import itemgetter, sub

_COUNT = itemgetter(1)

OTHER = "other"
"""Label value of every type not exported on its own: the sum over types is the total."""


class TypeSelector:
    """Choose the exported types of each census.

    A type is exported when it is among the ``top_n`` largest (by count, and by bytes when the
    census measured them), among the ``growth_n`` that grew most since the baseline (the
    first census; new types count from zero, so a small type that grows steadily is visible
    long before it is large), or in ``allowlist``. Once exported it
    stays exported for ``hold`` seconds after it last qualified, with its current count (0 when
    it is gone), so that series do not flap in and out around the cut. Everything else is
    summed into ``type="other"``.

    Bound on the label set: ``2 * top_n + growth_n + len(allowlist) + 1`` for one census, and
    at most ``(2 * top_n + growth_n) * (hold / interval + 1) + len(allowlist) + 1`` while held
    types age out (``top_n`` once where no bytes are measured).

    Each ``basis`` (the census mode: a forked census also counts untracked objects) keeps its
    own baseline, so a census that falls back to the other mode never reads as growth.
    """

    def __init__(
        self,
        *,
        top_n: int,
        growth_n: int,
        allowlist: Iterable[str] = (),
        hold: float,
    ) -> None:
        self.top_n = top_n
        self.growth_n = growth_n
        self.allowlist = tuple(allowlist)
        self.hold = hold
        self._baselines: dict[str, dict[str, int]] = {}
        self._basis = "inloop"
        self._held_until: dict[str, float] = {}
        self.grown: tuple[str, ...] = ()
        """The types selected for their growth by the last :meth:`select` (their holders are
        looked for by the next forked census)."""

    @property
    def baseline(self) -> dict[str, int] | None:
        """Counts of the first census of the latest basis (what growth is measured from)."""
        return self._baselines.get(self._basis)

    def select(
        self,
        counts: Mapping[str, int],
        now: float,
        *,
        sizes: Mapping[str, int] | None = None,
        basis: str = "inloop",
    ) -> dict[str, int]:
        """Exported ``{type: count}`` for ``counts``, including ``OTHER``; ``now`` in seconds.
        ``sizes`` (bytes by type) adds the ``top_n`` largest by bytes; :func:`project` gives
        their exported values on the same label set."""
        self._basis = basis
        baseline = self._baselines.setdefault(basis, dict(counts))
        # C-level iteration only (map/zip/itemgetter): with 10,000 distinct types a
        # per-name Python loop would alone take longer than one census slice.
        qualified = {name for name, _ in heapq.nlargest(self.top_n, counts.items(), key=_COUNT)}
        if sizes is not None:
            qualified.update(
                name for name, _ in heapq.nlargest(self.top_n, sizes.items(), key=_COUNT)
            )
        if self.growth_n:
            deltas = map(sub, counts.values(), map(baseline.get, counts, repeat(0)))
            growth = zip(counts, deltas, strict=True)
            grown = heapq.nlargest(self.growth_n, growth, key=_COUNT)
            self.grown = tuple(name for name, delta in grown if delta > 0)
            qualified.update(self.grown)
        until = now + self.hold
        for name in qualified:
            self._held_until[name] = until
        for name, deadline in list(self._held_until.items()):
            if deadline < now:
                del self._held_until[name]
        exported = {name: counts.get(name, 0) for name in self._held_until}
        for name in self.allowlist:
            exported[name] = counts.get(name, 0)
        exported.pop(OTHER, None)
        total = sum(counts.values())
        exported[OTHER] = total - sum(exported.values())
        return exported

    def reset_baseline(self) -> None:
        """Measure growth from the next census on."""
        self._baselines.clear()


def project(values: Mapping[str, int], exported: Mapping[str, int]) -> dict[str, int]:
    """``values`` (bytes by type) on the label set of ``exported``, with ``OTHER`` the rest,
    so that the sum over types is the total for them too."""
    out = {name: values.get(name, 0) for name in exported if name != OTHER}
    out[OTHER] = sum(values.values()) - sum(out.values())
    return out
