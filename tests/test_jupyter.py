"""The Jupyter Server extension in a real ``jupyter server`` on 127.0.0.1: Jupyter's own
/metrics keeps
its protection, ours answers with Jupyter's token only, on its own registry, and the census sees
Jupyter's handler classes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from traitlets.config import Config as TraitletsConfig

pytest.importorskip("jupyter_server", reason="jupyter_server is in the test extra")

from tornado.websocket import websocket_connect  # noqa: E402

from tornado_memory_exporter.jupyter import _jupyter_server_extension_points  # noqa: E402
from tornado_memory_exporter.jupyter.extension import TornadoMemoryExporter  # noqa: E402

TOKEN = "jupyter-test-token"
BASE = "/user/alice@example.com/"  # a JupyterHub-style base_url, with an "@"
OURS = f"{BASE}tornado-memory/metrics"
EVENTS_SOCKET = "jupyter_server.services.events.handlers.SubscribeWebsocket"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=10
        ) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def ready(url: str) -> int | None:
    try:
        return get(url, TOKEN)[0]
    except urllib.error.URLError:
        return None  # not listening yet


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("jupyter")
    for name in ("config", "data", "runtime", "root"):
        (home / name).mkdir()
    (home / "config" / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {"jpserver_extensions": {"tornado_memory_exporter.jupyter": True}},
                "TornadoMemoryExporter": {"options": {"census_interval": 1.0}},
            }
        )
    )
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "JUPYTER_CONFIG_PATH": str(home / "config"),
    }
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.base_url={BASE}",
            f"--ServerApp.root_dir={home / 'root'}",
            f"--IdentityProvider.token={TOKEN}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while ready(url + OURS) != 200:
            assert process.poll() is None, (home / "server.log").read_text()
            assert time.monotonic() < deadline, (home / "server.log").read_text()
            time.sleep(0.2)
        yield url, home / "server.log"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server, and any kernel it started
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def test_jupyter_finds_the_extension_point():
    assert _jupyter_server_extension_points() == [{"module": "tornado_memory_exporter.jupyter"}]


def test_jupyters_own_metrics_keep_their_protection_and_ours_need_the_token(jupyter):
    url, log = jupyter
    assert get(url + f"{BASE}metrics")[0] == 403  # Jupyter's route, not taken over
    status, theirs = get(url + f"{BASE}metrics", TOKEN)
    assert status == 200 and "tornado_process_resident_memory_bytes" not in theirs  # own registry
    assert get(url + OURS)[0] == 403
    assert get(url + OURS, "wrong-token")[0] == 403
    status, text = get(url + OURS, TOKEN)
    assert status == 200 and "tornado_process_resident_memory_bytes" in text
    assert "http_request_duration_seconds" not in text  # Jupyter's metrics are not republished
    assert "tornado_memory_exporter.jupyter | extension was successfully loaded" in log.read_text()


def test_the_census_shows_jupyters_handler_classes(jupyter):
    url, _ = jupyter

    async def watch() -> str:
        socket_url = url.replace("http", "ws") + f"{BASE}api/events/subscribe?token={TOKEN}"
        connection = await websocket_connect(socket_url)  # a live Jupyter handler while it is open
        try:
            deadline = time.monotonic() + 10
            while True:
                text = await asyncio.to_thread(get, url + OURS, TOKEN)
                if f'handler="{EVENTS_SOCKET}"' in text[1]:
                    return text[1]
                assert time.monotonic() < deadline, "no census saw Jupyter's websocket handler"
                await asyncio.sleep(0.3)
        finally:
            connection.close()

    text = asyncio.run(watch())
    # One open socket, one live instance (its state is the WebSocket metrics' business).
    alive = [
        line
        for line in text.splitlines()
        if line.startswith(f'tornado_handlers_alive{{handler="{EVENTS_SOCKET}"')
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in alive) == 1.0, alive


def test_the_options_come_from_jupyters_config_and_are_validated():
    config = TraitletsConfig()
    config.TornadoMemoryExporter.options = {"census_interval": 30, "namespace": "jupyter_mem"}
    assert TornadoMemoryExporter(config=config).exporter_config().namespace == "jupyter_mem"
    config.TornadoMemoryExporter.options = {"census_interval": -1}
    with pytest.raises(ValueError, match="census_interval=-1"):
        TornadoMemoryExporter(config=config).exporter_config()
    config.TornadoMemoryExporter.options = {"no_such_option": 1}
    with pytest.raises(TypeError, match="c.TornadoMemoryExporter.options: .*no_such_option"):
        TornadoMemoryExporter(config=config).exporter_config()


def test_the_package_imports_without_jupyter_until_a_hook_runs():
    code = (
        "import sys; sys.modules['jupyter_server'] = None; import tornado_memory_exporter.jupyter"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
