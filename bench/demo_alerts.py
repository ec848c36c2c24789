"""Time to alert in the demo: ``python -m bench.demo_alerts``.

Starts ``tornado-memory-exporter demo`` with all six leaks on (fast-profile rules, 1 s scrape
and evaluation) and prints, for each leak's alert, the seconds from process start until the
demo's Prometheus reports it firing. Needs prometheus and prometheus-alertmanager; about 2 min.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

ALERTS = {
    "pool": "TornadoPoolLeak", "cycles": "TornadoGCUncollectable", "http": "TornadoPoolSaturated",
    "blocking": "TornadoIOLoopBlocked", "handlers": "TornadoHandlersLeaking",
    "cache": "TornadoWatchedObjectGrowing",
}
DEADLINE = 240.0


def main() -> int:
    if not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")):
        print("skipped: prometheus and prometheus-alertmanager are not installed")
        return 0
    argv = [sys.executable, "-m", "tornado_memory_exporter", "demo", "--port", "0"]
    for leak in ALERTS:
        argv += ["--leak", leak]
    started = time.monotonic()
    demo = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        prometheus = ""
        assert demo.stdout is not None
        for line in demo.stdout:
            if line.startswith("prometheus:"):
                prometheus = line.split()[1].removesuffix("/alerts")
            if line.startswith("Ctrl-C"):
                break
        firing: dict[str, float] = {}
        while len(firing) < len(ALERTS) and time.monotonic() - started < DEADLINE:
            with urllib.request.urlopen(f"{prometheus}/api/v1/alerts", timeout=5) as response:
                alerts = json.load(response)["data"]["alerts"]
            for alert in alerts:
                name = alert["labels"]["alertname"]
                if alert["state"] == "firing" and name in ALERTS.values() and name not in firing:
                    firing[name] = time.monotonic() - started
            time.sleep(0.5)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    print(f"{'leak':<10}{'alert':<30}seconds from demo start to firing")
    for leak, name in ALERTS.items():
        seconds = f"{firing[name]:.0f}" if name in firing else f"not within {DEADLINE:.0f}"
        print(f"{leak:<10}{name:<30}{seconds}")
    return 0 if len(firing) == len(ALERTS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
