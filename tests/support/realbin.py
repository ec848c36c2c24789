"""Real Prometheus, Alertmanager and promtool for the tests: started on 127.0.0.1 with temporary
storage and non-default ports, polled with deadlines, always cleaned up.

Which binaries: Debian 12's from ``PATH`` unless ``TME_PROMETHEUS``, ``TME_PROMTOOL``,
``TME_ALERTMANAGER`` or ``TME_AMTOOL`` name others (the Prometheus 3 leg of ``make test`` points
them at the ones it unpacks); the demo stack reads the same variables."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

T = TypeVar("T")


# Binary -> the variable that overrides it (the same names as the demo stack's).
OVERRIDES = {
    "prometheus": "TME_PROMETHEUS",
    "promtool": "TME_PROMTOOL",
    "prometheus-alertmanager": "TME_ALERTMANAGER",
    "amtool": "TME_AMTOOL",
}


def require_binary(name: str) -> str:
    """Path of a binary; skip the test without it, but fail under CI=true where it must exist."""
    variable = OVERRIDES.get(name)
    override = os.environ.get(variable) if variable else None
    path = shutil.which(override or name)
    if path is None:
        message = (
            f"{variable}={override} is not an executable"
            if override
            else f"{name} is not installed (make test installs it through apt when run as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 0.25
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, ValueError) as error:  # not up yet
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last saw: {last!r}")


def get_json(url: str, *, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


class Daemon:
    """A child process with its own temporary directory, stopped and removed on exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"tme-{name}-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "log.txt"

    def spawn(self, argv: list[str]) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Prometheus(Daemon):
    """A real Prometheus scraping ``targets`` every second, optionally evaluating rule files."""

    def __init__(
        self,
        targets: list[str],
        *,
        rule_files: list[Path] = (),  # type: ignore[assignment]
        alertmanager: str | None = None,
        metrics_path: str = "/metrics",
        job: str = "tornado",
        extra_scrape: dict | None = None,
    ) -> None:
        super().__init__("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        scrape = {
            "job_name": job,
            "metrics_path": metrics_path,
            "static_configs": [{"targets": targets}],
            **(extra_scrape or {}),
        }
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [scrape],
            "rule_files": [str(Path(f).resolve()) for f in rule_files],
        }
        if alertmanager:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]
            }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.spawn(
            [
                require_binary("prometheus"),
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ]
        )
        wait_for("prometheus ready", self._ready, timeout=30)

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_tail()}")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return response.status == 200

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = get_json(f"{self.url}/api/v1/{path}?{query}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant vector result of ``expr`` (list of {metric, value})."""
        return self.api("query", query=expr)["result"]

    def wait_for_series(self, expr: str, *, timeout: float = 40) -> list[dict]:
        """The first non-empty result of ``expr`` (the first scrape lands ~6 s after start)."""
        return wait_for(f"{expr!r} in prometheus", lambda: self.query(expr), timeout=timeout)


class Alertmanager(Daemon):
    """A real Alertmanager with no gossip port, routing everything to ``webhook_url``."""

    def __init__(
        self,
        webhook_url: str,
        *,
        group_wait: str = "1s",
        repeat_interval: str = "1h",
        config: dict | None = None,
    ) -> None:
        """``config``: a whole configuration instead of the route-everything-to-the-webhook one."""
        super().__init__("alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = config or {
            "route": {
                "receiver": "webhook",
                "group_by": ["alertname", "instance"],
                "group_wait": group_wait,
                "group_interval": "1s",
                "repeat_interval": repeat_interval,
            },
            "receivers": [
                {
                    "name": "webhook",
                    "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
                }
            ],
        }
        (self.dir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.spawn(
            [
                require_binary("prometheus-alertmanager"),
                f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ]
        )
        wait_for("alertmanager ready", self._ready, timeout=30)

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"alertmanager exited:\n{self.log_tail()}")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return response.status == 200

    def alerts(self) -> list[dict]:
        return get_json(f"{self.url}/api/v2/alerts")


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the real promtool (bounded: the longest generated scenario, two simulated days,
    takes ~15 s of CPU alone and several times that while two test legs share the cores)."""
    return subprocess.run(
        [require_binary("promtool"), *args], input=stdin, capture_output=True, timeout=240
    )
