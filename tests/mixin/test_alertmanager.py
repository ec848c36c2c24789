"""The generated Alertmanager side against a real Alertmanager: one leak, one page."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from realbin import Alertmanager, free_port, get_json, require_binary, wait_for

from tornado_memory_exporter.mixin import (
    MixinConfig,
    alertmanager_config,
    build_alertmanager_fragment,
)

ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A webhook receiver on 127.0.0.1 recording every alert it is sent."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.extend(json.loads(body)["alerts"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stack() -> Iterator[tuple[Alertmanager, Receiver]]:
    receiver = Receiver()
    try:
        with Alertmanager(
            receiver.url, config=alertmanager_config(MixinConfig.fast(), webhook_url=receiver.url)
        ) as am:
            yield am, receiver
    finally:
        receiver.close()


def _post(am: Alertmanager, alerts: list[dict[str, str]]) -> None:
    body = json.dumps(
        [
            {"labels": {"job": "tornado", **labels}, "annotations": {"summary": "x"}}
            for labels in alerts
        ]
    )
    request = urllib.request.Request(
        f"{am.url}/api/v2/alerts",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _visible(am: Alertmanager) -> set[tuple[str, ...]]:
    alerts = get_json(f"{am.url}/api/v2/alerts?active=true&inhibited=false&silenced=false")
    return {
        (
            a["labels"]["alertname"],
            a["labels"]["instance"],
            a["labels"].get("worker", ""),
            a["labels"].get("origin", ""),
        )
        for a in alerts
    }


def test_a_root_cause_inhibits_its_consequences_on_the_same_process_only(
    stack: tuple[Alertmanager, Receiver],
) -> None:
    am, receiver = stack
    a, b = {"instance": "a:8888", "worker": "1"}, {"instance": "b:8888"}
    _post(
        am,
        [
            {
                "alertname": "TornadoHandlersLeaking",
                "severity": "warning",
                "handler": "app.H",
                "state": "finished",
                **a,
            },
            {"alertname": "TornadoMemoryLeakSuspected", "severity": "warning", **a},
            {"alertname": "TornadoPythonHeapGrowing", "severity": "warning", **a},
            {
                "alertname": "TornadoObjectTypeGrowing",
                "severity": "warning",
                "type": "dict",
                "origin": "builtin",
                **a,
            },
            {
                "alertname": "TornadoObjectTypeGrowing",
                "severity": "warning",
                "type": "tornado.httputil.HTTPHeaders",
                "origin": "library",
                **a,
            },
            {
                "alertname": "TornadoObjectTypeGrowing",
                "severity": "warning",
                "type": "app.H",
                "origin": "application",
                **a,
            },
            # another worker of the same instance, and another instance: not inhibited
            {
                "alertname": "TornadoMemoryLeakSuspected",
                "severity": "warning",
                "instance": "a:8888",
                "worker": "2",
            },
            {"alertname": "TornadoPythonHeapGrowing", "severity": "warning", **b},
            # an application type growing is a root cause too
            {
                "alertname": "TornadoObjectTypeGrowing",
                "severity": "warning",
                "type": "app.S",
                "origin": "application",
                "instance": "c:8888",
            },
            {
                "alertname": "TornadoObjectTypeGrowing",
                "severity": "warning",
                "type": "list",
                "origin": "builtin",
                "instance": "c:8888",
            },
            {
                "alertname": "TornadoMemoryLeakSuspected",
                "severity": "warning",
                "instance": "c:8888",
            },
            # critical near-limit twin silences the warning one
            {"alertname": "TornadoMemoryNearLimit", "severity": "critical", "instance": "d:8888"},
            {"alertname": "TornadoMemoryNearLimit", "severity": "warning", "instance": "d:8888"},
        ],
    )
    expected = {
        ("TornadoHandlersLeaking", "a:8888", "1", ""),
        ("TornadoObjectTypeGrowing", "a:8888", "1", "application"),
        ("TornadoMemoryLeakSuspected", "a:8888", "2", ""),
        ("TornadoPythonHeapGrowing", "b:8888", "", ""),
        ("TornadoObjectTypeGrowing", "c:8888", "", "application"),
        ("TornadoMemoryNearLimit", "d:8888", "", ""),
    }
    wait_for("inhibitions applied", lambda: _visible(am) == expected or None, timeout=20)
    # the webhook gets one notification group per process, holding the root causes only
    wait_for(
        "notifications",
        lambda: (
            len({(x["labels"]["instance"], x["labels"].get("worker")) for x in receiver.alerts})
            >= 5
            or None
        ),
        timeout=30,
    )
    sent = {
        (
            x["labels"]["alertname"],
            x["labels"]["instance"],
            x["labels"].get("worker", ""),
            x["labels"].get("origin", ""),
        )
        for x in receiver.alerts
    }
    assert sent == expected


def test_the_fragment_passes_amtool_and_routes_per_process(tmp_path: Path) -> None:
    fragment = yaml.safe_load((ROOT / "alerts" / "tornado-memory.alertmanager.yml").read_text())
    assert fragment == build_alertmanager_fragment(MixinConfig())
    config = {
        "route": {"receiver": "default", "routes": [fragment["route"]]},
        "inhibit_rules": fragment["inhibit_rules"],
        "receivers": [{"name": "default"}, {"name": fragment["route"]["receiver"]}],
    }
    path = tmp_path / "am.yml"
    path.write_text(yaml.safe_dump(config))
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={path}",
            "alertname=TornadoMemoryLeakSuspected",
            "instance=a",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "tornado-memory", result.stdout + result.stderr
    assert fragment["route"]["group_by"] == ["job", "instance", "worker"]
