"""Shared fixtures. Helpers that are not tests live in support/ (on the path:
``from realbin import ...``): real
binaries in realbin.py, the threaded app server in appserver.py, the apps tests run in children."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from tornado_memory_exporter.faults import Faults


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def faults() -> Faults:
    return Faults(log_interval=60.0)
