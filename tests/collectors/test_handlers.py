"""``HandlersCollector``: both states of each class's kind, from a snapshot handed in."""

from prometheus_client import CollectorRegistry

from tornado_memory_exporter.census.snapshot import CensusSnapshot
from tornado_memory_exporter.collectors.handlers import HandlersCollector


def snapshot(handlers: dict[tuple[str, str], int], reachability: bool = False) -> CensusSnapshot:
    return CensusSnapshot(
        objects={"other": 1},
        handlers=handlers,
        reachability=reachability,
        tracked=1,
        scanned=1,
        distinct_types=1,
        duration=0.1,
        max_stall=0.01,
        finished_at=1.0,
    )


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.labels["handler"], s.labels["state"]): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_http_handlers_get_active_finished_and_websockets_open_closed():
    registry = CollectorRegistry()
    current = snapshot(
        {("app.Report", "finished"): 3, ("app.Chat", "open"): 10, ("app.Feed", "closed"): 2}
    )
    registry.register(HandlersCollector("tornado", lambda: current))
    assert samples(registry) == {
        ("app.Report", "active"): 0,
        ("app.Report", "finished"): 3,
        ("app.Chat", "open"): 10,
        ("app.Chat", "closed"): 0,
        ("app.Feed", "open"): 0,
        ("app.Feed", "closed"): 2,
    }


def test_a_census_that_tells_garbage_apart_adds_the_unreachable_state_to_every_class():
    registry = CollectorRegistry()
    current = snapshot(
        {
            ("app.Report", "finished"): 3,
            ("app.Render", "finished"): 0,  # the child names the kind of a class in cycles only
            ("app.Render", "unreachable"): 12,
            ("app.Chat", "closed"): 2,
        },
        reachability=True,
    )
    registry.register(HandlersCollector("tornado", lambda: current))
    assert samples(registry) == {
        ("app.Report", "active"): 0,
        ("app.Report", "finished"): 3,
        ("app.Report", "unreachable"): 0,
        ("app.Render", "active"): 0,
        ("app.Render", "finished"): 0,
        ("app.Render", "unreachable"): 12,
        ("app.Chat", "open"): 0,
        ("app.Chat", "closed"): 2,
        ("app.Chat", "unreachable"): 0,
    }


def test_nothing_before_the_first_census():
    registry = CollectorRegistry()
    registry.register(HandlersCollector("tornado", lambda: None))
    assert samples(registry) == {}
