"""The documentation's examples run: each fenced Python block of docs/ marked runnable (an HTML
comment ``<!-- runnable -->`` on the line above it, invisible on the site) runs in a fresh
interpreter and must exit 0; one marked ``<!-- runnable: server -->`` must answer
``GET /metrics`` (its port 8888 is replaced by a free one). The docstring examples of every
public module run as doctests."""

from __future__ import annotations

import doctest
import importlib
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from realbin import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BLOCK = re.compile(
    r"^<!-- runnable(?P<mode>: server)? -->\n```python\n(?P<code>.*?)^```", re.M | re.S
)


def runnable_blocks() -> list[tuple[str, bool, str]]:
    """(page:line, serves, code) of every block marked runnable in docs/."""
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{page.relative_to(DOCS)}:{line}"
            blocks.append((where, bool(match["mode"]), match["code"]))
    return blocks


BLOCKS = runnable_blocks()


def test_the_docs_mark_examples_runnable() -> None:
    pages = {where.split(":")[0] for where, _, _ in BLOCKS}
    assert {"index.md", "census.md", "pools.md", "alerts/index.md"} <= pages
    assert [where.split(":")[0] for where, serves, _ in BLOCKS if serves] == ["index.md"]


def test_getting_started_shows_the_readme_snippet() -> None:
    """One first snippet: the README's (run as pasted by tests/test_packaging.py) is the site's."""
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```python\n(.*?)```", readme[readme.index("## Install") :], re.S)
    (served,) = [code for _, serves, code in BLOCKS if serves]
    assert served == first.group(1)


def test_a_marker_without_its_block_is_refused() -> None:
    """A marker not directly above a ```python fence would silently run nothing."""
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        markers = text.count("<!-- runnable")
        assert markers == len(BLOCK.findall(text)), page


@pytest.mark.parametrize("where,serves,code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_the_block_runs(tmp_path: Path, where: str, serves: bool, code: str) -> None:
    script = tmp_path / "example.py"
    if not serves:
        script.write_text(code)
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{where}:\n{result.stderr[-3000:]}"
        return
    port = free_port()
    script.write_text(code.replace("8888", str(port)))
    process = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = response.read().decode()
                break
            except urllib.error.URLError:
                assert process.poll() is None, f"{where}:\n{process.communicate()[1][-3000:]}"
                assert time.monotonic() < deadline, f"{where}: /metrics never answered"
                time.sleep(0.1)
        assert "tornado_process_resident_memory_bytes" in body
    finally:
        process.terminate()
        process.wait(timeout=10)


def public_modules() -> list[str]:
    """The modules that define the public names the API page documents."""
    import tornado_memory_exporter
    from tornado_memory_exporter import mixin, pools

    names = set()
    for package in (tornado_memory_exporter, mixin, pools):
        names.add(package.__name__)
        for name in package.__all__:
            module = getattr(getattr(package, name), "__module__", None)
            if module and module.startswith("tornado_memory_exporter"):
                names.add(module)
    return sorted(names)


def test_the_docstring_examples_run_as_doctests() -> None:
    attempted = 0
    for name in public_modules():
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
        attempted += result.attempted
    assert attempted >= 3
