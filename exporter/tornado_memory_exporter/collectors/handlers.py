"""``<ns>_handlers_alive{handler,state}``: live Tornado ``RequestHandler`` instances by class,
read from the latest census snapshot (the states are counted by ``census.handler_states``):
``active|finished`` for HTTP handlers, ``open|closed`` for WebSocket handlers, and, when the
census told reachable objects from garbage, ``unreachable`` for either."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..census.handler_states import UNREACHABLE, states_of
from ..census.snapshot import CensusSnapshot


class HandlersCollector(Collector):
    """Reads the handler counts of the latest census snapshot (``snapshot()`` returns it, or
    ``None`` before the first census). Both states of its kind are exported for every class that
    has a live instance, so a ``finished`` (or ``closed``) series exists at 0 before it grows."""

    def __init__(self, namespace: str, snapshot: Callable[[], CensusSnapshot | None]) -> None:
        self._name = f"{namespace}_handlers_alive"
        self._snapshot = snapshot

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self._name,
            "Live RequestHandler instances by class and state at the last heap census: "
            "active|finished for HTTP handlers, open|closed for WebSocket handlers, unreachable "
            "for either in a reference cycle waiting for the collector (forked census only; "
            "finished and closed then count reachable handlers only); finished and closed "
            "handlers that stay alive and grow are leaking.",
            labels=["handler", "state"],
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        snapshot = self._snapshot()
        if snapshot is not None:
            extra = (UNREACHABLE,) if snapshot.reachability else ()
            kinds = {
                name: states_of(state) for name, state in snapshot.handlers if state != UNREACHABLE
            }
            for name, _ in snapshot.handlers:
                kinds.setdefault(name, ())  # only unreachable instances: the kind is unknown
            for handler, states in sorted(kinds.items()):
                for state in states + extra:
                    family.add_metric([handler, state], snapshot.handlers.get((handler, state), 0))
        yield family
