"""Time to alert in the demo: ``python -m bench.demo_alerts``.

Starts ``tornado-memory-exporter demo`` with all eight leaks on (fast-profile rules, 1 s scrape
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
    "pool": "TornadoPoolLeak",
    "cycles": "TornadoGCUncollectable",
    "http": "TornadoPoolSaturated",
    "blocking": "TornadoIOLoopBlocked",
    "handlers": "TornadoHandlersLeaking",
    "cache": "TornadoWatchedObjectGrowing",
    "slow-consumer": "TornadoWriteBuffersGrowing",
    "timers": "TornadoTimersGrowing",
}
# Leaks whose alert shares a name with another's: told apart by a label of the firing alert.
LABELS = {"websockets": ("TornadoHandlersLeaking", "state", "closed")}
DEADLINE = 240.0


def main() -> int:
    if not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")):
        print("skipped: prometheus and prometheus-alertmanager are not installed")
        return 0
    argv = [sys.executable, "-m", "tornado_memory_exporter", "demo", "--port", "0"]
    for leak in [*ALERTS, *LABELS]:
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
        wanted = {*ALERTS.values(), *LABELS}
        while len(firing) < len(wanted) and time.monotonic() - started < DEADLINE:
            with urllib.request.urlopen(f"{prometheus}/api/v1/alerts", timeout=5) as response:
                alerts = json.load(response)["data"]["alerts"]
            for alert in alerts:
                name = alert["labels"]["alertname"]
                if alert["state"] != "firing":
                    continue
                for key, (alert_name, label, value) in LABELS.items():
                    if name == alert_name and alert["labels"].get(label) == value:
                        firing.setdefault(key, time.monotonic() - started)
                if name in ALERTS.values() and name not in firing:
                    if (
                        name == "TornadoHandlersLeaking"
                        and alert["labels"].get("state") != "finished"
                    ):
                        continue
                    firing[name] = time.monotonic() - started
            time.sleep(0.5)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    print(f"{'leak':<15}{'alert':<30}seconds from demo start to firing")
    rows = [*ALERTS.items(), *((leak, leak) for leak in LABELS)]
    for leak, key in rows:
        name = LABELS[leak][0] if leak in LABELS else key
        seconds = f"{firing[key]:.0f}" if key in firing else f"not within {DEADLINE:.0f}"
        print(f"{leak:<15}{name:<30}{seconds}")
    return 0 if len(firing) == len(wanted) else 1


if __name__ == "__main__":
    raise SystemExit(main())
