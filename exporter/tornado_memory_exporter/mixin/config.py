"""The one configuration behind the shipped alerts and dashboards (a monitoring mixin's ``_config``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from ..validate import OptionTypeError

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_SELECTOR = re.compile(rf"^(?:{_MATCHER}(?:,{_MATCHER})*,?\s*)?$")


def seconds(duration: str, name: str = "duration") -> int:
    """Seconds in a Prometheus duration such as ``"1h30m"``; a bad one raises ``ValueError``
    naming the option ``name`` (``OptionTypeError`` for a value that is not a string)."""
    if not isinstance(duration, str):
        raise OptionTypeError(
            f"{name}={duration!r} is not a Prometheus duration: pass a string like '90s', '1h30m' "
            "or '2d' (quoted in TOML)"
        )
    match = _DURATION.match(duration)
    if not duration or match is None or not any(match.groups()):
        raise ValueError(
            f"{name}={duration!r} is not a Prometheus duration like '90s', '1h30m' or '2d'"
        )
    return sum(int(n) * unit for n, (_, unit) in zip(match.groups(), _UNITS) if n)


def duration(total: int) -> str:
    """The canonical Prometheus spelling of ``total`` seconds (``5400`` -> ``"1h30m"``)."""
    if total <= 0:
        return "0s"
    parts = []
    for suffix, unit in _UNITS:
        count, total = divmod(total, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


@dataclass(frozen=True, kw_only=True)
class MixinConfig:
    """Selectors, thresholds and windows of the generated rules and dashboards.

    Invalid values raise ``ValueError`` naming the value. ``MixinConfig.fast()`` is the demo
    profile (windows in seconds). Narrow the selector to your job, then regenerate::

        write_all(MixinConfig(selector='job="shop"'), "out/")
    """

    # --- what to watch --------------------------------------------------------------------
    namespace: str = "tornado"
    """Metric prefix: must equal the exporter's ``Config(namespace=...)``."""
    selector: str = ""
    """Label matchers added to every series selector, e.g. ``'job="shop", env="prod"'``.
    Empty matches any job that exports our metrics."""
    instance_labels: tuple[str, ...] = ("job", "instance", "worker")
    """Labels that identify one process; joins match on them (``worker`` is empty unless the
    exporter runs with ``worker_label=True``)."""

    # --- leak detection (RSS, Python heap, object types, handlers, watched objects) --------
    floor_window: str = "1h"
    """``min_over_time`` window of the floors: must exceed the longest GC sawtooth period, so
    that the floor only moves when memory that is never given back accumulates."""
    trend_window: str = "6h"
    """Window of the floor's trend in processes older than floor + trend windows: growth must be
    sustained in both halves of it, so growth that follows a traffic ramp shorter than half of it
    and returns (or a one-time step) stays silent."""
    leak_for: str = "30m"
    """How long a leak condition must hold before it fires (longer than half of
    ``young_trend_window``, so the tail of a warm-up cannot fire)."""
    leak_growth_per_hour: float = 0.01
    """Old processes: the floor must grow faster than this fraction of itself per hour (0.01 =
    1%/h) over the trend window, and each half of it by at least half that much."""
    warmup_window: str = "3h"
    """Growth during this long after a process start may be a warm-up (caches filling): it is
    never judged. A process leaking from its start is judged from warmup + floor windows on."""
    young_trend_window: str = "30m"
    """Trend window for processes between warmup + floor and floor + trend windows old (a bad
    deploy leaking from its start): the floor must grow in both halves of it..."""
    young_growth_per_hour: float = 0.05
    """...faster than this fraction of itself per hour (stricter: the tail of a warm-up that
    slows down stays under it; a leak of 10% of the starting floor per hour stays above it)."""
    day_window: str = "1d"
    """Daily traffic: in a process older than this (plus the floor window) the floor must also
    exceed the floor at the same time one day earlier by ``leak_growth_per_hour`` per hour."""
    leak_min_objects: int = 1000
    """Object types and watched objects must also have grown by this many over the trend window."""
    handlers_leak_min: int = 50
    """Finished handlers kept alive must also have grown by this many over the trend window."""
    watched_leak_min: int = 1000
    """Items of a watched object (``exporter.watch``) must also have grown by this many."""
    object_type_alerts_per_origin: int = 1
    """TornadoObjectTypeGrowing raises at most this many alerts (the fastest-growing types) per
    process and ``origin`` (application, library, builtin)."""
    library_modules: tuple[str, ...] = (
        "tornado",
        "asyncio",
        "concurrent",
        "collections",
        "functools",
        "weakref",
        "threading",
        "logging",
        "email",
        "http",
        "urllib",
        "json",
        "re",
        "ssl",
        "socket",
        "selectors",
        "typing",
        "enum",
        "contextlib",
        "prometheus_client",
        "psutil",
        "pympler",
    )
    """Type names starting with one of these modules (``tornado.``...) or with a private module
    (``_asyncio.``, ``_contextvars.``) get ``origin="library"``; names without a dot
    ``origin="builtin"``; the rest ``origin="application"``."""

    # --- slow consumers: data queued in IOStream write buffers (TornadoWriteBuffersGrowing) ---
    write_buffers_high_bytes: int = 64 << 20
    """Fire when a process holds more than this many bytes queued to its clients (summed over
    its open IOStreams) at every evaluation for ``write_buffers_for``..."""
    write_buffers_growth_bytes: int = 16 << 20
    """...or when the queued bytes stay more than this above what they were
    ``write_buffers_window`` earlier (a queue below the threshold that never drains)."""
    write_buffers_window: str = "15m"
    """How far back the growth branch compares: longer than a burst of broadcasts takes to drain."""
    write_buffers_for: str = "15m"
    """How long either condition must hold (every census in it, so a drained burst resets it)."""
    # --- allocator retention (RSS grows, the Python heap does not, the allocators keep free memory)
    allocator_free_growth_bytes: int = 64 * 1024 * 1024
    """TornadoAllocatorRetention: the floor of the allocators' free bytes (glibc malloc's free
    heap plus pymalloc's free blocks and empty pools) must also have grown by this much over the
    trend window, so a few MiB of churn in the free lists never fires it."""

    # --- memory limit (warning and critical twins, like node-mixin's FilesystemSpaceFillingUp)
    near_limit_warning_ratio: float = 0.6
    """Warning twin: the RSS floor grows like TornadoMemoryLeakSuspected, is above this fraction
    of the memory limit..."""
    near_limit_warning_horizon: str = "1d"
    """...and its trend over the trend window reaches the limit within this horizon."""
    near_limit_critical_ratio: float = 0.5
    """Critical twin, at any process age: the RSS floor is above this fraction of the limit..."""
    near_limit_critical_horizon: str = "2h"
    """...its trend over ``near_limit_window`` reaches the limit within this horizon (the
    floor's lag behind RSS is added)..."""
    near_limit_window: str = "1h"
    """...(the critical twin's fit window)..."""
    near_limit_min_growth: float = 0.01
    """...and it grew by at least this fraction of the limit over that window."""
    near_limit_for: str = "30m"
    """How long the near-limit condition must hold (a short warm-up's prediction does not)."""

    # --- restarts --------------------------------------------------------------------------
    restart_window: str = "1d"
    """TornadoMemoryRestartLoop: restarts (changes of the start time) counted over this window..."""
    restart_lookback: str = "15m"
    """...each one with the RSS within this long before it above ``restart_near_limit_ratio``..."""
    restart_near_limit_ratio: float = 0.9
    """...of the memory limit; it fires at the second such restart, or as soon as memory is back
    above this ratio after the first."""
    restart_loop_for: str = "5m"
    """How long the restart-loop condition must hold."""

    # --- garbage collector -----------------------------------------------------------------
    uncollectable_window: str = "30m"
    """Window in which any new uncollectable object raises TornadoGCUncollectable."""
    uncollectable_for: str = "5m"
    """How long uncollectable objects must keep appearing in the window."""
    gc_oldest_generation: str = "2"
    """``generation`` label of the full collection (CPython's oldest generation)."""
    gc_pause_p99_seconds: float = 0.1
    """TornadoGCPauseHigh: p99 of full-collection pauses above this (the loop is blocked meanwhile)."""
    gc_pause_window: str = "30m"
    """Rate window of the pause histogram (full collections are minutes apart)."""
    gc_pause_for: str = "15m"
    """How long pauses must stay high."""

    # --- event loop ------------------------------------------------------------------------
    ioloop_lag_p99_seconds: float = 0.1
    """TornadoIOLoopBlocked: p99 of the IOLoop probe's lateness above this."""
    ioloop_lag_window: str = "5m"
    """Rate window of the lag histogram."""
    ioloop_lag_for: str = "10m"
    """How long the lag must stay high."""

    # --- pools -----------------------------------------------------------------------------
    pool_saturation_ratio: float = 0.9
    """TornadoPoolSaturated: in_use / capacity at or above this..."""
    pool_saturated_for: str = "15m"
    """...for this long."""
    pool_window: str = "5m"
    """Window of the waiting/timeout and leak checks."""
    pool_exhausted_for: str = "5m"
    """How long acquirers must keep waiting and timing out."""
    pool_leak_for: str = "1m"
    """How long a leaked-object increase must be visible (a leak is a bug: fire fast)."""

    # --- the exporter itself ---------------------------------------------------------------
    census_stale_after: str = "15m"
    """TornadoCensusStale: the last successful census is older than this (default schedule: 60 s)."""
    census_stale_for: str = "5m"
    """How long the census must stay stale."""
    exporter_down_for: str = "5m"
    """TornadoMemoryExporterDown: target down this long."""
    exporter_down_lookback: str = "1d"
    """A down target counts as ours if it exported ``<ns>_exporter_info`` within this window
    (so the default selector does not page for unrelated jobs)."""

    # --- links and dashboards --------------------------------------------------------------
    runbook_url: str = "https://github.com/tornado-memory-exporter/tornado-memory-exporter/blob/main/alerts/RUNBOOK.md"
    """Base of every ``runbook_url`` annotation; the alert's anchor is appended."""
    explorer_url: str = "http://${__field.labels.instance}/debug/memory/"
    """Where the leak explorer of a scraped instance answers (the exporter's
    ``Config.explorer_path`` on the scraped port); the "Fastest-growing types" bars link there,
    with the bar's type preselected. Grafana expands ``${__field.labels.instance}``."""
    dashboard_uid_prefix: str = "tornado-memory"
    """Dashboard uids are ``<prefix>-overview`` and ``<prefix>-leak-hunt`` (stable links)."""
    dashboard_tags: tuple[str, ...] = ("tornado", "memory")
    """Tags of both dashboards."""
    dashboard_refresh: str = "30s"
    """Auto-refresh of the dashboards."""
    dashboard_time_from: str = "now-6h"
    """Default time range start of the dashboards."""
    datasource_url: str = "http://prometheus:9090"
    """URL of the Prometheus datasource in the Grafana provisioning file."""
    rule_interval: str | None = None
    """Evaluation interval of the rule groups (None: Prometheus's global one)."""

    # --- Alertmanager (the generated route fragment) ----------------------------------------
    alert_group_wait: str = "30s"
    """``group_wait`` of the route: the alerts of one leak arrive in one notification."""
    alert_group_interval: str = "5m"
    """``group_interval`` of the route."""
    alert_repeat_interval: str = "4h"
    """``repeat_interval`` of the route."""

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not _NAME.match(self.namespace):
            raise ValueError(f"namespace={self.namespace!r} is not a valid Prometheus name prefix")
        if not isinstance(self.selector, str) or not _SELECTOR.match(self.selector):
            raise ValueError(
                f"selector={self.selector!r} must be label matchers like 'job=\"shop\"'"
            )
        if (
            not isinstance(self.instance_labels, tuple)
            or not self.instance_labels
            or not all(
                isinstance(label, str) and _NAME.match(label) for label in self.instance_labels
            )
        ):
            raise ValueError(
                f"instance_labels={self.instance_labels!r} must be a tuple of label names"
            )
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "str" and (
                field.name.endswith(
                    ("_window", "_for", "_horizon", "_after", "_lookback", "_wait", "_interval")
                )
            ):
                seconds(value, field.name)
        for name in (
            "leak_growth_per_hour",
            "young_growth_per_hour",
            "near_limit_warning_ratio",
            "near_limit_critical_ratio",
            "near_limit_min_growth",
            "restart_near_limit_ratio",
            "pool_saturation_ratio",
            "gc_pause_p99_seconds",
            "ioloop_lag_p99_seconds",
        ):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not 0 < value < 1e9
            ):
                raise ValueError(f"{name}={value!r} must be a positive number")
        for name in (
            "near_limit_warning_ratio",
            "near_limit_critical_ratio",
            "pool_saturation_ratio",
            "near_limit_min_growth",
            "restart_near_limit_ratio",
        ):
            if getattr(self, name) > 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be at most 1")
        for name in ("write_buffers_high_bytes", "write_buffers_growth_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer (bytes)")
        for name in (
            "leak_min_objects",
            "handlers_leak_min",
            "watched_leak_min",
            "allocator_free_growth_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}={value!r} must be a non-negative integer")
        if seconds(self.floor_window) >= seconds(self.trend_window):
            raise ValueError(
                f"floor_window={self.floor_window!r} must be shorter than trend_window={self.trend_window!r}"
            )
        if (
            not isinstance(self.object_type_alerts_per_origin, int)
            or isinstance(self.object_type_alerts_per_origin, bool)
            or self.object_type_alerts_per_origin < 1
        ):
            raise ValueError(
                f"object_type_alerts_per_origin={self.object_type_alerts_per_origin!r} "
                "must be a positive integer"
            )
        if not isinstance(self.library_modules, tuple) or not all(
            isinstance(m, str)
            and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", m)
            for m in self.library_modules
        ):
            raise ValueError(
                f"library_modules={self.library_modules!r} must be a tuple of module names"
            )
        if 2 * seconds(self.leak_for) <= seconds(self.young_trend_window):
            raise ValueError(
                f"leak_for={self.leak_for!r} must be longer than half of "
                f"young_trend_window={self.young_trend_window!r} (else a warm-up's tail fires)"
            )
        if seconds(self.young_trend_window) % 2:
            raise ValueError(
                f"young_trend_window={self.young_trend_window!r} must be an even number of seconds"
            )
        if seconds(self.trend_window) % 2:
            raise ValueError(
                f"trend_window={self.trend_window!r} must be an even number of seconds"
            )
        if (
            not isinstance(self.gc_oldest_generation, str)
            or not self.gc_oldest_generation.isdigit()
        ):
            raise ValueError(f"gc_oldest_generation={self.gc_oldest_generation!r} must be like '2'")
        if self.rule_interval is not None:
            seconds(self.rule_interval, "rule_interval")
        for name in (
            "runbook_url",
            "dashboard_uid_prefix",
            "datasource_url",
            "dashboard_refresh",
            "dashboard_time_from",
            "explorer_url",
        ):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a non-empty string")
        if not re.match(r"^[a-zA-Z0-9_-]{1,30}$", self.dashboard_uid_prefix):
            raise ValueError(
                f"dashboard_uid_prefix={self.dashboard_uid_prefix!r} must be 1-30 of [a-zA-Z0-9_-] "
                "(Grafana uids are at most 40 characters)"
            )
        if not isinstance(self.dashboard_tags, tuple) or not all(
            isinstance(tag, str) and tag for tag in self.dashboard_tags
        ):
            raise ValueError(f"dashboard_tags={self.dashboard_tags!r} must be a tuple of strings")

    @classmethod
    def fast(cls, **overrides: Any) -> MixinConfig:
        """The demo/end-to-end profile: a steady leak fires within about a minute at a 1 s
        scrape and evaluation interval (the heap census must run every few seconds for the
        object-type and handler alerts). Not for production: a day lasts 4 minutes."""
        # Windows are the defaults divided by about 360 (an hour becomes 10 s), relative growth
        # rates multiplied by as much: the same guards, so no leak switched on means no alert.
        # The young window spans four demo censuses (every 5 s): both halves see one. group_wait
        # lets a root cause that fires a few evaluations after its consequences inhibit them.
        profile: dict[str, Any] = {
            "floor_window": "20s",
            "trend_window": "60s",
            "leak_for": "15s",
            "leak_growth_per_hour": 3.6,
            "warmup_window": "30s",
            "young_trend_window": "20s",
            "young_growth_per_hour": 18.0,
            "day_window": "4m",
            # builtin types of the idle demo move by ~100 in a minute; a watched cache is explicit
            "leak_min_objects": 250,
            "handlers_leak_min": 10,
            "watched_leak_min": 100,
            "near_limit_warning_horizon": "4m",
            "near_limit_critical_horizon": "40s",
            "near_limit_window": "20s",
            "near_limit_for": "10s",
            "restart_window": "4m",
            "restart_lookback": "10s",
            "restart_loop_for": "5s",
            "write_buffers_high_bytes": 8 << 20,
            "write_buffers_growth_bytes": 2 << 20,
            "write_buffers_window": "20s",
            "write_buffers_for": "20s",
            "uncollectable_window": "1m",
            "uncollectable_for": "5s",
            # a shared machine's CPU contention stretches pauses and loop lag past 0.1 s for
            # seconds (measured: both fired with no leak on); the blocking leak's 0.5 s still fires
            "gc_pause_window": "1m",
            "gc_pause_for": "30s",
            "gc_pause_p99_seconds": 0.25,
            "ioloop_lag_window": "30s",
            "ioloop_lag_for": "30s",
            "ioloop_lag_p99_seconds": 0.2,
            "pool_saturated_for": "15s",
            "pool_window": "30s",
            "pool_exhausted_for": "10s",
            "pool_leak_for": "5s",
            "census_stale_after": "1m",
            "census_stale_for": "10s",
            "exporter_down_for": "15s",
            "exporter_down_lookback": "1h",
            "alert_group_wait": "10s",
            "alert_group_interval": "5s",
            "alert_repeat_interval": "1h",
            "dashboard_refresh": "5s",
            "dashboard_time_from": "now-15m",
        }
        profile.update(overrides)
        return cls(**profile)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> MixinConfig:
        """Build from a parsed config file (TOML): field names as keys, plus ``profile = "fast"``
        to start from ``fast()``; unknown keys raise ``ValueError`` naming them."""
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        profile = values.pop("profile", "default")
        if profile not in ("default", "fast"):
            raise ValueError(f"profile={profile!r} must be 'default' or 'fast'")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MixinConfig option(s) {unknown}; known: {sorted(known)}")
        return cls.fast(**values) if profile == "fast" else cls(**values)

    # --- PromQL helpers used by the builders ------------------------------------------------
    def metric(self, name: str, *matchers: str) -> str:
        """``<ns>_<name>{<selector>, <matchers>}``: a selector that honours the configured filter."""
        parts = [m for m in (self.selector.strip().rstrip(","), *matchers) if m]
        inner = ", ".join(parts)
        return f"{self.namespace}_{name}{{{inner}}}" if inner else f"{self.namespace}_{name}"

    def raw(self, name: str, *matchers: str) -> str:
        """Like ``metric`` for a name outside our namespace (``up``)."""
        parts = [m for m in (self.selector.strip().rstrip(","), *matchers) if m]
        return f"{name}{{{', '.join(parts)}}}" if parts else name

    @property
    def on(self) -> str:
        """The instance labels, comma-separated, for ``on(...)``/``by(...)``."""
        return ", ".join(self.instance_labels)

    def runbook(self, alert: str) -> str:
        """``runbook_url`` of ``alert``: the base URL plus the alert's anchor."""
        return f"{self.runbook_url}#{alert.lower()}"
