"""The explorer page in a real headless Chromium (Debian's, driven by Playwright from PyPI; no
browser is ever downloaded): log in, see the growing type, click it, see its chain and the
allocation line. ``TME_UPDATE_SCREENSHOT=1`` refreshes the README's docs/explorer.png."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import leaky_app
import pytest
from explorer_client import TOKEN, api, request
from realbin import Daemon, free_port, require_binary, wait_for

README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "explorer.png"
"""Refreshed only when TME_UPDATE_SCREENSHOT=1, so that test runs leave the work tree clean."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class LeakyApp(Daemon):
    """``leaky_app`` with the explorer, served by a child process on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__("leaky-app")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tests = str(Path(__file__).resolve().parents[1] / "support")
        code = (
            f"import sys; sys.path.insert(0, {tests!r}); import leaky_app; "
            f"leaky_app.main({self.port}, {TOKEN!r})"
        )
        self.spawn([sys.executable, "-c", code])
        wait_for("leaky app", self._ready, timeout=30)

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"leaky app exited:\n{self.log_tail()}")
        return (
            request(self.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        )

    def get(self, path: str) -> int:
        return request(self.url + path)[0]


def test_operator_clicks_the_growing_type_and_sees_chain_and_allocation_line(
    tmp_path: Path,
) -> None:
    chromium = require_binary("chromium")
    try:
        from playwright import sync_api
    except ImportError:  # the test extra installs it: missing under CI is a failure
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is not installed (pip install -e '.[test]')")
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with LeakyApp() as server, sync_api.sync_playwright() as playwright:
        assert api(server, "POST", "/census", {})[0] == 200  # baseline, before the leak
        for _ in range(4):
            assert server.get("/leak") == 200
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(f"{server.url}/debug/memory")  # redirected to .../debug/memory/

            # No credentials yet: the page asks for them.
            page.locator("#login").wait_for(state="visible")
            page.fill("#token", TOKEN)
            page.click("#login button[type=submit]")
            page.locator("#main").wait_for(state="visible")

            page.click("#census")
            row = page.locator("#types tbody tr[data-type='leaky_app.LeakedRecord']")
            row.wait_for()
            assert row.locator("td").nth(2).inner_text() == "+200"

            page.fill("#seconds", "2")
            page.click("#trace")
            sync_api.expect(page.locator("#alloc-status")).to_contain_text("Tracing allocations")
            for _ in range(3):
                server.get("/leak")  # the leak goes on while tracemalloc watches

            row.locator("button.type").click()
            chains = page.locator("#chains li")
            sync_api.expect(chains.first).to_contain_text("module global: leaky_app.LEAKED")
            sync_api.expect(chains.first).to_contain_text(
                re.compile(
                    r"dict \(len \d+\) \.LEAKED → list \(len 350\) \[\d+\] "
                    r"→ leaky_app\.LeakedRecord$"
                )
            )

            line = f"{leaky_app.__file__}:{leaky_app.leak_line()}"
            allocations = page.locator("#type-allocations")
            sync_api.expect(allocations).to_contain_text(line, timeout=60_000)
            sync_api.expect(allocations).to_contain_text(
                "LEAKED.append(LeakedRecord(bytearray(512)))"
            )
            sync_api.expect(page.locator("#alloc-status")).to_contain_text("tracing stopped")
            first_site = page.locator("#alloc-sites tbody tr").first
            assert first_site.locator("td").first.inner_text() == line
            assert re.match(r"^\d+ census\(es\) kept", page.locator("#status").inner_text())

            update = os.environ.get("TME_UPDATE_SCREENSHOT") == "1"
            screenshot = README_SCREENSHOT if update else tmp_path / "explorer.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            # The dashboards' bars link to #type=<type>: the page opens on that type's chains.
            page.goto(f"{server.url}/debug/memory/#type=leaky_app.LeakedRecord")
            page.reload()  # same tab: the credentials typed above are kept for this tab only
            sync_api.expect(page.locator("#detail-type")).to_have_text("leaky_app.LeakedRecord")
            sync_api.expect(page.locator("#chains li").first).to_contain_text(
                "module global: leaky_app.LEAKED"
            )
        finally:
            browser.close()
