"""Regenerates the pictures of the documentation from a real demo: ``python docs/screenshots.py``
(or ``make screenshots``), a few minutes.

It runs ``tornado-memory-exporter demo`` with its leaks on (and its real Prometheus and
Alertmanager), waits until ``TornadoHandlersLeaking`` fires, then drives Debian's Chromium
through Playwright (``executable_path``: no browser is ever downloaded) to photograph:

- ``screenshots/prometheus-alerts.png``: Prometheus's alerts page with the leak firing;
- ``screenshots/<dashboard uid>--<row>.png``: each dashboard row, every panel's queries drawn by
  Prometheus's own graph page (there is no Grafana server here; the page says so);
- ``explorer.png``: by running the explorer's browser test with ``TME_UPDATE_SCREENSHOT=1``.

``--only rows|alerts|explorer`` limits it to one kind; ``--prometheus URL`` photographs the
Prometheus of a demo already running instead of starting one. Needs prometheus,
prometheus-alertmanager and chromium installed (``make binaries``). Debian's Prometheus 2.42
serves only the classic UI (``/classic/...``), which is what is photographed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SHOTS = DOCS / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every leak but `blocking`: its 1 s stalls would hold up the scrapes the pictures are made of.
LEAKS = ("handlers", "cache", "pool", "cycles", "http", "websockets", "slow-consumer")
FIRING = "TornadoHandlersLeaking"
FIRE_TIMEOUT = 300.0
# How the queries' Grafana variables are filled in for one demo process (as tests/demo does).
RANGE = "4m"
# The graphs cover RANGE: wait until the demo has run that long (it fires after about a minute).
MIN_AGE = 240.0
VARIABLES = {
    "$__rate_interval": "15s",
    "$__interval": "15s",
    "$__range": RANGE,
    "$job": ".+",
    "$instance": ".+",
    "$worker": ".*",
    "$type": ".+",
}
# The leak-hunt rows follow one type ($type): the one whose count grew most over the range.
FASTEST_TYPE = f'topk(1, delta(tornado_objects{{type!="other"}}[{RANGE}]))'


def _gen_pages() -> Any:
    spec = importlib.util.spec_from_file_location("gen_pages", DOCS / "gen_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """Poll ``probe`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1.0)
    raise SystemExit(f"screenshots: {what} within {timeout:.0f} s")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@contextmanager
def running_demo() -> Iterator[dict[str, str]]:
    """The demo CLI in a child process; yields its banner (``name: url``)."""
    argv = [sys.executable, "-m", "tornado_memory_exporter", "demo", "--port", "0"]
    for leak in LEAKS:
        argv += ["--leak", leak]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "exporter"), str(ROOT)])}
    log = tempfile.NamedTemporaryFile(prefix="tme-screenshots-demo-", suffix=".log", delete=False)
    print(f"demo log: {log.name}")
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    banner: dict[str, str] = {}

    def complete() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"screenshots: the demo exited with {process.returncode}")
        while not lines.empty():
            line = lines.get().rstrip("\n")
            if line == "Ctrl-C stops everything.":
                return True
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                banner[name.strip()] = value.strip()
        return False

    try:
        wait_for("the demo's banner", complete, timeout=60)
        if "prometheus" not in banner:
            raise SystemExit(
                "screenshots: the demo found no prometheus/alertmanager (make binaries)"
            )
        yield banner
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fill(expr: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(name, variables[name])
    return expr


def panel_query(panel: dict, variables: dict[str, str]) -> str:
    """One PromQL expression drawing all of a panel's targets: each target's series get a
    ``query`` label (its legend's first words), so targets with the same labels stay apart."""
    parts = []
    for target in panel.get("targets", []):
        legend = re.sub(r"\{\{.*?\}\}", "", target.get("legendFormat", "")).strip()
        name = legend or target["refId"]
        parts.append(f'label_replace({fill(target["expr"], variables)}, "query", "{name}", "", "")')
    return " or ".join(parts)


def graph_url(prometheus: str, queries: list[str]) -> str:
    params: dict[str, str] = {}
    for index, expr in enumerate(queries):
        params |= {
            f"g{index}.expr": expr,
            f"g{index}.tab": "0",
            f"g{index}.stacked": "0",
            f"g{index}.show_exemplars": "0",
            f"g{index}.range_input": RANGE,
        }
    return f"{prometheus}/classic/graph?{urllib.parse.urlencode(params)}"


# Puts the Grafana panel's title above each graph and a banner on top, so the picture says what
# it shows (the panels' queries, not Grafana); hides the controls (the fixed navbar would also be
# drawn across the middle of a full-page screenshot).
LABEL_PANELS = """([banner, titles]) => {
  const hide = 'nav.navbar, .clearfix, .form-inline, .text-right, #add_graph, .query-history';
  document.querySelectorAll(hide).forEach((el) => { el.style.display = 'none'; });
  document.body.style.paddingTop = '0';
  const panels = document.querySelectorAll('.graph_wrapper');
  panels.forEach((panel, i) => {
    const head = document.createElement('div');
    head.style.cssText = 'font: 600 16px sans-serif; margin: 4px 0 6px';
    head.textContent = titles[i] || '';
    panel.prepend(head);
  });
  // two panels a row, as on the dashboard; the graphs redraw to their new width on resize
  const grid = document.querySelector('#graph_container');
  grid.style.display = 'grid';
  grid.style.gridTemplateColumns = 'minmax(0, 1fr) minmax(0, 1fr)';
  grid.style.gap = '12px';
  panels.forEach((panel) => { panel.style.overflow = 'hidden'; });
  window.dispatchEvent(new Event('resize'));
  const top = document.createElement('div');
  top.style.cssText = 'font: 14px sans-serif; padding: 8px; background: #fff3cd';
  top.textContent = banner;
  document.body.prepend(top);
}"""


def fastest_type(prometheus: str) -> str:
    """The type that grew most over the graphs' range, as a regex matching only its name."""
    query = urllib.parse.urlencode({"query": FASTEST_TYPE})
    result = get_json(f"{prometheus}/api/v1/query?{query}")["data"]["result"]
    return re.escape(result[0]["metric"]["type"]) if result else ".+"


def shoot_rows(page: Any, prometheus: str) -> list[Path]:
    gen_pages = _gen_pages()
    written = []
    for dashboard in gen_pages.shipped_dashboards():
        variables = dict(VARIABLES)
        if "leak-hunt" in dashboard["uid"]:
            variables["$type"] = fastest_type(prometheus).replace("\\", "\\\\")
        for row, panels in gen_pages.dashboard_rows(dashboard):
            queries = [panel_query(p, variables) for p in panels]
            page.goto(graph_url(prometheus, queries))
            page.wait_for_load_state("networkidle")
            page.wait_for_function(
                "n => document.querySelectorAll('.graph_wrapper svg').length >= n",
                arg=len(queries),
                timeout=30_000,
            )
            banner = (
                f"{dashboard['title']}, row {row}: each panel's PromQL run by Prometheus's graph "
                f"page on the demo's data (last {RANGE}); not Grafana's rendering"
            )
            page.evaluate(LABEL_PANELS, [banner, [p["title"] for p in panels]])
            page.wait_for_timeout(500)  # the resize redraw
            path = SHOTS / gen_pages.screenshot_name(dashboard, row)
            page.screenshot(path=str(path), full_page=True)
            written.append(path)
    return written


STATIC_NAVBAR = """() => {
  document.querySelector('nav.navbar').style.position = 'static';
  document.body.style.paddingTop = '0';
}"""


def shoot_alerts(page: Any, prometheus: str) -> Path:
    """The alerts page showing what fires, with its annotations, the leak's alert opened."""
    page.goto(f"{prometheus}/classic/alerts")
    page.get_by_text("Inactive", exact=False).first.click()  # hide the silent rules
    page.get_by_text("Show annotations", exact=False).first.click()
    page.get_by_text(FIRING, exact=True).first.click()
    page.evaluate(STATIC_NAVBAR)
    page.wait_for_load_state("networkidle")
    path = SHOTS / "prometheus-alerts.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def shoot_explorer() -> None:
    """The explorer's own browser test writes docs/explorer.png when asked to."""
    env = {**os.environ, "TME_UPDATE_SCREENSHOT": "1", "PYTHONPATH": str(ROOT / "exporter")}
    test = "tests/explorer/test_explorer_browser.py"
    subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-x"], cwd=ROOT, env=env, check=True
    )


def firing(prometheus: str) -> bool:
    alerts = get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
    return any(a["labels"]["alertname"] == FIRING and a["state"] == "firing" for a in alerts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("rows", "alerts", "explorer"))
    parser.add_argument("--prometheus", help="the Prometheus of a running demo (base URL)")
    args = parser.parse_args(argv)
    SHOTS.mkdir(exist_ok=True)
    if args.only in (None, "explorer"):
        shoot_explorer()
        print("wrote docs/explorer.png")
    if args.only == "explorer":
        return 0
    from playwright.sync_api import sync_playwright

    with (
        nullcontext({"prometheus": args.prometheus})
        if args.prometheus
        else running_demo() as banner
    ):
        prometheus = re.sub(r"(/classic)?/alerts$", "", banner["prometheus"].rstrip("/"))
        started = time.monotonic()
        wait_for(f"{FIRING} firing", lambda: firing(prometheus), timeout=FIRE_TIMEOUT)
        print(f"{FIRING} fired after {time.monotonic() - started:.0f} s")
        if not args.prometheus:
            time.sleep(max(0.0, MIN_AGE - (time.monotonic() - started)))  # fill the graphs' range
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            try:
                if args.only in (None, "alerts"):
                    print("wrote", shoot_alerts(page, prometheus).relative_to(ROOT))
                if args.only in (None, "rows"):
                    for path in shoot_rows(page, prometheus):
                        print("wrote", path.relative_to(ROOT))
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
