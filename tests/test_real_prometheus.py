"""The exporter's output as real Prometheus tooling sees it."""

import subprocess

import pytest
from appserver import AppServer
from realbin import Prometheus, promtool, require_binary, wait_for

from tornado_memory_exporter import Config
from tornado_memory_exporter.demo import DemoService

pytestmark = pytest.mark.integration


def test_promtool_check_metrics_is_silent_on_a_real_scrape():
    """Every family the exporter can publish: process (full), GC, census, pools, watched objects."""
    service = DemoService()
    config = Config(census_interval=0, process_full_memory=True)
    with AppServer(service.make_app(), config=config) as server:
        server.call(lambda: service.start(server.exporter, server.url, load=False))
        server.call(server.exporter.census_now)
        _, _, body = server.get("/metrics")
        server.call(service.stop)
    for family in ("_objects{", "_pool_in_use{", "_watched_object_bytes{", "_handlers_alive"):
        assert f"tornado{family}".encode() in body, family
    result = promtool("check", "metrics", stdin=body)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_openmetrics_output_parses_strictly():
    # promtool 2.42 lints the text format only (it reads OpenMetrics counters as help-less), so
    # the OpenMetrics rendering is checked with prometheus_client's strict OpenMetrics parser.
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    with AppServer(DemoService().make_app()) as server:
        _, headers, body = server.get(
            "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    assert families["tornado_gc_collections"] == "counter"
    assert families["tornado_gc_pause_seconds"] == "histogram"


def test_prometheus_scrapes_the_demo_app():
    with AppServer(DemoService().make_app()) as server, Prometheus([server.target]) as prometheus:
        # The binary asked for (TME_PROMETHEUS in the Prometheus 3 leg) is the one answering.
        version = subprocess.run(
            [require_binary("prometheus"), "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[2]
        assert prometheus.api("status/buildinfo")["version"] == version
        (up,) = prometheus.wait_for_series('up{job="tornado"}')
        assert up["value"][1] == "1"
        (rss,) = prometheus.wait_for_series("tornado_process_resident_memory_bytes")
        assert float(rss["value"][1]) > 10 * 2**20
        collections = prometheus.wait_for_series("tornado_gc_collections_total")
        assert sorted(c["metric"]["generation"] for c in collections) == ["0", "1", "2"]
        # The lag probe ticks every 0.5 s, so two scrapes apart its rate is a real number.
        lag = wait_for(
            "a numeric IOLoop lag p99",
            lambda: [
                r
                for r in prometheus.query(
                    "histogram_quantile(0.99, rate(tornado_ioloop_lag_seconds_bucket[10s]))"
                )
                if r["value"][1] != "NaN"
            ],
            timeout=20,
        )
        assert 0 <= float(lag[0]["value"][1]) < 1.0
