"""Adapters against the real things: Tornado's HTTP clients saturated by a slow real server on
127.0.0.1, a real ThreadPoolExecutor, a real SQLAlchemy engine on SQLite."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
import tornado.web
from appserver import AppServer
from realbin import wait_for
from tornado.httpclient import AsyncHTTPClient

from tornado_memory_exporter import ObjectPool
from tornado_memory_exporter.pools.adapters import adapt

try:
    from tornado.curl_httpclient import CurlAsyncHTTPClient
except ImportError:
    CurlAsyncHTTPClient = None


def wait_until(what: str, probe, timeout: float = 10.0) -> None:
    wait_for(what, probe, timeout=timeout, interval=0.001)


def gauges(snapshot) -> tuple:
    return (snapshot.capacity, snapshot.in_use, snapshot.idle, snapshot.waiting)


class Slow(tornado.web.RequestHandler):
    """Answers only once the test opens the gate: a slow upstream under our control."""

    def initialize(self, gate: asyncio.Event, arrived: list) -> None:
        self.gate, self.arrived = gate, arrived

    async def get(self) -> None:
        self.arrived.append(1)
        await self.gate.wait()
        self.write("done")


class Leaky:
    pass


def add_slow_route(server: AppServer) -> tuple[asyncio.Event, list]:
    """Serve ``/slow`` on ``server``: each request waits for the returned gate to open."""
    arrived: list = []

    async def make_gate() -> asyncio.Event:
        return asyncio.Event()  # created on the app's loop

    gate = server.call(make_gate)
    server.app.add_handlers(r".*", [("/slow", Slow, {"gate": gate, "arrived": arrived})])
    return gate, arrived


def saturate(client_factory, max_clients: int, requests: int) -> None:
    """Fire ``requests`` fetches through a client limited to ``max_clients`` at a slow server and
    check the pool gauges through a real scrape while it is saturated, then after it drains."""
    with AppServer() as server:
        gate, arrived = add_slow_route(server)
        state = {}

        async def start():
            client = client_factory(max_clients)
            state["client"] = client
            server.exporter.pools.register("upstream", client)
            state["fetches"] = [
                asyncio.ensure_future(client.fetch(f"{server.url}/slow", request_timeout=30))
                for _ in range(requests)
            ]
            pool = server.exporter.pools.register("objects", ObjectPool(Leaky, 2, name="objects"))
            await pool.get()  # dropped at once: leaked

        server.call(start)
        wait_until("the server to hold max_clients requests", lambda: len(arrived) == max_clients)
        text = server.scrape()
        assert f'tornado_pool_capacity{{pool="upstream"}} {max_clients:.1f}' in text
        assert f'tornado_pool_in_use{{pool="upstream"}} {max_clients:.1f}' in text
        assert 'tornado_pool_idle{pool="upstream"} 0.0' in text
        assert f'tornado_pool_waiting{{pool="upstream"}} {requests - max_clients:.1f}' in text
        assert 'tornado_pool_leaked_total{pool="objects"} 1.0' in text
        assert 'tornado_pool_in_use{pool="objects"} 0.0' in text

        async def finish():
            gate.set()
            bodies = [r.body for r in await asyncio.gather(*state["fetches"])]
            assert bodies == [b"done"] * requests
            state["client"].close()

        server.call(finish)
        assert len(arrived) == requests
        text = server.scrape()
        assert 'tornado_pool_in_use{pool="upstream"} 0.0' in text
        assert 'tornado_pool_waiting{pool="upstream"} 0.0' in text
        assert f'tornado_pool_hold_seconds_count{{pool="upstream"}} {requests:.1f}' in text
        server.exporter.pools.unregister("upstream")
        assert not {"_handle_request", "_finish"} & set(vars(state["client"]))


def test_simple_http_client_saturation_shows_on_metrics():
    saturate(lambda n: AsyncHTTPClient(force_instance=True, max_clients=n), 2, 5)


def test_simple_http_client_queue_timeouts_are_counted_and_unregister_restores_it():
    # tornadoweb/tornado#2127: requests beyond max_clients wait in the client's queue and fail
    # with "Timeout in request queue"; TornadoPoolExhausted reads exactly this counter.
    with AppServer() as server:
        gate, _ = add_slow_route(server)

        async def scenario():
            client = AsyncHTTPClient(force_instance=True, max_clients=1)
            server.exporter.pools.register("upstream", client)
            first = asyncio.ensure_future(client.fetch(f"{server.url}/slow", request_timeout=30))
            queued = [client.fetch(f"{server.url}/slow", connect_timeout=0.2) for _ in range(3)]
            failures = await asyncio.gather(*queued, return_exceptions=True)
            text = server.registry.get_sample_value
            counts = (
                text("tornado_pool_timeouts_total", {"pool": "upstream"}),
                text("tornado_pool_acquires_total", {"pool": "upstream"}),
            )
            gate.set()
            await first
            server.exporter.pools.unregister("upstream")
            restored = not {"_on_timeout", "fetch_impl", "_handle_request"} & set(vars(client))
            client.close()
            return [str(f) for f in failures], counts, restored

        errors, counts, restored = server.call(scenario)
    assert errors == ["Timeout in request queue"] * 3
    assert counts == (3, 4)
    assert restored


@pytest.mark.skipif(CurlAsyncHTTPClient is None, reason="pycurl is not installed")
def test_curl_http_client_saturation_shows_on_metrics():
    saturate(lambda n: CurlAsyncHTTPClient(force_instance=True, max_clients=n), 3, 7)


def test_thread_pool_executor_busy_workers_and_queue():
    executor = ThreadPoolExecutor(max_workers=2)
    adapter = adapt(executor)
    release = threading.Event()
    try:
        assert gauges(adapter.pool_snapshot()) == (2, 0, 0, 0)
        futures = [executor.submit(release.wait, 10) for _ in range(5)]
        wait_until("two busy workers", lambda: adapter.pool_snapshot().in_use == 2)
        snap = adapter.pool_snapshot()
        assert gauges(snap) == (2, 2, 0, 3)
        assert (snap.acquires, snap.created) == (2, 2)
        release.set()
        assert [f.result(10) for f in futures] == [True] * 5
        snap = adapter.pool_snapshot()
        assert gauges(snap) == (2, 0, 2, 0)
        assert (snap.acquires, snap.created, snap.wait.cumulative()[0][-1]) == (5, 2, ("+Inf", 5))
        assert snap.hold.cumulative()[0][-1] == ("+Inf", 5)  # each task held its worker once
        assert list(executor.map(abs, [-1, -2])) == [1, 2]  # map goes through the wrapper too
        assert adapter.pool_snapshot().acquires == 7
    finally:
        adapter.close()
        executor.shutdown()
    assert "submit" not in vars(executor)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.submit(abs, 1)


def held_about_0_2_s(snapshot) -> tuple:
    """(count in le=0.1, count in le=10, count, sum > 0.1) of a hold histogram: a hold of
    0.2 s of real time lands above 0.1 and below 10 on any machine."""
    buckets, total = snapshot.hold.cumulative()
    counts = dict(buckets)
    return counts["0.1"], counts["10.0"], counts["+Inf"], total > 0.1


def test_thread_pool_executor_hold_is_the_task_run_time():
    with ThreadPoolExecutor(max_workers=1) as executor:
        adapter = adapt(executor)
        try:
            assert executor.submit(threading.Event().wait, 0.2).result(10) is False
            assert held_about_0_2_s(adapter.pool_snapshot()) == (0, 1, 1, True)
        finally:
            adapter.close()


def test_an_executor_is_wrapped_only_once():
    with ThreadPoolExecutor(max_workers=1) as executor:
        adapter = adapt(executor)
        with pytest.raises(ValueError, match="is already registered"):
            adapt(executor)
        adapter.close()


def _engine(tmp_path, **kwargs):
    return sa.create_engine(f"sqlite:///{tmp_path}/pool.db", **kwargs)


def test_sqlalchemy_queue_pool_checkouts_overflow_waiters_and_timeouts(tmp_path):
    engine = _engine(tmp_path, pool_size=1, max_overflow=1, pool_timeout=0.3)
    adapter = adapt(engine)
    try:
        assert gauges(adapter.pool_snapshot()) == (2, 0, 0, 0)
        first, second = engine.connect(), engine.connect()  # the second is overflow
        assert first.execute(sa.text("select 1")).scalar() == 1
        snap = adapter.pool_snapshot()
        assert gauges(snap) == (2, 2, 0, 0)
        assert (snap.acquires, snap.created, snap.timeouts) == (2, 2, 0)
        with pytest.raises(sa.exc.TimeoutError):
            engine.connect()
        assert adapter.pool_snapshot().timeouts == 1

        got = []
        waiter = threading.Thread(target=lambda: got.append(engine.connect()))
        waiter.start()
        wait_until("a waiting checkout", lambda: adapter.pool_snapshot().waiting == 1)
        first.close()
        waiter.join(5)
        snap = adapter.pool_snapshot()
        assert gauges(snap) == (2, 2, 0, 0)
        assert (snap.acquires, snap.created, snap.timeouts) == (3, 2, 1)
        assert snap.wait.cumulative()[0][-1] == ("+Inf", 4)
        second.invalidate()
        second.close()
        got[0].close()
        snap = adapter.pool_snapshot()
        assert gauges(snap) == (2, 0, 1, 0)
        assert (snap.discarded, snap.oldest_checkout_seconds) == (1, 0.0)
        assert snap.hold.cumulative()[0][-1] == ("+Inf", 3)  # three checkouts checked in
    finally:
        adapter.close()
    assert "_do_get" not in vars(engine.pool)
    engine.connect().close()  # the listeners are gone: nothing counts it
    assert adapter.pool_snapshot().acquires == 3
    engine.dispose()


def test_sqlalchemy_hold_is_checkout_to_checkin(tmp_path):
    engine = _engine(tmp_path, pool_size=1, max_overflow=0)
    adapter = adapt(engine)
    try:
        with engine.connect():
            assert threading.Event().wait(0.2) is False  # the connection is held meanwhile
        assert held_about_0_2_s(adapter.pool_snapshot()) == (0, 1, 1, True)
    finally:
        adapter.close()
        engine.dispose()


def test_sqlalchemy_adapter_follows_engine_dispose(tmp_path):
    engine = _engine(tmp_path, pool_size=1, max_overflow=0, pool_timeout=0.1)
    adapter = adapt(engine)
    old = engine.pool
    engine.connect().close()
    engine.dispose()  # swaps in a new pool
    assert engine.pool is not old
    with engine.connect():
        with pytest.raises(sa.exc.TimeoutError):
            engine.connect()
        snap = adapter.pool_snapshot()
        assert gauges(snap) == (1, 1, 0, 0)
        assert (snap.acquires, snap.created, snap.timeouts) == (2, 2, 1)
    adapter.close()
    assert "_do_get" not in vars(engine.pool) and "_do_get" not in vars(old)
    engine.connect().close()  # the listeners are gone: nothing counts it
    assert adapter.pool_snapshot().acquires == 2
    engine.dispose()


def test_sqlalchemy_engine_through_the_exporter(tmp_path):
    engine = _engine(tmp_path, pool_size=2, max_overflow=0)
    with AppServer() as server:
        server.exporter.pools.register("db", engine)
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
            text = server.scrape()
            assert 'tornado_pool_in_use{pool="db"} 1.0' in text
            assert 'tornado_pool_capacity{pool="db"} 2.0' in text
    assert "_do_get" not in vars(engine.pool)  # the exporter's stop() unhooked it
    engine.dispose()


def test_sqlalchemy_pools_without_a_capacity_are_refused(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/n.db", poolclass=sa.pool.NullPool)
    with pytest.raises(ValueError, match="uses NullPool; only QueuePool-based SQLAlchemy pools"):
        adapt(engine)


def test_unknown_objects_have_no_adapter():
    assert adapt(object()) is None
    assert adapt(ObjectPool(Leaky, name="ours")) is None  # the registry takes these directly
