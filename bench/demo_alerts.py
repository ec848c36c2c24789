"""Time to alert in the demo: ``python -m bench.demo_alerts [--leak NAME ...] [--runs N]``.

Starts ``tornado-memory-exporter demo`` with the chosen leaks on (all of them by default;
fast-profile rules, 1 s scrape and evaluation) and prints, per run and leak, the seconds from
process start until the demo's Prometheus reports the leak's alert firing and until the demo's
webhook receives it, and how many times it paged (firing episodes at the webhook: more than one
means it resolved and fired again). The pages of ``handlers`` and ``websockets`` must name what
keeps the leaked handlers alive (a holder in the demo's own code): their descriptions are
printed and checked. After the last alert arrives the run goes on for ``--watch`` seconds, so
that a second page would be seen. Needs prometheus and prometheus-alertmanager; a run of every
leak takes about 2 min.

Exit status 0 when, in every run, every chosen leak's alert reached the webhook exactly once
(with its holder where one is expected) and, for a leak run alone, no other alert did; 1
otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

# leak -> (alert, labels telling its alert apart from another leak's alert of the same name)
ALERTS: dict[str, tuple[str, dict[str, str]]] = {
    "pool": ("TornadoPoolLeak", {}),
    "cycles": ("TornadoGCUncollectable", {}),
    "http": ("TornadoPoolSaturated", {}),
    "blocking": ("TornadoIOLoopBlocked", {}),
    "handlers": ("TornadoHandlersLeaking", {"state": "finished"}),
    "websockets": ("TornadoHandlersLeaking", {"state": "closed"}),
    "cache": ("TornadoWatchedObjectGrowing", {}),
    "slow-consumer": ("TornadoWriteBuffersGrowing", {}),
    "timers": (
        "TornadoTimersGrowing",
        {"callback": "tornado_memory_exporter.demo.app.expire_session"},
    ),
}
# Leaks whose page must say what keeps them alive: the holder is in the demo's own code.
HOLDER_TEXT = "kept alive by tornado_memory_exporter.demo."
NAMES_A_HOLDER = ("handlers", "websockets")
COMMON_LABELS = ("alertname", "job", "instance", "worker", "severity")
DEADLINE = 240.0
WATCH = 30.0
POLL = 0.5


@dataclass
class Run:
    """What one demo run showed for each leak."""

    fired: dict[str, float] = field(default_factory=dict)  # leak -> s to firing in Prometheus
    paged: dict[str, float] = field(default_factory=dict)  # leak -> s to the first page
    # leak -> the firing alerts paged, (labels, startsAt): more than one is more than one page
    episodes: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)  # leak -> first page's text
    others: set[str] = field(default_factory=set)  # alerts paged that no chosen leak explains


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def describe(labels: dict[str, str]) -> str:
    """An alert as ``Name{label="value"}``, without the labels every alert of the run shares."""
    own = {k: v for k, v in sorted(labels.items()) if k not in COMMON_LABELS}
    return labels["alertname"] + "{" + ", ".join(f'{k}="{v}"' for k, v in own.items()) + "}"


def leak_of(labels: dict[str, str], leaks: list[str]) -> str | None:
    """The chosen leak an alert's labels belong to, if any."""
    for leak in leaks:
        name, wanted = ALERTS[leak]
        if labels.get("alertname") == name and all(labels.get(k) == v for k, v in wanted.items()):
            return leak
    return None


def start_demo(leaks: list[str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The demo CLI with ``leaks`` on, and its banner (``name: value``) once printed."""
    argv = [sys.executable, "-m", "tornado_memory_exporter", "demo", "--port", "0"]
    for leak in leaks:
        argv += ["--leak", leak]
    demo = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    banner: dict[str, str] = {}
    assert demo.stdout is not None
    for line in demo.stdout:
        if line.startswith("Ctrl-C"):
            break
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            banner[name.strip()] = value.split()[0]
    return demo, banner


def observe(leaks: list[str], deadline: float, watch: float) -> Run:
    """One demo run: poll Prometheus and the webhook until every leak paged and ``watch``
    seconds more went by, or until ``deadline`` seconds after the start."""
    started = time.monotonic()
    demo, banner = start_demo(leaks)
    prometheus = banner["prometheus"].removesuffix("/alerts")
    webhook = banner["webhook log"]
    run = Run()
    settled: float | None = None
    try:
        while True:
            now = time.monotonic() - started
            if now > deadline or (settled is not None and now > settled + watch):
                break
            for alert in get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]:
                leak = leak_of(alert["labels"], leaks)
                if leak is not None and alert["state"] == "firing":
                    run.fired.setdefault(leak, now)
            for notification in get_json(webhook)["notifications"]:
                for alert in notification["alerts"]:
                    if alert["status"] != "firing":
                        continue
                    leak = leak_of(alert["labels"], leaks)
                    if leak is None:
                        run.others.add(describe(alert["labels"]))
                        continue
                    run.paged.setdefault(leak, now)
                    labels = json.dumps(alert["labels"], sort_keys=True)
                    run.episodes.setdefault(leak, set()).add((labels, alert["startsAt"]))
                    run.descriptions.setdefault(leak, alert["annotations"].get("description", ""))
            if settled is None and len(run.paged) == len(leaks):
                settled = now
            time.sleep(POLL)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    return run


def ok(run: Run, leak: str, alone: bool) -> bool:
    """The leak paged exactly once, naming its holder where it has one; when it ran alone,
    nothing else paged (Alertmanager inhibited its consequences)."""
    if len(run.episodes.get(leak, ())) != 1 or (alone and run.others):
        return False
    return leak not in NAMES_A_HOLDER or HOLDER_TEXT in run.descriptions[leak]


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(number: int, run: Run, leaks: list[str], deadline: float) -> None:
    print(f"run {number}: seconds from demo start (deadline {deadline:.0f} s)")
    print(f"  {'leak':<15}{'alert':<30}{'firing':>7}{'paged':>7}{'pages':>7}")
    for leak in leaks:
        print(
            f"  {leak:<15}{ALERTS[leak][0]:<30}{seconds(run.fired.get(leak)):>7}"
            f"{seconds(run.paged.get(leak)):>7}{len(run.episodes.get(leak, ())):>7}"
        )
    for leak in leaks:
        if len(run.episodes.get(leak, ())) > 1:
            for labels, starts in sorted(run.episodes[leak], key=lambda e: e[1]):
                print(f"  {leak} paged {starts}: {labels}")
    for leak in NAMES_A_HOLDER:
        if leak in run.descriptions:
            print(f"  {leak} page: {run.descriptions[leak]}")
    print(f"  other alerts paged: {', '.join(sorted(run.others)) or 'none'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_alerts", description=__doc__)
    parser.add_argument(
        "--leak",
        action="append",
        choices=sorted(ALERTS),
        help="a leak to switch on (repeatable; default: all of them)",
    )
    parser.add_argument("--runs", type=int, default=1, help="demo runs, one after the other")
    parser.add_argument("--deadline", type=float, default=DEADLINE, help="seconds per run")
    parser.add_argument(
        "--watch", type=float, default=WATCH, help="seconds to go on after the last page"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs {args.runs} must be at least 1")
    if not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")):
        print("skipped: prometheus and prometheus-alertmanager are not installed")
        return 0
    leaks = list(dict.fromkeys(args.leak or ALERTS))
    runs = []
    for number in range(1, args.runs + 1):
        runs.append(observe(leaks, args.deadline, args.watch))
        report(number, runs[-1], leaks, args.deadline)
    print(f"over {len(runs)} run(s): leak, paged exactly once / runs, seconds to firing")
    for leak in leaks:
        fired = [run.fired[leak] for run in runs if leak in run.fired]
        median = f"median {statistics.median(fired):.0f}" if fired else ""
        good = sum(ok(run, leak, len(leaks) == 1) for run in runs)
        print(f"  {leak:<15}{good}/{len(runs)}   {' '.join(f'{s:.0f}' for s in fired)}   {median}")
    return 0 if all(ok(run, leak, len(leaks) == 1) for run in runs for leak in leaks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
