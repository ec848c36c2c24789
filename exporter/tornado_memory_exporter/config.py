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

DEFAULT_GC_PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
DEFAULT_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, kw_only=True)
class Config:
    """Every option of the exporter; invalid values raise ``ValueError`` naming the value (a
    value of the wrong type raises ``validate.OptionTypeError``, a ``TypeError`` that is also a
    ``ValueError``).

    >>> Config(namespace="shop", census_interval=30)  # doctest: +ELLIPSIS
    Config(namespace='shop', ...)
    """

    namespace: str = "tornado"
    """Prefix of every metric name (``<namespace>_process_resident_memory_bytes``)."""

    census_interval: float = 60.0
    """Seconds between heap censuses; 0 disables the schedule (``census_now()`` still works)."""
    census_top_n: int = 20
    """Types exported because they have the most live objects."""
    census_growth_n: int = 10
    """Types exported because they grew most since the baseline census."""
    census_allowlist: tuple[str, ...] = ()
    """Type names (``module.QualName``) always exported."""
    census_slice_budget: float = 0.005
    """Longest time one census slice may hold the IOLoop, in seconds."""
    census_hold: float = 600.0
    """Seconds a type stays exported after it last qualified (top, growth), so that its series
    does not flap in and out around the cut; it reads 0 once the type is gone."""
    census_mode: str = "auto"
    """Where the census counts: ``"fork"`` in a forked child (the loop is held only for the
    fork; every object counted, with bytes by type), ``"inloop"`` in IOLoop slices (gc-tracked
    objects only), ``"auto"``: fork on Linux when there is memory headroom, else in the loop."""
    census_fork_deadline: float = 120.0
    """Seconds a forked census may take before its child is killed (that census then runs in
    the loop, counted as ``reason="deadline"``)."""
    census_fork_headroom: float = 1.0
    """Fork only when the memory left (under the cgroup limit, else on the host) is at least
    this many times the process's RSS: room for the child's copy-on-write pages and working
    lists (its private memory peaked at 0.61-0.70 x RSS in bench/census.py). 0 disables it."""

    process_full_memory: bool = False
    """Also export USS, PSS and swap (reads /proc/self/smaps: milliseconds on large heaps)."""

    ioloop_probe_interval: float = 0.5
    """Seconds between IOLoop lag probes."""
    gc_pause_buckets: tuple[float, ...] = DEFAULT_GC_PAUSE_BUCKETS
    """Upper bounds, in seconds, of the GC pause histogram buckets."""
    ioloop_lag_buckets: tuple[float, ...] = DEFAULT_LAG_BUCKETS
    """Upper bounds, in seconds, of the IOLoop lag histogram buckets."""

    error_log_interval: float = 60.0
    """A failing source is logged at most once per this many seconds (it is counted every time)."""

    pool_limit: int = 50
    """Most pools ``exporter.pools.register()`` accepts: each adds a ``pool`` label value."""
    pool_snapshot_timeout: float = 0.25
    """Longest a scrape waits, in seconds, for pool-like objects' ``pool_snapshot()`` calls."""

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
    """Seconds between a worker's snapshots; a restarted worker replaces its series at once."""
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
    explorer_tracemalloc_max_seconds: float = 60.0
    """Longest allocation-tracing window an explorer user may start (tracing slows allocation)."""
    explorer_tracemalloc_max_frames: int = 10
    """Most stack frames tracemalloc may record per allocation in an explorer window."""

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not _NAMESPACE.match(self.namespace):
            raise ValueError(f"namespace={self.namespace!r} is not a valid Prometheus name prefix")
        if self.namespace in _RESERVED_NAMESPACES:
            raise ValueError(
                f"namespace={self.namespace!r} would clash with prometheus_client's default collectors"
            )
        if not isinstance(self.census_mode, str):
            raise validate.OptionTypeError(
                f"census_mode={self.census_mode!r} must be one of {', '.join(map(repr, _CENSUS_MODES))}"
            )
        if self.census_mode not in _CENSUS_MODES:
            raise ValueError(
                f"census_mode={self.census_mode!r} must be one of {', '.join(map(repr, _CENSUS_MODES))}"
            )
        validate.number("census_fork_deadline", self.census_fork_deadline, minimum=0.0, above=True)
        validate.number(
            "census_fork_headroom", self.census_fork_headroom, minimum=0.0, maximum=10.0
        )
        for name in (
            "census_interval",
            "census_hold",
            "error_log_interval",
            "scrape_cache_seconds",
        ):
            validate.number(name, getattr(self, name), minimum=0.0)
        for name in (
            "census_slice_budget",
            "ioloop_probe_interval",
            "pool_snapshot_timeout",
            "worker_interval",
        ):
            validate.number(name, getattr(self, name), minimum=0.0, above=True)
        validate.integer("pool_limit", self.pool_limit, minimum=1, maximum=1000)
        for name in ("census_top_n", "census_growth_n"):
            validate.integer(name, getattr(self, name), minimum=0, maximum=1000)
        _check_names("census_allowlist", self.census_allowlist)
        for name in ("gc_pause_buckets", "ioloop_lag_buckets"):
            validate.buckets(name, getattr(self, name))
        for name in (
            "process_full_memory",
            "worker_label",
            "explorer_enabled",
            "explorer_show_contents",
        ):
            validate.flag(name, getattr(self, name))
        if self.worker_dir is not None:
            path = self.worker_dir
            if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
                raise ValueError(f"worker_dir={self.worker_dir!r} must be an absolute path or None")
            if not self.worker_label:
                raise ValueError(f"worker_dir={self.worker_dir!r} needs worker_label=True")
        _check_explorer(self)
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


def _check_explorer(config: Config) -> None:
    # Literal, like install()'s path: the page's links are relative, so any path character works.
    validate.url_path("explorer_path", config.explorer_path, trailing_slash=False)
    validate.number(
        "explorer_tracemalloc_max_seconds",
        config.explorer_tracemalloc_max_seconds,
        minimum=0.0,
        above=True,
        maximum=3600.0,
    )
    validate.integer(
        "explorer_tracemalloc_max_frames",
        config.explorer_tracemalloc_max_frames,
        minimum=1,
        maximum=100,
    )


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
