"""Fixtures and the Hypothesis profile of the fuzz tests; their counts in the terminal summary.

Profiles: ``sidecar-fuzz`` (random inputs, bounded example counts: the fuzz tests take well
under a minute together) and, with CI=true, ``sidecar-fuzz-ci``, the same derandomized so a CI
run is repeatable. No example database is kept; a failure prints the ``@reproduce_failure``
blob that replays it. SIDECAR_FUZZ_SCALE=10 runs ten times the examples
(oracle.examples), for a longer hunt by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.proto.runtime.v1 import dapr_pb2_grpc
from hypothesis import HealthCheck, settings

from sidecar.tests.fuzz.oracle import TALLIES, ErrorLog, Http, Tally, Target
from sidecar.tests.harness import sidecar_start

settings.register_profile(
    "sidecar-fuzz",
    max_examples=100,
    deadline=None,  # a shared 2-core machine makes single calls slow now and then
    database=None,
    print_blob=True,
    # The examples share the test's sidecar on purpose (and the suite's autouse fixtures
    # only clean the environment), so function-scoped fixtures are fine here.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "sidecar-fuzz-ci", parent=settings.get_profile("sidecar-fuzz"), derandomize=True
)
settings.load_profile("sidecar-fuzz-ci" if os.environ.get("CI") == "true" else "sidecar-fuzz")


@pytest.fixture
def target(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Target]:
    db_path = tmp_path / "fuzz.db"
    sidecar = sidecar_start(db_path, http_port=0)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    # The refused oversize sends of gRPC's own channel are fine; the default limit keeps the
    # client from refusing large answers before the server is asked.
    channel = grpc.insecure_channel(
        sidecar.grpc_address, options=[("grpc.max_receive_message_length", -1)]
    )
    tally = Tally(request.node.name)
    http = Http(sidecar.http_port or 0)
    try:
        yield Target(
            sidecar=sidecar,
            db_path=db_path,
            http=http,
            taskhub=stubs.TaskHubSidecarServiceStub(channel),
            dapr=dapr_pb2_grpc.DaprStub(channel),
            channel=channel,
            errors=errors,
            tally=tally,
        )
    finally:
        tally.done()
        TALLIES.append(tally)
        http.close()
        channel.close()
        logging.getLogger().removeHandler(errors)
        sidecar.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLIES:
        return
    terminalreporter.section("sidecar fuzz")
    for tally in TALLIES:
        terminalreporter.write_line(tally.summary())
    total = sum(t.examples for t in TALLIES)
    seconds = sum(t.seconds for t in TALLIES)
    terminalreporter.write_line(f"total: {total} examples in {seconds:.1f} s")
