"""Prometheus metrics for the memory of a Tornado service: process, garbage collector, heap
census, object pools and event-loop health.

    from tornado_memory_exporter import install
    exporter = install(app)      # inside the running IOLoop; GET /metrics now answers
"""

from typing import TYPE_CHECKING, Any

from .about import __version__
from .census.snapshot import CensusSnapshot
from .config import Config
from .install import Exporter, install
from .pools import ObjectPool, PoolSnapshot, PoolTimeout
from .standalone import ExporterThread, start_in_thread, start_metrics_server
from .web.metrics import MetricsHandler
from .web.server import MetricsServer
from .workers import worker_port

if TYPE_CHECKING:
    from .mixin.config import MixinConfig


def __getattr__(name: str) -> Any:
    # The mixin (alerts, dashboards) is for generating files, not for the running app: importing
    # it on first use keeps ~40 ms (-X importtime, about 10 % of the package) out of app start.
    if name == "MixinConfig":
        from .mixin.config import MixinConfig

        return MixinConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CensusSnapshot",
    "Config",
    "Exporter",
    "ExporterThread",
    "MetricsHandler",
    "MetricsServer",
    "MixinConfig",
    "ObjectPool",
    "PoolSnapshot",
    "PoolTimeout",
    "__version__",
    "install",
    "start_in_thread",
    "start_metrics_server",
    "worker_port",
]
