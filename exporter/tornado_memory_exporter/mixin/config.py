"""The one configuration behind the shipped alerts and dashboards (a mixin's ``_config``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .. import validate
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
    return sum(int(n) * unit for n, (_, unit) in zip(match.groups(), _UNITS, strict=True) if n)


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


# Young processes must grow this many times faster than ``leak_growth_per_hour`` (the tail of a
# warm-up that slows down stays under it; a leak of 10% of the starting floor per hour does not).
YOUNG_GROWTH_FACTOR = 5
# Type names starting with one of these modules (``tornado.``...) or with a private module
# (``_asyncio.``, ``_contextvars.``) get ``origin="library"``; names without a dot
# ``origin="builtin"``; the rest ``origin="application"``.
LIBRARY_MODULES = (
    "tornado", "asyncio", "concurrent", "collections", "functools", "weakref", "threading",
    "logging", "email", "http", "urllib", "json", "re", "ssl", "socket", "selectors", "typing",
    "enum", "contextlib", "prometheus_client", "psutil", "pympler",
)  # fmt: skip


def _part(window: str, times: int, per: int = 1) -> str:
    """``window * times / per`` as a duration (at least one second)."""
    return duration(max(1, seconds(window) * times // per))


def _names(name: str, value: object, pattern: re.Pattern[str], *, empty: bool) -> None:
    if not isinstance(value, tuple):
        raise OptionTypeError(f"{name}={value!r} must be a tuple of strings, e.g. ('a', 'b')")
    if (not value and not empty) or not all(isinstance(v, str) and pattern.match(v) for v in value):
        raise ValueError(f"{name}={value!r} must be a tuple of label names")


@dataclass(frozen=True, kw_only=True)
class MixinConfig:
    """Selectors, thresholds and windows of the generated rules and dashboards.

    Every ``for:`` and every secondary window is derived from the windows below (the properties
    after the fields say how), so that one change keeps the alerts consistent. Invalid values
    raise ``ValueError`` naming the value, values of the wrong type ``TypeError`` saying what to
    pass. ``MixinConfig.fast()`` is the demo profile (windows in seconds). Narrow the selector to
    your job, then regenerate::

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
    that the floor only moves when memory that is never given back accumulates. The memory
    limit alerts fit their trend over it and hold for half of it."""
    trend_window: str = "6h"
    """Window of the floor's trend in processes older than floor + trend windows: growth must be
    sustained in both halves of it, so growth that follows a traffic ramp shorter than half of it
    and returns (or a one-time step) stays silent."""
    warmup_window: str = "3h"
    """Growth during this long after a process start may be a warm-up (caches filling): it is
    never judged. A process leaking from its start is judged from warmup + floor windows on, on
    growth through each floor window of the warm-up window before (a shorter traffic ramp in a
    young process is not a leak)."""
    young_trend_window: str = "30m"
    """Processes between warmup + floor and floor + trend windows old (a bad deploy leaking
    from its start) are judged on their floor's growth over a floor window, unless floors over
    this window and half of it stay flat for twice as long (the growth stopped: a warm-up's
    end). The leak alerts hold for as long: floor + this window must cover three of it."""
    day_window: str = "1d"
    """Daily traffic: in a process older than this (plus the floor window) the floor must also
    exceed the floor at the same time one day earlier. Also the warning near-limit horizon and
    the restart-loop window."""
    leak_growth_per_hour: float = 0.01
    """Old processes: the floor must grow faster than this fraction of itself per hour (0.01 =
    1%/h) over the trend window, and each half of it by at least half that much. Young
    processes: ``YOUNG_GROWTH_FACTOR`` times as fast."""
    leak_min_objects: int = 1000
    """Object types and watched objects must also have grown by this many over the trend window
    (finished handlers by a twentieth of it)."""

    # --- slow consumers: data queued in IOStream write buffers (TornadoWriteBuffersGrowing) ---
    write_buffers_high_bytes: int = 64 << 20
    """Fire when a process holds more than this many bytes queued to its clients (summed over
    its open IOStreams) for ``write_buffers_window``, or a quarter of it more than that window
    earlier (a queue below the threshold that never drains)."""
    write_buffers_window: str = "15m"
    """Longer than a burst of broadcasts takes to drain."""

    # --- garbage collector and event loop ---------------------------------------------------
    gc_pause_p99_seconds: float = 0.1
    """TornadoGCPauseHigh: p99 of full-collection pauses above this (the loop is blocked)."""
    gc_pause_window: str = "30m"
    """Rate window of the pause histogram (full collections are minutes apart), held for half
    of it; also the window in which any uncollectable object raises TornadoGCUncollectable."""
    ioloop_lag_p99_seconds: float = 0.1
    """TornadoIOLoopBlocked: p99 of the IOLoop probe's lateness above this..."""
    ioloop_lag_window: str = "5m"
    """...over this rate window, held for as long."""

    # --- pools and the exporter itself -------------------------------------------------------
    pool_window: str = "5m"
    """Window of the pools' waiting/timeout and leak checks; TornadoPoolExhausted holds for it,
    TornadoPoolSaturated for three times it, TornadoPoolLeak for a fifth."""
    census_stale_after: str = "15m"
    """TornadoCensusStale: the last successful census is older than this (default schedule:
    60 s), for a third of it; TornadoMemoryExporterDown also waits a third of it."""

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
    datasource_url: str = "http://prometheus:9090"
    """URL of the Prometheus datasource in the Grafana provisioning file."""
    rule_interval: str | None = None
    """Evaluation interval of the rule groups (None: Prometheus's global one)."""

    # --- constants: thresholds nobody should need to change -------------------------------
    gc_oldest_generation: ClassVar[str] = "2"
    """``generation`` label of the full collection (CPython's oldest generation)."""
    near_limit_warning_ratio: ClassVar[float] = 0.6
    """Warning near-limit twin: the RSS floor is above this fraction of the limit."""
    near_limit_critical_ratio: ClassVar[float] = 0.5
    """Critical twin: the RSS floor is above this fraction of the limit..."""
    near_limit_min_growth: ClassVar[float] = 0.01
    """...and grew by this fraction of it over ``near_limit_window``."""
    restart_near_limit_ratio: ClassVar[float] = 0.9
    """TornadoMemoryRestartLoop: RSS within ``restart_lookback`` of a restart above this."""
    pool_saturation_ratio: ClassVar[float] = 0.9
    """TornadoPoolSaturated: in_use / capacity at or above this."""
    allocator_free_growth_bytes: ClassVar[int] = 64 << 20
    """TornadoAllocatorRetention: the allocators' free bytes grew by this over the trend window
    (a few MiB of churn in the free lists never fires it)."""
    alert_repeat_interval: ClassVar[str] = "4h"
    """``repeat_interval`` of the Alertmanager route."""

    # --- derived: fixed fractions of the windows above -------------------------------------
    @property
    def leak_for(self) -> str:
        """``for:`` of the leak alerts: the young trend window."""
        return self.young_trend_window

    @property
    def handlers_leak_for(self) -> str:
        """``for:`` of TornadoHandlersLeaking: two thirds of the young window (longer than half
        of it, like ``leak_for``; short enough to fire within the hour on reachable counts)."""
        return _part(self.young_trend_window, 2, 3)

    @property
    def young_growth_per_hour(self) -> float:
        """Young processes' growth threshold (stricter: a warm-up's slowing tail stays under it)."""
        return YOUNG_GROWTH_FACTOR * self.leak_growth_per_hour

    @property
    def handlers_leak_min(self) -> int:
        """Finished handlers kept alive must also have grown by this many."""
        return max(1, self.leak_min_objects // 20)

    @property
    def watched_leak_min(self) -> int:
        """Items of a watched object (``exporter.watch``) must also have grown by this many."""
        return self.leak_min_objects

    @property
    def write_buffers_growth_bytes(self) -> int:
        return self.write_buffers_high_bytes // 4

    @property
    def write_buffers_for(self) -> str:
        return self.write_buffers_window

    @property
    def near_limit_window(self) -> str:
        """Fit window of the critical near-limit twin."""
        return self.floor_window

    @property
    def near_limit_for(self) -> str:
        return _part(self.floor_window, 1, 2)

    @property
    def near_limit_critical_horizon(self) -> str:
        return _part(self.floor_window, 2)

    @property
    def near_limit_warning_horizon(self) -> str:
        return self.day_window

    @property
    def restart_window(self) -> str:
        """Restarts are counted over a day."""
        return self.day_window

    @property
    def restart_lookback(self) -> str:
        """How long before a restart its RSS peak is looked for."""
        return _part(self.floor_window, 1, 4)

    @property
    def restart_loop_for(self) -> str:
        return _part(self.floor_window, 1, 12)

    @property
    def uncollectable_window(self) -> str:
        return self.gc_pause_window

    @property
    def uncollectable_for(self) -> str:
        return _part(self.gc_pause_window, 1, 6)

    @property
    def gc_pause_for(self) -> str:
        return _part(self.gc_pause_window, 1, 2)

    @property
    def ioloop_lag_for(self) -> str:
        return self.ioloop_lag_window

    @property
    def pool_saturated_for(self) -> str:
        return _part(self.pool_window, 3)

    @property
    def pool_exhausted_for(self) -> str:
        return self.pool_window

    @property
    def pool_leak_for(self) -> str:
        return _part(self.pool_window, 1, 5)

    @property
    def census_stale_for(self) -> str:
        return _part(self.census_stale_after, 1, 3)

    @property
    def exporter_down_for(self) -> str:
        return _part(self.census_stale_after, 1, 3)

    @property
    def exporter_down_lookback(self) -> str:
        """A down target counts as ours if it exported ``<ns>_exporter_info`` within this."""
        return self.day_window

    @property
    def alert_group_wait(self) -> str:
        """``group_wait`` of the route: the alerts of one leak arrive in one notification."""
        return duration(min(30, max(1, seconds(self.floor_window) // 2)))

    @property
    def alert_group_interval(self) -> str:
        return duration(min(300, max(1, seconds(self.floor_window) // 4)))

    @property
    def dashboard_refresh(self) -> str:
        return duration(min(30, max(5, seconds(self.floor_window) // 120)))

    @property
    def dashboard_time_from(self) -> str:
        return f"now-{duration(max(900, seconds(self.trend_window)))}"

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not _NAME.match(self.namespace):
            raise ValueError(f"namespace={self.namespace!r} is not a valid Prometheus name prefix")
        if not isinstance(self.selector, str) or not _SELECTOR.match(self.selector):
            raise ValueError(
                f"selector={self.selector!r} must be label matchers like 'job=\"shop\"'"
            )
        _names("instance_labels", self.instance_labels, _NAME, empty=False)
        _names("dashboard_tags", self.dashboard_tags, re.compile(r"^.+$"), empty=True)
        for field in fields(self):
            if field.name.endswith(("_window", "_after")):
                if seconds(getattr(self, field.name), field.name) == 0:
                    raise ValueError(f"{field.name}={getattr(self, field.name)!r} must be > 0s")
        if self.rule_interval is not None:
            seconds(self.rule_interval, "rule_interval")
        for name in ("leak_growth_per_hour", "gc_pause_p99_seconds", "ioloop_lag_p99_seconds"):
            validate.number(name, getattr(self, name), minimum=0, above=True)
        validate.integer("leak_min_objects", self.leak_min_objects, minimum=0)
        validate.integer("write_buffers_high_bytes", self.write_buffers_high_bytes, minimum=4)
        for name in ("runbook_url", "explorer_url", "dashboard_uid_prefix", "datasource_url"):
            validate.label_value(name, getattr(self, name), longest=1000)
        if not re.match(r"^[a-zA-Z0-9_-]{1,30}$", self.dashboard_uid_prefix):
            raise ValueError(
                f"dashboard_uid_prefix={self.dashboard_uid_prefix!r} must be 1-30 of [a-zA-Z0-9_-] "
                "(Grafana uids are at most 40 characters)"
            )
        floor, trend = seconds(self.floor_window), seconds(self.trend_window)
        if floor >= trend:
            raise ValueError(
                f"floor_window={self.floor_window!r} must be shorter than "
                f"trend_window={self.trend_window!r}"
            )
        for name in ("trend_window", "young_trend_window"):
            if seconds(getattr(self, name)) % 2:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} must be an even number of seconds"
                )

    @classmethod
    def fast(cls, **overrides: Any) -> MixinConfig:
        """The demo/end-to-end profile: a steady leak fires within about a minute at a 1 s
        scrape and evaluation interval (the heap census must run every few seconds for the
        object-type and handler alerts). Not for production: a day lasts 4 minutes."""
        # Leak windows are the defaults divided by about 360 (an hour becomes 10 s), growth
        # rates multiplied by as much: the same guards, so no leak switched on means no alert.
        # The young window spans four demo censuses (every 5 s): both halves see one.
        profile: dict[str, Any] = {
            "floor_window": "20s",
            "trend_window": "60s",
            "warmup_window": "30s",
            "young_trend_window": "20s",
            "day_window": "4m",
            "leak_growth_per_hour": 3.6,
            "leak_min_objects": 250,  # builtin types of the idle demo move by ~100 in a minute
            "write_buffers_high_bytes": 8 << 20,
            "write_buffers_window": "20s",
            # a shared machine's CPU contention stretches pauses and loop lag past 0.1 s for
            # seconds (measured: both fired with no leak on); the blocking leak's 1 s call fires
            "gc_pause_window": "1m",
            "gc_pause_p99_seconds": 0.25,
            "ioloop_lag_window": "30s",
            "ioloop_lag_p99_seconds": 0.2,
            "pool_window": "30s",
            "census_stale_after": "1m",
        }
        return cls(**{**profile, **overrides})

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
        """``<ns>_<name>{<selector>, <matchers>}``: a selector honouring the configured filter."""
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
