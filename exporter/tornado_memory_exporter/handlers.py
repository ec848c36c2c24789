"""``<ns>_handlers_alive{handler,state}``: live Tornado ``RequestHandler`` instances by class.

A handler normally dies right after its request finishes. ``state="finished"`` instances that
stay alive and grow are a classic Tornado leak (a handler kept in a global list, a closure
registered as a callback, a reference cycle that has not been collected yet). The counts come
from the heap census (``census.py``), which checks ``_finished`` only on handler instances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import tornado.web
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .census import CensusSnapshot

ACTIVE = "active"
FINISHED = "finished"


def handler_classes(base: type = tornado.web.RequestHandler) -> set[type]:
    """``base`` and every class derived from it that is alive now (``__subclasses__``, so
    classes the application dropped are not kept alive)."""
    found = {base}
    pending = [base]
    while pending:
        for sub in type.__subclasses__(pending.pop()):
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


class HandlersCollector(Collector):
    """Reads the handler counts of the latest census snapshot (``snapshot()`` returns it, or
    ``None`` before the first census). Both states are exported for every class that has a live
    instance, so a ``finished`` series exists at 0 before it starts to grow."""

    def __init__(self, namespace: str, snapshot: Callable[[], CensusSnapshot | None]) -> None:
        self._name = f"{namespace}_handlers_alive"
        self._snapshot = snapshot

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self._name,
            "Live RequestHandler instances by class and state (active|finished) at the last heap "
            "census; finished handlers that stay alive are leaking.",
            labels=["handler", "state"],
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        snapshot = self._snapshot()
        if snapshot is not None:
            for handler in sorted({name for name, _ in snapshot.handlers}):
                for state in (ACTIVE, FINISHED):
                    family.add_metric([handler, state], snapshot.handlers.get((handler, state), 0))
        yield family
