"""The leak explorer's JSON API on a real Tornado app that leaks: chains, allocation window,
security defaults. The app runs on 127.0.0.1 in a background thread (appserver.py)."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import tracemalloc
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import leaky_app
import pytest
import tornado.ioloop
import tornado.web
from appserver import AppServer
from explorer_client import API, AUTH, api, explorer_config, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from realbin import wait_for

from tornado_memory_exporter import Config, ObjectPool, install
from tornado_memory_exporter.pools import PoolSnapshot


def walk(server: AppServer, type_name: str) -> dict[str, Any]:
    status, started = api(server, "POST", "/chains", {"type": type_name})
    assert status == 202 and started["state"] == "running", (status, started)

    def done() -> dict[str, Any] | None:
        _, detail = api(server, "GET", f"/type?name={type_name}")
        return detail["walk"] if detail["walk"]["state"] != "running" else None

    result = wait_for(f"chain walk of {type_name}", done, timeout=60, interval=0.1)
    assert result["state"] == "done", result
    return result


@pytest.fixture
def leaky():
    leaky_app.LEAKED.clear()
    leaky_app.SECRETS.clear()
    yield leaky_app
    leaky_app.LEAKED.clear()
    leaky_app.SECRETS.clear()


@pytest.mark.parametrize("mode", ["fork", "inloop"])
def test_growing_type_is_listed_and_its_chain_ends_at_the_module_global(leaky, mode) -> None:
    with AppServer(leaky.make_app(), config=explorer_config(census_mode=mode)) as server:
        assert api(server, "POST", "/census", {})[0] == 200  # the baseline
        for _ in range(4):
            assert server.get("/leak")[0] == 200
        status, summary = api(server, "POST", "/census", {})
        assert status == 200
        (row,) = [r for r in summary["types"] if r["type"] == "leaky_app.LeakedRecord"]
        assert row == {
            "type": "leaky_app.LeakedRecord",
            "count": 200,
            "growth": 200,
            "last_growth": None,
            "counts": [None, 200],
            "holder": None,  # looked for by the census after the one that saw the growth
        }
        assert summary["types"][0]["growth"] >= 200  # among the fastest growing, on top
        assert len(summary["censuses"]) == 2
        _, summary = api(server, "POST", "/census", {})
        (row,) = [r for r in summary["types"] if r["type"] == "leaky_app.LeakedRecord"]
        # The forked census names the holder, with the words of <ns>_object_holder_info.
        assert row["holder"] == (
            "leaky_app.LEAKED (module global) > list" if mode == "fork" else None
        )

        result = walk(server, "leaky_app.LeakedRecord")
        assert result["count"] == 200 and len(result["chains"]) == 3
        for chain in result["chains"]:
            assert chain["root"] == {"kind": "module global", "name": "leaky_app.LEAKED"}
            steps = chain["steps"]
            assert [s["type"] for s in steps] == ["dict", "list", "leaky_app.LeakedRecord"]
            assert steps[0]["via"] == ".LEAKED" and steps[1]["len"] == 200
            assert steps[1]["via"].startswith("[") and steps[1]["via"][1:-1].isdigit()
            assert not any("repr" in step for step in steps)
        # Forked, the loop is held only for the fork; in the loop, the walk yields to it.
        assert result["mode"] == mode
        assert result["slices"] > 1 if mode == "inloop" else result["slices"] == 1
        assert result["max_stall_seconds"] <= result["duration_seconds"]


def test_closure_held_by_an_ioloop_callback_is_traced_to_the_callback(leaky) -> None:
    with AppServer(leaky.make_app(), config=explorer_config()) as server:

        async def start() -> object:
            return leaky.start_callback_leak(100)

        handle = server.call(start)
        try:
            result = walk(server, "leaky_app.HeldByCallback")
        finally:

            async def cancel() -> None:
                tornado.ioloop.IOLoop.current().remove_timeout(handle)

            server.call(cancel)
        assert result["count"] == 100
        for chain in result["chains"]:
            root = chain["root"]
            assert root["kind"] == "ioloop callback"
            assert root["name"].startswith("TimerHandle -> start_callback_leak.<locals>.tick (")
            assert root["name"].endswith(f"({leaky.__file__}:{leaky.line_of('def tick()')})")
            kinds = [s["type"] for s in chain["steps"]]
            assert kinds[0] == "asyncio.events.TimerHandle" and kinds[-3:] == [
                "cell",
                "list",
                "leaky_app.HeldByCallback",
            ]
            assert "function" in kinds


def test_tracemalloc_window_reports_the_leaking_line_and_stops_by_itself(leaky) -> None:
    assert not tracemalloc.is_tracing()
    with AppServer(leaky.make_app(), config=explorer_config()) as server:
        status, started = api(
            server,
            "POST",
            "/allocations",
            {"seconds": 2, "frames": 1, "types": ["leaky_app.LeakedRecord"]},
        )
        assert status == 202 and started["state"] == "tracing" and started["started_by_explorer"]
        assert tracemalloc.is_tracing()
        assert api(server, "POST", "/allocations", {"seconds": 1})[0] == 409  # one window at a time
        for _ in range(3):
            assert server.get("/leak")[0] == 200

        def finished() -> dict[str, Any] | None:
            _, state = api(server, "GET", "/allocations")
            return state if state["state"] not in ("tracing", "finishing") else None

        result = wait_for("allocation window end", finished, timeout=60, interval=0.1)
        assert result["state"] == "done", result
        assert not tracemalloc.is_tracing()  # stopped by itself
        line = leaky.leak_line()
        top = result["sites"][0]
        assert (top["file"], top["line"]) == (leaky.__file__, line)
        assert top["code"] == "LEAKED.append(LeakedRecord(bytearray(512)))  # <- the leaking line"
        assert top["count_diff"] >= 150 and top["size_diff"] >= 150 * 512
        if sys.version_info >= (3, 12):
            assert result["by_type"]["leaky_app.LeakedRecord"] == [
                {"file": leaky.__file__, "line": line, "code": top["code"], "count": 150}
            ]
        else:  # CPython issue 101430: no per-object traceback for instances with a __dict__
            assert "leaky_app.LeakedRecord" not in result["by_type"]
            assert "101430" in result["by_type_note"]
        overhead = result["overhead"]
        assert overhead["allocation_slowdown"] > 1.0  # tracing makes allocation slower
        assert overhead["tracemalloc_memory_bytes"] > 0 and overhead["snapshot_seconds"] >= 0


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"seconds": 0}, "seconds=0 must be a finite number > 0 and at most 60"),
        ({"seconds": 61}, "seconds=61 must be a finite number > 0 and at most 60"),
        ({"seconds": "1"}, "seconds='1' must be a finite number > 0 and at most 60"),
        ({"frames": 0}, "frames=0 must be an integer from 1 to 10"),
        ({"frames": 11}, "frames=11 must be an integer from 1 to 10"),
        ({"types": "leaky_app.X"}, "types must be a list of at most 10 type names"),
    ],
)
def test_allocation_window_limits_are_enforced(body: dict, reason: str) -> None:
    with AppServer(config=explorer_config()) as server:
        status, payload = api(server, "POST", "/allocations", body)
        assert (status, payload) == (400, f"400 {reason}\n".encode())
        assert not tracemalloc.is_tracing()


def test_explorer_is_off_by_default() -> None:
    with AppServer() as server:
        for path in ("/debug/memory/", "/debug/memory/static/app.js", f"{API}/summary"):
            assert server.get(path, headers=AUTH)[0] == 404
        assert request(server.url + API + "/chains", "POST", {"type": "dict"}, AUTH)[0] == 404


def test_install_refuses_the_explorer_without_credentials() -> None:
    registry = CollectorRegistry()

    async def main() -> None:
        install(
            tornado.web.Application([]), config=Config(explorer_enabled=True), registry=registry
        )

    with pytest.raises(
        ValueError, match=r"explorer_enabled=True on the application's server \(install\(\)\) needs"
    ):
        asyncio.run(main())
    assert list(registry.collect()) == []  # nothing was started


def test_wrong_or_missing_credentials_get_401() -> None:
    with AppServer(config=explorer_config(basic_auth=("ops", "pw"))) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic b3BzOnd4"}):
            status, response_headers, body = server.get(f"{API}/summary", headers=headers)
            assert (status, body) == (401, b"401 Unauthorized\n")
            assert response_headers["Www-Authenticate"] == 'Bearer realm="tornado-memory-exporter"'
            status, _, _ = request(server.url + API + "/census", "POST", {}, headers)
            assert status == 401
        assert server.get(f"{API}/summary", headers=AUTH)[0] == 200
        assert server.get(f"{API}/summary", headers={"Authorization": "Basic b3BzOnB3"})[0] == 200
        # The page itself carries no data: it loads without credentials and asks for them.
        status, headers, page = server.get("/debug/memory/")
        assert status == 200 and b"<title>" in page and b"LeakedRecord" not in page
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_actions_are_json_posts_from_the_same_site_only() -> None:
    with AppServer(config=explorer_config()) as server:
        url = server.url + API
        assert request(url + "/chains", "GET", None, AUTH)[0] == 405
        assert request(url + "/summary", "POST", {}, AUTH)[0] == 405
        assert request(
            url + "/chains",
            "POST",
            raw=b"type=dict",
            headers=AUTH,
            content_type="application/x-www-form-urlencoded",
        )[:1] == (415,)
        cross = {**AUTH, "Sec-Fetch-Site": "cross-site"}
        assert request(url + "/chains", "POST", {"type": "dict"}, cross)[0] == 403
        foreign = {**AUTH, "Origin": "http://evil.example"}
        assert request(url + "/chains", "POST", {"type": "dict"}, foreign)[0] == 403
        same = {**AUTH, "Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        assert request(url + "/census", "POST", {}, same)[0] == 200
        assert request(url + "/chains", "POST", raw=b"{nope", headers=AUTH)[0] == 400
        assert request(url + "/chains", "POST", raw=b"[]", headers=AUTH)[0] == 400
        assert request(url + "/chains", "POST", raw=b" " * 5000, headers=AUTH)[0] == 413
        assert request(url + "/chains", "POST", {"type": "dict", "samples": 9}, AUTH)[0] == 400
        assert request(url + "/type", "GET", None, AUTH)[0] == 400


def test_object_contents_are_hidden_unless_allowed(leaky) -> None:
    secret_key, secret_value = f"tok-{uuid.uuid4()}", f"value-{uuid.uuid4()}"
    leaky.SECRETS[secret_key] = leaky.SecretHolder(secret_value)
    with AppServer(config=explorer_config()) as server:
        result = walk(server, "leaky_app.SecretHolder")
        text = json.dumps(result)
        assert secret_key not in text and secret_value not in text
        (chain, *_) = result["chains"]
        assert chain["root"] == {"kind": "module global", "name": "leaky_app.SECRETS"}
        assert [s.get("via") for s in chain["steps"]] == [".SECRETS", "[<hidden> key]", None]
        assert not any("repr" in s for s in chain["steps"])
    with AppServer(config=explorer_config(explorer_show_contents=True)) as server:
        (chain, *_) = walk(server, "leaky_app.SecretHolder")["chains"]
        assert chain["steps"][1]["via"] == f"[{secret_key!r}]"
        assert all(len(s["repr"]) <= 120 for s in chain["steps"])


def test_a_port_of_its_own_serves_the_explorer_on_loopback_without_credentials(leaky) -> None:
    config = Config(census_interval=0, explorer_enabled=True)
    with AppServer(leaky.make_app(), config=config, path=None) as app:  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"explorer_enabled=True on address='0.0.0.0' needs"):
            app.exporter.serve(port=0, address="0.0.0.0")
        url = app.exporter.serve(port=0, address="127.0.0.1")
        base = f"{url}{API}"
        app.get("/leak")
        status, _, body = request(base + "/census", "POST", {})  # handed over to the app loop
        assert status == 200 and json.loads(body)["censuses"][0]["scanned"] > 0
        assert request(base + "/summary", headers={"Host": "evil.example"})[0] == 403
        assert request(f"{url}/metrics")[0] == 200
    with pytest.raises(OSError):  # stop() closed the port
        urllib.request.urlopen(f"{url}/metrics", timeout=5)


def test_config_validates_the_explorer_options() -> None:
    for kwargs, message in [
        ({"explorer_enabled": "yes"}, "explorer_enabled='yes' must be True or False"),
        ({"explorer_path": "debug"}, "explorer_path='debug' must start with '/'"),
        (
            {"explorer_path": "/debug/"},
            "explorer_path='/debug/' must start with '/', not end with '/'",
        ),
    ]:
        with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            Config(**kwargs)


def test_dashboards_link_growing_types_to_the_explorer_at_its_default_path() -> None:
    dashboards = Path(__file__).resolve().parents[2] / "dashboards"
    path = Config().explorer_path
    for name in ("tornado-memory-overview.json", "tornado-memory-leak-hunt.json"):
        panels = json.loads((dashboards / name).read_text())["panels"]
        (panel,) = [p for p in panels if p.get("title") == "Fastest-growing types"]
        (link,) = panel["fieldConfig"]["defaults"]["links"]
        assert link["url"] == (
            f"http://${{__field.labels.instance}}{path}/#type=${{__field.labels.type:percentencode}}"
        ), name


class UnboundedPool:
    """A pool-like object whose capacity is unbounded (JSON has no Infinity)."""

    def pool_snapshot(self) -> PoolSnapshot:
        return PoolSnapshot(capacity=math.inf, in_use=3, idle=0, waiting=0)


def test_summary_shows_watched_objects_and_pools(leaky) -> None:
    pool = ObjectPool(lambda: bytearray(16), max_size=4, name="buffers")
    cache = {f"k{i}": i for i in range(7)}
    with AppServer(config=explorer_config()) as server:
        server.exporter.pools.register("buffers", pool)
        server.exporter.pools.register("unbounded", UnboundedPool())
        server.exporter.watch("cache", cache)
        lease_line = sys._getframe().f_lineno + 1
        lease = pool.lease_sync()
        pool.lease_sync()  # dropped at once without release(): a leak
        leak_line = lease_line + 1
        status, summary = api(server, "POST", "/census", {})
        assert status == 200
        assert summary["watched"] == [
            {"name": "cache", "items": 7, "bytes": summary["watched"][0]["bytes"], "exact": True}
        ]
        assert summary["watched"][0]["bytes"] > 7 * 50
        buffers, unbounded = summary["pools"]
        assert {
            k: buffers[k] for k in ("pool", "capacity", "in_use", "idle", "waiting", "leaked")
        } == {
            "pool": "buffers",
            "capacity": 4.0,
            "in_use": 1.0,
            "idle": 0.0,  # the leaked object went with its lease; only its slot came back
            "waiting": 0.0,
            "leaked": 1.0,
        }
        assert buffers["oldest_checkout_seconds"] >= 0
        # Where the held and the leaked objects were acquired: code locations, no contents.
        (checkout,) = buffers["checkouts"]
        assert checkout["site"] == {"file": __file__, "line": lease_line}
        assert checkout["age_seconds"] >= 0
        assert buffers["leak_sites"] == [{"file": __file__, "line": leak_line, "count": 1}]
        assert unbounded == {
            "pool": "unbounded",
            "capacity": "inf",
            "in_use": 3.0,
            "idle": 0.0,
            "waiting": 0.0,
        }
        assert {
            "handler": "tornado_memory_exporter.explorer.api.CensusHandler",
            "state": "active",
            "count": 1,
            "holder": None,
        } in summary["handlers"]
        lease.release()


def test_stop_removes_the_explorer_and_install_serves_it_again() -> None:
    with AppServer(config=explorer_config()) as server:
        assert server.get(f"{API}/summary", headers=AUTH)[0] == 200

        async def stop() -> None:
            server.exporter.stop()

        server.call(stop)
        assert server.get(f"{API}/summary", headers=AUTH)[0] == 404
        assert server.get("/debug/memory/")[0] == 404

        async def again() -> None:
            server.exporter = install(server.app, config=server.config, registry=server.registry)

        server.call(again)
        assert server.get(f"{API}/summary", headers=AUTH)[0] == 200


HOSTILE_PATHS = st.sampled_from(
    [
        "/debug/memory",
        "/debug/memory/",
        "/debug/memory/static/app.js",
        "/debug/memory/static/x.js",
        f"{API}/summary",
        f"{API}/type",
        f"{API}/chains",
        f"{API}/allocations",
        f"{API}/census",
        f"{API}/nope",
        "/debug/memory/api",
    ]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
BODIES = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.fixed_dictionaries(
        {},
        optional={
            "type": JSON_VALUES | st.sampled_from(["dict", "leaky_app.LeakedRecord"]),
            "samples": JSON_VALUES,
            "seconds": JSON_VALUES | st.just(0.1),
            "frames": JSON_VALUES,
            "types": JSON_VALUES,
        },
    ).map(lambda d: json.dumps(d).encode()),
)


@pytest.fixture(scope="module")
def hostile_server():
    with AppServer(config=explorer_config()) as server:
        window = server.exporter.explorer.allocations
        window.max_seconds, window.max_frames = 0.2, 2  # hostile windows end quickly
        yield server
    assert not tracemalloc.is_tracing()  # stop() ended any window a request opened


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=HOSTILE_PATHS,
    query=st.dictionaries(
        st.sampled_from(["name", "x", "name[]"]), st.text(max_size=400), max_size=2
    ),
    body=BODIES,
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", ""]
    ),
    authorized=st.booleans(),
)
def test_hostile_requests_get_2xx_or_4xx_never_a_traceback(
    hostile_server, method, path, query, body, content_type, authorized
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if authorized:
        headers.update(AUTH)
    if method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        body = None
    elif body is None:
        body = b""
    url = hostile_server.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    status, _, payload = request(
        url, method, raw=body, headers=headers, content_type=content_type or "text/plain"
    )
    assert 200 <= status < 500, (status, payload[:300])
    assert b"Traceback" not in payload
    if status == 200 and path.startswith(API) and method == "GET":
        json.loads(payload)


def test_watched_objects_end_chains_under_their_watch_name(leaky) -> None:
    leaky.SECRETS["k"] = leaky.SecretHolder("v")
    with AppServer(config=explorer_config()) as server:

        async def watch() -> None:
            server.exporter.watch("sessions", leaky.SECRETS)

        server.call(watch)
        (chain, *_) = walk(server, "leaky_app.SecretHolder")["chains"]
        assert chain["root"] == {"kind": "registered root", "name": "watched sessions"}
        assert [(s["type"], s.get("via")) for s in chain["steps"]] == [
            ("dict", "[<hidden> key]"),
            ("leaky_app.SecretHolder", None),
        ]

        async def unwatch() -> None:
            server.exporter.unwatch("sessions")

        server.call(unwatch)
        (chain, *_) = walk(server, "leaky_app.SecretHolder")["chains"]
        assert chain["root"] == {"kind": "module global", "name": "leaky_app.SECRETS"}


def test_stopping_the_exporter_ends_an_open_allocation_window() -> None:
    with AppServer(config=explorer_config()) as server:
        assert api(server, "POST", "/allocations", {"seconds": 60})[1]["state"] == "tracing"
        assert tracemalloc.is_tracing()

        async def stop() -> None:
            server.exporter.stop()

        server.call(stop)
        assert not tracemalloc.is_tracing()
        assert server.exporter.explorer.allocations.status()["state"] == "cancelled"


def test_a_window_leaves_tracing_it_did_not_start_running() -> None:
    tracemalloc.start(1)
    try:
        with AppServer(config=explorer_config()) as server:
            status, started = api(server, "POST", "/allocations", {"seconds": 0.5})
            assert status == 202 and started["started_by_explorer"] is False

            def finished() -> dict[str, Any] | None:
                state = api(server, "GET", "/allocations")[1]
                return state if state["state"] == "done" else None

            wait_for("allocation window end", finished, timeout=60, interval=0.1)
            assert tracemalloc.is_tracing()  # whoever started it stops it
    finally:
        tracemalloc.stop()


def test_the_explorer_answers_at_a_configured_path() -> None:
    with AppServer(config=explorer_config(explorer_path="/ops/heap")) as server:
        assert server.get("/ops/heap/api/summary", headers=AUTH)[0] == 200
        assert server.get("/ops/heap/")[0] == 200
        assert server.get(f"{API}/summary", headers=AUTH)[0] == 404


def test_a_port_of_its_own_answers_503_once_the_application_loop_is_gone(monkeypatch) -> None:
    config = Config(census_interval=0, explorer_enabled=True)
    with AppServer(config=config, path=None) as app:  # type: ignore[arg-type]
        exporter = app.exporter
        stop = exporter.stop
        monkeypatch.setattr(exporter, "stop", lambda: None)  # an app that never stops it
        url = exporter.serve(port=0)
    try:  # the AppServer closed its loop on exit; the port still answers
        status, _, body = request(f"{url}{API}/summary")
        assert (status, body) == (503, b"503 application loop is closed\n")
        assert request(f"{url}/metrics")[0] == 200
    finally:
        stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_malloc_trim_is_an_authenticated_post_that_reports_what_rss_gave_back() -> None:
    with AppServer(config=explorer_config()) as server:
        url = server.url + API + "/malloc_trim"
        assert request(url, "POST", {}, {})[0] == 401
        assert request(url, "GET", None, AUTH)[0] == 405

        async def fragment() -> None:
            # Free most of many mid-size malloc blocks (above pymalloc's 512 bytes, below the mmap
            # threshold): glibc keeps the holes until trimmed.
            blocks = [bytearray(4000) for _ in range(40_000)]
            del blocks[::2]
            FRAGMENTS[:] = blocks[::8]  # a few survivors pin the heap's top
            del blocks

        server.call(fragment)
        status, answer = api(server, "POST", "/malloc_trim", {})
        FRAGMENTS.clear()
    assert status == 200, answer
    assert set(answer) == {
        "rss_before_bytes",
        "rss_after_bytes",
        "released_bytes",
        "malloc_trim_returned",
        "seconds",
    }
    assert answer["released_bytes"] == max(
        0, answer["rss_before_bytes"] - answer["rss_after_bytes"]
    )
    assert answer["malloc_trim_returned"] == 1 and answer["released_bytes"] > 1_000_000


FRAGMENTS: list = []
