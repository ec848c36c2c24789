"""The reference pages generated from the code (docs/gen_pages.py) are committed as generated:
a Config field, metric, alert, dashboard panel or public name changed without regenerating them
fails here."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gen_pages", ROOT / "docs" / "gen_pages.py")
gen_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_pages)


@pytest.mark.parametrize("page", sorted(gen_pages.PAGES))
def test_the_committed_page_is_what_the_code_generates(page: str) -> None:
    committed = (ROOT / "docs" / page).read_text()
    assert committed == gen_pages.PAGES[page](), (
        f"docs/{page} is stale: run `python docs/gen_pages.py` and commit the result"
    )


def test_every_config_option_has_its_docstring_on_the_configuration_page() -> None:
    from tornado_memory_exporter import Config

    page = (ROOT / "docs" / "configuration.md").read_text()
    names = [field.name for field in dataclasses.fields(Config)]
    headings = re.findall(r"^## `([a-z_]+)` \{#", page, re.MULTILINE)
    assert headings == names
    assert "(no docstring)" not in page, "a Config field has no docstring below it"


def test_field_docs_reads_the_attribute_docstrings_of_a_dataclass() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Example:
        plain: int = 1
        """The ``plain`` one."""
        undocumented: str = "x"
        listed: tuple[str, ...] = ("a",)
        """Two
        lines."""

    rows = [(n, a, d, " ".join(doc.split())) for n, a, d, doc in gen_pages.field_docs(Example)]
    assert rows == [
        ("plain", "int", "1", "The ``plain`` one."),
        ("undocumented", "str", "'x'", ""),
        ("listed", "tuple[str, ...]", "('a',)", "Two lines."),
    ]


def test_every_catalogued_metric_is_on_the_metrics_page_with_the_default_namespace() -> None:
    catalogue = (ROOT / "docs" / "design.md").read_text()
    section = catalogue[catalogue.index("## Metric catalogue") : catalogue.index("## Alerts")]
    documented = set(re.findall(r"`<ns>_([a-z0-9_]+)`", section))
    page = (ROOT / "docs" / "metrics.md").read_text()
    assert len(documented) > 40
    assert {m for m in documented if f"`tornado_{m}`" not in page} == set()
    assert "<ns>_" not in page.split("-->", 1)[1].split("namespace=...", 1)[0]


def test_every_public_name_has_an_api_entry() -> None:
    import tornado_memory_exporter

    page = (ROOT / "docs" / "api.md").read_text()
    for name in tornado_memory_exporter.__all__:
        value = getattr(tornado_memory_exporter, name)
        if hasattr(value, "__qualname__"):
            assert f"::: {value.__module__}.{value.__qualname__}\n" in page, name
        else:
            assert f"### `{name}`" in page, name


def test_every_generated_alert_links_to_its_runbook_section() -> None:
    page = (ROOT / "docs" / "alerts" / "list.md").read_text()
    runbook = (ROOT / "alerts" / "RUNBOOK.md").read_text()
    sections = {h.lower() for h in re.findall(r"^## (Tornado\w+)$", runbook, re.MULTILINE)}
    linked = set(re.findall(r"\(\.\./runbook\.md#(tornado\w+)\)", page))
    assert len(linked) >= 15
    assert linked <= sections
