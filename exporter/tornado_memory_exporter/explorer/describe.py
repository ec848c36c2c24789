"""JSON descriptions of chain links that never reveal object contents unless asked to.

Shown by default: type names, container lengths, code locations (function, file:line),
attribute, global and local *variable names* (names in the application's code), list
indices. Hidden by default: reprs and dict keys of non-namespace dicts (a cache keyed by session
id would leak the ids). With ``show_contents`` a truncated repr is added; ``repr()`` runs
application code, so it is guarded and cut to ``REPR_LIMIT`` characters.
"""

from __future__ import annotations

import functools
import reprlib
import types
from asyncio import Handle
from collections import deque
from typing import Any

import tornado.ioloop

from ..census.typenames import type_name
from .backrefs import CLASS_ATTRIBUTE, MODULE_GLOBAL, Root, callback_target, where

REPR_LIMIT = 120
"""Characters of a repr shown with ``explorer_show_contents``."""
SEARCH_LIMIT = 100_000
"""Items looked at to name the slot of a container holding the next link."""
HIDDEN = "<hidden>"

_SIZED = (list, tuple, dict, set, frozenset, deque)
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = REPR_LIMIT
_repr.maxlevel = 2


def safe_repr(obj: Any) -> str:
    """A repr cut to ``REPR_LIMIT`` characters; a failing ``__repr__`` is reported, not raised."""
    try:
        text = _repr.repr(obj)
    except Exception as error:  # noqa: BLE001 - application code may raise anything
        text = f"<repr failed: {type(error).__name__}>"
    return text[:REPR_LIMIT]


def describe_node(obj: Any, *, show_contents: bool) -> dict[str, Any]:
    """``{"type", "label"?, "len"?, "repr"?}`` of one object."""
    out: dict[str, Any] = {"type": type_name(type(obj))}
    if isinstance(obj, _SIZED):
        out["len"] = len(obj)
    label = _label(obj)
    if label is not None:
        out["label"] = label
    if show_contents:
        out["repr"] = safe_repr(obj)
    return out


def _label(obj: Any) -> str | None:
    if isinstance(
        obj,
        (
            types.FunctionType,
            types.CoroutineType,
            types.GeneratorType,
            types.AsyncGeneratorType,
            types.FrameType,
        ),
    ):
        return where(obj)
    if isinstance(obj, (Handle, tornado.ioloop.PeriodicCallback)):
        return f"callback {where(callback_target(obj))}"
    if isinstance(obj, type):
        return type_name(obj)
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    return None


def describe_edge(parent: Any, child: Any, *, namespace: bool, show_contents: bool) -> str:
    """How ``parent`` holds ``child``: ``.attr``, ``[3]``, ``['key']``, ``closure``, ..."""
    if isinstance(parent, dict):
        return _dict_edge(parent, child, namespace=namespace, show_contents=show_contents)
    if isinstance(parent, (list, tuple, deque)):
        for i, item in enumerate(parent):
            if item is child:
                return f"[{i}]"
            if i >= SEARCH_LIMIT:
                break
        return "[?]"
    if isinstance(parent, (set, frozenset)):
        return "member"
    if isinstance(parent, types.CellType):
        return "cell_contents"
    if isinstance(parent, functools.partial):
        for attr in ("func", "args", "keywords"):
            if getattr(parent, attr) is child:
                return f".{attr}"
    if isinstance(
        parent,
        (types.FrameType, types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType),
    ):
        return _frame_edge(parent, child)
    if isinstance(parent, type) and isinstance(child, dict):
        return ".__dict__"
    for attr in (
        "__closure__",
        "__globals__",
        "__defaults__",
        "__kwdefaults__",
        "__self__",
        "__func__",
        "__dict__",
        "__mro__",
        "__bases__",
    ):
        try:
            if object.__getattribute__(parent, attr) is child:
                return f".{attr}"
        except Exception:  # noqa: BLE001, S112 - attribute absent (or a broken descriptor)
            continue
    slot = _slot_of(parent, child)
    return f".{slot}" if slot else "referent"


def _dict_edge(parent: dict, child: Any, *, namespace: bool, show_contents: bool) -> str:
    for i, (key, value) in enumerate(parent.items()):
        if value is child:
            if namespace and isinstance(key, str):
                return f".{key}"
            return f"[{safe_repr(key)}]" if show_contents else f"[{HIDDEN} key]"
        if key is child:
            return "key"
        if i >= SEARCH_LIMIT:
            break
    return "[?]"


def _frame_edge(holder: Any, child: Any) -> str:
    frame = (
        holder
        if isinstance(holder, types.FrameType)
        else (
            getattr(holder, "cr_frame", None)
            or getattr(holder, "gi_frame", None)
            or getattr(holder, "ag_frame", None)
        )
    )
    if frame is not None:
        for name, value in frame.f_locals.items():
            if value is child:
                return f"local {name}"
    return "local"


def _slot_of(parent: Any, child: Any) -> str | None:
    for cls in type(parent).__mro__:
        slots = vars(cls).get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            descriptor = vars(cls).get(name)
            if isinstance(descriptor, types.MemberDescriptorType):
                try:
                    if descriptor.__get__(parent, cls) is child:
                        return name
                except AttributeError:  # an unset slot
                    continue
    return None


def describe_chain(
    path: list[Any], root: Root | None, *, show_contents: bool
) -> list[dict[str, Any]]:
    """Root-first steps: each node, and how it holds the next one (``via``)."""
    steps = []
    for i, obj in enumerate(path):
        step = describe_node(obj, show_contents=show_contents)
        if i + 1 < len(path):
            holder = path[i - 1] if i > 0 else None
            namespace = (
                (i == 0 and root is not None and root.kind in (MODULE_GLOBAL, CLASS_ATTRIBUTE))
                or isinstance(holder, type)
                or (holder is not None and _dict_of(holder) is obj)
            )
            step["via"] = describe_edge(
                obj, path[i + 1], namespace=namespace, show_contents=show_contents
            )
        steps.append(step)
    return steps


def _dict_of(obj: Any) -> Any:
    try:
        return object.__getattribute__(obj, "__dict__")
    except Exception:  # noqa: BLE001
        return None
