"""Prometheus metrics for the memory of a Tornado service: process, garbage collector, heap
census, object pools and event-loop health.

    from tornado_memory_exporter import install
    exporter = install(app)      # inside the running IOLoop; GET /metrics now answers
"""

from .about import __version__
from .config import Config
from .install import Exporter, install
from .pools import ObjectPool, PoolSnapshot, PoolTimeout
from .standalone import ExporterThread, start_in_thread, start_metrics_server
from .web.metrics import MetricsHandler
from .web.server import MetricsServer
from .workers import worker_port

__all__ = [
    "Config",
    "Exporter",
    "ExporterThread",
    "MetricsHandler",
    "MetricsServer",
    "ObjectPool",
    "PoolSnapshot",
    "PoolTimeout",
    "__version__",
    "install",
    "start_in_thread",
    "start_metrics_server",
    "worker_port",
]
