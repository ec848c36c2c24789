"""Object pools: an instrumented ``ObjectPool`` (``pool``, ``waiting``, ``leaks``), the
``PoolSnapshot`` every pool is read as (``snapshot``), adapters for the pools applications
already use (``adapters``) and the bounded registry that exports them (``registry``)."""

from .pool import Lease, ObjectPool
from .snapshot import PoolSnapshot
from .waiting import PoolTimeout

__all__ = ["Lease", "ObjectPool", "PoolSnapshot", "PoolTimeout"]
