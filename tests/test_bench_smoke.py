"""The benchmarks still run, on tiny sizes. No timing is asserted: figures belong to bench/, and
each bench raises when what it measured was wrong (a failed scrape, a wrong body, a hook failure).

``scrape`` and ``gc_hook`` run at once, each as ``python -m bench.<name>`` from the repository root
as a user runs them. ``wrk`` needs seconds of load by nature, so here only its reading of wrk's
report is checked, on reports the real wrk 4.1 printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.wrk import WrkResult, parse_wrk

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "scrape": ["--scrapes", "5", "--warmup", "1"],
    "gc_hook": ["--rounds", "2", "--rows", "2000"],
    "websockets": ["--connections", "50", "--rounds", "1"],
    "loop_busy": ["--rounds", "1", "--iterations", "2000"],
    "footprint": ["--rounds", "1", "--import-rounds", "1"],
}
# The line of each report that carries its ratio.
RATIO_LINES = {
    "scrape": r"ratio ours/peer +\d+\.\d\dx +\d+\.\d\dx",
    "gc_hook": r"hook +median +\d+\.\d\d ms +ratio to none \d+\.\d{3}",
    "websockets": r"ratio with/without +\d+\.\d\dx +\d+\.\d\dx",
    "loop_busy": r"http +meter +median +\d+\.\d\d ms +ratio to none \d+\.\d{3}",
    "footprint": r"added by ours +-?\d+\.\d\d MiB +target <= 8 MiB: (ok|MISSED)\n",
}

WRK_OK = """\
Running 1s test @ http://127.0.0.1:18777/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.33ms    1.59ms   9.02ms   82.37%
    Req/Sec     1.86k   762.27     3.06k    80.00%
  1862 requests in 1.01s, 356.40KB read
Requests/sec:   1847.39
Transfer/sec:    353.60KB
"""
WRK_404 = """\
Running 1s test @ http://127.0.0.1:18777/nope
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.82ms    1.70ms   8.00ms   81.07%
    Req/Sec     1.48k   644.55     2.80k    80.00%
  1471 requests in 1.00s, 317.47KB read
  Non-2xx or 3xx responses: 1471
Requests/sec:   1465.77
Transfer/sec:    316.34KB
"""


def python_m(module: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_scrape_and_gc_hook_benches_run_on_a_tiny_size_and_print_their_ratio():
    running = {name: python_m(f"bench.{name}", *args) for name, args in TINY.items()}
    for name, process in running.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"bench.{name} failed:\n{err}"
        assert re.search(RATIO_LINES[name], out), f"bench.{name} printed no ratio:\n{out}"


def test_wrk_reports_are_read_exactly_and_errors_counted():
    assert parse_wrk(WRK_OK) == WrkResult(requests_per_second=1847.39, requests=1862, errors=0)
    assert parse_wrk(WRK_404).errors == 1471
    with_socket_errors = WRK_OK.replace(
        "Requests/sec", "  Socket errors: connect 1, read 2, write 3, timeout 4\nRequests/sec"
    )
    assert parse_wrk(with_socket_errors).errors == 10


def test_the_dispatcher_refuses_an_unknown_name_and_lists_the_known_ones():
    done = python_m("bench", "no-such-bench")
    out, err = done.communicate(timeout=30)
    assert done.returncode == 2
    assert out == ""
    names = err.strip().rsplit("names: ", 1)[1].split()
    assert {"scrape", "gc_hook", "wrk"} <= set(names)
    assert "__main__" not in names and "__init__" not in names
