"""HTTP helpers for the explorer's JSON API, shared by its API and browser tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from appserver import AppServer

from tornado_memory_exporter import Config

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/debug/memory/api"


def explorer_config(**kwargs: Any) -> Config:
    return Config(census_interval=0, explorer_enabled=True, auth_token=TOKEN, **kwargs)


def request(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = dict(headers or {})
    if data is not None:
        all_headers.setdefault("Content-Type", content_type)
    req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def api(server: AppServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, payload = request(server.url + API + path, method, body, AUTH)
    return status, json.loads(payload) if payload.startswith((b"{", b"[")) else payload
