"""The demo service: switches over HTTP and the CLI, and each leak scenario really leaking into
the metric its alert reads (a real Tornado server on 127.0.0.1, real scrapes)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
import tornado.websocket
from appserver import AppServer
from prometheus_client.parser import text_string_to_metric_families
from realbin import promtool, require_binary, wait_for

from tornado_memory_exporter import Config
from tornado_memory_exporter import exporter as exporter_module
from tornado_memory_exporter.__main__ import LEAK_NAMES
from tornado_memory_exporter.buckets import LOOP_LAG_BUCKETS
from tornado_memory_exporter.demo import DemoService, stack
from tornado_memory_exporter.demo.app import DB_POOL_SIZE, LOAD_SCHEDULE, UPSTREAM_MAX_CLIENTS
from tornado_memory_exporter.demo.leaks import make_leaks
from tornado_memory_exporter.demo.webhook import make_webhook_app
from tornado_memory_exporter.mixin import MixinConfig

REPORT_HANDLER = "tornado_memory_exporter.demo.app.ReportHandler"


class Demo(AppServer):
    """The demo app on a fresh registry, started without the background load."""

    def __init__(self) -> None:
        self.service = DemoService()
        super().__init__(self.service.make_app(), config=Config(census_interval=0))

    def __enter__(self) -> Self:
        super().__enter__()
        self.call(lambda: self.service.start(self.exporter, self.url, load=False))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.service.stop, timeout=10)
        finally:
            super().__exit__(*exc)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def switch(self, name: str, state: str) -> dict:
        status, body = self.post(f"/leaks/{name}", state.encode())
        assert status == 200, (status, body)
        return json.loads(body)

    def hit(self, path: str, times: int) -> None:
        for _ in range(times):
            status, _, body = self.get(path)
            assert status == 200, (path, status, body)

    def samples(self, *, census: bool = True) -> dict[tuple[str, frozenset], float]:
        """Every sample of a fresh scrape taken after a census (unless ``census=False``), by
        (name, labels)."""
        if census:
            self.call(self.exporter.census_now)
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(self.scrape())
            for s in family.samples
        }

    def sample(
        self, name: str, labels: dict[str, str] | None = None, *, census: bool = True
    ) -> float | None:
        """One sample of a fresh scrape, or None when absent."""
        return self.samples(census=census).get((name, frozenset((labels or {}).items())))


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    # a probe every 50 ms: a blocking call delays exactly one probe by most of its length
    monkeypatch.setattr(exporter_module, "PROBE_INTERVAL", 0.05)
    with Demo() as server:
        yield server


def test_cli_leak_choices_are_the_scenarios() -> None:
    assert tuple(make_leaks()) == LEAK_NAMES


def test_leaks_endpoint_lists_and_switches(demo: Demo) -> None:
    status, _, body = demo.get("/leaks")
    assert status == 200
    listed = json.loads(body)
    assert list(listed) == list(LEAK_NAMES)
    assert listed["cache"] == {
        "on": False,
        "size": 0,
        "cap": 50_000,
        "endpoint": "/items",
        "alert": "TornadoWatchedObjectGrowing",
        "available": True,
        "what": "the watched response cache stops evicting (1 KiB per request)",
    }
    assert demo.switch("cache", "on")["on"] is True
    assert json.loads(demo.get("/leaks/cache")[2])["on"] is True
    status, body = demo.post("/leaks/cache?state=off", b"")
    assert (status, json.loads(body)["on"]) == (200, False)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/leaks/nope", b"on", 404),
        ("/leaks/cache", b"maybe", 400),
        ("/leaks/cache", b"", 400),
        ("/leaks", b"on", 405),
        ("/leaks/cache", b"\xff\xfe", 400),
    ],
)
def test_bad_switch_requests_are_4xx(demo: Demo, path: str, body: bytes, status: int) -> None:
    got, text = demo.post(path, body)
    assert got == status, text
    assert b"Traceback" not in text


def test_handlers_leak_keeps_finished_handlers(demo: Demo) -> None:
    labels = {"handler": REPORT_HANDLER, "state": "finished"}
    demo.switch("handlers", "on")
    demo.hit("/report", 25)
    assert demo.sample("tornado_handlers_alive", labels) == 25
    demo.switch("handlers", "off")
    gc.collect()  # the test, not the demo, may force a collection: handlers sit in cycles
    assert demo.sample("tornado_handlers_alive", labels) is None  # no live instance: no series


def test_cache_leak_grows_the_watched_cache(demo: Demo) -> None:
    labels = {"name": "demo_cache"}
    for n in range(100):
        demo.hit(f"/items?id=a{n}", 1)
    assert demo.sample("tornado_watched_object_items", labels) == 64  # bounded LRU while off
    demo.switch("cache", "on")
    for n in range(100):
        demo.hit(f"/items?id=b{n}", 1)
    assert demo.sample("tornado_watched_object_items", labels) == 164
    demo.switch("cache", "off")
    assert demo.sample("tornado_watched_object_items", labels) == 0


def test_cycles_leak_is_uncollectable(demo: Demo) -> None:
    if not demo.service.leaks["cycles"].describe()["available"]:
        pytest.skip("this interpreter has no _testcapi.with_tp_del")
    gc.collect()
    before = sum(gen["uncollectable"] for gen in gc.get_stats())
    garbage_before = len(gc.garbage)
    demo.switch("cycles", "on")
    demo.hit("/session", 10)
    gc.collect()
    assert sum(gen["uncollectable"] for gen in gc.get_stats()) - before == 20
    assert demo.sample("tornado_gc_garbage_objects") == garbage_before + 20
    demo.switch("cycles", "off")
    gc.collect()
    assert demo.sample("tornado_gc_garbage_objects") == garbage_before
    assert sum(gen["uncollectable"] for gen in gc.get_stats()) - before == 20  # freed, not re-found


RENDER_HANDLER = "tornado_memory_exporter.demo.app.RenderHandler"


def test_cycles_per_request_is_garbage_the_collector_frees_not_a_leak(demo: Demo) -> None:
    # The demo's default census mode (auto) forks here: reachable objects are told from garbage.
    gc.collect()
    gc.disable()  # the test holds the garbage for the census (test code, not the library)
    try:
        demo.switch("cycles-per-request", "on")
        demo.hit("/render", 12)
        handlers = {"handler": RENDER_HANDLER}
        found = demo.samples()
        assert found["tornado_census_reachability", frozenset()] == 1
        alive = {
            state: found.get(
                ("tornado_handlers_alive", frozenset({**handlers, "state": state}.items()))
            )
            for state in ("active", "finished", "unreachable")
        }
        assert alive == {"active": 0, "finished": 0, "unreachable": 12}
        collected = sum(gen["collected"] for gen in gc.get_stats())
        gc.collect()
        assert sum(gen["collected"] for gen in gc.get_stats()) - collected > 12 * 50
        # Freed: no instance of the class is left, so it has no series at all.
        assert demo.sample("tornado_handlers_alive", {**handlers, "state": "unreachable"}) is None
    finally:
        gc.enable()
        demo.switch("cycles-per-request", "off")


def test_blocking_leak_shows_as_ioloop_lag(demo: Demo) -> None:
    # With a probe every 50 ms, one 600 ms blocking call makes exactly one probe run more than
    # 0.5 s late; a machine too busy to run the loop for half a second is not normal noise.
    demo.service.leaks["blocking"].block_seconds = 0.6

    def slow_probes() -> float:
        scraped = demo.samples()
        return (
            scraped["tornado_ioloop_lag_seconds_count", frozenset()]
            - scraped["tornado_ioloop_lag_seconds_bucket", frozenset({("le", "0.5")})]
        )

    demo.hit("/compute", 2)
    baseline = slow_probes()
    demo.switch("blocking", "on")
    demo.hit("/compute", 1)
    demo.switch("blocking", "off")
    demo.hit("/compute", 1)  # the probe delayed by the block has run by the time this answers
    assert slow_probes() - baseline == 1
    assert demo.service.leaks["blocking"].size == 0  # off resets the count of blocking calls


def test_every_blocking_call_of_the_load_delays_the_real_probe_past_the_fast_threshold() -> None:
    # At the exporter's own probe interval, called as the background load calls it (one
    # request, then a pause of its period), each blocking call must delay one probe by more
    # than the fast profile's lag threshold, whatever the phase of the two. The first bucket
    # above that threshold counts it.
    threshold = MixinConfig.fast().ioloop_lag_p99_seconds
    bucket = min(b for b in LOOP_LAG_BUCKETS if b > threshold)
    calls = 2

    with Demo() as demo:

        def late_probes() -> float:
            scraped = demo.samples(census=False)
            return (
                scraped["tornado_ioloop_lag_seconds_count", frozenset()]
                - scraped["tornado_ioloop_lag_seconds_bucket", frozenset({("le", str(bucket))})]
            )

        demo.hit("/compute", 1)
        baseline = late_probes()
        demo.switch("blocking", "on")
        for _ in range(calls):
            demo.hit("/compute", 1)
            time.sleep(LOAD_SCHEDULE["/compute"])  # the load's own pause between two calls
        demo.switch("blocking", "off")
        assert late_probes() - baseline == calls


def test_pool_leak_counts_dropped_connections(demo: Demo, caplog: pytest.LogCaptureFixture) -> None:
    demo.hit("/db", 3)
    assert demo.sample("tornado_pool_leaked_total", {"pool": "demo_db"}) == 0
    demo.switch("pool", "on")
    with caplog.at_level(logging.WARNING, logger="tornado_memory_exporter"):
        demo.hit("/db", DB_POOL_SIZE + 3)  # more than the pool holds: leaked slots are reclaimed
        assert demo.sample("tornado_pool_leaked_total", {"pool": "demo_db"}) == DB_POOL_SIZE + 3
    (warning,) = [m for m in caplog.messages if "garbage-collected without being returned" in m]
    # The demo's own line, not Tornado's (call_site skips only the pools folder).
    assert "demo/app.py:" in warning and "tornado/web.py" not in warning, warning


def test_http_leak_saturates_the_upstream_client(demo: Demo) -> None:
    demo.switch("http", "on")
    demo.hit("/fanout", 3)  # 9 slow calls for 4 clients
    # Read at once, without a census first: a forked census takes about as long as the 1 s the
    # demo's queued upstream requests wait before they time out.
    pool = {"pool": "upstream"}
    assert demo.sample("tornado_pool_in_use", pool, census=False) == UPSTREAM_MAX_CLIENTS
    assert demo.sample("tornado_pool_capacity", pool, census=False) == UPSTREAM_MAX_CLIENTS
    assert demo.sample("tornado_pool_waiting", pool, census=False) == 9 - UPSTREAM_MAX_CLIENTS


CHAT = "tornado_memory_exporter.demo.app.ChatSocket"
MiB = 1 << 20


def test_websockets_leak_keeps_closed_chat_connections(demo: Demo) -> None:
    async def connect(n: int) -> list[tornado.websocket.WebSocketClientConnection]:
        return [
            await tornado.websocket.websocket_connect(f"ws://{demo.target}/chat") for _ in range(n)
        ]

    def close(clients: list, closed: int) -> None:
        async def go() -> None:
            for client in clients:
                client.close()
            while demo.service.leaks["websockets"].size < closed:  # the server saw them close
                await asyncio.sleep(0.01)

        demo.call(go)

    def states() -> tuple[float | None, float | None]:
        scraped = demo.samples()
        return tuple(
            scraped.get(("tornado_handlers_alive", frozenset({("handler", CHAT), ("state", s)})))
            for s in ("open", "closed")
        )

    clients = demo.call(lambda: connect(8))
    assert states() == (8, 0)
    demo.switch("websockets", "on")
    close(clients[:5], closed=5)
    assert states() == (3, 5)
    assert demo.switch("websockets", "off")["size"] == 0
    gc.collect()  # the test, not the demo, may force a collection
    assert states() == (3, 0)
    close(clients[5:], closed=0)


def test_slow_consumer_leak_fills_the_write_buffers(demo: Demo) -> None:
    demo.switch("slow-consumer", "on")
    # 640 KiB/s: past the kernel's socket buffers, several MB queue in the server's stream
    queued = wait_for(
        "several MB queued to the slow consumer",
        lambda: (demo.sample("tornado_iostream_write_buffer_max_bytes") or 0) > 4 * MiB or None,
        timeout=60,
        interval=0.5,
    )
    assert queued
    assert demo.sample("tornado_iostream_write_buffer_bytes") >= 4 * MiB
    assert demo.service.leaks["slow-consumer"].size > 4 * MiB
    demo.switch("slow-consumer", "off")
    wait_for(
        "the queue freed",
        lambda: demo.sample("tornado_iostream_write_buffer_max_bytes") < MiB,
        timeout=30,
        interval=0.5,
    )


def test_timers_leak_schedules_expiries_nothing_cancels(demo: Demo) -> None:
    leak = demo.service.leaks["timers"]
    status, _, body = demo.get("/login?user=ada")
    assert (status, json.loads(body)) == (200, {"session_expires_in": 1.0, "leaked_timers": 0})
    demo.switch("timers", "on")
    demo.hit("/login?user=ada", 24)
    status, _, body = demo.get("/login?user=bob")
    assert json.loads(body) == {"session_expires_in": 3600.0, "leaked_timers": 25}
    timers = list(leak.timers)
    assert len(timers) == 25 and not any(timer.cancelled() for timer in timers)
    now = demo.call(lambda: asyncio.sleep(0, asyncio.get_running_loop().time()))
    assert all(3500 < timer.when() - now <= 3600 for timer in timers)  # an hour away
    demo.switch("timers", "off")
    assert leak.size == 0 and leak.timers == []
    assert all(timer.cancelled() for timer in timers)  # off cancels what was leaked


def test_cli_rejects_an_unknown_leak() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tornado_memory_exporter", "demo", "--leak", "nope"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"invalid choice: 'nope'" in result.stderr


def test_webhook_logger_records_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    received: deque[dict] = deque(maxlen=200)
    payload = {
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "TornadoHandlersLeaking", "severity": "warning"},
                "annotations": {"summary": "Finished handlers stay alive."},
            }
        ],
    }
    with AppServer(make_webhook_app(received)) as server, caplog.at_level(logging.WARNING):
        request = urllib.request.Request(
            server.url + "/", data=json.dumps(payload).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == {"received": 1}
        status, _, body = server.get("/")
        bad = urllib.request.Request(server.url + "/", data=b"{not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(bad, timeout=10)
    assert status == 200
    assert json.loads(body) == {"notifications": [payload]}
    assert error.value.code == 400
    assert list(received) == [payload]
    assert (
        "alert FIRING TornadoHandlersLeaking {'severity': 'warning'}: Finished handlers stay alive."
        in caplog.messages
    )


@pytest.mark.integration
def test_stack_configurations_pass_promtool_and_amtool(tmp_path: Path) -> None:
    # What Stack.start() writes: JSON (valid YAML, no YAML library needed at run time).
    rules = tmp_path / "rules.yml"
    groups = stack.fast_rules()["groups"]
    rules.write_text(json.dumps(stack.fast_rules()))
    prometheus = tmp_path / "prometheus.yml"
    prometheus.write_text(
        json.dumps(
            stack.prometheus_config(
                target="127.0.0.1:8888", alertmanager="127.0.0.1:9093", rule_file=str(rules)
            )
        )
    )
    alertmanager = tmp_path / "alertmanager.yml"
    alertmanager.write_text(
        json.dumps(stack.alertmanager_config(webhook_url="http://127.0.0.1:9095/"))
    )
    checked = promtool("check", "config", str(prometheus))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found".encode() in checked.stdout
    amtool = subprocess.run(
        [require_binary("amtool"), "check-config", str(alertmanager)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr


def test_the_demo_terminal_shows_no_background_load() -> None:
    # The load calls /slow through the upstream client twice a second; its lines would scroll
    # the banner's URLs away.
    process = subprocess.Popen(
        [sys.executable, "-m", "tornado_memory_exporter", "demo", "--port", "0", "--no-stack"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = []
        for line in process.stdout:
            banner.append(line)
            if line.startswith("Ctrl-C"):
                break
        metrics = banner[1].split()[1]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # the load runs meanwhile
            with urllib.request.urlopen(metrics, timeout=10) as response:
                text = response.read().decode()
            time.sleep(0.5)
        acquires = [
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "tornado_pool_acquires_total" and s.labels == {"pool": "upstream"}
        ]
        assert acquires and acquires[0] > 0, "the load never called /slow through the upstream pool"
        with urllib.request.urlopen(metrics.replace("/metrics", "/leaks"), timeout=10):
            pass  # a request of the user's own: it is logged
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logged = [line for line in errors.splitlines() if "tornado.access" in line]
    assert any("GET /leaks" in line for line in logged), errors[-2000:]
    assert not [line for line in logged if "/slow" in line or "/items" in line], logged[:5]


def test_cli_without_stack_serves_metrics_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tornado_memory_exporter",
            "demo",
            "--port",
            "0",
            "--no-stack",
            "--no-load",
            "--leak",
            "cache",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = []
        for line in process.stdout:
            banner.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                break
        assert [line.split(":")[0] for line in banner[:4]] == [
            "demo app",
            "metrics",
            "leaks",
            "switch a leak",
        ]
        assert not any(line.startswith(("prometheus", "alertmanager")) for line in banner)
        metrics = banner[1].split()[1]
        with urllib.request.urlopen(metrics, timeout=10) as response:
            assert b"tornado_process_resident_memory_bytes " in response.read()
        with urllib.request.urlopen(
            metrics.replace("/metrics", "/leaks/cache"), timeout=10
        ) as response:
            assert json.load(response)["on"] is True
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_find_binaries_honours_the_tme_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = {}
    for name in ("prometheus-3", "am-0.33"):
        fake[name] = tmp_path / name
        fake[name].write_text("#!/bin/sh\n")
        fake[name].chmod(0o755)
    monkeypatch.setenv("TME_PROMETHEUS", str(fake["prometheus-3"]))
    monkeypatch.setenv("TME_ALERTMANAGER", str(fake["am-0.33"]))
    assert stack.find_binaries() == (str(fake["prometheus-3"]), str(fake["am-0.33"]))
    monkeypatch.setenv("TME_ALERTMANAGER", str(tmp_path / "absent"))
    assert (
        stack.find_binaries() is None
    )  # a named binary that is missing is not replaced by another
