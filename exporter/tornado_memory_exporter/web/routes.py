"""Which handler an application routes a path to, asked of the application itself; and what
``install()`` does about an application that already serves metrics of its own.

Walking ``app.default_router`` misses what an application decides in code: Dask's
``RoutingApplication`` falls through to the applications in ``app.applications`` (its dashboard
pages), and any ``find_handler()`` override may route where no rule says. So a probe request is
handed to ``app.find_handler()``, the call Tornado makes for every real request, and the
handler class it picks is the answer. Rules for other hosts than the probe's are asked too
(a route for another host is still the application's route).
"""

from __future__ import annotations

import logging
import secrets
import weakref
from dataclasses import dataclass
from typing import Any

import tornado.web
from prometheus_client import REGISTRY, CollectorRegistry
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.routing import HostMatches, Router
from tornado.web import ErrorHandler

from .metrics import MetricsHandler

log = logging.getLogger("tornado_memory_exporter")

METRICS_PATHS = ("/metrics",)
"""Where applications serve metrics of their own (Dask, Flower and Jupyter: prometheus_client's
global registry), under the app's ``base_url`` setting when it has one."""

_PROBE_HOST = "localhost"

# The registry of our own each such app gets, reused by a second install(): it then finds the
# registry taken ("already installed") instead of publishing ours twice from two registries.
_own_registries: weakref.WeakKeyDictionary[tornado.web.Application, CollectorRegistry] = (
    weakref.WeakKeyDictionary()
)


def route_owner(app: tornado.web.Application, path: str) -> str | None:
    """``module.Class`` of the handler ``app`` routes ``path`` to on any host, or ``None``.

    A handler that a random path of no app reaches too (a catch-all such as a 404 page or a
    fallback proxy), or Tornado's ``ErrorHandler``, does not count as routing ``path``.
    """
    owner = _owner_class(app, path)
    return None if owner is None else f"{owner.__module__}.{owner.__qualname__}"


def metrics_route(app: tornado.web.Application) -> tuple[str, str] | None:
    """``(path, module.Class)`` of the metrics endpoint ``app`` serves itself, or ``None``.

    Ours (a ``MetricsHandler``) does not count: it is an earlier ``install()``'s.
    """
    for path in _metrics_paths(app):
        owner = _owner_class(app, path)
        if owner is not None and not issubclass(owner, MetricsHandler):
            return path, f"{owner.__module__}.{owner.__qualname__}"
    return None


def registry_for(
    app: tornado.web.Application | None, path: str | None, registry: CollectorRegistry | None
) -> CollectorRegistry:
    """The registry ``install(app, path, registry=registry)`` registers into.

    Given one, that one. Otherwise prometheus_client's global registry (the app's own metrics
    and ``process_*``/``python_gc_*`` then come out on our route too), unless ``app`` already
    serves metrics on a route of its own: Dask, Flower and Jupyter serve the global registry
    there, so registering into it as well as serving it on ``path`` would publish every series
    twice, on both routes. Then a registry of our own, and one warning naming the app's route
    and ``install(app, None)``, the way to publish through that route instead.
    """
    if registry is not None:
        return registry
    served = metrics_route(app) if app is not None and path is not None else None
    if app is None or served is None:
        return REGISTRY
    if app not in _own_registries:
        log.warning(
            "the application already serves metrics at %s (%s): %s serves a registry of its "
            "own so that no series is published twice; to publish through the application's "
            "%s instead, install(app, None)",
            served[0],
            served[1],
            path,
            served[0],
        )
        _own_registries[app] = CollectorRegistry()
    return _own_registries[app]


def takeover_error(option: str, path: str, owner: str) -> ValueError:
    """The refusal of a ``path`` the application routes already (to ``owner``)."""
    hint = ""
    if path.rstrip("/").rsplit("/", 1)[-1] == "metrics":
        hint = (
            "; if that endpoint serves prometheus_client's global registry (Dask, Flower and "
            "Jupyter do), install(app, None) publishes ours through it"
        )
    return ValueError(
        f"{option}: the application already routes {path!r} to {owner}; install() will not "
        f"shadow it: choose another {option}, or pass replace=True to serve ours there{hint}"
    )


def _metrics_paths(app: tornado.web.Application) -> list[str]:
    base = app.settings.get("base_url")
    paths = list(METRICS_PATHS)
    if isinstance(base, str) and base.startswith("/") and base != "/":
        paths += [base.rstrip("/") + path for path in METRICS_PATHS]
    return paths


def _owner_class(app: tornado.web.Application, path: str) -> type | None:
    token = secrets.token_hex(16)
    for router in _routers(app):
        found = _reached(router, path)
        if found is not None and not found.catches(_reached(router, "/" + token), path, token):
            return found.handler
    return None


def _routers(app: tornado.web.Application) -> list[Any]:
    """The application (as the probe's host sees it), then the rules of every other host."""
    request = _probe("/")
    return [app] + [
        rule.target
        for rule in app.default_router.rules
        if isinstance(rule.matcher, HostMatches)
        and isinstance(rule.target, Router)
        and rule.matcher.match(request) is None
    ]


@dataclass
class _Reached:
    """The handler a probe reached, with what the route handed it."""

    handler: type
    kwargs: dict[str, Any]
    args: list[Any]
    named: dict[str, Any]

    def catches(self, other: _Reached | None, path: str, token: str) -> bool:
        """Whether ``other``, reached by the random path ``/token``, is this same route taking
        any path: same handler and kwargs, and captures that are the random path's where this
        probe's are ``path``'s (``(.*)`` captures the whole path; ``/static/(.*)`` does not)."""
        if other is None or other.handler is not self.handler:
            return False
        if other.kwargs is not self.kwargs and not _equal(other.kwargs, self.kwargs):
            return False

        def as_path(value: Any) -> Any:
            if isinstance(value, bytes):
                return value.replace(token.encode(), path.lstrip("/").encode())
            if isinstance(value, str):
                return value.replace(token, path.lstrip("/"))
            return value

        return [as_path(a) for a in other.args] == self.args and {
            k: as_path(v) for k, v in other.named.items()
        } == self.named


def _reached(router: Any, path: str) -> _Reached | None:
    """What a GET of ``path`` reaches through ``router``; None for no route, or Tornado's
    ``ErrorHandler`` (its 404)."""
    try:
        delegate = router.find_handler(_probe(path))
    except Exception:  # noqa: BLE001 - a matcher that cannot read a bare request
        return None
    if delegate is None:
        return None
    handler = getattr(delegate, "handler_class", None)  # a RequestHandler's route
    if handler is None:  # another target (a WSGIContainer, a callable...): named by its type
        target = getattr(delegate, "request_callback", None) or delegate
        return _Reached(type(target), {}, [], {})
    if issubclass(handler, ErrorHandler):
        return None
    return _Reached(
        handler,
        getattr(delegate, "handler_kwargs", None) or {},
        list(getattr(delegate, "path_args", None) or []),
        dict(getattr(delegate, "path_kwargs", None) or {}),
    )


def _equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values whose == raises (arrays) are not the same
        return False


def _probe(path: str) -> HTTPServerRequest:
    line = RequestStartLine("GET", path, "HTTP/1.1")
    return HTTPServerRequest(start_line=line, headers=HTTPHeaders({"Host": _PROBE_HOST}))
