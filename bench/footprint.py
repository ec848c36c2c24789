"""What the exporter costs an application that never asked for more: import time and memory.

(a) Import time, in fresh interpreters, interleaved: ``import tornado_memory_exporter`` against
    its peer ``import prometheus_client, tornado.web, psutil`` (what any Tornado app with
    Prometheus metrics imports anyway). Target: ours adds at most 60 ms (median difference).
(b) RSS added by the exporter in an app holding 200k live gc-tracked objects, in fresh
    interpreters, interleaved: the peer app serves prometheus_client's global registry on
    ``/metrics``; ours also imports the package, calls ``install(app)`` (default ``Config``),
    runs three censuses and is scraped 20 times. Each child reports RSS after building its heap
    (baseline) and at the end; the figure is the median of ours minus the median of the peer's.
    Target: at most 8 MiB.

Whether numpy was imported is printed too (pympler imports it; the package must not).

    .venv/bin/python -m bench.footprint [--rounds 9] [--import-rounds 21]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from bench import median

ROOT = Path(__file__).resolve().parent.parent
IMPORT_TARGET_S = 0.060
RSS_TARGET_BYTES = 8 * 2**20
OBJECTS = 200_000
CENSUSES = 3
SCRAPES = 20
MIB = 2**20

IMPORTS = {
    "ours": "import tornado_memory_exporter",
    "peer": "import prometheus_client, tornado.web, psutil",
}


def import_seconds(side: str) -> tuple[float, bool]:
    """Seconds ``IMPORTS[side]`` takes in a fresh interpreter, and whether numpy came in."""
    code = (
        "import sys, time\nstart = time.perf_counter()\n"
        f"{IMPORTS[side]}\n"
        "print(time.perf_counter() - start, 'numpy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    return float(out[0]), out[1] == "True"


class Item:
    """One of the app's live objects (gc-tracked: an instance with a reference field)."""

    __slots__ = ("ref",)

    def __init__(self, ref: object) -> None:
        self.ref = ref


def child(side: str) -> dict[str, float]:
    """Run one app (in this fresh interpreter) and return its RSS figures."""
    import gc

    import prometheus_client
    import psutil
    import tornado.web
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    process = psutil.Process()
    held = [Item(None) for _ in range(OBJECTS)]

    class PeerMetrics(tornado.web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
            self.write(prometheus_client.generate_latest(prometheus_client.REGISTRY))

    async def main() -> dict[str, float]:
        routes = [] if side == "ours" else [(r"/metrics", PeerMetrics)]
        app = tornado.web.Application(routes)
        sockets = bind_sockets(0, "127.0.0.1")
        HTTPServer(app).add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        gc.collect()  # the bench, not the library: a settled baseline for both sides
        baseline = process.memory_info().rss
        numpy = False
        imported = censused = baseline
        if side == "ours":
            from tornado_memory_exporter import install

            imported = process.memory_info().rss
            exporter = install(app)
            for _ in range(CENSUSES):
                await exporter.census_now()
            censused = process.memory_info().rss
            numpy = "numpy" in sys.modules
        done = asyncio.get_running_loop().create_future()

        def scrape() -> None:
            try:
                for _ in range(SCRAPES):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                        assert b"process_resident_memory_bytes" in response.read()
                loop.call_soon_threadsafe(done.set_result, None)
            except BaseException as error:  # noqa: BLE001 - handed to the loop
                loop.call_soon_threadsafe(done.set_exception, error)

        loop = asyncio.get_running_loop()
        threading.Thread(target=scrape, daemon=True).start()
        await done
        end = process.memory_info().rss
        assert len(held) == OBJECTS
        return {
            "baseline": baseline,
            "imported": imported,
            "censused": censused,
            "end": end,
            "numpy": numpy,
        }

    return asyncio.run(main())


def run_child(side: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.footprint", "--child", side],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="app children per side")
    parser.add_argument("--import-rounds", type=int, default=21, help="interpreters per side")
    parser.add_argument("--child", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0

    seconds: dict[str, list[float]] = {"ours": [], "peer": []}
    added: list[float] = []
    numpy_on_import = False
    for side in IMPORTS:  # warm-up: bytecode compiled and files cached before anything counts
        import_seconds(side)
    for i in range(args.import_rounds):
        pair = {}
        for side in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
            pair[side], numpy = import_seconds(side)
            numpy_on_import |= numpy and side == "ours"
            seconds[side].append(pair[side])
        added.append(pair["ours"] - pair["peer"])

    rss: dict[str, list[float]] = {"ours": [], "peer": []}
    steps: dict[str, list[float]] = {"import": [], "install + censuses": [], "scrapes": []}
    numpy_in_app = False
    for i in range(args.rounds):
        for side in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
            figures = run_child(side)
            rss[side].append(figures["end"] - figures["baseline"])
            numpy_in_app |= bool(figures["numpy"])
            if side == "ours":
                steps["import"].append(figures["imported"] - figures["baseline"])
                steps["install + censuses"].append(figures["censused"] - figures["imported"])
                steps["scrapes"].append(figures["end"] - figures["censused"])

    import_added = median(added)
    rss_added = median(rss["ours"]) - median(rss["peer"])
    try:
        import numpy  # noqa: F401

        installed = "installed"
    except ImportError:
        installed = "not installed"
    print(f"import time, {args.import_rounds} fresh interpreters per side, interleaved (median)")
    print(f"  ours   {IMPORTS['ours']:<48} {median(seconds['ours']) * 1e3:7.1f} ms")
    print(f"  peer   {IMPORTS['peer']:<48} {median(seconds['peer']) * 1e3:7.1f} ms")
    verdict = "ok" if import_added <= IMPORT_TARGET_S else "MISSED"
    print(
        f"  added by ours (median of paired differences) {import_added * 1e3:6.1f} ms   target <= "
        f"{IMPORT_TARGET_S * 1e3:.0f} ms: {verdict}"
    )
    print(f"RSS, {args.rounds} apps per side holding {OBJECTS:,} objects, interleaved (median)")
    print(
        f"  ours: import + install() + {CENSUSES} censuses + {SCRAPES} scrapes "
        f"{median(rss['ours']) / MIB:6.2f} MiB over its baseline"
    )
    print(
        f"  peer: {SCRAPES} scrapes of the global registry        "
        f"{median(rss['peer']) / MIB:6.2f} MiB over its baseline"
    )
    for step, values in steps.items():
        print(f"    of which {step:<20} {median(values) / MIB:6.2f} MiB")
    verdict = "ok" if rss_added <= RSS_TARGET_BYTES else "MISSED"
    print(
        f"  added by ours {rss_added / MIB:6.2f} MiB   target <= {RSS_TARGET_BYTES / MIB:.0f} MiB: "
        f"{verdict}"
    )
    print(
        f"numpy ({installed}) imported: by the package {numpy_on_import}, "
        f"in the app after install + censuses {numpy_in_app}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
