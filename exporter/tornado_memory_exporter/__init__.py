"""Prometheus metrics for the memory of a Tornado service: process, garbage collector, heap
census, object pools and event-loop health.

    from tornado_memory_exporter import install
    exporter = install(app)      # inside the running IOLoop; GET /metrics now answers

Everything else lives in its subpackage: ``pools`` (``PoolSnapshot``), ``census``
(``CensusSnapshot``), ``web`` (``MetricsServer``), ``workers`` (``worker_port``) and ``mixin``
(``MixinConfig``: alerts and dashboards, imported only by the tools that generate them).
"""

from .about import __version__
from .config import Config
from .exporter import Exporter
from .install import install, start_in_thread, start_metrics_server
from .pools import ObjectPool, PoolTimeout
from .web.metrics import MetricsHandler

__all__ = [
    "Config",
    "Exporter",
    "MetricsHandler",
    "ObjectPool",
    "PoolTimeout",
    "__version__",
    "install",
    "start_in_thread",
    "start_metrics_server",
]
