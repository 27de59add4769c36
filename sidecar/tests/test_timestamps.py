"""Timestamps outside google.protobuf.Timestamp's range (years 1 to 9999) are refused with
INVALID_ARGUMENT wherever a client or a worker may send one; nothing changes (the fuzz tests
found both: the protobuf runtime raised, and the call ended UNKNOWN)."""

from __future__ import annotations

import grpc
import pytest
from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf import timestamp_pb2

from sidecar.tests.harness import WAIT, RawWorker, string_value

OUT_OF_RANGE = [
    timestamp_pb2.Timestamp(seconds=253_402_300_800),  # 10000-01-01
    timestamp_pb2.Timestamp(seconds=-62_135_596_801),  # before the year 1
    timestamp_pb2.Timestamp(seconds=0, nanos=-1),
    timestamp_pb2.Timestamp(seconds=0, nanos=1_000_000_000),
]


@pytest.mark.parametrize("at", OUT_OF_RANGE, ids=lambda t: f"{t.seconds}s{t.nanos}ns")
def test_scheduled_start_out_of_range_is_invalid(stub, at: timestamp_pb2.Timestamp) -> None:
    request = pb.CreateInstanceRequest(instanceId="when", name="wf", scheduledStartTimestamp=at)

    with pytest.raises(grpc.RpcError) as refused:
        stub.StartInstance(request, timeout=WAIT)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "scheduledStartTimestamp is not a valid timestamp" in refused.value.details()
    assert not stub.GetInstance(pb.GetInstanceRequest(instanceId="when"), timeout=WAIT).exists


def test_timer_fire_at_out_of_range_is_invalid_and_the_turn_stays(
    stub, raw_worker: RawWorker
) -> None:
    stub.StartInstance(
        pb.CreateInstanceRequest(instanceId="timer", name="wf", input=string_value("1")),
        timeout=WAIT,
    )
    item = raw_worker.next_item()
    bad_timer = pb.WorkflowAction(id=1, createTimer=pb.CreateTimerAction(fireAt=OUT_OF_RANGE[0]))

    with pytest.raises(grpc.RpcError) as refused:
        stub.CompleteOrchestratorTask(
            pb.WorkflowResponse(
                instanceId="timer", completionToken=item.completionToken, actions=[bad_timer]
            ),
            timeout=WAIT,
        )
    # The same turn is still open: a valid answer to it is taken.
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="timer",
            completionToken=item.completionToken,
            actions=[
                pb.WorkflowAction(
                    id=1,
                    completeWorkflow=pb.CompleteWorkflowAction(
                        workflowStatus=pb.ORCHESTRATION_STATUS_COMPLETED,
                        result=string_value('"done"'),
                    ),
                )
            ],
        ),
        timeout=WAIT,
    )
    state = stub.GetInstance(
        pb.GetInstanceRequest(instanceId="timer", getInputsAndOutputs=True), timeout=WAIT
    ).workflowState

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "createTimer action 1 is not a valid timestamp" in refused.value.details()
    assert state.workflowStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert state.output.value == '"done"'
