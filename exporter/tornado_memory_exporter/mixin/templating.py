"""Python twins of the Prometheus template functions our annotations use, so that the generated
promtool tests can state the exact annotation text an alert carries."""

from __future__ import annotations

import math
import re


def _g4(value: float) -> str:
    return f"{value:.4g}"  # Go's %.4g and Python's agree


def humanize(value: float) -> str:
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    if abs(value) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix, value = p, value / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(value) >= 1:
                break
            prefix, value = p, value * 1000
    return f"{_g4(value)}{prefix}"


def humanize1024(value: float) -> str:
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix = p
        value /= 1024
    return f"{_g4(value)}{prefix}"


def humanize_duration(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    if value == 0:
        return f"{_g4(value)}s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        total = int(abs(value))
        seconds, minutes, hours, days = (
            total % 60,
            total // 60 % 60,
            total // 3600 % 24,
            total // 86400,
        )
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(abs(value))}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return f"{_g4(value)}{prefix}s"


def humanize_percentage(value: float) -> str:
    return f"{_g4(value * 100)}%"


def plain(value: float) -> str:
    """``{{ $value }}``: Go prints an integral float64 without a fraction."""
    return str(int(value)) if value == int(value) and abs(value) < 1e21 else repr(value)


FUNCTIONS = {
    "": plain,
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
}
_ACTION = re.compile(r"\{\{\s*(\$labels\.(\w+)|\$value(?:\s*\|\s*(\w+))?)\s*\}\}")


_IF = re.compile(r"\{\{\s*if \$labels\.(\w+)\s*\}\}(.*?)\{\{\s*end\s*\}\}", re.DOTALL)


def render(template: str, labels: dict[str, str], value: float) -> str:
    """Expand the subset of Go templating our annotations use (labels, ``$value | fn`` and
    ``{{ if $labels.x }}...{{ end }}``)."""
    template = _IF.sub(lambda m: m.group(2) if labels.get(m.group(1)) else "", template)

    def expand(match: re.Match[str]) -> str:
        if match.group(2):
            return labels.get(match.group(2), "")
        return FUNCTIONS[match.group(3) or ""](value)

    return _ACTION.sub(expand, template)
