import asyncio
import time

from prometheus_client import CollectorRegistry

from tornado_memory_exporter.collectors.loop_lag import IOLoopProbe


def test_a_blocked_loop_shows_as_lag_and_tasks_are_counted():
    async def scenario():
        loop = asyncio.get_running_loop()
        probe = IOLoopProbe("tornado", loop=loop, interval=0.01, buckets=(0.05, 0.5))
        registry = CollectorRegistry()
        registry.register(probe)
        probe.start()
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # a handler blocking the loop
        await asyncio.sleep(0.03)
        sleepers = [asyncio.create_task(asyncio.sleep(10)) for _ in range(3)]
        await asyncio.sleep(0)
        tasks = registry.get_sample_value("tornado_asyncio_tasks")
        probe.stop()
        for task in sleepers:
            task.cancel()
        value = registry.get_sample_value
        return (
            value("tornado_ioloop_lag_seconds_count"),
            value("tornado_ioloop_lag_seconds_bucket", {"le": "0.05"}),
            value("tornado_ioloop_lag_seconds_bucket", {"le": "0.5"}),
            tasks,
        )

    count, fast, slow, tasks = asyncio.run(scenario())
    assert count >= 3
    assert slow - fast == 1  # exactly one probe ran ~0.2 s late
    assert tasks == 4  # the three sleepers plus the scenario itself


def test_stop_cancels_the_probe():
    async def scenario():
        probe = IOLoopProbe("t", loop=asyncio.get_running_loop(), interval=0.01, buckets=(1.0,))
        probe.start()
        await asyncio.sleep(0.05)
        probe.stop()
        before = probe.lag.counts[-1] + sum(probe.lag.counts)
        await asyncio.sleep(0.05)
        return before, probe.lag.counts[-1] + sum(probe.lag.counts)

    before, after = asyncio.run(scenario())
    assert before == after > 0
