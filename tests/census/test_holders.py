"""Holder labels (``census.holders``) and timer callbacks (``census.timers``) on constructed
paths: the words of ``<ns>_object_holder_info`` and ``<ns>_ioloop_timers``, never content."""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import types

from tornado_memory_exporter.census.holders import MAX_HOLDER_LENGTH, Namer, module_dicts, shorten
from tornado_memory_exporter.census.timers import callback_name, unwrap

SECRET = "session-4f2a"


class Cache:
    entries: dict[str, object] = {}

    def __init__(self) -> None:
        self.items: list[object] = []


class Slotted:
    __slots__ = ("held",)


def tick() -> None:
    return None


def namer() -> Namer:
    return Namer(module_dicts({__name__: sys.modules[__name__]}))


def test_a_module_global_is_the_anchor_and_dict_keys_never_appear() -> None:
    held = object()
    registry = {SECRET: held}
    module_dict = vars(sys.modules[__name__])
    module_dict["REGISTRY"] = registry
    try:
        path = [sys.modules[__name__], module_dict, registry, held]
        assert namer().name(path) == f"{__name__}.REGISTRY (module global) > dict value"
    finally:
        del module_dict["REGISTRY"]


def test_instance_and_class_attributes_slots_and_containers_are_named_by_code() -> None:
    cache = Cache()
    held = object()
    cache.items.append(held)
    label = namer().name([[cache], cache, cache.items, held])
    assert label == f"root: list > {__name__}.Cache.items > list"  # the root is a list
    entry = object()
    Cache.entries["k"] = entry
    (namespace,) = gc.get_referents(vars(Cache))  # the class's own dict behind its proxy
    try:
        label = namer().name([Cache, namespace, Cache.entries, entry])
    finally:
        Cache.entries.clear()
    assert label == f"{__name__}.Cache.entries (class attribute) > dict value"
    slotted = Slotted()
    slotted.held = held
    assert namer().name([slotted, held]) == f"root: {__name__}.Slotted.held"


def test_closures_bound_methods_and_suspended_coroutines() -> None:
    held = object()

    def closure() -> object:
        return held

    assert closure.__closure__ is not None
    cell = closure.__closure__[0]
    label = namer().name([closure, closure.__closure__, cell, held])
    assert label == f"root: closure of {__name__}.{closure.__qualname__}"
    method = Cache().__init__
    assert namer().name([method, method.__self__]) == (
        f"root: bound method {__name__}.Cache.__init__"
    )

    async def waiting(event: asyncio.Event) -> None:
        await event.wait()

    coroutine = waiting(asyncio.Event())
    name = namer().name([coroutine, held])
    assert name == f"root: suspended coroutine {__name__}.{waiting.__qualname__}"
    coroutine.close()


def test_long_labels_keep_the_first_link_and_the_last_ones() -> None:
    words = ["app.ROOT (module global)"] + [f"app.Class{i}.attribute" for i in range(30)]
    label = shorten(words)
    assert len(label) <= MAX_HOLDER_LENGTH
    assert label.startswith("app.ROOT (module global) > ... > ")
    assert label.endswith("app.Class29.attribute")


def test_timer_callbacks_are_unwrapped_and_named_by_code() -> None:
    # Tornado's own wrappers are covered on a real loop (test_reach.py's 500 timers).
    assert unwrap(functools.partial(Cache().__init__)) is Cache.__init__
    assert callback_name(tick) == f"{__name__}.tick"
    assert callback_name(len) == "len"
    assert callback_name(types.SimpleNamespace()) == "types.SimpleNamespace"
