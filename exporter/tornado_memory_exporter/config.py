"""The exporter's one configuration object, validated on construction."""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import validate

_NAMESPACE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# prometheus_client's default collectors own `process_*` and `python_*`; a namespace equal to
# either would make our names collide with theirs on a shared registry.
_RESERVED_NAMESPACES = frozenset({"process", "python"})
_CENSUS_MODES = ("auto", "fork", "inloop")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The options of the exporter, keyword-only; invalid values raise ``ValueError`` naming the
    value (a value of the wrong type raises ``validate.OptionTypeError``, a ``TypeError`` that
    is also a ``ValueError``). Tuning knobs nobody should change (slice budget, probe interval,
    bucket bounds...) are module constants beside the code they tune, with their measured reason.

    >>> Config(namespace="shop", census_interval=30)  # doctest: +ELLIPSIS
    Config(namespace='shop', ...)
    """

    namespace: str = "tornado"
    """Prefix of every metric name (``<namespace>_process_resident_memory_bytes``)."""

    census_interval: float = 60.0
    """Seconds between heap censuses; 0 disables the schedule (``census_now()`` still works)."""
    census_top_n: int = 20
    """Types exported because they have the most live objects."""
    census_allowlist: tuple[str, ...] = ()
    """Type names (``module.QualName``) always exported."""
    census_mode: str = "auto"
    """Where the census counts: ``"fork"`` in a forked child (the loop is held only for the
    fork; every object counted, with bytes by type), ``"inloop"`` in IOLoop slices (gc-tracked
    objects only), ``"auto"``: fork on Linux when there is memory headroom, else in the loop."""

    process_full_memory: bool = False
    """Also export USS, PSS and swap (reads /proc/self/smaps: milliseconds on large heaps)."""

    auth_token: str | None = None
    """When set, endpoints require ``Authorization: Bearer <token>``."""
    basic_auth: tuple[str, str] | None = None
    """When set, endpoints accept HTTP basic auth with this (user, password)."""

    worker_label: bool = False
    """Label every series with ``worker="<task id>"`` (``tornado.process.fork_processes``)."""
    worker_dir: str | None = None
    """Absolute directory where workers share snapshots, so that a scrape of the shared port
    returns every live worker's series (needs ``worker_label``); ``None``: each worker serves
    only its own (per-worker-port mode)."""
    worker_interval: float = 5.0
    """Seconds between a worker's snapshots with ``worker_dir`` (match the scrape interval); a
    restarted worker replaces its series at once, a dead one's are dropped after three."""
    scrape_cache_seconds: float = 0.0
    """Scrapes within this many seconds of a render get the same body (0: render every scrape).
    With many scrapers (HA Prometheus pairs, federation, dashboards polling) 1.0 caps the cost at
    about one render per second per format."""

    explorer_enabled: bool = False
    """Serve the leak explorer (census history, reference chains, allocation sites) at
    ``explorer_path``. Needs ``auth_token`` or ``basic_auth`` unless served only on 127.0.0.1."""
    explorer_path: str = "/debug/memory"
    """URL prefix of the explorer's page and JSON API, matched literally (any RFC 3986 path
    character, e.g. ``/user/alice@example.com/debug/memory``)."""
    explorer_show_contents: bool = False
    """Let the explorer show truncated reprs of objects on reference chains (they may hold
    secrets: session data, tokens); off, it shows types, sizes and attribute names only."""

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not _NAMESPACE.match(self.namespace):
            raise ValueError(f"namespace={self.namespace!r} is not a valid Prometheus name prefix")
        if self.namespace in _RESERVED_NAMESPACES:
            raise ValueError(
                f"namespace={self.namespace!r} would clash with prometheus_client's default "
                "collectors"
            )
        modes = ", ".join(map(repr, _CENSUS_MODES))
        if not isinstance(self.census_mode, str):
            raise validate.OptionTypeError(
                f"census_mode={self.census_mode!r} must be one of {modes}"
            )
        if self.census_mode not in _CENSUS_MODES:
            raise ValueError(f"census_mode={self.census_mode!r} must be one of {modes}")
        for name in ("census_interval", "scrape_cache_seconds"):
            validate.number(name, getattr(self, name), minimum=0.0)
        validate.number("worker_interval", self.worker_interval, minimum=0.0, above=True)
        validate.integer("census_top_n", self.census_top_n, minimum=0, maximum=1000)
        _check_names("census_allowlist", self.census_allowlist)
        for name in ("process_full_memory", "worker_label", "explorer_enabled"):
            validate.flag(name, getattr(self, name))
        validate.flag("explorer_show_contents", self.explorer_show_contents)
        if self.worker_dir is not None:
            path = self.worker_dir
            if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
                raise ValueError(f"worker_dir={self.worker_dir!r} must be an absolute path or None")
            if not self.worker_label:
                raise ValueError(f"worker_dir={self.worker_dir!r} needs worker_label=True")
        # Literal, like install()'s path: the page's links are relative, any path character works.
        validate.url_path("explorer_path", self.explorer_path, trailing_slash=False)
        if self.auth_token is not None and (
            not isinstance(self.auth_token, str) or not self.auth_token
        ):
            raise ValueError(f"auth_token={self.auth_token!r} must be a non-empty string or None")
        if self.basic_auth is not None and not _is_credentials(self.basic_auth):
            raise ValueError(
                "basic_auth=<redacted> must be a (user, password) pair of non-empty strings"
            )

    @property
    def auth_required(self) -> bool:
        """Whether endpoints demand credentials."""
        return self.auth_token is not None or self.basic_auth is not None


def _check_names(name: str, value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name}={value!r} must be a tuple of non-empty strings")


def _is_credentials(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, str) and v for v in value)
        and ":" not in value[0]
    )
