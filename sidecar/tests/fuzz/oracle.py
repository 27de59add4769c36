"""What the fuzz tests hold every answer to, and the sidecar they drive.

An answer is acceptable when it is one the API documents (docs/sidecar-apis.md): any 2xx-4xx;
over HTTP an error body of daprd's shape (``{"errorCode", "message"}``) or the router's own 404
and 405; a 5xx or a gRPC UNKNOWN/INTERNAL only where daprd answers so on purpose, recognised by
its error code or its text. A bare 500, ERR_INTERNAL, or grpc's "Unexpected error" (an exception
no edge mapped) fails the test, and so does any error or traceback the sidecar logs.

``Tally`` counts the examples each test ran; the fuzz conftest prints them in the summary.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import grpc
from dapr.ext.workflow import WorkflowStatus

from sidecar import Sidecar
from sidecar.tests.harness import WAIT, WorkflowApp, error_info_reason

# daprd's deliberate 500/INTERNAL answers to bad requests (docs/sidecar-apis.md, errors table).
DAPRD_500_CODES = frozenset(
    {
        "ERR_START_WORKFLOW",
        "ERR_RAISE_EVENT_WORKFLOW",
        "ERR_PAUSE_WORKFLOW",
        "ERR_RESUME_WORKFLOW",
        "ERR_TERMINATE_WORKFLOW",
        "ERR_PURGE_WORKFLOW",
        "ERR_STATE_TRANSACTION",
        "ERR_STATE_STORE_NOT_CONFIGURED",
    }
)
# daprd's plain-error answers on the workflow protocol (UNKNOWN), which the SDK matches by text.
DAPRD_UNKNOWN_TEXTS = (
    "no such instance exists",
    "orchestration has not yet completed",
    "is stalled",
)
_WATCHED_LOGGERS = ("sidecar", "aiohttp", "grpc", "asyncio")


@dataclass
class Tally:
    """Examples run by one fuzz test, and how long the test took."""

    name: str
    examples: int = 0
    refused: int = 0  # requests answered with an error (documented ones: the oracle checks)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def done(self) -> None:
        self.seconds = time.monotonic() - self.started

    def summary(self) -> str:
        return (
            f"{self.name}: {self.examples} examples ({self.refused} refused) "
            f"in {self.seconds:.1f} s"
        )


TALLIES: list[Tally] = []


class ErrorLog(logging.Handler):
    """Every record of the sidecar's (and its servers') loggers that is an error or carries a
    traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        watched = record.name.split(".")[0] in _WATCHED_LOGGERS or record.name.startswith("grpc")
        if watched and (record.levelno >= logging.ERROR or record.exc_info):
            self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records]


# -- HTTP -----------------------------------------------------------------------------------------


@dataclass
class HttpAnswer:
    status: int
    body: bytes

    def error(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) and "errorCode" in value else None


def check_http(answer: HttpAnswer, what: str, tally: Tally) -> None:
    status = answer.status
    if status >= 400:
        tally.refused += 1
    if status < 400:
        assert status < 300 or status == 304, f"{what}: {status}"
        return
    error = answer.error()
    if error is None:
        # Only the router answers in text: a path no route matches, a method it does not serve.
        assert status in (404, 405), f"{what}: {status} {answer.body[:200]!r}"
        return
    assert isinstance(error.get("message"), str), f"{what}: {error}"
    assert error["errorCode"] != "ERR_INTERNAL", f"{what}: {error}"
    if status >= 500:
        assert status == 500 and error["errorCode"] in DAPRD_500_CODES, f"{what}: {error}"


class Http:
    """One keep-alive connection to the sidecar's HTTP port (reopened when the server closes it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: HTTPConnection | None = None

    def __call__(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> HttpAnswer:
        for attempt in range(2):
            if self.conn is None:
                self.conn = HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                answer = HttpAnswer(response.status, response.read())
                if response.will_close:
                    self.close()
                return answer
            except (ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# -- gRPC -----------------------------------------------------------------------------------------


def check_grpc(error: grpc.RpcError, what: str) -> None:
    """A refused call: any documented status, but UNKNOWN and INTERNAL only as daprd uses them."""
    code = error.code()  # type: ignore[attr-defined]
    details = error.details() or ""  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNKNOWN:
        assert any(text in details for text in DAPRD_UNKNOWN_TEXTS), f"{what}: {details}"
    elif code == grpc.StatusCode.INTERNAL:
        assert error_info_reason(error) in DAPRD_500_CODES, f"{what}: {details}"
    assert code not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE), (
        f"{what}: {code} {details}"
    )


def call_grpc(method: Any, request: Any, what: str, tally: Tally) -> Any:
    """Call, and return the response or None if refused (the refusal checked)."""
    try:
        return method(request, timeout=WAIT)
    except grpc.RpcError as error:
        tally.refused += 1
        check_grpc(error, what)
        return None


@dataclass
class Target:
    """The sidecar a fuzz test drives, with a client for each of its edges."""

    sidecar: Sidecar
    db_path: Path
    http: Http
    taskhub: Any  # TaskHubSidecarServiceStub
    dapr: Any  # dapr_pb2_grpc.DaprStub
    channel: grpc.Channel
    errors: ErrorLog
    tally: Tally

    def assert_healthy(self) -> None:
        """Call at the end of a test: no error logged, SQLite intact, a workflow completes."""
        assert_healthy(self.sidecar, self.db_path, self.errors)


def examples(count: int) -> int:
    """A test's example count, times SIDECAR_FUZZ_SCALE (default 1)."""
    return count * int(os.environ.get("SIDECAR_FUZZ_SCALE", "1"))


# -- afterwards -----------------------------------------------------------------------------------


def assert_healthy(sidecar: Sidecar, db_path: Path, errors: ErrorLog) -> None:
    """Nothing logged as an error, the database intact, and a worker still completes a workflow."""
    assert errors.lines() == []
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    app = WorkflowApp(sidecar.grpc_address)
    try:

        @app.runtime.activity(name="fuzz_after_step")
        def step(ctx, value: int) -> int:
            return value + 1

        @app.runtime.workflow(name="fuzz_after")
        def after(ctx, value: int):
            first = yield ctx.call_activity(step, input=value)
            return (yield ctx.call_activity(step, input=first))

        client = app.start()
        iid = client.schedule_new_workflow(after, input=40)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
        assert state.serialized_output == "42"
    finally:
        app.close()
    assert errors.lines() == []
