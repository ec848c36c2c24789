"""Prometheus and Alertmanager for ``make demo``: the locally installed binaries, started on
127.0.0.1 with free ports, a temporary directory, and the shipped rules in their fast profile.

Everything the stack creates lives in one temporary directory that ``stop()`` removes; the
children are also started through util-linux ``setpriv --pdeathsig`` (where present) so that
they exit if the demo itself is killed: a ``preexec_fn`` would do the same but is unsafe in a
process with threads (Tornado's resolver runs in a thread pool).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient

log = logging.getLogger("tornado_memory_exporter.demo")

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name; upstream tarballs call it alertmanager
JOB = "tornado"
READY_TIMEOUT = 30.0


def find_binaries() -> tuple[str, str] | None:
    """Paths of prometheus and alertmanager, or None unless both are installed.

    ``TME_PROMETHEUS`` and ``TME_ALERTMANAGER`` name other binaries than the ones on ``PATH``
    (another version, an unpacked release).
    """
    prometheus = shutil.which(os.environ.get("TME_PROMETHEUS") or PROMETHEUS)
    alertmanager = (
        shutil.which(os.environ["TME_ALERTMANAGER"])
        if os.environ.get("TME_ALERTMANAGER")
        else shutil.which(ALERTMANAGER) or shutil.which("alertmanager")
    )
    return (prometheus, alertmanager) if prometheus and alertmanager else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` prefixed so that the child gets SIGTERM when the demo dies, where supported."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def prometheus_config(*, target: str, alertmanager: str, rule_file: str) -> dict[str, Any]:
    """Scrape ``target`` every second, evaluate ``rule_file``, alert to ``alertmanager``."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [rule_file],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }


def alertmanager_config(*, webhook_url: str) -> dict[str, Any]:
    """The mixin's Alertmanager side (one group per process, root causes inhibiting their
    consequences) in its fast profile, around the webhook logger."""
    from ..mixin import MixinConfig
    from ..mixin import alertmanager_config as generated

    return generated(MixinConfig.fast(), webhook_url=webhook_url)


def fast_rules() -> dict[str, Any]:
    """The shipped alert and recording rules, generated with the fast (minutes) profile."""
    from ..mixin import MixinConfig, build_rules

    return build_rules(MixinConfig.fast())


class Stack:
    """A running Prometheus + Alertmanager pair; ``stop()`` ends both and removes the directory."""

    def __init__(self, *, binaries: tuple[str, str], target: str, webhook_url: str) -> None:
        self._binaries = binaries
        self._target = target
        self._webhook_url = webhook_url
        self.dir = Path(tempfile.mkdtemp(prefix="tme-demo-"))
        self.prometheus_url = f"http://127.0.0.1:{free_port()}"
        self.alertmanager_url = f"http://127.0.0.1:{free_port()}"
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    async def start(self) -> None:
        """Write the configurations, start both daemons and wait until they are ready."""
        prometheus, alertmanager = self._binaries
        # JSON is YAML: no YAML library needed at run time.
        rules = self.dir / "rules.yml"
        rules.write_text(json.dumps(fast_rules(), indent=1))
        am_host = self.alertmanager_url.removeprefix("http://")
        (self.dir / "prometheus.yml").write_text(
            json.dumps(
                prometheus_config(target=self._target, alertmanager=am_host, rule_file=str(rules)),
                indent=1,
            )
        )
        (self.dir / "alertmanager.yml").write_text(
            json.dumps(alertmanager_config(webhook_url=self._webhook_url), indent=1)
        )
        self._spawn(
            "alertmanager",
            [
                alertmanager,
                f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'alertmanager-data'}",
                f"--web.listen-address={am_host}",
                "--cluster.listen-address=",
            ],
        )
        self._spawn(
            "prometheus",
            [
                prometheus,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'prometheus-data'}",
                f"--web.listen-address={self.prometheus_url.removeprefix('http://')}",
            ],
        )
        client = AsyncHTTPClient()
        for name, url in (
            ("alertmanager", self.alertmanager_url),
            ("prometheus", self.prometheus_url),
        ):
            await self._wait_ready(client, name, f"{url}/-/ready")

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.dir / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                _die_with_parent(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                # own process group: Ctrl-C reaches the demo only, which then stops these in order
                start_new_session=True,
            )
        self._processes.append((name, process))

    async def _wait_ready(self, client: AsyncHTTPClient, name: str, url: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        process = dict(self._processes)[name]
        while loop.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )
            try:
                response = await client.fetch(url, raise_error=False, request_timeout=2.0)
            except OSError:  # not listening yet
                pass
            else:
                if response.code == 200:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {READY_TIMEOUT}s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The end of a daemon's log, for error messages."""
        try:
            text = (self.dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pids(self) -> list[int]:
        """Process ids of the daemons (for tests that check nothing is left behind)."""
        return [process.pid for _, process in self._processes]

    def stop(self) -> None:
        """Terminate both daemons (kill after 10 s) and remove the temporary directory."""
        for _, process in self._processes:
            if process.poll() is None:
                process.terminate()
        for _, process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
