"""Object pools: an instrumented ``ObjectPool`` (``pool``, ``core``, ``leaks``), the
``PoolSnapshot`` every pool is read as (``snapshot``), adapters for the pools applications
already use (``adapters``) and the bounded registry that exports them (``registry``)."""

from .core import PoolTimeout
from .pool import Lease, ObjectPool
from .snapshot import PoolSnapshot

__all__ = ["Lease", "ObjectPool", "PoolSnapshot", "PoolTimeout"]
