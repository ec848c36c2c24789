"""ObjectPool: exact counts through filling, saturation, waiting, timeouts, invalid objects, leaks
and reclaim, plus a threads-and-coroutines stress test that no object is ever held twice or lost."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time

import pytest
from realbin import wait_for

from tornado_memory_exporter import ObjectPool, PoolTimeout
from tornado_memory_exporter.pools import Lease, PoolSnapshot

LES = ("0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0")


class Obj:
    """A weakly referenceable pooled object that knows who holds it."""

    made = 0

    def __init__(self) -> None:
        Obj.made += 1
        self.serial = Obj.made
        self.holder: object = None
        self.resets = 0


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counts(pool: ObjectPool) -> tuple:
    s = pool.pool_snapshot()
    return (
        s.capacity,
        s.in_use,
        s.idle,
        s.waiting,
        s.acquires,
        s.created,
        s.discarded,
        s.timeouts,
        s.leaked,
    )


def run(coro_fn):
    return asyncio.run(coro_fn())


async def until(what: str, probe, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def wait_until(what: str, probe, timeout: float = 5.0) -> None:
    wait_for(what, probe, timeout=timeout, interval=0.001)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factory": 3}, "factory=3 must be callable"),
        ({"max_size": 0}, "max_size=0 must be an integer >= 1"),
        ({"max_size": True}, "max_size=True must be an integer >= 1"),
        ({"name": ""}, "name='' must be a non-empty string"),
        ({"name": "x" * 101}, "must be a non-empty string of at most 100 characters"),
        ({"min_idle": 3}, "min_idle=3 must be an integer from 0 to 2"),
        ({"reset": "no"}, "reset='no' must be callable or None"),
        ({"validate": 1}, "validate=1 must be callable or None"),
        ({"timeout": 0}, "timeout=0 must be a number > 0"),
        ({"timeout": float("nan")}, "timeout=nan must be a number > 0"),
        ({"leak_log_interval": -1}, "leak_log_interval=-1 must be a number >= 0"),
        ({"buckets": ()}, "buckets=() must be a non-empty tuple of increasing"),
        ({"buckets": (1.0, 0.5)}, "buckets=(1.0, 0.5) must be a non-empty tuple"),
        ({"buckets": (0, 1)}, "buckets=(0, 1) must be a non-empty tuple"),
        ({"buckets": "1"}, "buckets='1' must be a sequence"),
    ],
)
def test_bad_options_raise_value_error_naming_the_value(kwargs, message):
    options = {"factory": Obj, "max_size": 2, "name": "p", **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ObjectPool(**options)


def test_a_bad_timeout_argument_is_rejected_before_waiting():
    pool = ObjectPool(Obj, 1, name="p")
    with pool.acquire_sync(), pytest.raises(ValueError, match=r"timeout=-1 must be a number > 0"):
        pool.get_sync(timeout=-1)
    assert counts(pool) == (1, 0, 1, 0, 1, 1, 0, 0, 0)


def test_objects_are_reused_and_filling_creates_exactly_max_size():
    async def scenario():
        pool = ObjectPool(Obj, 3, name="p")
        first = None
        for _ in range(5):
            async with pool.acquire() as obj:
                first = first or obj
                assert obj is first
        assert counts(pool) == (3, 0, 1, 0, 5, 1, 0, 0, 0)
        held = [await pool.get() for _ in range(3)]
        assert len({id(o) for o in held}) == 3
        assert counts(pool) == (3, 3, 0, 0, 8, 3, 0, 0, 0)
        for obj in held:
            pool.put(obj)
        assert counts(pool) == (3, 0, 3, 0, 8, 3, 0, 0, 0)

    run(scenario)


def test_min_idle_objects_are_created_up_front():
    pool = ObjectPool(Obj, 4, name="p", min_idle=2)
    assert counts(pool) == (4, 0, 2, 0, 0, 2, 0, 0, 0)


def test_saturated_acquirers_wait_in_fifo_order_and_get_the_released_object():
    async def scenario():
        pool = ObjectPool(Obj, 1, name="p")
        order = []

        async def waiter(tag: int) -> None:
            async with pool.acquire(timeout=5) as obj:
                order.append((tag, obj.serial))
                await asyncio.sleep(0)

        held = await pool.get()
        tasks = []
        for tag in range(4):
            tasks.append(asyncio.create_task(waiter(tag)))
            await asyncio.sleep(0)  # queue them in this order
        assert counts(pool)[:4] == (1, 1, 0, 4)
        pool.put(held)
        await asyncio.gather(*tasks)
        assert order == [(0, held.serial), (1, held.serial), (2, held.serial), (3, held.serial)]
        assert counts(pool) == (1, 0, 1, 0, 5, 1, 0, 0, 0)

    run(scenario)


def test_a_timeout_raises_pool_timeout_naming_the_pool_and_is_counted():
    async def scenario():
        pool = ObjectPool(Obj, 2, name="db")
        a, b = await pool.get(), await pool.get()
        with pytest.raises(PoolTimeout) as raised:
            async with pool.acquire(timeout=0.02):
                pass
        assert isinstance(raised.value, TimeoutError)
        assert raised.value.pool == "db"
        assert str(raised.value) == (
            "pool 'db': no object became free within 0.02s "
            "(all 2 in use, 0 other acquirers waiting)"
        )
        assert counts(pool) == (2, 2, 0, 0, 2, 2, 0, 1, 0)
        pool.put(a)
        pool.put(b)

    run(scenario)


def test_a_thread_times_out_too_and_leaves_the_queue():
    pool = ObjectPool(Obj, 1, name="sync")
    with pool.acquire_sync():
        with pytest.raises(PoolTimeout, match="pool 'sync': no object became free within 0.02s"):
            with pool.acquire_sync(timeout=0.02):
                pass
        assert counts(pool) == (1, 1, 0, 0, 1, 1, 0, 1, 0)
    assert counts(pool) == (1, 0, 1, 0, 1, 1, 0, 1, 0)


def test_an_enormous_timeout_waits_like_no_timeout():
    pool = ObjectPool(Obj, 1, name="p", timeout=1e12)
    held = pool.get_sync()
    got = []
    thread = threading.Thread(target=lambda: got.append(pool.get_sync()))
    thread.start()
    wait_until("the thread to queue", lambda: pool.pool_snapshot().waiting == 1)
    pool.put(held)
    thread.join(5)
    assert got == [held]


def test_a_thread_waits_for_an_object_a_coroutine_releases():
    async def scenario():
        pool = ObjectPool(Obj, 1, name="p")
        held = await pool.get()
        got = []
        thread = threading.Thread(target=lambda: got.append(pool.get_sync(timeout=5)))
        thread.start()
        await until("the thread to queue", lambda: pool.pool_snapshot().waiting == 1)
        pool.put(held)
        await asyncio.to_thread(thread.join, 5)
        assert got == [held]
        assert counts(pool) == (1, 1, 0, 0, 2, 1, 0, 0, 0)
        pool.put(held)

    run(scenario)


def test_a_lock_free_release_serves_a_waiting_thread():
    pool = ObjectPool(Obj, 1, name="p")
    got = []
    with pool.acquire_sync() as held:
        thread = threading.Thread(target=lambda: got.append(pool.get_sync(timeout=5)))
        thread.start()
        wait_until("the thread to queue", lambda: pool.pool_snapshot().waiting == 1)
    thread.join(5)
    assert got == [held]
    assert counts(pool) == (1, 1, 0, 0, 2, 1, 0, 0, 0)


def test_a_release_racing_a_new_waiter_is_not_lost():
    """The interleaving the lock-free release allows, replayed exactly: a waiter finds no idle
    object; before it is queued, a release puts the object back and sees nobody waiting; the
    waiter must then notice the object itself (its re-check after queueing), as nobody else
    will release it. The release runs inside the waiter's ``loop.create_future()``, which the
    pool calls between looking for an idle object and queueing."""
    pool = ObjectPool(Obj, 1, name="p")
    holder = contextlib.ExitStack()
    held = holder.enter_context(pool.acquire_sync())

    class ReleasingLoop(asyncio.SelectorEventLoop):
        def create_future(self) -> asyncio.Future:
            holder.close()  # lock-free; a no-op after the first time
            return super().create_future()

    async def waiter() -> Obj:
        async with pool.acquire(timeout=2.0) as obj:
            assert pool.pool_snapshot().waiting == 0
            return obj

    with asyncio.Runner(loop_factory=ReleasingLoop) as runner:
        assert runner.run(waiter()) is held
    assert counts(pool) == (1, 0, 1, 0, 2, 1, 0, 0, 0)


def test_a_cancelled_waiter_leaves_the_queue_without_a_timeout():
    async def scenario():
        pool = ObjectPool(Obj, 1, name="p")
        held = await pool.get()
        task = asyncio.create_task(pool.get(timeout=5))
        await until("the waiter", lambda: pool.pool_snapshot().waiting == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert counts(pool) == (1, 1, 0, 0, 1, 1, 0, 0, 0)
        pool.put(held)
        assert counts(pool) == (1, 0, 1, 0, 1, 1, 0, 0, 0)

    run(scenario)


def test_a_waiter_cancelled_after_its_grant_gives_the_object_back():
    async def scenario():
        pool = ObjectPool(Obj, 1, name="p")
        held = await pool.get()
        task = asyncio.create_task(pool.get(timeout=5))
        await until("the waiter", lambda: pool.pool_snapshot().waiting == 1)
        pool.put(held)  # granted to the task, which has not run yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert counts(pool) == (1, 0, 1, 0, 1, 1, 0, 0, 0)
        assert await pool.get() is held

    run(scenario)


def test_reset_runs_on_release_and_a_failing_reset_discards_the_object():
    disposed = []

    def reset(obj: Obj) -> None:
        obj.resets += 1
        if obj.resets == 2:
            raise RuntimeError("broken")

    pool = ObjectPool(Obj, 2, name="p", reset=reset, dispose=disposed.append)
    with pool.acquire_sync() as first:
        pass
    assert first.resets == 1
    with pool.acquire_sync() as again:
        assert again is first
    assert disposed == [first]
    assert counts(pool) == (2, 0, 0, 0, 2, 1, 1, 0, 0)
    with pool.acquire_sync() as fresh:
        assert fresh is not first
    assert counts(pool) == (2, 0, 1, 0, 3, 2, 1, 0, 0)


def test_validate_discards_invalid_objects_and_replaces_them():
    def validate(obj: Obj) -> bool:
        if obj.serial % 3 == 0:
            raise ValueError("a validator that raises means invalid")
        return obj.serial % 2 == 1

    Obj.made = 0
    pool = ObjectPool(Obj, 1, name="p", validate=validate)
    seen = []
    for _ in range(4):
        with pool.acquire_sync() as obj:
            seen.append(obj.serial)
    # 1 valid (reused), then 1 again; creation is never validated: 1, 1, 1, 1
    assert seen == [1, 1, 1, 1]
    pool.pool_snapshot()
    held = pool.get_sync()
    held.serial = 2  # now invalid: the next acquire replaces it
    pool.put(held)
    with pool.acquire_sync() as obj:
        assert obj is not held
    assert counts(pool) == (1, 0, 1, 0, 6, 2, 1, 0, 0)


def test_discard_frees_the_slot_for_a_waiting_thread():
    pool = ObjectPool(Obj, 1, name="p")
    held = pool.get_sync()
    got = []
    thread = threading.Thread(target=lambda: got.append(pool.get_sync(timeout=5)))
    thread.start()
    wait_until("the thread to queue", lambda: pool.pool_snapshot().waiting == 1)
    pool.put(held, discard=True)
    thread.join(5)
    assert got[0] is not held
    assert counts(pool) == (1, 1, 0, 0, 2, 2, 1, 0, 0)


def test_a_failing_factory_returns_the_slot():
    calls = []

    def factory() -> Obj:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("connection refused")
        return Obj()

    pool = ObjectPool(factory, 1, name="p")
    with pytest.raises(OSError, match="connection refused"):
        pool.get_sync()
    assert counts(pool) == (1, 0, 0, 0, 0, 0, 0, 0, 0)
    with pool.acquire_sync():
        assert counts(pool) == (1, 1, 0, 0, 1, 1, 0, 0, 0)


def test_an_async_factory_is_awaited_by_acquire_and_refused_by_acquire_sync():
    async def make() -> Obj:
        await asyncio.sleep(0)
        return Obj()

    pool = ObjectPool(make, 2, name="p")
    with pytest.raises(TypeError, match="pool 'p': factory is asynchronous"):
        pool.get_sync()
    assert counts(pool) == (2, 0, 0, 0, 0, 0, 0, 0, 0)

    async def scenario():
        async with pool.acquire() as obj:
            assert isinstance(obj, Obj)

    run(scenario)
    assert counts(pool) == (2, 0, 1, 0, 1, 1, 0, 0, 0)


def test_discard_inside_a_with_block_replaces_the_object():
    pool = ObjectPool(Obj, 1, name="p")
    with pool.acquire_sync() as first:
        pass
    lease = pool.acquire_sync()
    with lease as obj:
        assert obj is first
        lease.discard()  # broken: drop it now; leaving the block must not give it back
        with pytest.raises(ValueError, match="this lease of .* was already released"):
            lease.release()
        assert counts(pool) == (1, 0, 0, 0, 2, 1, 1, 0, 0)
    with pool.acquire_sync() as obj:
        assert obj is not first
    assert counts(pool) == (1, 0, 1, 0, 3, 2, 1, 0, 0)


def test_put_of_an_object_not_checked_out_raises_and_changes_nothing():
    pool = ObjectPool(Obj, 2, name="p")
    obj = pool.get_sync()
    pool.put(obj)
    with pytest.raises(ValueError, match=r"pool 'p': .* is not checked out \(released twice\?\)"):
        pool.put(obj)
    with pytest.raises(ValueError, match="is not checked out"):
        pool.put(Obj())
    assert counts(pool) == (2, 0, 1, 0, 1, 1, 0, 0, 0)


def test_oldest_checkout_and_wait_time_use_the_pool_clock():
    clock = FakeClock()
    pool = ObjectPool(Obj, 2, name="p", clock=clock)
    assert pool.pool_snapshot().oldest_checkout_seconds == 0.0
    first = pool.get_sync()
    clock.now += 30
    second = pool.get_sync()
    clock.now += 12
    assert pool.pool_snapshot().oldest_checkout_seconds == 42.0
    pool.put(first)
    assert pool.pool_snapshot().oldest_checkout_seconds == 12.0
    pool.put(second)
    assert pool.pool_snapshot().wait.cumulative() == ([(le, 2) for le in (*LES, "+Inf")], 0.0)


def test_a_waiter_s_wait_lands_in_the_histogram():
    clock = FakeClock()
    pool = ObjectPool(Obj, 1, name="p", clock=clock, buckets=(0.1, 1.0))
    held = pool.get_sync()
    thread = threading.Thread(target=lambda: pool.put(pool.get_sync(timeout=5)))
    thread.start()
    wait_until("the thread to queue", lambda: pool.pool_snapshot().waiting == 1)
    clock.now += 0.5
    pool.put(held)
    thread.join(5)
    assert pool.pool_snapshot().wait.cumulative() == ([("0.1", 1), ("1.0", 2), ("+Inf", 2)], 0.5)


def test_a_dropped_object_is_counted_as_leaked_its_slot_reclaimed_and_logged_once(caplog):
    clock = FakeClock()
    pool = ObjectPool(Obj, 2, name="db", clock=clock, leak_log_interval=60)
    caplog.set_level(logging.WARNING, logger="tornado_memory_exporter")
    obj = pool.get_sync()  # the acquiring line
    line = _line_of("obj = pool.get_sync()  # the acquiring line")
    del obj  # the only reference: the object dies without put()
    assert counts(pool) == (2, 0, 0, 0, 1, 1, 0, 0, 1)
    [record] = caplog.records
    assert record.getMessage() == (
        "pool 'db': 1 object(s) garbage-collected without being returned (1 leaked in total; "
        f"slots reclaimed; logged at most every 60s); acquired at {__file__}:{line}"
    )
    pool.get_sync()  # dropped at once: a second leak within the interval is counted, not logged
    assert counts(pool) == (2, 0, 0, 0, 2, 2, 0, 0, 2)
    assert len(caplog.records) == 1
    clock.now += 61
    pool.get_sync()
    pool.pool_snapshot()
    assert len(caplog.records) == 2
    assert "(3 leaked in total" in caplog.records[1].getMessage()


def test_a_leak_inside_a_reference_cycle_is_found_by_the_collector():
    pool = ObjectPool(Obj, 1, name="p")
    obj = pool.get_sync()
    obj.self_ref = obj
    del obj
    assert pool.pool_snapshot().leaked == 0  # the cycle keeps it alive until the gc runs
    gc.collect()
    assert counts(pool) == (1, 0, 0, 0, 1, 1, 0, 0, 1)


def test_a_leak_hands_its_slot_to_a_waiting_thread():
    pool = ObjectPool(Obj, 1, name="p", leak_log_interval=0)
    holder = [pool.get_sync()]
    got = []
    thread = threading.Thread(target=lambda: got.append(pool.get_sync(timeout=5)))
    thread.start()
    wait_until("the thread to queue", lambda: pool.pool_snapshot().waiting == 1)
    holder.clear()  # leak it: the weakref callback reclaims the slot for the waiter
    thread.join(5)
    assert len(got) == 1
    assert counts(pool) == (1, 1, 0, 0, 2, 2, 0, 0, 1)


def test_objects_without_weak_references_use_a_lease():
    pool = ObjectPool(lambda: bytearray(16), 1, name="buffers")
    with pytest.raises(TypeError, match="pool 'buffers': bytearray objects cannot be weakly"):
        pool.get_sync()
    assert counts(pool) == (1, 0, 1, 0, 0, 1, 0, 0, 0)
    lease = pool.lease_sync()
    assert lease.obj == bytearray(16)
    lease.release()
    with pytest.raises(ValueError, match="already released"):
        lease.release()
    pool.lease_sync()  # dropped: the lease is the wrapper that notices
    assert counts(pool) == (1, 0, 0, 0, 2, 1, 0, 0, 1)

    async def scenario():
        lease = await pool.lease()
        lease.discard()

    run(scenario)
    assert counts(pool) == (1, 0, 0, 0, 3, 2, 1, 0, 1)


def test_many_threads_and_coroutines_never_share_or_lose_an_object():
    max_size, threads, per_thread, tasks, per_task = 4, 6, 300, 20, 60
    pool = ObjectPool(Obj, max_size, name="stress")
    errors: list[str] = []
    timeouts = []

    def use(obj: Obj, who: object) -> None:
        if obj.holder is not None:
            errors.append(f"{obj.serial} held by {obj.holder} and {who}")
        obj.holder = who
        time.sleep(0)  # let others run while it is held
        if obj.holder is not who:
            errors.append(f"{obj.serial} taken from {who}")
        obj.holder = None

    def worker(n: int) -> None:
        for _ in range(per_thread):
            try:
                with pool.acquire_sync(timeout=5) as obj:
                    use(obj, ("thread", n))
            except PoolTimeout:
                timeouts.append(n)
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(f"thread {n}: {error!r}")

    async def coroutine(n: int) -> None:
        for i in range(per_task):
            async with pool.acquire(timeout=5) as obj:
                use(obj, ("task", n))
                if i % 3 == 0:
                    await asyncio.sleep(0)

    async def scenario():
        running = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for thread in running:
            thread.start()
        await asyncio.gather(*(coroutine(n) for n in range(tasks)))
        for thread in running:
            await asyncio.to_thread(thread.join, 30)

    run(scenario)
    assert errors == []
    assert timeouts == []
    total = threads * per_thread + tasks * per_task
    snap = pool.pool_snapshot()
    assert (snap.in_use, snap.waiting, snap.acquires, snap.timeouts) == (0, 0, total, 0)
    assert snap.idle == snap.created <= max_size
    idle = [pool.get_sync(timeout=0.01) for _ in range(snap.idle)]  # all of them, none twice
    assert len({id(o) for o in idle}) == snap.idle
    assert pool.pool_snapshot().idle == 0


def _hold_of(pool: ObjectPool) -> tuple[list[int], float]:
    """The hold histogram's cumulative counts (one per bound, then +Inf) and its sum."""
    buckets, total = pool.pool_snapshot().hold.cumulative()
    assert [le for le, _ in buckets] == [*LES, "+Inf"]
    return [count for _, count in buckets], total


HELD_0_2 = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]  # le=0.1 holds none, le=0.25 holds it


def test_a_checkout_held_0_2_s_lands_in_the_0_25_s_bucket():
    clock = FakeClock(now=0.0)
    pool = ObjectPool(Obj, 2, name="p", clock=clock)
    with pool.acquire_sync():
        clock.now += 0.2
    assert _hold_of(pool) == (HELD_0_2, 0.2)


def test_a_hold_on_a_bucket_bound_counts_in_that_bucket():
    clock = FakeClock(now=0.0)
    pool = ObjectPool(Obj, 1, name="p", clock=clock, buckets=(0.5, 1.0))
    for held in (0.5, 0.75, 1.0, 1.5, -1.0):  # -1: a clock that went back: first bucket
        with pool.acquire_sync():
            clock.now += held
    assert pool.pool_snapshot().hold.cumulative() == (
        [("0.5", 2), ("1.0", 4), ("+Inf", 5)],
        2.75,
    )


async def _async_with(pool: ObjectPool, clock: FakeClock) -> None:
    async with pool.acquire():
        clock.now += 0.2


async def _get_put(pool: ObjectPool, clock: FakeClock) -> None:
    obj = await pool.get()
    clock.now += 0.2
    pool.put(obj)


async def _get_discard(pool: ObjectPool, clock: FakeClock) -> None:
    obj = await pool.get()
    clock.now += 0.2
    pool.put(obj, discard=True)


async def _lease_release(pool: ObjectPool, clock: FakeClock) -> None:
    lease = await pool.lease()
    clock.now += 0.2
    lease.release()


async def _release_in_block(pool: ObjectPool, clock: FakeClock) -> None:
    lease = pool.acquire()
    async with lease:
        clock.now += 0.2
        lease.release()


@pytest.mark.parametrize(
    "checkout", [_async_with, _get_put, _get_discard, _lease_release, _release_in_block]
)
@pytest.mark.parametrize("reset", [None, lambda obj: None], ids=["lock-free", "with reset"])
def test_every_way_of_giving_back_records_the_hold(checkout, reset):
    clock = FakeClock(now=0.0)
    pool = ObjectPool(Obj, 2, name="p", clock=clock, reset=reset)
    for _ in range(2):  # a new object, then a reused one
        asyncio.run(checkout(pool, clock))
    assert _hold_of(pool) == ([2 * n for n in HELD_0_2], 0.4)
    assert pool.pool_snapshot().acquires == 2


def test_a_leaked_or_still_held_checkout_has_no_hold_yet():
    clock = FakeClock(now=0.0)
    pool = ObjectPool(Obj, 3, name="p", clock=clock, buckets=(1.0,))
    held = pool.get_sync()
    pool.get_sync()  # dropped at once: leaked
    with pool.acquire_sync():
        clock.now += 2.0
    snap = pool.pool_snapshot()
    assert (snap.acquires, snap.leaked, snap.in_use) == (3, 1, 1)
    assert snap.hold.cumulative() == ([("1.0", 0), ("+Inf", 1)], 2.0)
    pool.put(held)
    assert pool.pool_snapshot().hold.cumulative() == ([("1.0", 0), ("+Inf", 2)], 4.0)


def test_acquires_count_every_path_exactly():
    """Lock-free checkouts are worked out from the holds, the leaks and what is out: whatever
    mix of paths, the count is exact and the wait histogram holds each acquire once."""
    clock = FakeClock()
    pool = ObjectPool(Obj, 2, name="p", clock=clock)
    seen = []
    for step in range(12):
        if step % 3 == 0:
            pool.get_sync()  # leaked
        elif step % 3 == 1:
            with pool.acquire_sync():
                seen.append(pool.pool_snapshot().acquires)
        else:
            pool.put(pool.get_sync())
        seen.append(pool.pool_snapshot().acquires)
    snap = pool.pool_snapshot()
    assert seen == [1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8, 9, 10, 11, 11, 12]
    assert (snap.acquires, snap.leaked, sum(snap.wait.counts)) == (12, 4, 12)


def test_a_lease_is_a_context_manager_of_the_object():
    pool = ObjectPool(Obj, 1, name="p")
    lease = pool.acquire_sync()
    assert isinstance(lease, Lease)
    with lease as obj:
        assert lease.obj is obj


def test_snapshot_is_a_pool_snapshot():
    snap = ObjectPool(Obj, 1, name="p").pool_snapshot()
    assert isinstance(snap, PoolSnapshot)


def _line_of(text: str) -> int:
    with open(__file__) as source:
        return next(i for i, line in enumerate(source, 1) if line.strip() == text)
