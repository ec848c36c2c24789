"""A minimal, deterministic YAML writer for the generated files (no PyYAML at run time).

Mappings keep their insertion order, multi-line strings become literal blocks (readable PromQL),
every other string is double-quoted JSON, which is valid YAML.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# Strings that YAML 1.1 would read as something else stay quoted.
_RESERVED = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})


def dump(data: Any) -> str:
    """``data`` (dicts, lists, str, int, float, bool, None) as a YAML document."""
    return "\n".join(_lines(data, 0)) + "\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        if _PLAIN_KEY.match(value) and value.lower() not in _RESERVED:
            return value
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) and key.lower() not in _RESERVED else json.dumps(key)


def _is_block(value: Any) -> bool:
    return (
        isinstance(value, str)
        and "\n" in value.rstrip("\n")
        and not value.startswith(" ")
        and all(line == line.rstrip() for line in value.split("\n"))
    )


def _block(value: str, indent: int) -> list[str]:
    indicator = "|" if value.endswith("\n") and not value.endswith("\n\n") else "|-"
    pad = " " * indent
    return [indicator] + [pad + line if line else "" for line in value.rstrip("\n").split("\n")]


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out = []
        for key, item in value.items():
            out += _entry(pad + _key(key) + ":", item, indent)
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            out += _entry(pad + "-", item, indent, in_list=True)
        return out
    return [pad + _scalar(value)]


def _entry(head: str, item: Any, indent: int, in_list: bool = False) -> list[str]:
    child = indent + 2
    if _is_block(item):
        first, *rest = _block(item, child)
        return [f"{head} {first}", *rest]
    if isinstance(item, dict) and item:
        if in_list:  # "- key: value" with the following keys aligned under the first
            lines = _lines(item, child)
            return [f"{head} {lines[0].lstrip()}", *lines[1:]]
        return [head, *_lines(item, child)]
    if isinstance(item, list) and item:
        return [head, *_lines(item, child)]
    return [f"{head} {_lines(item, 0)[0]}"]
