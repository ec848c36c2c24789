"""Shared fixtures. Real-binary helpers live in realbin.py, the threaded app server in appserver.py."""

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
