"""What a user installs: the sdist and wheel as built (`python -m build`), and the README's first
snippet run as pasted."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tornado_memory_exporter"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="build is in the test extra")
    out = tmp_path_factory.mktemp("dist")
    # Without flags, build makes the sdist and then the wheel from the sdist: a wheel at all
    # proves the sdist carries what building needs.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_the_wheel_carries_the_runbook_license_types_page_and_jupyter_extension(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(info).decode())
        runbook = archive.read(f"{PACKAGE}/mixin/RUNBOOK.md").decode()
    for name in (
        "mixin/RUNBOOK.md",
        "py.typed",
        "explorer/static/index.html",
        "jupyter/__init__.py",
        "jupyter/extension.py",
    ):
        assert f"{PACKAGE}/{name}" in names, name
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert runbook == (ROOT / "alerts" / "RUNBOOK.md").read_text()
    assert metadata["License-Expression"] == "Apache-2.0"
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues", "Runbook"} <= set(urls)
    assert urls["Runbook"].endswith("/alerts/RUNBOOK.md")
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_the_sdist_leaves_the_repository_suite_out(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {
        "LICENSE",
        "README.md",
        "pyproject.toml",
        f"exporter/{PACKAGE}/mixin/RUNBOOK.md",
    } <= names
    # The suite needs alerts/, dashboards/, deploy/ and real binaries: none of it ships, nor tests.
    assert not {
        n for n in names if n.split("/")[0] in ("tests", "bench", "alerts", "dashboards", "deploy")
    }


def test_the_license_is_the_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 170


def first_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    install = readme.index("## Install")
    assert install == readme.index("## "), "the Install section comes first"
    assert (
        "pip install tornado-memory-exporter" in readme[install:] and "pip install -e ." in readme
    )
    assert "python3-venv" in readme[install : install + 1500]
    return re.search(r"```python\n(.*?)```", readme[install:], re.S).group(1)


def test_the_first_readme_snippet_runs_as_pasted(tmp_path: Path) -> None:
    snippet = first_snippet()
    with socket.socket() as probe:  # 8888 may be taken on a shared machine: the one change
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "app.py"
    script.write_text(snippet.replace("8888", str(port)))
    process = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/metrics", timeout=5
                ) as response:
                    body = response.read().decode()
                break
            except urllib.error.URLError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert "tornado_process_resident_memory_bytes" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.read() == b"hello"
    finally:
        process.terminate()
        process.wait(timeout=10)
