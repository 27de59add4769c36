"""Fixtures for the sidecar conformance suite: a real sidecar, the real SDK, real SQLite.

Every test gets its own SQLite file under ``tmp_path`` and an in-process sidecar on a free
loopback port (``grpc_port=0``). ``app`` is a ``WorkflowApp``: register workflows and
activities on ``app.runtime`` inside the test (the SDK marks each function object as
registered, so functions are defined per test), then ``app.start()`` connects the worker and
returns a ``DaprWorkflowClient``. Teardown stops runtimes and clients before the sidecar.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs

from sidecar import Sidecar
from sidecar.tests.harness import RawWorker, WorkflowApp, sidecar_start


@pytest.fixture(autouse=True)
def _clean_dapr_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK and the sidecar both read DAPR_* from the environment when called."""
    for name in (
        "DAPR_API_TOKEN",
        "DAPR_GRPC_ENDPOINT",
        "DAPR_API_TIMEOUT_SECONDS",
        "DAPR_GRPC_MAX_INBOUND_MESSAGE_SIZE_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "workflows.db"


@pytest.fixture
def sidecar(db_path: Path) -> Iterator[Sidecar]:
    sc = sidecar_start(db_path)
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def app(sidecar: Sidecar) -> Iterator[WorkflowApp]:
    wf_app = WorkflowApp(sidecar.grpc_address)
    try:
        yield wf_app
    finally:
        wf_app.close()


@pytest.fixture
def channel(sidecar: Sidecar) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(sidecar.grpc_address)
    try:
        yield ch
    finally:
        ch.close()


@pytest.fixture
def stub(channel: grpc.Channel) -> stubs.TaskHubSidecarServiceStub:
    """A raw TaskHubSidecarService stub, for requests the SDK would never send."""
    return stubs.TaskHubSidecarServiceStub(channel)


@pytest.fixture
def raw_worker(stub: stubs.TaskHubSidecarServiceStub) -> Iterator[RawWorker]:
    worker = RawWorker(stub)
    try:
        yield worker
    finally:
        worker.close()
