"""Scheduled asyncio timers by callback, for ``<ns>_ioloop_timers{callback}``.

A Tornado app that schedules ``call_later`` / ``add_timeout`` and never cancels them leaks
through the loop itself. asyncio keeps every timer as a ``TimerHandle`` in its loop's heap,
and those handles are gc-tracked objects the census enumerates anyway, so they are counted in
its own pass (no second walk of the loop's private queue).

No application code runs and no repr is built (a handle's repr formats its callback and
arguments): every attribute is read through the *base* class's own C descriptor, which no
subclass or metaclass can override:

* ``Handle._callback``, ``_args``, ``_cancelled``, ``_loop`` and ``TimerHandle._scheduled``
  are ``__slots__`` members (asyncio's handles are pure Python classes with slots, the same
  from 3.8 through 3.13): ``member_descriptor.__get__`` copies a pointer;
* ``functools.partial.func``, ``MethodType.__func__``/``__self__`` are C members too;
* a function's ``__module__``/``__qualname__`` are the function type's own member/getset.

Unwrapped: Tornado's ``IOLoop.call_at`` schedules ``IOLoop._run_callback`` with a
``functools.partial(callback, *args)`` as its argument; a ``PeriodicCallback`` schedules its
bound ``_run``, named here by the ``callback`` it was given (read from its instance dict).
"""

from __future__ import annotations

import asyncio.events
import functools
import types
from typing import Any

import tornado.ioloop

from .handler_states import instance_dict
from .typenames import MAX_NAME_LENGTH, module_label, type_name

_HANDLE = vars(asyncio.events.Handle)
_CALLBACK = _HANDLE["_callback"]
_ARGS = _HANDLE["_args"]
_CANCELLED = _HANDLE["_cancelled"]
_LOOP = _HANDLE["_loop"]
_SCHEDULED = vars(asyncio.events.TimerHandle)["_scheduled"]
_PARTIAL_FUNC = vars(functools.partial)["func"]
_METHOD_FUNC = vars(types.MethodType)["__func__"]
_METHOD_SELF = vars(types.MethodType)["__self__"]
_FUNCTION_MODULE = vars(types.FunctionType)["__module__"]
_FUNCTION_QUALNAME = vars(types.FunctionType)["__qualname__"]
_BUILTIN_QUALNAME = vars(types.BuiltinFunctionType)["__qualname__"]
_BUILTIN_SELF = vars(types.BuiltinFunctionType)["__self__"]
_periodic_dict = instance_dict(tornado.ioloop.PeriodicCallback)
UNWRAP_LIMIT = 8
"""Wrappers (partial in a bound method in a PeriodicCallback...) undone at most."""


def timer_classes() -> frozenset[type]:
    """``asyncio.TimerHandle`` and its live subclasses."""
    found = {asyncio.events.TimerHandle}
    pending = [asyncio.events.TimerHandle]
    while pending:
        for sub in type.__subclasses__(pending.pop()):
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return frozenset(found)


def scheduled_callback(handle: object, loop: object) -> Any:
    """The callback behind ``handle`` if it is scheduled (not cancelled, not run) on ``loop``,
    else ``None``."""
    try:
        if _LOOP.__get__(handle) is not loop or _CANCELLED.__get__(handle):
            return None
        if not _SCHEDULED.__get__(handle):
            return None
        callback, args = _CALLBACK.__get__(handle), _ARGS.__get__(handle)
    except (AttributeError, TypeError):  # an unset slot, or not a TimerHandle at all
        return None
    return unwrap(callback, args)


def unwrap(callback: Any, args: Any = ()) -> Any:
    """The application's own callable inside Tornado's and functools' wrappers."""
    for _ in range(UNWRAP_LIMIT):
        cls = type(callback)
        if cls is types.MethodType:
            owner = _METHOD_SELF.__get__(callback)
            if isinstance(owner, tornado.ioloop.IOLoop) and type(args) is tuple and args:
                callback, args = args[0], ()  # IOLoop._run_callback(partial(callback, ...))
                continue
            if isinstance(owner, tornado.ioloop.PeriodicCallback):
                inner = _periodic_dict(owner).get("callback")
                if inner is not None:
                    callback = inner
                    continue
            callback = _METHOD_FUNC.__get__(callback)
        elif isinstance(callback, functools.partial):
            callback = _PARTIAL_FUNC.__get__(callback)
        else:
            break
    return callback


def callback_name(callback: Any) -> str:
    """``module.qualname`` of a function (builtins bare), else the callable's type name."""
    cls = type(callback)
    if cls is types.FunctionType:
        module = _FUNCTION_MODULE.__get__(callback)
        qualname = _FUNCTION_QUALNAME.__get__(callback)
    elif cls is types.BuiltinFunctionType:
        owner = _BUILTIN_SELF.__get__(callback)
        qualname = _BUILTIN_QUALNAME.__get__(callback)
        module = None if isinstance(owner, types.ModuleType | None) else type_name(type(owner))
        if module is not None:
            qualname = qualname.rpartition(".")[2]
    else:
        return type_name(cls)
    if not isinstance(qualname, str):
        qualname = "<unnamed>"
    if isinstance(module, str) and module and module != "builtins":
        return f"{module_label(module)}.{qualname}"[:MAX_NAME_LENGTH]
    return qualname[:MAX_NAME_LENGTH]
