"""exporter.pools: registration rules, the <ns>_pool_* families, and pool-like objects that raise,
lie or hang without breaking a scrape."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from realbin import require_binary

from tornado_memory_exporter import Config, ObjectPool
from tornado_memory_exporter.buckets import BucketCounts
from tornado_memory_exporter.faults import Faults, FaultsCollector, GuardedCollector
from tornado_memory_exporter.pools import PoolSnapshot
from tornado_memory_exporter.pools.registry import PoolRegistry


class Obj:
    pass


class PoolLike:
    """A third-party pool answering the protocol with whatever it is given."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.calls = 0
        self.release = threading.Event()
        self.hang = False

    def pool_snapshot(self):
        self.calls += 1
        if self.hang:
            self.release.wait(10)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def pools(registry: CollectorRegistry, faults: Faults) -> PoolRegistry:
    pools = PoolRegistry("tornado", faults, limit=3, snapshot_timeout=0.2)
    registry.register(GuardedCollector("pools", pools, faults))
    registry.register(FaultsCollector("tornado", faults))
    return pools


def sample(registry: CollectorRegistry, name: str, pool: str, **labels: str):
    return registry.get_sample_value(f"tornado_{name}", {"pool": pool, **labels})


def errors(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("tornado_exporter_errors_total", {"collector": "pools"})


def scrape(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """One scrape: {(sample name, pool or collector label): value}."""
    return {
        (s.name, s.labels.get("pool", s.labels.get("collector", ""))): s.value
        for family in registry.collect()
        for s in family.samples
        if "le" not in s.labels
    }


def test_an_object_pool_exports_every_family(pools, registry):
    pool = pools.register("db", ObjectPool(Obj, 4, name="db", buckets=(0.5,)))
    held = [pool.get_sync(), pool.get_sync()]
    pool.put(held.pop())
    values = {
        name: sample(registry, name, "db")
        for name in (
            "pool_capacity",
            "pool_in_use",
            "pool_idle",
            "pool_waiting",
            "pool_acquires_total",
            "pool_created_total",
            "pool_discarded_total",
            "pool_timeouts_total",
            "pool_leaked_total",
            "pool_acquire_wait_seconds_count",
            "pool_hold_seconds_count",
        )
    }
    assert values == {
        "pool_capacity": 4,
        "pool_in_use": 1,
        "pool_idle": 1,
        "pool_waiting": 0,
        "pool_acquires_total": 2,
        "pool_created_total": 2,
        "pool_discarded_total": 0,
        "pool_timeouts_total": 0,
        "pool_leaked_total": 0,
        "pool_acquire_wait_seconds_count": 2,
        "pool_hold_seconds_count": 1,
    }
    assert sample(registry, "pool_acquire_wait_seconds_bucket", "db", le="0.5") == 2
    assert 0 <= sample(registry, "pool_oldest_checkout_seconds", "db") < 60
    assert errors(registry) == 0


def test_a_checkout_held_0_2_s_is_served_in_the_0_25_s_bucket(pools, registry):
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    pool = pools.register("db", ObjectPool(Obj, 2, name="db", clock=clock))
    with pool.acquire_sync():
        clock.now += 0.2
    buckets = {
        le: sample(registry, "pool_hold_seconds_bucket", "db", le=le)
        for le in ("0.1", "0.25", "0.5", "+Inf")
    }
    assert buckets == {"0.1": 0, "0.25": 1, "0.5": 1, "+Inf": 1}
    assert sample(registry, "pool_hold_seconds_sum", "db") == 0.2
    assert sample(registry, "pool_hold_seconds_count", "db") == 1


def test_a_pool_like_may_give_a_hold_histogram(pools, registry):
    hold = BucketCounts((1.0,))
    hold.observe(0.5)
    pools.register(
        "ext", PoolLike({"capacity": 1, "in_use": 0, "idle": 1, "waiting": 0, "hold": hold})
    )
    assert sample(registry, "pool_hold_seconds_bucket", "ext", le="1.0") == 1
    assert sample(registry, "pool_hold_seconds_sum", "ext") == 0.5


def test_names_are_checked_and_the_number_of_pools_is_bounded(pools):
    for bad in ("", 7, "x" * 101):
        with pytest.raises(ValueError, match=r"name=.* must be a non-empty string of at most 100"):
            pools.register(bad, ObjectPool(Obj, name="p"))
    pools.register("a", ObjectPool(Obj, name="a"))
    with pytest.raises(ValueError, match="name='a' is already registered; unregister it first"):
        pools.register("a", ObjectPool(Obj, name="a"))
    pools.register("b", ObjectPool(Obj, name="b"))
    pools.register("c", ObjectPool(Obj, name="c"))
    with pytest.raises(ValueError, match=r"cannot register pool 'd': the limit of 3 pools is"):
        pools.register("d", ObjectPool(Obj, name="d"))
    pools.unregister("b")
    pools.register("d", ObjectPool(Obj, name="d"))
    assert pools.names == ["a", "c", "d"]
    assert len(pools) == 3 and "d" in pools and "b" not in pools


def test_an_unknown_target_is_refused_naming_it(pools):
    with pytest.raises(ValueError, match=r"target=\[1, 2\] for pool 'x' is not an ObjectPool"):
        pools.register("x", [1, 2])
    assert len(pools) == 0


def test_a_pool_like_mapping_exports_what_it_gives(pools, registry):
    pools.register(
        "ext", PoolLike({"capacity": 8, "in_use": 5, "idle": 3, "waiting": 2, "timeouts": 7})
    )
    assert [
        sample(registry, n, "ext")
        for n in (
            "pool_capacity",
            "pool_in_use",
            "pool_idle",
            "pool_waiting",
            "pool_timeouts_total",
        )
    ] == [8, 5, 3, 2, 7]
    # fields it does not give are omitted, not invented
    assert sample(registry, "pool_acquires_total", "ext") is None
    assert sample(registry, "pool_acquire_wait_seconds_count", "ext") is None
    assert errors(registry) == 0


def test_a_pool_like_snapshot_object_and_unbounded_capacity(pools, registry):
    snapshot = PoolSnapshot(capacity=float("inf"), in_use=1, idle=0, waiting=0)
    pools.register("ext", PoolLike(snapshot))
    assert sample(registry, "pool_capacity", "ext") == float("inf")


@pytest.mark.parametrize(
    "answer",
    [
        RuntimeError("pool is closed"),
        {"capacity": 1, "in_use": 1},  # missing fields
        {"capacity": 1, "in_use": 1, "idle": 0, "waiting": 0, "borrowed": 1},  # unknown field
        {"capacity": 1, "in_use": -1, "idle": 0, "waiting": 0},
        {"capacity": float("nan"), "in_use": 1, "idle": 0, "waiting": 0},
        {"capacity": True, "in_use": 1, "idle": 0, "waiting": 0},
        {"capacity": 1, "in_use": 1, "idle": 0, "waiting": 0, "hold": [1, 2]},
        "not a snapshot",
    ],
)
def test_a_failing_or_lying_pool_like_costs_only_its_own_series(pools, registry, answer):
    pools.register("good", ObjectPool(Obj, 2, name="good"))
    pools.register("bad", PoolLike(answer))
    samples = scrape(registry)
    assert samples[("tornado_pool_capacity", "good")] == 2
    assert [key for key in samples if key[1] == "bad"] == []
    assert samples[("tornado_exporter_errors_total", "pools")] == 1


def test_a_hanging_pool_like_is_abandoned_at_the_deadline_and_not_called_again(pools, registry):
    stuck = PoolLike({"capacity": 3, "in_use": 1, "idle": 2, "waiting": 0})
    stuck.hang = True
    pools.register("stuck", stuck)
    pools.register("good", ObjectPool(Obj, 2, name="good"))
    started = time.monotonic()
    text = generate_latest(registry).decode()
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.0, elapsed
    assert 'tornado_pool_capacity{pool="good"} 2.0' in text
    assert 'pool="stuck"' not in text
    assert 'tornado_exporter_errors_total{collector="pools"} 1.0' in text
    generate_latest(registry)  # still hung: counted again, no second thread
    assert stuck.calls == 1
    assert errors(registry) == 3  # this read is a (third) scrape too
    stuck.release.set()
    deadline = time.monotonic() + 5
    while sample(registry, "pool_capacity", "stuck") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sample(registry, "pool_capacity", "stuck") == 3


@pytest.mark.integration
def test_installed_exporter_serves_pools_and_passes_promtool(tmp_path):
    from appserver import AppServer

    with AppServer(config=Config(census_interval=0)) as server:
        pool = server.exporter.pools.register("objects", ObjectPool(Obj, 2, name="objects"))
        held = pool.get_sync()
        text = server.scrape()
        assert 'tornado_pool_in_use{pool="objects"} 1.0' in text
        assert 'tornado_pool_capacity{pool="objects"} 2.0' in text
        assert 'tornado_exporter_errors_total{collector="pools"} 0.0' in text
        assert 'tornado_pool_hold_seconds_count{pool="objects"} 0.0' in text
        pool.put(held)
        assert 'tornado_pool_hold_seconds_count{pool="objects"} 1.0' in server.scrape()
        promtool = require_binary("promtool")
        result = subprocess.run(
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        pool_findings = [
            line for line in (result.stdout + result.stderr).splitlines() if "pool" in line
        ]
        assert pool_findings == []
        exporter = server.exporter
    assert len(exporter.pools) == 0  # stop() unregistered every pool


def test_concurrent_scrapes_of_a_slow_pool_like_all_get_its_series(pools, registry):
    class Slow(PoolLike):
        def pool_snapshot(self):
            time.sleep(0.01)
            return super().pool_snapshot()

    pools.register("slow", Slow({"capacity": 4, "in_use": 1, "idle": 3, "waiting": 0}))
    seen: list[float | None] = []

    def scrape_some() -> None:
        for _ in range(5):
            seen.append(scrape(registry).get(("tornado_pool_capacity", "slow")))

    threads = [threading.Thread(target=scrape_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == [4] * 20
    assert errors(registry) == 0
