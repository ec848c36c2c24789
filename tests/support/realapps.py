"""What the real-apps tests (``tests/apps``, the ``apps`` leg of ``make test``) check on every app:
scrapes parsed into series, each series published once, ``promtool check metrics``, no errors
counted; and the apps themselves imported or the test skipped (failed under ``CI=true``)."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, tuple[tuple[str, str], ...]]
RECIPES = Path(__file__).resolve().parents[2] / "docs" / "installing.md"


def recipe(name: str) -> str:
    """The code block marked ``<!-- recipe: name -->`` in docs/installing.md, as written."""
    match = re.search(
        rf"<!-- recipe: {re.escape(name)} -->\n```\w*\n(.*?)```", RECIPES.read_text(), re.S
    )
    assert match, f"docs/installing.md has no recipe {name!r}"
    return match[1]


def need(module: str) -> ModuleType:
    """Import ``module``; without it skip (the apps leg installs it), but fail under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        message = f"{module} is missing ({error}): `.ci/legs.py --legs apps` installs the real apps"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET (an HTTP error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def series(text: str) -> Counter[Series]:
    """How many times each series (name and labels) appears in one scrape."""
    return Counter(
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


def names(text: str, prefix: str) -> set[str]:
    """The sample names of a scrape that start with ``prefix``."""
    return {name for name, _ in series(text) if name.startswith(prefix)}


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample, or None when the scrape has no such series."""
    wanted = tuple(sorted(labels.items()))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and tuple(sorted(sample.labels.items())) == wanted:
                return sample.value
    return None


def total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def assert_published_once(*scrapes: str) -> None:
    """No series twice in one scrape, nor in two of the scrapes (two routes of one process)."""
    seen: Counter[Series] = Counter()
    for text in scrapes:
        seen.update(series(text))
    twice = sorted(s for s, n in seen.items() if n > 1)
    assert twice == [], f"{len(twice)} series published more than once, e.g. {twice[:5]}"


def assert_healthy(text: str, namespace: str = "tornado") -> None:
    """Our series are there, the census ran, no error was counted, promtool accepts the scrape."""
    assert total(text, f"{namespace}_exporter_info") == 1.0
    assert (value(text, f"{namespace}_census_last_success_timestamp_seconds") or 0) > 0
    assert total(text, f"{namespace}_exporter_errors_total") == 0, [
        line for line in text.splitlines() if "_exporter_errors_total{" in line
    ]
    promtool_check(text)


def promtool_check(text: str) -> None:
    from realbin import require_binary

    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


class Session:
    """A real Bokeh client session (bokeh.client, over a WebSocket), opened and closed on a
    thread of its own: it runs a loop of its own there, which close() must find again."""

    def __init__(self, thread: ThreadPoolExecutor, session: object) -> None:
        self.thread, self.session = thread, session

    @classmethod
    async def open(cls, url: str) -> Session:
        thread = ThreadPoolExecutor(1)
        loop = asyncio.get_running_loop()
        from bokeh.client import pull_session

        return cls(thread, await loop.run_in_executor(thread, lambda: pull_session(url=url)))

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.thread, self.session.close)
        self.thread.shutdown()
