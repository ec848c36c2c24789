"""Checks for options and arguments, shared by ``Config``, pools, the explorer and workers.

Each check returns the value it accepted and raises with the option's name and the value in
the message: ``OptionTypeError`` for a value of the wrong type (it is a ``TypeError`` and a
``ValueError``, so code that catches bad configuration as ``ValueError`` still does), and
``ValueError`` for a value of the right type out of range.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

T = TypeVar("T")


class OptionTypeError(TypeError, ValueError):
    """An option of the wrong type; the message says what to pass."""


def integer(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) from ``minimum`` to ``maximum``."""
    span = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
    if not isinstance(value, int) or isinstance(value, bool):
        raise OptionTypeError(f"{name}={value!r} must be an integer {span}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name}={value!r} must be an integer {span}")
    return value


def number(
    name: str,
    value: object,
    *,
    minimum: float,
    above: bool = False,
    maximum: float | None = None,
    infinite: bool = False,
) -> float:
    """``value`` if it is a real number (not a ``bool``, not NaN) ``>= minimum`` (``> minimum``
    with ``above``) and ``<= maximum``; infinity only with ``infinite``."""
    bound = f"> {minimum:g}" if above else f">= {minimum:g}"
    if maximum is not None:
        bound += f" and at most {maximum:g}"  # no "<": Tornado refuses it in a reason phrase
    kind = "a number" if infinite else "a finite number"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise OptionTypeError(f"{name}={value!r} must be {kind} {bound}")
    ok = not math.isnan(value) and (infinite or math.isfinite(value))
    ok = ok and (value > minimum if above else value >= minimum)
    if not ok or (maximum is not None and value > maximum):
        raise ValueError(f"{name}={value!r} must be {kind} {bound}")
    return value


def instance(name: str, value: object, cls: type[T], what: str) -> T | None:
    """``value`` if it is ``None`` or a ``cls``; ``what`` says what to pass instead."""
    if value is not None and not isinstance(value, cls):
        raise OptionTypeError(f"{name}={value!r} must be {what}")
    return value


def flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise OptionTypeError(f"{name}={value!r} must be True or False")
    return value


def function(name: str, value: object, *, optional: bool = False) -> Any:
    """``value`` if it is callable (or ``None`` with ``optional``)."""
    if not (callable(value) or (optional and value is None)):
        raise OptionTypeError(f"{name}={value!r} must be callable{' or None' if optional else ''}")
    return value


def label_value(name: str, value: object, *, longest: int = 100) -> str:
    """``value`` if it can name one of the user's objects in a label (a pool, a watched object,
    an explorer root): a non-empty string of at most ``longest`` characters."""
    if not isinstance(value, str):
        raise OptionTypeError(
            f"{name}={value!r} must be a non-empty string of at most {longest} characters"
        )
    if not 0 < len(value) <= longest:
        raise ValueError(
            f"{name}={value!r} must be a non-empty string of at most {longest} characters"
        )
    return value


def buckets(name: str, value: object) -> tuple[float, ...]:
    """``value`` if it is a non-empty tuple of increasing positive finite numbers."""
    if not isinstance(value, tuple):
        raise OptionTypeError(f"{name}={value!r} must be a tuple of increasing positive numbers")
    ok = (
        len(value) > 0
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf
            for v in value
        )
        and list(value) == sorted(set(value))
    )
    if not ok:
        raise ValueError(
            f"{name}={value!r} must be a non-empty tuple of increasing positive numbers"
        )
    return value


def port(name: str, value: object, *, minimum: int = 0) -> int:
    """``value`` if it is a TCP port number (0 picks a free port where ``minimum`` is 0)."""
    return integer(name, value, minimum=minimum, maximum=65535)


# RFC 3986 path characters: unreserved, sub-delims, ":" and "@" (pchar), "/" between segments,
# and percent-encoded octets. Anything else (space, "?", "#", quotes, controls) cannot be sent
# unencoded, so a route expecting it would never be reached.
_PATH_CHAR = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
)
_HEX = frozenset("0123456789abcdefABCDEF")


def url_path(name: str, value: object, *, trailing_slash: bool = True) -> str:
    """``value`` if it is an absolute URL path (``/...``) of RFC 3986 path characters, ``%HH``
    escapes included; it is matched literally, as the request sends it (``+``, ``(``, ``@``
    are plain characters). ``trailing_slash=False`` also refuses a path ending with ``/``."""
    rule = (
        "must start with '/'"
        + ("" if trailing_slash else ", not end with '/'")
        + (
            " and use RFC 3986 path characters"
            " (letters, digits, -._~!$&'()*+,;=:@/ and %HH escapes)"
        )
    )
    if not isinstance(value, str):
        raise OptionTypeError(f"{name}={value!r} {rule}: pass a string like '/metrics'")
    bad = "".join(
        dict.fromkeys(
            c
            for i, c in enumerate(value)
            if c not in _PATH_CHAR
            and not (c == "%" and value[i + 1 : i + 2] in _HEX and value[i + 2 : i + 3] in _HEX)
        )
    )
    ok = value.startswith("/") and not value.startswith("//") and not bad
    if ok and not trailing_slash:
        ok = not value.endswith("/") and "//" not in value
    if not ok:
        raise ValueError(
            f"{name}={value!r} {rule}" + (f"; {bad!r} must be percent-encoded" if bad else "")
        )
    return value
