"""Hostile input on every endpoint we serve (the route ``install()`` adds, the worker view
behind it, and ``start_metrics_server``): property-based requests over real HTTP, always
answered 2xx/4xx with no traceback, and credentials compared in constant time."""

from __future__ import annotations

import base64
import http.client
import socket
import statistics
import time
import urllib.parse

import psutil
import pytest
from appserver import AppServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge

from tornado_memory_exporter import Config, start_metrics_server
from tornado_memory_exporter.faults import Faults
from tornado_memory_exporter.web import credentials as auth
from tornado_memory_exporter.web.metrics import CONTENT_TYPE_PLAIN_0_0_4, MAX_NAME_FILTERS
from tornado_memory_exporter.workers import SnapshotWriter, WorkerView

TOKEN = "s3cret-token"
USER, PASSWORD = "prom", "pa:ss"
GOOD_BEARER = f"Bearer {TOKEN}"
GOOD_BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
AUTH = Config(census_interval=0, auth_token=TOKEN, basic_auth=(USER, PASSWORD))
# Content types a 200 may carry: never one echoing what the client sent.
KNOWN_TYPES = {
    CONTENT_TYPE_PLAIN_0_0_4,
    "application/openmetrics-text; version=1.0.0; charset=utf-8",
    *(
        f"application/openmetrics-text; version=1.0.0; charset=utf-8; escaping={e}"
        for e in ("underscores", "dots", "values", "allow-utf-8")
    ),
    *(
        f"text/plain; version=1.0.0; charset=utf-8; escaping={e}"
        for e in ("underscores", "dots", "values", "allow-utf-8")
    ),
}

# Header values a client can put on the wire: latin-1 without control characters.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=300
)
versions = st.sampled_from(
    ["1.0.0", "0.0.1", "0.0.4", "2.0.0", "99.1.0<x>", "a.b.c", "", "1", "1.0.0.0", "-1.0.0"]
)
escapings = st.sampled_from(["underscores", "dots", "values", "allow-utf-8", "bogus", ""])
structured_accept = st.builds(
    lambda kind, v, e, q: f"{kind}; version={v}; escaping={e}; q={q}",
    st.sampled_from(["application/openmetrics-text", "text/plain", "*/*", "application/json"]),
    versions,
    escapings,
    st.sampled_from(["1", "0", "0.5", "x"]),
)
accepts = st.one_of(
    st.none(),
    header_text,
    structured_accept,
    st.lists(structured_accept, max_size=5).map(", ".join),
    st.integers(1, 20000).map(lambda n: "a," * n),
)
authorizations = st.one_of(
    st.none(),
    st.just(GOOD_BEARER),
    st.just(GOOD_BASIC),
    header_text,
    header_text.map(lambda t: f"Bearer {t}"),
    st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.just(GOOD_BEARER + "x"),
    st.just("bearer " + TOKEN),
    st.just("Basic " + "A" * 5000),
)
query_keys = st.one_of(
    st.sampled_from(["name[]", "name", "format", "debug", ""]), st.text(max_size=20)
)
queries = st.one_of(
    st.lists(st.tuples(query_keys, st.text(max_size=40)), max_size=8),
    st.integers(900, 1100).map(lambda n: [("name[]", f"m{i}") for i in range(n)]),
)
requests = st.fixed_dictionaries(
    {
        "method": st.sampled_from(
            ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"]
        ),
        "path": st.sampled_from(
            ["/metrics", "/metrics/", "/METRICS", "/", "/nope", "/metrics/../metrics"]
        ),
        "query": queries,
        "accept": accepts,
        "accept_encoding": st.one_of(
            st.none(), header_text, st.sampled_from(["gzip", "gzip;q=0", "br, gzip;q=0.1"])
        ),
        "authorization": authorizations,
    }
)


def send(port: int, request: dict) -> tuple[int, http.client.HTTPMessage, bytes] | None:
    """One request on a fresh connection; ``None`` when the server closed it unanswered."""
    query = urllib.parse.urlencode(request["query"])
    target = request["path"] + (f"?{query}" if query else "")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(request["method"], target, skip_accept_encoding=True)
        for name in ("accept", "accept_encoding", "authorization"):
            if request[name] is not None:
                connection.putheader(
                    name.replace("_", "-").title(), request[name].encode("latin-1")
                )
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.msg, response.read()
    except (ConnectionError, http.client.RemoteDisconnected):
        return None
    finally:
        connection.close()


def expected_status(request: dict, *, auth_required: bool) -> set[int]:
    routed = routed_status(request, auth_required=auth_required)
    if len(request["query"]) > 1000:
        # Tornado >= 6.5 refuses more than 1000 query arguments before routing; older ones
        # route the request and our own checks answer.
        return {400} | routed
    return routed


def routed_status(request: dict, *, auth_required: bool) -> set[int]:
    if request["path"] != "/metrics":
        return {404, 405}
    if request["method"] not in ("GET", "HEAD"):
        return {405}
    if auth_required and request["authorization"] not in (
        GOOD_BEARER,
        GOOD_BASIC,
        "bearer " + TOKEN,
    ):
        return {401}
    if sum(name == "name[]" for name, _ in request["query"]) > MAX_NAME_FILTERS:
        return {400}
    return {200}


def check(port: int, request: dict, *, auth_required: bool) -> None:
    answer = send(port, request)
    assert answer is not None, "the server closed the connection without an answer"
    status, headers, body = answer
    assert status in expected_status(request, auth_required=auth_required), (status, body[:300])
    assert b"Traceback" not in body and b'File "' not in body
    if status == 200:
        assert headers["Content-Type"] in KNOWN_TYPES, headers["Content-Type"]
    if status == 401:
        assert headers.get_all("WWW-Authenticate") == [
            'Bearer realm="tornado-memory-exporter"',
            'Basic realm="tornado-memory-exporter", charset="UTF-8"',
        ]
        assert b"tornado_" not in body
    if status == 405 and request["path"] == "/metrics":
        assert headers["Allow"] == "GET, HEAD"


HOSTILE = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def installed_route():
    with AppServer(config=AUTH) as server:
        yield server.port


@pytest.fixture(scope="module")
def open_route(tmp_path_factory):
    directory = tmp_path_factory.mktemp("workers")
    sibling = CollectorRegistry()
    Gauge("queue_depth", "Items queued.", registry=sibling).set(1)
    view = WorkerView(sibling, worker="1", faults=Faults(), directory=directory)
    SnapshotWriter(view, interval=60, faults=Faults()).write()  # a live sibling to merge
    config = Config(census_interval=0, worker_label=True, worker_dir=str(directory))
    with AppServer(config=config) as server:
        yield server.port


@pytest.fixture(scope="module")
def separate_server():
    server = start_metrics_server(port=0, registry=CollectorRegistry(), config=AUTH)
    yield server.port
    server.stop()


@HOSTILE
@given(request=requests)
def test_the_installed_route_with_credentials(installed_route, request):
    check(installed_route, request, auth_required=True)


@HOSTILE
@given(request=requests)
def test_the_worker_view_route_without_credentials(open_route, request):
    check(open_route, request, auth_required=False)


@HOSTILE
@given(request=requests)
def test_the_separate_metrics_server(separate_server, request):
    check(separate_server, request, auth_required=True)


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_headers_beyond_tornados_limit_close_the_connection_without_a_5xx(separate_server):
    # Tornado stops reading at max_header_size (64 KiB) and closes: no answer, and no 5xx.
    answer = _raw(
        separate_server, b"GET /metrics HTTP/1.1\r\nAccept: " + b"a" * 70000 + b"\r\n\r\n"
    )
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4")


def test_a_large_body_is_refused_before_it_is_read(separate_server):
    # Our endpoints take no body: the separate server refuses one at once instead of buffering it.
    started = time.monotonic()
    answer = _raw(
        separate_server, b"POST /metrics HTTP/1.1\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 1000
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert time.monotonic() - started < 5


def _median_seconds(
    compare, given: bytes, expected: bytes, rounds: int = 15, batch: int = 20
) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(batch):
            compare(given, expected)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def test_secrets_are_compared_in_constant_time():
    # With a 256 KiB secret a short-circuiting compare is plain to see: `==` answers a
    # first-byte mismatch in nanoseconds and a last-byte one after a 256 KiB memcmp (ratio in
    # the hundreds). Comparing digests costs the same wherever the guess differs.
    secret = b"k" * 2**18
    early, late = b"x" + secret[1:], secret[:-1] + b"x"
    assert (
        not auth.same_secret(early, secret)
        and not auth.same_secret(late, secret)
        and auth.same_secret(secret, secret)
    )
    ratio = _median_seconds(auth.same_secret, late, secret) / _median_seconds(
        auth.same_secret, early, secret
    )
    assert 0.5 < ratio < 2.0, ratio


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_both_schemes_go_through_the_constant_time_compare(scheme, monkeypatch):
    config = Config(auth_token=TOKEN) if scheme == "bearer" else Config(basic_auth=(USER, PASSWORD))
    header = GOOD_BEARER if scheme == "bearer" else GOOD_BASIC
    compared = []
    real = auth.same_secret

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return real(given, expected)

    monkeypatch.setattr(auth, "same_secret", spy)
    assert auth.Credentials.of(config).authorize(header)
    expected = (
        [(TOKEN.encode(), TOKEN.encode())]
        if scheme == "bearer"
        else [(USER.encode(), USER.encode()), (PASSWORD.encode(), PASSWORD.encode())]
    )
    assert compared == expected
    compared.clear()
    wrong_user = "Basic " + base64.b64encode(f"x:{PASSWORD}".encode()).decode()
    if scheme == "basic":  # a wrong user still compares the password: timing tells no half
        assert not auth.Credentials.of(config).authorize(wrong_user)
        assert [g for g, _ in compared] == [b"x", PASSWORD.encode()]


def test_the_separate_server_binds_loopback_by_default():
    server = start_metrics_server(port=0, registry=CollectorRegistry())
    try:
        assert server.address == "127.0.0.1"
        listening = [
            c.laddr.ip
            for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
        ]
        assert listening == ["127.0.0.1"]
    finally:
        server.stop()
