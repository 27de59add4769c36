"""What the sidecar acknowledged is on disk: SIGKILL it the moment a call returns, start it
again on the same database, and the change is there.

A graceful stop cannot show this: it commits whatever is held first. Under the default commit
delay (docs/sidecar-internals.md, "Commits") an activity's result in a chain is held for the
workflow's next step, and a client's command commits at once; either way the call must be
answered only after its commit. Each case drives a hand-written worker (``RawWorker``) against
``python -m sidecar``, so the test itself makes the call and kills the process as it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.tests.harness import (
    WAIT,
    RawWorker,
    free_port,
    in_thread,
    schedule_task,
    spawn_sidecar,
    start_raw,
    stop_process,
    string_value,
    wait_for_port,
)

pytestmark = [pytest.mark.crash, pytest.mark.timeout(120)]

IID = "acked"


class Node:
    """``python -m sidecar`` on one port and database, with the default commit delay."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.db = tmp_path / "acked.db"
        self.log = tmp_path / "sidecar.log"
        self.proc = spawn_sidecar(self.port, self.db, log=self.log)
        wait_for_port(self.port, self.proc)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = stubs.TaskHubSidecarServiceStub(self.channel)
        self.worker = RawWorker(self.stub)

    def kill(self) -> None:
        """SIGKILL: nothing held in memory gets a chance to reach the disk."""
        self.proc.kill()
        self.proc.wait(10)
        self.worker.close()
        self.channel.close()

    def close(self) -> None:
        self.worker.close()
        self.channel.close()
        stop_process(self.proc)

    def instance(self) -> pb.GetInstanceResponse:
        return self.stub.GetInstance(
            pb.GetInstanceRequest(instanceId=IID, getInputsAndOutputs=True), timeout=WAIT
        )


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[[], Node]]:
    started: list[Node] = []

    def start() -> Node:
        started.append(Node(tmp_path))
        return started[-1]

    yield start
    for node in started:
        node.close()


def _start(node: Node, *actions: pb.WorkflowAction) -> None:
    """Start the instance and answer its first turn with ``actions``; returns once started."""
    thread, box = start_raw(node.stub, IID)
    turn = node.worker.next_item()
    node.stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId=IID, actions=list(actions), completionToken=turn.completionToken
        ),
        timeout=WAIT,
    )
    thread.join(WAIT)
    assert "error" not in box and box["result"].instanceId == IID


def _answer_turn(node: Node) -> list[str]:
    """Answer the next turn with no actions; returns the kinds of its new events."""
    turn = node.worker.next_item()
    assert turn.HasField("workflowRequest"), turn
    node.stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(instanceId=IID, completionToken=turn.completionToken), timeout=WAIT
    )
    return [e.WhichOneof("eventType") for e in turn.workflowRequest.newEvents]


def _next_turn_events(node: Node) -> list[pb.HistoryEvent]:
    item = node.worker.next_item(timeout=WAIT)
    assert item.HasField("workflowRequest"), item
    assert item.workflowRequest.instanceId == IID
    return list(item.workflowRequest.newEvents)


def test_acknowledged_raise_event_survives_sigkill(nodes: Callable[[], Node]) -> None:
    node = nodes()
    _start(node)

    node.stub.RaiseEvent(
        pb.RaiseEventRequest(instanceId=IID, name="go", input=string_value('"x"')), timeout=WAIT
    )
    node.kill()
    after = nodes()
    raised = [e.eventRaised for e in _next_turn_events(after) if e.HasField("eventRaised")]

    assert [(e.name, e.input.value) for e in raised] == [("go", '"x"')]


def test_acknowledged_terminate_survives_sigkill(nodes: Callable[[], Node]) -> None:
    node = nodes()
    _start(node)

    node.stub.TerminateInstance(
        pb.TerminateRequest(instanceId=IID, output=string_value('"stop"')), timeout=WAIT
    )
    node.kill()
    state = nodes().instance().workflowState

    assert state.workflowStatus == pb.ORCHESTRATION_STATUS_TERMINATED
    assert state.output.value == '"stop"'


def test_acknowledged_suspend_survives_sigkill(nodes: Callable[[], Node]) -> None:
    node = nodes()
    _start(node)

    suspending, box = in_thread(
        lambda: node.stub.SuspendInstance(pb.SuspendRequest(instanceId=IID), timeout=WAIT)
    )
    assert _answer_turn(node) == ["workflowStarted", "executionSuspended"]
    suspending.join(WAIT)  # answered once the instance is suspended
    assert "error" not in box
    node.kill()
    state = nodes().instance().workflowState

    assert state.workflowStatus == pb.ORCHESTRATION_STATUS_SUSPENDED


def test_acknowledged_activity_result_survives_sigkill(nodes: Callable[[], Node]) -> None:
    node = nodes()
    _start(node, schedule_task(1, "step", '"in"'))
    activity = node.worker.next_item()
    assert activity.HasField("activityRequest"), activity

    # The instance's last pending activity, with its next turn due: a held step.
    node.stub.CompleteActivityTask(
        pb.ActivityResponse(
            instanceId=IID,
            taskId=1,
            result=string_value('"out"'),
            completionToken=activity.completionToken,
        ),
        timeout=WAIT,
    )
    node.kill()
    after = nodes()
    done = [e.taskCompleted for e in _next_turn_events(after) if e.HasField("taskCompleted")]

    assert [(e.taskScheduledId, e.result.value) for e in done] == [(1, '"out"')]
    after.worker.assert_no_item(0.5)  # and the activity is not handed out again
