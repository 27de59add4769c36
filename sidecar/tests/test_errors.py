"""gRPC status codes, bad input, and the work-item protocol driven by hand.

Missing instances answer as daprd does; work items, completion tokens and re-dispatch follow
durabletask-go's executor (backend/executor.go) and daprd (dapr/dapr pkg/runtime/wfengine), see
docs/sidecar-internals.md, "Dispatch". Bad input must get a gRPC error with a message, leave
the store unchanged, and leave the server serving (issue: "Bad input").
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import UTC, datetime

import grpc
import pytest
from dapr.ext.workflow import TaskFailedError, WorkflowStatus
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf import empty_pb2

from sidecar.tests.harness import (
    WAIT,
    RawWorker,
    WorkflowApp,
    in_thread,
    open_streams,
    parked_waiters,
    schedule_task,
    start_raw,
    string_value,
    wait_until,
)

# -- helpers for hand-written protocol messages ------------------------------------------------


def _complete(action_id: int, result: str | None = None) -> pb.WorkflowAction:
    return pb.WorkflowAction(
        id=action_id,
        completeWorkflow=pb.CompleteWorkflowAction(
            workflowStatus=pb.ORCHESTRATION_STATUS_COMPLETED,
            result=string_value(result) if result is not None else None,
        ),
    )


def _status(stub: stubs.TaskHubSidecarServiceStub, instance_id: str) -> int | None:
    res = stub.GetInstance(pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True))
    return res.workflowState.workflowStatus if res.exists else None


def _history(stub: stubs.TaskHubSidecarServiceStub, instance_id: str) -> list[str]:
    res = stub.GetInstanceHistory(pb.GetInstanceHistoryRequest(instanceId=instance_id))
    return [e.WhichOneof("eventType") for e in res.events]


def _ids(stub: stubs.TaskHubSidecarServiceStub) -> list[str]:
    return list(stub.ListInstanceIDs(pb.ListInstanceIDsRequest()).instanceIds)


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    return err.value


# -- missing instances ------------------------------------------------------------------------


def test_hello_returns_empty(stub: stubs.TaskHubSidecarServiceStub) -> None:
    assert stub.Hello(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()


def test_get_state_unknown_instance_returns_none(app: WorkflowApp, stub) -> None:
    res = stub.GetInstance(pb.GetInstanceRequest(instanceId="nope", getInputsAndOutputs=True))

    assert app.client.get_workflow_state("nope") is None
    assert res.exists is False


# daprd answers each with a plain error, so gRPC UNKNOWN, carrying durabletask-go's
# api.ErrInstanceNotFound text, "no such instance exists" (the workflow actor's answer to an
# event for an instance it has no state for), behind the executor's prefix for terminate and
# purge (backend/executor.go). The SDK and users look for that text; the sidecar answers in
# daprd's words exactly (the differential suite, tests/realdapr, holds them equal).
@pytest.mark.parametrize(
    ("operation", "details"),
    [
        ("raise", "no such instance exists"),
        ("terminate", "failed to submit termination request: no such instance exists"),
        (
            "purge",
            "failed to purge workflow state: failed to fetch workflow state: "
            "no such instance exists",
        ),
        ("suspend", "no such instance exists"),
        ("resume", "no such instance exists"),
    ],
)
def test_unknown_instance_operations_error(app: WorkflowApp, operation: str, details: str) -> None:
    client = app.client
    calls = {
        "raise": lambda: client.raise_workflow_event("nope", "evt", data=1),
        "terminate": lambda: client.terminate_workflow("nope"),
        "purge": lambda: client.purge_workflow("nope"),
        "suspend": lambda: client.pause_workflow("nope"),
        "resume": lambda: client.resume_workflow("nope"),
    }

    with pytest.raises(grpc.RpcError) as err:
        calls[operation]()

    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert err.value.details() == details
    assert client.get_workflow_state("nope") is None
    assert list(client.iter_workflow_instance_ids()) == []


def test_wait_for_completion_unknown_instance_times_out(app: WorkflowApp) -> None:
    # The SDK raises TimeoutError only when the call's deadline passed: the sidecar held the
    # wait (an answer for a missing instance would have been None).
    with pytest.raises(TimeoutError):
        app.client.wait_for_workflow_completion("nope", timeout_in_seconds=1)

    assert app.client.get_workflow_state("nope") is None


def test_wait_for_completion_parks_until_instance_created(app: WorkflowApp, sidecar) -> None:
    @app.runtime.workflow(name="late_comer")
    def late_comer(ctx, _):
        return "arrived"

    client = app.start()
    waiter_client = app.new_client()
    thread, box = in_thread(
        lambda: waiter_client.wait_for_workflow_completion("late-1", timeout_in_seconds=WAIT)
    )
    # The waiter must be parked before the instance exists.
    assert wait_until(lambda: parked_waiters(sidecar, "late-1") == 1)
    assert thread.is_alive()
    client.schedule_new_workflow(late_comer, instance_id="late-1")
    thread.join(WAIT)

    assert "error" not in box
    state = box["result"]
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"arrived"'


# -- malformed requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_id", "name", "details"),
    [
        ("", "wf", "an instance id is required"),
        ("x" * 10_000, "wf", "instance id is longer than 1024 characters"),
        ("ok-id", "", "a workflow name is required"),
    ],
    ids=["empty_id", "oversized_id", "empty_name"],
)
def test_start_instance_bad_request_rejected(
    stub, instance_id: str, name: str, details: str
) -> None:
    err = _error(stub.StartInstance, pb.CreateInstanceRequest(instanceId=instance_id, name=name))

    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == details
    assert _ids(stub) == []


@pytest.mark.parametrize(
    "call",
    [
        "RaiseEvent",
        "TerminateInstance",
        "SuspendInstance",
        "ResumeInstance",
        "PurgeInstances",
        "GetInstance",
        "GetInstanceHistory",
    ],
)
def test_empty_instance_id_rejected(stub, call: str) -> None:
    requests = {
        "GetInstance": pb.GetInstanceRequest(instanceId=""),
        "GetInstanceHistory": pb.GetInstanceHistoryRequest(instanceId=""),
        "RaiseEvent": pb.RaiseEventRequest(instanceId="", name="e"),
        "TerminateInstance": pb.TerminateRequest(instanceId=""),
        "SuspendInstance": pb.SuspendRequest(instanceId=""),
        "ResumeInstance": pb.ResumeRequest(instanceId=""),
        "PurgeInstances": pb.PurgeInstancesRequest(instanceId=""),
    }

    err = _error(getattr(stub, call), requests[call])

    # daprd checks no ID at this edge: "" reaches its workflow actor as an ID like any other
    # and gets the unknown instance's answer (docs/sidecar-apis.md, "Differences").
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "an instance id is required"
    assert _ids(stub) == []


def test_purge_by_filter_rejected(stub) -> None:
    err = _error(
        stub.PurgeInstances, pb.PurgeInstancesRequest(purgeInstanceFilter=pb.PurgeInstanceFilter())
    )

    # daprd: a plain error (UNKNOWN), "multi-instance purge is not unimplemented" (sic,
    # durabletask-go backend/executor.go); gRPC's own code for it here.
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.details() == "multi-instance purge is not implemented"


def test_garbage_protobuf_payload_rejected_and_server_keeps_serving(
    app: WorkflowApp, channel: grpc.Channel
) -> None:
    raw_start = channel.unary_unary(
        "/TaskHubSidecarService/StartInstance",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )

    with pytest.raises(grpc.RpcError) as err:
        raw_start(b"\xff\xfe\x00garbage\x12\x99", timeout=10)

    # grpcio's asyncio server answers a request it cannot parse with UNKNOWN (grpc-go, and so
    # daprd, with INTERNAL); both name the parse error.
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert "Error parsing message with type 'CreateInstanceRequest'" in err.value.details()
    _assert_still_serving(app)


def test_garbage_bytes_on_port_server_keeps_serving(app: WorkflowApp) -> None:
    host, _, port = app.address.rpartition(":")
    payloads = [
        os.urandom(4096),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512),
        b"",
    ]
    for payload in payloads:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(payload)
            sock.settimeout(1)
            try:
                sock.recv(1024)
            except (TimeoutError, ConnectionError):
                pass

    _assert_still_serving(app)


def _assert_still_serving(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="alive")
    def alive(ctx, _):
        return "alive"

    client = app.start()
    iid = client.schedule_new_workflow(alive)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None
    assert state.serialized_output == '"alive"'
    assert list(client.iter_workflow_instance_ids()) == [iid]


def test_oversized_activity_result_fails_task(app: WorkflowApp) -> None:
    @app.runtime.activity(name="huge")
    def huge(ctx, _):
        return "x" * (5 * 1024 * 1024)

    @app.runtime.workflow(name="asks_too_much")
    def asks_too_much(ctx, _):
        try:
            yield ctx.call_activity(huge)
        except TaskFailedError as err:
            return err.details.message
        return "fit"

    client = app.start()
    iid = client.schedule_new_workflow(asks_too_much)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert "Activity result exceeds gRPC max message size" in state.serialized_output


# -- the work-item protocol, by hand ----------------------------------------------------------


def test_work_item_shape_for_first_turn_and_activity(stub, raw_worker: RawWorker) -> None:
    before = datetime.now(UTC)
    thread, box = start_raw(stub, "shape-1")
    item = raw_worker.next_item()
    req = item.workflowRequest

    assert item.HasField("workflowRequest")
    assert item.completionToken
    assert req.instanceId == "shape-1"
    assert list(req.pastEvents) == []
    kinds = [e.WhichOneof("eventType") for e in req.newEvents]
    assert kinds == ["workflowStarted", "executionStarted"]
    clock = req.newEvents[0].timestamp.ToDatetime(tzinfo=UTC)
    assert before - (datetime.now(UTC) - before) <= clock <= datetime.now(UTC)
    started = req.newEvents[1].executionStarted
    assert started.name == "raw_wf"
    assert started.input.value == '"in"'
    assert started.workflowInstance.instanceId == "shape-1"

    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="shape-1",
            actions=[schedule_task(1, "act", '"payload"')],
            completionToken=item.completionToken,
        ),
        timeout=10,
    )
    thread.join(WAIT)
    activity_item = raw_worker.next_item()
    act = activity_item.activityRequest

    assert "error" not in box and box["result"].instanceId == "shape-1"
    assert _status(stub, "shape-1") == pb.ORCHESTRATION_STATUS_RUNNING
    assert activity_item.HasField("activityRequest")
    assert act.name == "act"
    assert act.input.value == '"payload"'
    assert act.taskId == 1
    assert act.taskExecutionId == "exec-1"
    assert act.workflowInstance.instanceId == "shape-1"

    stub.CompleteActivityTask(
        pb.ActivityResponse(
            instanceId="shape-1",
            taskId=1,
            result=string_value('"done"'),
            completionToken=activity_item.completionToken,
        ),
        timeout=10,
    )
    turn2 = raw_worker.next_item().workflowRequest

    assert [e.WhichOneof("eventType") for e in turn2.pastEvents] == [
        "workflowStarted",
        "executionStarted",
        "taskScheduled",
    ]
    assert [e.WhichOneof("eventType") for e in turn2.newEvents] == [
        "workflowStarted",
        "taskCompleted",
    ]
    done = turn2.newEvents[1].taskCompleted
    assert done.taskScheduledId == 1
    assert done.result.value == '"done"'
    assert done.taskExecutionId == "exec-1"


def _first_turn(stub, raw_worker: RawWorker, instance_id: str):
    thread, box = start_raw(stub, instance_id)
    return thread, box, raw_worker.next_item()


def test_complete_orchestrator_task_wrong_token_rejected(stub, raw_worker: RawWorker) -> None:
    thread, box, item = _first_turn(stub, raw_worker, "token-1")

    err = _error(
        stub.CompleteOrchestratorTask,
        pb.WorkflowResponse(
            instanceId="token-1", actions=[_complete(1, '"bad"')], completionToken="not-a-token"
        ),
    )

    # daprd matches an answer by instance ID alone and would take this one; we refuse a token
    # we never issued (docs/sidecar-internals.md, "Dispatch").
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "malformed completion token 'not-a-token'"
    assert _status(stub, "token-1") == pb.ORCHESTRATION_STATUS_PENDING
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="token-1",
            actions=[_complete(1, '"good"')],
            completionToken=item.completionToken,
        ),
        timeout=10,
    )
    thread.join(WAIT)
    res = stub.GetInstance(pb.GetInstanceRequest(instanceId="token-1", getInputsAndOutputs=True))
    assert res.workflowState.workflowStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert res.workflowState.output.value == '"good"'


def _completion(method: str, token: str):
    if method == "CompleteOrchestratorTask":
        return pb.WorkflowResponse(
            instanceId="ghost", actions=[_complete(1)], completionToken=token
        )
    return pb.ActivityResponse(instanceId="ghost", taskId=1, completionToken=token)


@pytest.mark.parametrize("method", ["CompleteOrchestratorTask", "CompleteActivityTask"])
def test_completion_for_unknown_instance_is_ignored(stub, method: str) -> None:
    # As daprd: an answer to nothing in flight is dropped and the call succeeds (its actors
    # backend ignores unknown instance and task IDs), so a late worker is not told off.
    response = getattr(stub, method)(_completion(method, "0123abcd-7"), timeout=10)

    assert response == pb.CompleteTaskResponse()
    assert _ids(stub) == []
    assert _status(stub, "ghost") is None


@pytest.mark.parametrize("method", ["CompleteOrchestratorTask", "CompleteActivityTask"])
def test_completion_with_malformed_token_rejected(stub, method: str) -> None:
    err = _error(getattr(stub, method), _completion(method, "t"))

    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "malformed completion token 't'"
    assert _ids(stub) == []


def test_complete_orchestrator_task_duplicate_action_ids_rejected(
    stub, raw_worker: RawWorker
) -> None:
    thread, box, item = _first_turn(stub, raw_worker, "dup-actions")

    err = _error(
        stub.CompleteOrchestratorTask,
        pb.WorkflowResponse(
            instanceId="dup-actions",
            actions=[schedule_task(1, "a"), schedule_task(1, "b")],
            completionToken=item.completionToken,
        ),
    )

    # daprd answers OK and its history applier drops the second event as a duplicate; we refuse
    # the whole turn (docs/sidecar-apis.md, "Differences").
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "action id 1 is used twice in one response for 'dup-actions'"
    assert _status(stub, "dup-actions") == pb.ORCHESTRATION_STATUS_PENDING
    raw_worker.assert_no_item(0.5)  # no activity was dispatched
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="dup-actions", actions=[_complete(1)], completionToken=item.completionToken
        ),
        timeout=10,
    )
    thread.join(WAIT)
    assert _status(stub, "dup-actions") == pb.ORCHESTRATION_STATUS_COMPLETED


def test_complete_orchestrator_task_action_id_reused_from_history_is_accepted(
    stub, raw_worker: RawWorker
) -> None:
    """daprd accepts an action whose id an earlier event already has (the SDK sends one when
    code patched under a running instance replays: tests/realdapr, patching scenarios), so the
    sidecar records it and runs the activity rather than refusing the turn."""
    thread, box, item = _first_turn(stub, raw_worker, "misfit")
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="misfit",
            actions=[schedule_task(1, "a")],
            completionToken=item.completionToken,
        ),
        timeout=10,
    )
    thread.join(WAIT)
    activity = raw_worker.next_item()
    stub.CompleteActivityTask(
        pb.ActivityResponse(
            instanceId="misfit",
            taskId=1,
            result=string_value("1"),
            completionToken=activity.completionToken,
        ),
        timeout=10,
    )
    turn2 = raw_worker.next_item()

    # Action id 1 is already the taskScheduled of activity "a" in history.
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="misfit",
            actions=[schedule_task(1, "again")],
            completionToken=turn2.completionToken,
        ),
        timeout=10,
    )
    again = raw_worker.next_item()

    assert again.activityRequest.name == "again"
    assert again.activityRequest.taskId == 1
    assert _history(stub, "misfit").count("taskScheduled") == 2
    assert _status(stub, "misfit") == pb.ORCHESTRATION_STATUS_RUNNING


def test_complete_activity_unknown_task_id_rejected(stub, raw_worker: RawWorker) -> None:
    thread, box, item = _first_turn(stub, raw_worker, "task-ids")
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="task-ids",
            actions=[schedule_task(1, "a")],
            completionToken=item.completionToken,
        ),
        timeout=10,
    )
    thread.join(WAIT)
    activity = raw_worker.next_item()

    err = _error(
        stub.CompleteActivityTask,
        pb.ActivityResponse(
            instanceId="task-ids",
            taskId=99,
            result=string_value("1"),
            completionToken=activity.completionToken,
        ),
    )

    # daprd ignores an unknown task ID (OK); here the token names the activity it was issued
    # for, so a result for another task is a worker's mistake (docs/sidecar-internals.md).
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        f"completion token {activity.completionToken!r} belongs to activity 1 of 'task-ids',"
        " not 99 of 'task-ids'"
    )
    raw_worker.assert_no_item(0.5)
    assert "taskCompleted" not in _history(stub, "task-ids")


def test_duplicate_activity_completion_recorded_once(stub, raw_worker: RawWorker) -> None:
    thread, box, item = _first_turn(stub, raw_worker, "dup-result")
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="dup-result",
            actions=[schedule_task(1, "a")],
            completionToken=item.completionToken,
        ),
        timeout=10,
    )
    thread.join(WAIT)
    activity = raw_worker.next_item()
    response = pb.ActivityResponse(
        instanceId="dup-result",
        taskId=1,
        result=string_value('"r"'),
        completionToken=activity.completionToken,
    )

    first = stub.CompleteActivityTask(response, timeout=10)
    again = stub.CompleteActivityTask(response, timeout=10)  # as daprd: dropped, and OK
    turn2 = raw_worker.next_item()
    kinds = [e.WhichOneof("eventType") for e in turn2.workflowRequest.newEvents]
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="dup-result",
            actions=[_complete(2, '"r"')],
            completionToken=turn2.completionToken,
        ),
        timeout=10,
    )

    assert first == again == pb.CompleteTaskResponse()
    assert kinds == ["workflowStarted", "taskCompleted"]
    raw_worker.assert_no_item(0.5)
    assert _history(stub, "dup-result").count("taskCompleted") == 1
    assert _status(stub, "dup-result") == pb.ORCHESTRATION_STATUS_COMPLETED


def test_turn_redispatched_after_stream_drops(stub) -> None:
    first = RawWorker(stub)
    thread, box = start_raw(stub, "redispatch-1")
    lost = first.next_item()
    first.close()  # the turn is never completed

    second = RawWorker(stub)
    try:
        again = second.next_item()
        assert again.workflowRequest.instanceId == "redispatch-1"
        assert [e.WhichOneof("eventType") for e in again.workflowRequest.newEvents] == [
            e.WhichOneof("eventType") for e in lost.workflowRequest.newEvents
        ]
        stub.CompleteOrchestratorTask(
            pb.WorkflowResponse(
                instanceId="redispatch-1",
                actions=[_complete(1, '"second try"')],
                completionToken=again.completionToken,
            ),
            timeout=10,
        )
        thread.join(WAIT)
    finally:
        second.close()

    assert "error" not in box
    assert _status(stub, "redispatch-1") == pb.ORCHESTRATION_STATUS_COMPLETED


def test_activity_redispatched_after_stream_drops(stub) -> None:
    first = RawWorker(stub)
    thread, box = start_raw(stub, "act-redispatch")
    turn = first.next_item()
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="act-redispatch",
            actions=[schedule_task(1, "slow", '"arg"')],
            completionToken=turn.completionToken,
        ),
        timeout=10,
    )
    thread.join(WAIT)
    lost = first.next_item()
    assert lost.HasField("activityRequest")
    first.close()  # the activity result never arrives

    second = RawWorker(stub)
    try:
        again = second.next_item()
        assert again.HasField("activityRequest")
        assert again.activityRequest.taskId == 1
        assert again.activityRequest.name == "slow"
        assert again.activityRequest.input.value == '"arg"'
        stub.CompleteActivityTask(
            pb.ActivityResponse(
                instanceId="act-redispatch",
                taskId=1,
                result=string_value('"ok"'),
                completionToken=again.completionToken,
            ),
            timeout=10,
        )
        turn2 = second.next_item()
        assert turn2.workflowRequest.newEvents[1].taskCompleted.result.value == '"ok"'
    finally:
        second.close()


def test_sdk_activity_reruns_after_worker_restart(app: WorkflowApp, sidecar) -> None:
    """Scenario 24 with the real SDK: at-least-once across a worker restart."""
    runs: list[str] = []
    release = threading.Event()
    returned = threading.Event()

    @app.runtime.activity(name="sticky")
    def sticky(ctx, _):
        runs.append("first")
        release.wait(WAIT)  # outlives the worker that ran it
        returned.set()
        return "from the dead worker"

    @app.runtime.workflow(name="survivor")
    def survivor(ctx, _):
        return (yield ctx.call_activity("sticky"))

    client = app.start()
    iid = client.schedule_new_workflow(survivor)

    assert wait_until(lambda: runs == ["first"], timeout=WAIT)
    thread, _ = in_thread(lambda: app.stop_runtime())
    # The old worker's stream closes while its activity still runs.
    assert wait_until(lambda: open_streams(sidecar) == 0)
    assert not returned.is_set()

    second = app.new_runtime()

    @second.activity(name="sticky")
    def sticky_again(ctx, _):
        runs.append("second")
        return "from the new worker"

    @second.workflow(name="survivor")
    def survivor_again(ctx, _):
        return (yield ctx.call_activity("sticky"))

    app.start(second)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    release.set()
    thread.join(WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"from the new worker"'
    assert runs[:2] == ["first", "second"]
