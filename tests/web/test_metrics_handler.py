"""MetricsHandler and the separate metrics server, over real HTTP on 127.0.0.1."""

import base64
import gzip
import urllib.error
import urllib.request

import pytest
import tornado.testing
import tornado.web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from tornado_memory_exporter import Config, MetricsHandler, start_metrics_server


def sample_registry():
    registry = CollectorRegistry()
    Counter("orders", "Orders taken.", registry=registry).inc(3)
    Counter("refunds", "Refunds given.", registry=registry).inc(1)
    return registry


class HandlerTest(tornado.testing.AsyncHTTPTestCase):
    config = Config()

    def get_app(self):
        return tornado.web.Application(
            [
                (
                    r"/metrics",
                    MetricsHandler,
                    {"registry": sample_registry(), "config": self.config},
                ),
            ]
        )

    def test_text_format_by_default(self):
        response = self.fetch("/metrics")
        assert response.code == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
        assert families["orders"].samples[0].value == 3

    def test_openmetrics_when_asked(self):
        response = self.fetch(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.headers["Content-Type"].startswith(
            "application/openmetrics-text; version=1.0.0"
        )
        assert response.body.endswith(b"# EOF\n")

    def test_gzip_when_accepted(self):
        response = self.fetch(
            "/metrics", headers={"Accept-Encoding": "gzip"}, decompress_response=False
        )
        assert response.headers["Content-Encoding"] == "gzip"
        assert b"orders_total 3.0" in gzip.decompress(response.body)
        plain = self.fetch(
            "/metrics", headers={"Accept-Encoding": "gzip;q=0"}, decompress_response=False
        )
        assert "Content-Encoding" not in plain.headers

    def test_name_filter(self):
        body = self.fetch("/metrics?name[]=refunds_total").body.decode()
        assert "refunds_total 1.0" in body
        assert "orders" not in body

    def test_too_many_name_filters_is_a_400(self):
        query = "&".join(f"name[]=m{i}" for i in range(1001))
        response = self.fetch(f"/metrics?{query}")
        assert response.code == 400
        assert b"Traceback" not in response.body

    def test_head_has_the_headers_and_no_body(self):
        get = self.fetch("/metrics", decompress_response=False)
        head = self.fetch("/metrics", method="HEAD", decompress_response=False)
        assert head.code == 200
        assert head.body == b""
        assert head.headers["Content-Length"] == str(len(get.body))

    def test_other_methods_are_405(self):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = self.fetch(
                "/metrics",
                method=method,
                body=b"" if method != "DELETE" else None,
                allow_nonstandard_methods=True,
            )
            assert response.code == 405, method
            assert b"405" in response.body and b"Traceback" not in response.body

    def test_unknown_path_is_404(self):
        assert self.fetch("/nope").code == 404

    def test_malformed_accept_falls_back_to_text(self):
        for accept in (
            "application/openmetrics-text; version=a.b.c",
            "text/plain; version=x",
            "," * 10000,
        ):
            response = self.fetch("/metrics", headers={"Accept": accept})
            assert response.code == 200, accept
            assert response.headers["Content-Type"].startswith(
                ("text/plain", "application/openmetrics")
            )

    def test_no_etag_revalidation(self):
        first = self.fetch("/metrics")
        assert "Etag" not in first.headers


class TokenAuthTest(tornado.testing.AsyncHTTPTestCase):
    def get_app(self):
        config = Config(auth_token="s3cret", basic_auth=("prom", "pa:ss"))
        return tornado.web.Application(
            [
                (r"/metrics", MetricsHandler, {"registry": sample_registry(), "config": config}),
            ]
        )

    def test_missing_credentials_get_401_with_both_challenges(self):
        response = self.fetch("/metrics")
        assert response.code == 401
        challenges = response.headers.get_list("WWW-Authenticate")
        assert challenges == [
            'Bearer realm="tornado-memory-exporter"',
            'Basic realm="tornado-memory-exporter", charset="UTF-8"',
        ]
        assert b"orders" not in response.body

    def test_bearer_token(self):
        assert self.fetch("/metrics", headers={"Authorization": "Bearer s3cret"}).code == 200
        assert self.fetch("/metrics", headers={"Authorization": "Bearer s3cre"}).code == 401
        assert self.fetch("/metrics", headers={"Authorization": "bearer s3cret"}).code == 200

    def test_basic_auth_with_colon_in_password(self):
        good = base64.b64encode(b"prom:pa:ss").decode()
        wrong = base64.b64encode(b"prom:pass").decode()
        assert self.fetch("/metrics", headers={"Authorization": f"Basic {good}"}).code == 200
        assert self.fetch("/metrics", headers={"Authorization": f"Basic {wrong}"}).code == 401
        assert self.fetch("/metrics", headers={"Authorization": "Basic !!!not-base64"}).code == 401
        assert self.fetch("/metrics", headers={"Authorization": "Digest x"}).code == 401

    def test_head_and_405_also_require_credentials(self):
        assert self.fetch("/metrics", method="HEAD").code == 401


def _get(url, headers=None):
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=5
        ) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_metrics_server_on_its_own_port_and_thread():
    server = start_metrics_server(port=0, registry=sample_registry())
    try:
        assert server.url.startswith("http://127.0.0.1:")
        status, body = _get(server.url + "/metrics")
        assert status == 200 and b"orders_total 3.0" in body
        assert _get(server.url + "/other")[0] == 404
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/metrics", timeout=2)


def test_metrics_server_auth_and_bad_arguments():
    server = start_metrics_server(port=0, registry=sample_registry(), config=Config(auth_token="t"))
    try:
        assert _get(server.url + "/metrics")[0] == 401
        assert _get(server.url + "/metrics", {"Authorization": "Bearer t"})[0] == 200
    finally:
        server.stop()
    with pytest.raises(ValueError, match="port=70000"):
        start_metrics_server(port=70000)
    with pytest.raises(ValueError, match="path='metrics'"):
        start_metrics_server(port=0, path="metrics")


def test_metrics_server_port_in_use_raises_in_the_caller():
    first = start_metrics_server(port=0, registry=sample_registry())
    try:
        with pytest.raises(OSError):
            start_metrics_server(port=first.port, registry=sample_registry())
    finally:
        first.stop()
