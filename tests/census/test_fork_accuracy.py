"""The forked census against guppy3's ``hpy().heap()`` on the same heap: total objects and
bytes within 15 %, and the same top types by bytes.

Both run in one fresh interpreter holding the bench's seeded heap (instances with ``__dict__``
and ``__slots__``, dicts, lists, tuples, strings, ints), ours first (in a real forked child
through ``Forker``), then guppy's, so each sees the same objects.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("guppy", reason="guppy3 is in the test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="fork mode needs Linux"
)

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from bench.census import build_heap
    from tornado_memory_exporter.census import child
    from tornado_memory_exporter.census.fork import Forker
    from tornado_memory_exporter.census.heap import Kinds, count_by_type

    roots = build_heap(300_000)

    async def ours():
        forker = Forker(loop=asyncio.get_running_loop(), mode="fork", deadline=120, headroom=0,
                        available=lambda: 0, rss=lambda: 0)
        work = lambda: tuple(child.census(count_by_type=count_by_type, kinds=Kinds()))
        answer, _ = await forker.run(work)
        answer = child.ChildCensus.from_wire(answer)
        types = dict(answer.types)
        for name, (n, size) in answer.garbage.items():  # guppy counts garbage as live
            count, total = types.get(name, (0, 0))
            types[name] = (count + n, total + size)
        return types

    types = asyncio.run(ours())
    from guppy import hpy
    heap = hpy().heap()
    rows = heap.bytype
    theirs = {str(rows[i].kind): (rows[i].count, rows[i].size) for i in range(min(10, len(rows)))}
    top = [n for n, _ in sorted(types.items(), key=lambda kv: -kv[1][1])[:10]]
    print(json.dumps({
        "ours": {"count": sum(c for c, _ in types.values()),
                 "bytes": sum(b for _, b in types.values()), "top": top},
        "theirs": {"count": heap.count, "bytes": heap.size,
                   "top": sorted(theirs, key=lambda k: -theirs[k][1])},
    }))
    """
)


def test_object_bytes_and_counts_are_within_15_percent_of_guppy3_with_the_same_top_types():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ours, theirs = result["ours"], result["theirs"]
    assert abs(ours["count"] - theirs["count"]) <= 0.15 * theirs["count"], result
    assert abs(ours["bytes"] - theirs["bytes"]) <= 0.15 * theirs["bytes"], result
    # guppy names code objects types.CodeType; the census names types by module.QualName.
    rename = {"types.CodeType": "code"}
    top_theirs = [rename.get(name, name) for name in theirs["top"][:3]]
    assert set(ours["top"][:3]) == set(top_theirs), result
