"""The documentation site builds with ``mkdocs build --strict`` (a broken link or anchor, a
missing page or image, a docstring mkdocstrings cannot render fails it), has the pages a user
looks for, and the README stays the short front door that links into it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The pages issue 24 lists, each with one job; the nav of mkdocs.yml must name each one.
PAGES = {
    "index.md": "Getting started",
    "installing.md": "Installing in your app",
    "configuration.md": "Configuration",
    "metrics.md": "Metrics",
    "alerts/index.md": "How they judge a leak",
    "runbook.md": "Runbook",
    "dashboards.md": "Dashboards",
    "census.md": "Heap census",
    "explorer.md": "Leak explorer",
    "pools.md": "Pools",
    "deploying.md": "Deploying",
    "security.md": "Security",
    "performance.md": "Performance",
    "versions.md": "Supported versions",
    "design.md": "Design",
    "api.md": "API reference",
    "changelog.md": "Changelog",
}


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "exporter"), env.get("PYTHONPATH")])
    )
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for page in PAGES:
        stem = page.removesuffix(".md")
        built = site / (f"{stem}.html" if stem.endswith("index") else f"{stem}/index.html")
        assert built.exists(), page
    api = (site / "api" / "index.html").read_text()
    # mkdocstrings rendered the docstrings, not just the headings
    assert "validated on construction" in api or "ValueError" in api
    assert 'id="tornado_memory_exporter.install.install"' in api


def test_the_nav_names_every_page_with_its_title() -> None:
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def entries(nav: list) -> dict[str, str]:
        found: dict[str, str] = {}
        for item in nav:
            for title, target in item.items():
                found.update(entries(target) if isinstance(target, list) else {target: title})
        return found

    nav = entries(config["nav"])
    assert {page: nav.get(page) for page in PAGES} == PAGES


def test_the_readme_is_the_short_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    # a picture, the two commands, and a link to each page of the site that exists here
    assert re.search(r"!\[[^\]]+\]\((docs/[^)]+\.png)\)", readme)
    assert "make demo" in readme and "make test" in readme
    for page in PAGES:
        if (ROOT / "docs" / page).exists() and page not in ("runbook.md", "changelog.md"):
            assert f"(docs/{page})" in readme, page
    # no run logs or measurement history: those live in bench/README.md
    for history in ("A/A", "load average", "p99.9", "| scenario |"):
        assert history not in readme, history
