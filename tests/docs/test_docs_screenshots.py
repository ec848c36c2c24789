"""The documentation's pictures exist for every page that shows one and every dashboard row,
and the queries the screenshot tool draws (docs/screenshots.py) are valid PromQL. The pictures
themselves are made by ``python docs/screenshots.py`` from a real demo, Prometheus and Chromium
(minutes: not part of the suite)."""

from __future__ import annotations

import importlib.util
import re
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_pages = _load("gen_pages")
screenshots = _load("screenshots")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def referenced_images() -> set[Path]:
    images = set()
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            images.add((page.parent / target).resolve())
    readme = (ROOT / "README.md").read_text()
    images |= {(ROOT / t).resolve() for t in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)}
    return images


def test_every_picture_the_docs_show_exists_and_is_a_real_screenshot() -> None:
    images = referenced_images()
    assert DOCS / "screenshots" / "prometheus-alerts.png" in images
    assert DOCS / "explorer.png" in images
    for image in images:
        assert image.exists(), f"{image.relative_to(ROOT)}: run `python docs/screenshots.py`"
        width, height = png_size(image)
        assert width >= 800 and height >= 300, image
        assert image.stat().st_size > 20_000, f"{image} is too small to show anything"


def test_every_dashboard_row_has_its_screenshot_and_no_other_is_kept() -> None:
    expected = {
        gen_pages.screenshot_name(dashboard, row)
        for dashboard in gen_pages.shipped_dashboards()
        for row, _ in gen_pages.dashboard_rows(dashboard)
    }
    assert len(expected) >= 10
    kept = {p.name for p in (DOCS / "screenshots").glob("*--*.png")}
    assert kept == expected


def test_the_tool_draws_each_panel_with_valid_promql() -> None:
    import promql_parser  # the test extra installs it

    count = 0
    for dashboard in gen_pages.shipped_dashboards():
        for _, panels in gen_pages.dashboard_rows(dashboard):
            for panel in panels:
                query = screenshots.panel_query(panel, screenshots.VARIABLES)
                assert "$" not in query, query
                promql_parser.parse(query)
                assert query.count('"query"') == len(panel["targets"])
                count += 1
    assert count >= 30
