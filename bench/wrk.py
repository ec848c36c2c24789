"""(c) Requests/second of a hello-world Tornado app with the exporter installed and scraped every
second, against the same app without it, under ``wrk`` on 127.0.0.1.

Three child processes serve the same app: ``with`` calls ``install(app, config=Config())`` on a
fresh registry; ``without`` and ``without again`` do not (an A/A control: how far apart two
identical servers land is the noise floor of the ratio on this machine). Servers are pinned to
one core; ``wrk`` and this process, which scrapes ``with``'s ``/metrics`` once a second with
Prometheus's headers during its runs, to the other. The servers are loaded in turn, one bounded
``wrk`` run each per round, in an order that rotates every round; ratios are of the medians
(and the median of per-round ratios).

Also printed, because a noisy machine swings requests/second more than the exporter does: the
CPU the exporter costs the app per second at idle while scraped once a second (all threads,
from /proc/<pid>/task/*/schedstat; a bare app idles at zero), i.e. the share of a core that it
takes from a fully loaded app, before any per-request cost.

    .venv/bin/python -m bench.wrk [--rounds 8] [--duration 4] [--connections 16] [--warmup 2]
        [--idle 10]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic

import psutil
import tornado.web
from prometheus_client import CollectorRegistry

from bench import PROMETHEUS_HEADERS, ChildServer, median
from tornado_memory_exporter import Config, install

WRK = "wrk"
SERVERS = {"with": True, "without": False, "without again": False}  # name -> exporter installed


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")


async def hello_app(*, exporter: bool) -> tornado.web.Application:
    """The app under load (runs in the child); ``exporter`` installs ours on ``/metrics``."""
    app = tornado.web.Application([(r"/", Hello)])
    if exporter:
        app.settings["exporter"] = install(app, config=Config(), registry=CollectorRegistry())
    return app


@dataclass
class WrkResult:
    requests_per_second: float
    requests: int
    errors: int  # socket errors plus non-2xx/3xx responses


def parse_wrk(output: str) -> WrkResult:
    """The figures of ``wrk``'s report that the bench uses."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    requests = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    if rps is None or requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(float(rps.group(1)), int(requests.group(1)), errors)


def cpu_seconds(pid: int) -> float:
    """CPU time all threads of ``pid`` have run so far (nanosecond schedstat where the kernel
    has it: psutil's clock ticks are too coarse for a few milliseconds per scrape)."""
    try:
        return (
            sum(
                int(stat.read_text().split()[0])
                for stat in Path(f"/proc/{pid}/task").glob("*/schedstat")
            )
            / 1e9
        )
    except (OSError, ValueError, IndexError):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system


@dataclass
class Scraper:
    """Scrapes ``port``'s /metrics every ``interval`` seconds on a thread, like Prometheus."""

    port: int
    interval: float = 1.0
    statuses: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Scraper:
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        due = monotonic()
        while not self._stop.is_set():
            conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
            response = conn.getresponse()
            response.read()
            self.statuses.append(response.status)
            due += self.interval
            self._stop.wait(max(0.0, due - monotonic()))
        conn.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


@dataclass
class Bench:
    """The running servers, where to pin what, and every figure measured so far."""

    servers: dict[str, ChildServer]
    connections: int
    client_cpus: set[int] | None
    statuses: list[int] = field(default_factory=list)

    def load(self, names: tuple[str, ...], duration: int) -> dict[str, tuple[float, float]]:
        """Load ``names`` at the same moment, one bounded ``wrk`` each; per name, requests/second
        and requests per server CPU-second."""
        pids = {name: self.servers[name].pid for name in names}
        with ExitStack() as stack:
            if "with" in names:
                scraper = stack.enter_context(Scraper(self.servers["with"].port))
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            wrks = {name: self._wrk(self.servers[name].url, duration) for name in names}
            outputs = {
                name: wrk.communicate(timeout=duration + 30)[0] for name, wrk in wrks.items()
            }
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        if "with" in names:
            self.statuses += scraper.statuses
        figures = {}
        for name, output in outputs.items():
            if wrks[name].returncode != 0:
                raise RuntimeError(f"wrk against {name} exited {wrks[name].returncode}")
            result = parse_wrk(output)
            if result.errors:
                raise RuntimeError(f"wrk saw {result.errors} errors against {name}")
            figures[name] = (result.requests_per_second, result.requests / cpu[name])
        return figures

    def _wrk(self, url: str, duration: int) -> subprocess.Popen[str]:
        argv = [WRK, "-t1", f"-c{self.connections}", f"-d{duration}s", "--timeout", "5s", f"{url}/"]
        wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        if self.client_cpus:
            os.sched_setaffinity(wrk.pid, self.client_cpus)
        return wrk


@contextmanager
def started(*, connections: int) -> Iterator[Bench]:
    """The three servers, pinned: servers on one core, clients (wrk, scraper) on the others."""
    if shutil.which(WRK) is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (None, None)
    with ExitStack() as stack:
        children = [
            ChildServer("bench.wrk:hello_app", exporter=e).start() for e in SERVERS.values()
        ]
        servers = {
            name: stack.enter_context(child) for name, child in zip(SERVERS, children, strict=True)
        }
        if server_cpus:
            for server in servers.values():
                os.sched_setaffinity(server.pid, server_cpus)
            os.sched_setaffinity(0, client_cpus)
        yield Bench(servers, connections, client_cpus)


Figures = dict[str, list[tuple[float, float]]]


def idle_cpu(bench: Bench, seconds: float) -> float:
    """CPU seconds per second that ``with`` spends idle but scraped once a second: the
    exporter's fixed cost (scrapes, the lag probe, censuses), since a bare app idles at zero."""
    pid = bench.servers["with"].pid
    before = cpu_seconds(pid)
    with Scraper(bench.servers["with"].port) as scraper:
        time.sleep(seconds)  # the window being measured, not a wait for something
    bench.statuses += scraper.statuses
    return (cpu_seconds(pid) - before) / seconds


def measure(
    *, rounds: int, duration: int, connections: int, warmup: int, idle: float
) -> tuple[Figures, float, int]:
    """Per server and round: requests/second and per server CPU-second; the exporter's CPU
    seconds per second at idle; and the number of scrapes made."""
    figures: Figures = {name: [] for name in SERVERS}
    names = list(SERVERS)
    with started(connections=connections) as bench:
        idle_share = idle_cpu(bench, idle)
        for name in names if warmup else ():
            bench.load((name,), warmup)
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                figures[name].append(bench.load((name,), duration)[name])
        statuses = bench.statuses
    if not statuses or set(statuses) != {200}:
        raise RuntimeError(f"scrapes during the runs: {statuses}")
    return figures, idle_share, len(statuses)


def ratio(figures: Figures, name: str, base: str, index: int) -> tuple[float, float]:
    """(ratio of the medians, median of per-round ratios) of ``name`` to ``base``; ``index`` 0
    is requests/second, 1 requests per CPU-second."""
    a = [f[index] for f in figures[name]]
    b = [f[index] for f in figures[base]]
    return median(a) / median(b), median([x / y for x, y in zip(a, b, strict=False)])


def run(
    *, rounds: int = 8, duration: int = 4, connections: int = 16, warmup: int = 2, idle: float = 10
) -> dict[str, float]:
    """Measure and print; returns the ratios to ``without``."""
    figures, idle, scrapes = measure(
        rounds=rounds, duration=duration, connections=connections, warmup=warmup, idle=idle
    )
    print(
        f"(c) hello-world Tornado app under wrk -t1 -c{connections} -d{duration}s on 127.0.0.1, "
        f"{rounds} rounds, each server once per round (order rotating);"
    )
    print(
        f"    'with' = install(app, config=Config()), scraped every 1 s during its runs "
        f"({scrapes} scrapes, all 200); servers pinned to one core, wrk to the other."
    )
    for name, runs in figures.items():
        for index, unit in ((0, "req/s"), (1, "req/CPU-s")):
            values = [f[index] for f in runs]
            print(
                f"      {name:14} median {median(values):7.0f} {unit:10} runs: "
                + " ".join(f"{v:.0f}" for v in values)
            )
    ratios = {}
    for name in ("with", "without again"):
        for index, unit in ((0, "req/s"), (1, "req/CPU-s")):
            of_medians, per_round = ratio(figures, name, "without", index)
            ratios[f"{name} {unit}"] = of_medians
            print(
                f"    ratio {name}/without, {unit:10} {of_medians:.3f} (of medians), "
                f"{per_round:.3f} (median of per-round ratios)"
                + ("   <- noise floor (A/A)" if name == "without again" else "")
            )
    ratios["idle cpu share"] = idle
    print(
        f"    at idle, scraped once a second, the exporter costs the app "
        f"{idle * 1e3:.1f} ms CPU per "
        f"second (all threads): {idle * 100:.2f}% of a core"
    )
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wrk", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds (one run of each server)")
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections per server")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of uncounted load first (0: none)"
    )
    parser.add_argument(
        "--idle", type=float, default=10, help="seconds of the idle CPU measurement"
    )
    args = parser.parse_args(argv)
    run(
        rounds=args.rounds,
        duration=args.duration,
        connections=args.connections,
        warmup=args.warmup,
        idle=args.idle,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
