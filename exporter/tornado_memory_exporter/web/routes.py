"""Which handler an application routes a path to: ``install()`` refuses to shadow a route."""

from __future__ import annotations

import secrets

import tornado.web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.routing import DefaultHostMatches, HostMatches, Rule, RuleRouter


def route_owner(app: tornado.web.Application, path: str) -> str | None:
    """``module.Class`` of the handler ``app`` routes ``path`` to on any host, or ``None``.

    Host rules count as matching (a route for another host is still the app's route); a rule
    that also takes a random path of no app (a catch-all such as a 404 page or a fallback
    proxy) does not count as routing ``path``.
    """
    rule = _serving_rule(app.default_router, _probe(path))
    if rule is None or rule is _serving_rule(
        app.default_router, _probe("/" + secrets.token_hex(16))
    ):
        return None
    target = rule.target
    cls = target if isinstance(target, type) else type(target)
    return f"{cls.__module__}.{cls.__qualname__}"


def _probe(path: str) -> HTTPServerRequest:
    line = RequestStartLine("GET", path, "HTTP/1.1")
    return HTTPServerRequest(start_line=line, headers=HTTPHeaders({"Host": "localhost"}))


def _serving_rule(router: RuleRouter, request: HTTPServerRequest) -> Rule | None:
    for rule in router.rules:
        if not isinstance(rule.matcher, (HostMatches, DefaultHostMatches)):
            try:
                if rule.matcher.match(request) is None:
                    continue
            except Exception:  # noqa: BLE001 - a matcher that cannot read a bare request
                continue
        if isinstance(rule.target, RuleRouter):  # a host's (or a prefix's) own rules
            found = _serving_rule(rule.target, request)
            if found is not None:
                return found
            continue
        return rule
    return None
