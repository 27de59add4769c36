"""Fixtures shared by every test directory: one real Zipkin server per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sidecar.tests.zipkin import Zipkin, zipkin_server


@pytest.fixture(scope="session")
def zipkin() -> Iterator[Zipkin]:
    """zipkin-server on a free loopback port (tools/zipkin.sh; needs a JDK), for the session."""
    with zipkin_server() as server:
        yield server
