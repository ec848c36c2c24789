"""``module.QualName`` label values for type objects, without running user code."""

from __future__ import annotations

import weakref

MAX_NAME_LENGTH = 200
"""Longer names are cut (a generated class can carry an arbitrarily long qualname)."""

# The descriptors of `type` itself: reading through them ignores any metaclass that overrides
# __module__ or __qualname__ with a property, so naming a type never runs application code.
_MODULE = vars(type)["__module__"]
_QUALNAME = vars(type)["__qualname__"]


def module_label(name: str) -> str:
    """How a module is named in labels: the main script is ``__main__`` also where
    multiprocessing imported it as ``__mp_main__`` (spawned workers, and under both names in
    ``sys.modules``), so its globals and its types carry one prefix."""
    return "__main__" if name == "__mp_main__" else name


def type_name(cls: type) -> str:
    """``module.QualName`` of ``cls``; builtins bare (``dict``), ``tornado.web.RequestHandler``
    subclasses by their own module (``app.handlers.MainHandler``).

    >>> type_name(dict), type_name(weakref.WeakKeyDictionary)
    ('dict', 'weakref.WeakKeyDictionary')
    """
    try:
        qualname = _QUALNAME.__get__(cls, type)
    except Exception:  # noqa: BLE001 - a broken type still gets a label
        qualname = None
    if not isinstance(qualname, str) or not qualname:
        qualname = getattr(cls, "__name__", None) if isinstance(cls, type) else None
        if not isinstance(qualname, str) or not qualname:
            qualname = "<unnamed>"
    try:
        module = _MODULE.__get__(cls, type)
    except Exception:  # noqa: BLE001
        module = None
    if isinstance(module, str) and module and module != "builtins":
        name = f"{module_label(module)}.{qualname}"
    else:
        name = qualname
    return name[:MAX_NAME_LENGTH]


class TypeNames:
    """Cache of :func:`type_name` by type object, weakly keyed so that it never keeps a class
    (and its module) alive after the application dropped it."""

    def __init__(self) -> None:
        self._names: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()

    def __call__(self, cls: type) -> str:
        try:
            return self._names[cls]
        except KeyError:
            name = self._names[cls] = type_name(cls)
            return name
        except TypeError:  # a type that refuses weak references: name it every time
            return type_name(cls)

    def refs(self) -> list[weakref.ref[type]]:
        """The cache's weak references (objects of its own, which the census takes out)."""
        return self._names.keyrefs()

    def __len__(self) -> int:
        """Types named so far: also the number of weak references the cache holds, which the
        census subtracts so that its own cache never shows as ``weakref.ReferenceType`` growth."""
        return len(self._names)
