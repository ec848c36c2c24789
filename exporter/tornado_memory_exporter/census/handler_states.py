"""What state a live Tornado ``RequestHandler`` is in, for ``<ns>_handlers_alive{handler,state}``.

A handler normally dies right after its request finishes. HTTP handlers are ``active`` until
``finish()``, then ``finished``: finished instances that stay alive and grow are a classic
Tornado leak (a handler kept in a global list, a closure registered as a callback, a reference
cycle that has not been collected yet).

``WebSocketHandler`` subclasses get ``open`` / ``closed`` instead: Tornado calls ``finish()``
right after the 101 upgrade, so ``_finished`` is true for the whole life of a live connection
and says nothing. ``closed`` (the connection is closing or closed, or the upgrade was refused,
and the handler is still alive) is the WebSocket leak: a set of clients that ``open()`` adds to
and ``on_close()`` forgets to remove from.

:func:`handler_state` is a pure function of one object (no loop, no logging, no allocation
beyond a dict lookup): the in-loop census and a forked child can both run it. It reads
instance dictionaries through the base classes' own ``__dict__`` descriptors, so a subclass's
``__getattr__``, ``__getattribute__`` or properties never run: the census runs no user code.
Attributes read (the same in tornado 6.4.2 through 6.6): ``RequestHandler._finished``,
``WebSocketHandler._on_close_called`` / ``ws_connection``, ``WebSocketProtocol.client_terminated``
/ ``server_terminated`` / ``stream``, ``BaseIOStream._closed``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import tornado.iostream
import tornado.web

ACTIVE = "active"
FINISHED = "finished"
OPEN = "open"
CLOSED = "closed"
UNREACHABLE = "unreachable"
"""Forked census only: a handler in a reference cycle that only the collector will free."""
HTTP_STATES = (ACTIVE, FINISHED)
WEBSOCKET_STATES = (OPEN, CLOSED)


def handler_classes(base: type = tornado.web.RequestHandler) -> set[type]:
    """``base`` and every class derived from it that is alive now (``__subclasses__``, so
    classes the application dropped are not kept alive)."""
    found = {base}
    pending = [base]
    while pending:
        for sub in type.__subclasses__(pending.pop()):
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


def websocket_classes() -> frozenset[type]:
    """``WebSocketHandler`` and its live subclasses: the handlers counted as open/closed.

    Empty while the application has not imported ``tornado.websocket``: it then has no
    WebSocket handler, and the census does not import the module for it."""
    websocket = sys.modules.get("tornado.websocket")
    if websocket is None:
        return frozenset()
    return frozenset(handler_classes(websocket.WebSocketHandler))


def states_of(state: str) -> tuple[str, str]:
    """The two states of the kind ``state`` belongs to (both are exported, the other at 0)."""
    return WEBSOCKET_STATES if state in WEBSOCKET_STATES else HTTP_STATES


def instance_dict(base: type) -> Any:
    """A reader of the instance ``__dict__`` of ``base``'s instances (``{}`` for anything else)
    that no subclass can override: the C descriptor ``base`` itself defines."""
    descriptor = base.__dict__["__dict__"]
    empty: dict[str, Any] = {}

    def read(obj: object) -> dict[str, Any]:
        try:
            return descriptor.__get__(obj)
        except TypeError:  # not an instance of base (a foreign protocol object, None...)
            return empty

    return read


_handler_dict = instance_dict(tornado.web.RequestHandler)


@functools.cache
def _protocol_dict() -> Any:
    # only asked for a WebSocket handler's connection: tornado.websocket is imported by then
    return instance_dict(sys.modules["tornado.websocket"].WebSocketProtocol)


stream_dict = instance_dict(tornado.iostream.BaseIOStream)
"""The instance dict of a ``BaseIOStream`` (``{}`` for any other object)."""


def handler_state(handler: object, websocket_types: frozenset[type] = frozenset()) -> str:
    """``active``/``finished`` for an HTTP handler; ``open``/``closed`` when its type is in
    ``websocket_types``.

    A WebSocket handler is ``open`` while its upgrade is still in progress (not finished, no
    connection yet) and while its connection is up and neither side started the closing
    handshake; ``closed`` once ``on_close`` ran, the server called ``close()``, either side
    sent a close frame, the stream closed, or the upgrade was refused (finished without a
    connection).
    """
    state = _handler_dict(handler)
    if type(handler) not in websocket_types:
        return FINISHED if state.get("_finished") else ACTIVE
    if state.get("_on_close_called"):
        return CLOSED
    connection = state.get("ws_connection")
    if connection is None:
        return CLOSED if state.get("_finished") else OPEN
    protocol = _protocol_dict()(connection)
    if protocol.get("client_terminated") or protocol.get("server_terminated"):
        return CLOSED
    stream = protocol.get("stream")
    return CLOSED if stream is not None and stream_dict(stream).get("_closed") else OPEN
