"""What keeps an object alive, in words a developer can grep for: ``<ns>_object_holder_info``.

A retention path (``reach.shortest_paths``: root first, the held object last) is named link by
link by *code*, never by content:

* ``app.handlers.SESSIONS (module global)``: a module's global, named by module and variable;
* ``app.Cache.entries (class attribute)``: a class's attribute;
* ``app.Registry.items``: an instance attribute (class and attribute name);
* ``list``, ``tuple``, ``set``, ``dict value``, ``dict key``, ``deque``: a container's kind,
  never its keys or values;
* ``closure of app.make_handler``: a closure cell of that function;
* ``bound method app.Poller.tick``: a bound method (its ``__self__`` is held);
* ``suspended coroutine app.stream_updates``: the frame of a suspended coroutine (generators
  and async generators likewise), ``frame of app.main`` for a frame object.

Links are joined with `` > `` from the last *anchor* (a module global or a class attribute:
the name to grep for) down to the held object's holder; how the module or class itself is
reached (``sys.modules``...) is left out. A path without an anchor starts at its root, held
from a thread's stack or C state: ``root: `` and its first link (``root: suspended coroutine
app.main``, ``root: list``).
Labels longer than ``MAX_HOLDER_LENGTH`` keep their first link and as many of the last as fit.

Only identifiers appear: the keys read are those of module, class and instance namespaces, and
only when they are strings. Every read goes through C descriptors and the C iteration of
built-in dicts: no ``__getattr__``, property or ``__eq__`` runs (this runs in the forked child).
"""

from __future__ import annotations

import sys
import types
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from .typenames import module_label, type_name

MAX_HOLDER_LENGTH = 200
"""Characters of a holder label (bounded like the type label)."""
SEPARATOR = " > "
ELLIPSIS = "..."
MODULE_GLOBAL = "module global"
CLASS_ATTRIBUTE = "class attribute"
SEARCH_LIMIT = 100_000
"""Items of one namespace looked through to name the slot holding the next link."""

_TYPE_DICT = vars(type)["__dict__"]
_TYPE_MRO = vars(type)["__mro__"]
_MODULE_DICT = vars(types.ModuleType)["__dict__"]
_FUNCTION_MODULE = vars(types.FunctionType)["__module__"]
_FUNCTION_QUALNAME = vars(types.FunctionType)["__qualname__"]
_FUNCTION_CLOSURE = vars(types.FunctionType)["__closure__"]
_METHOD_FUNC = vars(types.MethodType)["__func__"]
_CODE_HOLDERS = {
    types.CoroutineType: ("suspended coroutine", vars(types.CoroutineType)["cr_code"]),
    types.GeneratorType: ("suspended generator", vars(types.GeneratorType)["gi_code"]),
    types.AsyncGeneratorType: (
        "suspended async generator",
        vars(types.AsyncGeneratorType)["ag_code"],
    ),
    types.FrameType: ("frame of", vars(types.FrameType)["f_code"]),
}
_FRAME_GLOBALS = vars(types.FrameType)["f_globals"]
_FRAMES = {
    types.CoroutineType: vars(types.CoroutineType)["cr_frame"].__get__,
    types.GeneratorType: vars(types.GeneratorType)["gi_frame"].__get__,
    types.AsyncGeneratorType: vars(types.AsyncGeneratorType)["ag_frame"].__get__,
}
"""A suspended coroutine's frame, whose globals name its module."""


def _no_frame(obj: Any) -> None:
    return None


_KINDS = {
    list: "list",
    tuple: "tuple",
    set: "set",
    frozenset: "set",
    deque: "deque",
    types.CellType: "closure cell",
}


def module_dicts(modules: Mapping[str, Any] | None = None) -> dict[int, str]:
    """``id(module.__dict__)`` -> module name, for the modules imported now."""
    modules = sys.modules if modules is None else modules
    out: dict[int, str] = {}
    for name, module in list(modules.items()):
        if isinstance(module, types.ModuleType):
            out[id(_MODULE_DICT.__get__(module))] = module_label(name)
    return out


def _key_of(namespace: dict[Any, Any], value: Any) -> str | None:
    """The string key under which ``namespace`` holds ``value`` (identity), or ``None``."""
    for n, (key, item) in enumerate(namespace.items()):
        if item is value:
            return key if type(key) is str else None
        if n >= SEARCH_LIMIT:
            break
    return None


def _instance_namespace(obj: Any) -> dict[str, Any] | None:
    """``obj``'s instance dict, read through the first C ``__dict__`` descriptor of its MRO."""
    for klass in _TYPE_MRO.__get__(type(obj), type):
        descriptor = _TYPE_DICT.__get__(klass, type).get("__dict__")
        if type(descriptor) is types.GetSetDescriptorType:
            try:
                namespace = descriptor.__get__(obj)
            except (AttributeError, TypeError):
                return None
            return namespace if type(namespace) is dict else None
    return None


def _slot_of(obj: Any, value: Any) -> str | None:
    """The ``__slots__`` member of ``obj`` holding ``value`` (C member descriptors only)."""
    for klass in _TYPE_MRO.__get__(type(obj), type):
        for name, descriptor in _TYPE_DICT.__get__(klass, type).items():
            if type(descriptor) is types.MemberDescriptorType:
                try:
                    if descriptor.__get__(obj) is value:
                        return name
                except (AttributeError, TypeError):
                    continue
    return None


def _function_name(function: Any) -> str:
    module = _FUNCTION_MODULE.__get__(function)
    qualname = _FUNCTION_QUALNAME.__get__(function)
    if isinstance(module, str) and module != "builtins":
        return f"{module_label(module)}.{qualname}"
    return str(qualname)


def _code_holder_name(obj: Any, kind: str, code: Any) -> str:
    qualname = code.co_qualname
    frame = obj if type(obj) is types.FrameType else _FRAMES.get(type(obj), _no_frame)(obj)
    module = None
    if type(frame) is types.FrameType:
        module = _FRAME_GLOBALS.__get__(frame).get("__name__")
    if isinstance(module, str):
        return f"{kind} {module_label(module)}.{qualname}"
    return f"{kind} {qualname}"


class Namer:
    """Names retention paths; ``modules`` maps ``id`` of a module's dict to its name."""

    def __init__(self, modules: Mapping[int, str] | None = None) -> None:
        self._modules = module_dicts() if modules is None else modules

    def links(self, path: Sequence[Any]) -> list[tuple[str, bool]]:
        """``(link, is_anchor)`` for each link of ``path`` that names something."""
        out: list[tuple[str, bool]] = []
        for i in range(len(path) - 1):
            named = self._link(path[max(0, i - 2) : i], path[i], path[i + 1])
            if named is not None:
                out.append(named)
        return out

    def _link(self, above: Sequence[Any], holder: Any, held: Any) -> tuple[str, bool] | None:
        """How ``holder`` holds ``held``; ``above``: up to two links above ``holder``."""
        before = above[-1] if above else None
        cls = type(holder)
        if cls is types.ModuleType:
            return None  # its dict names the global
        if cls is dict:
            return self._dict_link(before, holder, held)
        if isinstance(holder, type):
            if type(held) is dict:
                return None  # the class's namespace: its dict names the attribute
            return f"{type_name(holder)} (class)", False
        if cls is types.FunctionType:
            if held is _FUNCTION_CLOSURE.__get__(holder):
                return f"closure of {_function_name(holder)}", False
            return f"function {_function_name(holder)}", False
        if cls is types.MethodType:
            return f"bound method {_function_name(_METHOD_FUNC.__get__(holder))}", False
        if cls in _CODE_HOLDERS:
            kind, code = _CODE_HOLDERS[cls]
            return _code_holder_name(holder, kind, code.__get__(holder)), False
        if cls is tuple and type(before) is types.FunctionType:
            return None  # a closure tuple: named by its function
        if cls is types.CellType and [type(obj) for obj in above] == [types.FunctionType, tuple]:
            return None  # named by the function above its closure tuple
        kind = _KINDS.get(cls)
        if kind is not None:
            return kind, False
        namespace = _instance_namespace(holder)
        if namespace is not None and namespace is held:
            return None  # the instance's own dict: its dict link names the attribute
        attribute = _key_of(namespace, held) if namespace is not None else None
        if attribute is None:
            attribute = _slot_of(holder, held)
        if attribute is not None:
            return f"{type_name(cls)}.{attribute}", False
        return type_name(cls), False

    def _dict_link(self, before: Any, holder: dict[Any, Any], held: Any) -> tuple[str, bool]:
        module = self._modules.get(id(holder))
        if module is not None:
            key = _key_of(holder, held)
            return f"{module}.{key or '?'} ({MODULE_GLOBAL})", True
        if isinstance(before, type):
            key = _key_of(holder, held)
            return f"{type_name(before)}.{key or '?'} ({CLASS_ATTRIBUTE})", True
        if before is not None and _instance_namespace(before) is holder:
            key = _key_of(holder, held)
            return f"{type_name(type(before))}.{key or '?'}", False
        for n, item in enumerate(holder.values()):
            if item is held:
                return "dict value", False
            if n >= SEARCH_LIMIT:
                break
        return "dict key", False

    def name(self, path: Sequence[Any]) -> str:
        """The holder label of ``path`` (root first, held object last)."""
        links = self.links(path)
        start = max((i for i, (_, anchor) in enumerate(links) if anchor), default=None)
        if start is None:
            # The first link says what the root is (its code, class or container kind).
            words = [text for text, _ in links] or [type_name(type(path[0]))]
            words[0] = f"root: {words[0]}"
        else:
            words = [text for text, _ in links[start:]]
        return shorten(words)


def shorten(words: Sequence[str], limit: int = MAX_HOLDER_LENGTH) -> str:
    """``words`` joined by ``SEPARATOR``; past ``limit``, the first and as many of the last as
    fit around an ellipsis."""
    text = SEPARATOR.join(words)
    if len(text) <= limit:
        return text
    head = words[0][: limit // 2]
    tail: list[str] = []
    room = limit - len(head) - 2 * len(SEPARATOR) - len(ELLIPSIS)
    for word in reversed(words[1:]):
        if len(word) + len(SEPARATOR) > room:
            break
        tail.insert(0, word)
        room -= len(word) + len(SEPARATOR)
    return SEPARATOR.join([head, ELLIPSIS, *tail])[:limit]
