"""Fuzzing the gRPC edges with random field values: the workflow protocol's client calls (what
dapr.ext.workflow's client sends), the Dapr runtime API (workflows, state, metadata), and a
worker's completions. Every answer is a documented one (oracle.py); afterwards the sidecar is
healthy."""

from __future__ import annotations

from typing import Any

from dapr.ext.workflow._durabletask.internal import protos as pb
from dapr.proto import api_v1, common_v1
from google.protobuf import wrappers_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.tests.fuzz.oracle import Target, call_grpc, examples
from sidecar.tests.fuzz.strategies import int32s, protobuf_text, timestamps
from sidecar.tests.harness import WorkflowApp

IDS = ["fz-a", "fz-b", "fz-c", "fz-d"]
ids = st.sampled_from(IDS) | protobuf_text
maybe_text = st.none() | protobuf_text | st.sampled_from(['"json"', "{}", "x" * 20_000])


def _sv(text: str | None) -> wrappers_pb2.StringValue | None:
    return None if text is None else wrappers_pb2.StringValue(value=text)


def _start(iid: str, name: str, data: str | None, version: str | None, at: Any) -> Any:
    request = pb.CreateInstanceRequest(
        instanceId=iid, name=name, input=_sv(data), version=_sv(version)
    )
    if at is not None:
        request.scheduledStartTimestamp.CopyFrom(at)
    return request


_names = st.sampled_from(["waits"]) | protobuf_text
# Scheduled starts: none, or any timestamp not in the future (a protocol wait on a start years
# away would only time out), most of them outside a Timestamp's valid range.
_past = timestamps.filter(lambda t: t is None or t.seconds < 1_700_000_000)
taskhub_calls = st.one_of(
    st.builds(
        lambda *a: ("StartInstance", _start(*a)),
        ids,
        _names,
        maybe_text,
        st.none() | protobuf_text,
        _past,
    ),
    st.builds(
        lambda iid, name, data: (
            "RaiseEvent",
            pb.RaiseEventRequest(instanceId=iid, name=name, input=_sv(data)),
        ),
        ids,
        st.sampled_from(["go"]) | protobuf_text,
        maybe_text,
    ),
    st.builds(
        lambda iid, out, rec: (
            "TerminateInstance",
            pb.TerminateRequest(instanceId=iid, output=_sv(out), recursive=rec),
        ),
        ids,
        maybe_text,
        st.booleans(),
    ),
    st.builds(
        lambda iid, reason: (
            "SuspendInstance",
            pb.SuspendRequest(instanceId=iid, reason=_sv(reason)),
        ),
        ids,
        maybe_text,
    ),
    st.builds(
        lambda iid, reason: (
            "ResumeInstance",
            pb.ResumeRequest(instanceId=iid, reason=_sv(reason)),
        ),
        ids,
        maybe_text,
    ),
    st.builds(
        lambda iid, rec, force: (
            "PurgeInstances",
            pb.PurgeInstancesRequest(instanceId=iid, recursive=rec, force=force),
        ),
        ids,
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        lambda status: (
            "PurgeInstances",
            pb.PurgeInstancesRequest(
                purgeInstanceFilter=pb.PurgeInstanceFilter(runtimeStatus=[status])
            ),
        ),
        int32s,
    ),
    st.builds(
        lambda iid, payloads: (
            "GetInstance",
            pb.GetInstanceRequest(instanceId=iid, getInputsAndOutputs=payloads),
        ),
        ids,
        st.booleans(),
    ),
    st.builds(
        lambda iid: ("GetInstanceHistory", pb.GetInstanceHistoryRequest(instanceId=iid)), ids
    ),
    st.builds(
        lambda size, token: (
            "ListInstanceIDs",
            pb.ListInstanceIDsRequest(pageSize=size, continuationToken=token),
        ),
        st.none() | st.integers(0, 2**32 - 1),
        st.none() | protobuf_text,
    ),
    st.builds(
        lambda src, event, new, data, over, child: (
            "RerunWorkflowFromEvent",
            pb.RerunWorkflowFromEventRequest(
                sourceInstanceID=src,
                eventID=event,
                newInstanceID=new,
                input=_sv(data),
                overwriteInput=over,
                newChildWorkflowInstanceID=child,
            ),
        ),
        ids,
        st.integers(0, 2**32 - 1),
        st.none() | protobuf_text,
        maybe_text,
        st.booleans(),
        st.none() | protobuf_text,
    ),
)


@settings(max_examples=examples(250))
@given(call=taskhub_calls)
def _taskhub_example(target: Target, call: tuple[str, Any]) -> None:
    method, request = call
    target.tally.examples += 1
    call_grpc(getattr(target.taskhub, method), request, f"{method} {request}"[:300], target.tally)


def test_fuzz_workflow_protocol_client_calls(target: Target) -> None:
    app = WorkflowApp(target.sidecar.grpc_address)
    try:

        @app.runtime.workflow(name="waits")
        def waits(ctx, _):
            return (yield ctx.wait_for_external_event("go"))

        client = app.start()
        for iid in IDS:
            client.schedule_new_workflow(waits, instance_id=iid)
        client.terminate_workflow(IDS[1])
        _taskhub_example(target)
    finally:
        app.close()
    target.assert_healthy()


_CONCURRENCY = st.sampled_from([0, 1, 2]) | int32s


def _state_item(key: str, value: bytes, etag: str | None, concurrency: int) -> Any:
    return common_v1.StateItem(
        key=key,
        value=value,
        etag=None if etag is None else common_v1.Etag(value=etag),
        options=common_v1.StateOptions(concurrency=concurrency),  # type: ignore[arg-type]
    )


_items = st.builds(
    _state_item,
    st.sampled_from(["k1", "k2"]) | protobuf_text,
    st.binary(max_size=100),
    st.none() | protobuf_text | st.integers(0, 2**64).map(str),
    _CONCURRENCY,
)
_stores = st.sampled_from(["statestore"]) | protobuf_text
_options = st.dictionaries(
    st.sampled_from(["dapr.workflow.start_time", "other"]) | protobuf_text,
    protobuf_text | st.sampled_from(["2009-11-10T23:00:00Z", "1-01-01T00:00:00+00:00"]),
    max_size=2,
)
_BY_INSTANCE_ID: dict[str, Any] = {
    "GetWorkflowBeta1": api_v1.GetWorkflowRequest,
    "TerminateWorkflowBeta1": api_v1.TerminateWorkflowRequest,
    "PauseWorkflowBeta1": api_v1.PauseWorkflowRequest,
    "ResumeWorkflowBeta1": api_v1.ResumeWorkflowRequest,
    "PurgeWorkflowBeta1": api_v1.PurgeWorkflowRequest,
}
dapr_calls = st.one_of(
    st.builds(
        lambda iid, name, data, opts: (
            "StartWorkflowBeta1",
            api_v1.StartWorkflowRequest(
                instance_id=iid,
                workflow_component="dapr",
                workflow_name=name,
                input=data,
                options=opts,
            ),
        ),
        ids,
        _names,
        st.binary(max_size=200),
        _options,
    ),
    st.builds(
        lambda method, iid: (method, _BY_INSTANCE_ID[method](instance_id=iid)),
        st.sampled_from(sorted(_BY_INSTANCE_ID)),
        ids,
    ),
    st.builds(
        lambda iid, name, data: (
            "RaiseEventWorkflowBeta1",
            api_v1.RaiseEventWorkflowRequest(instance_id=iid, event_name=name, event_data=data),
        ),
        ids,
        st.sampled_from(["go"]) | protobuf_text,
        st.binary(max_size=200),
    ),
    st.builds(
        lambda store, items: ("SaveState", api_v1.SaveStateRequest(store_name=store, states=items)),
        _stores,
        st.lists(_items, max_size=3),
    ),
    st.builds(
        lambda store, key: ("GetState", api_v1.GetStateRequest(store_name=store, key=key)),
        _stores,
        st.sampled_from(["k1"]) | protobuf_text,
    ),
    st.builds(
        lambda store, keys: (
            "GetBulkState",
            api_v1.GetBulkStateRequest(store_name=store, keys=keys),
        ),
        _stores,
        st.lists(st.sampled_from(["k1"]) | protobuf_text, max_size=4),
    ),
    st.builds(
        lambda store, key, etag, c: (
            "DeleteState",
            api_v1.DeleteStateRequest(
                store_name=store,
                key=key,
                etag=None if etag is None else common_v1.Etag(value=etag),
                options=common_v1.StateOptions(concurrency=c),  # type: ignore[arg-type]
            ),
        ),
        _stores,
        st.sampled_from(["k1"]) | protobuf_text,
        st.none() | protobuf_text,
        _CONCURRENCY,
    ),
    st.builds(
        lambda store, items: (
            "DeleteBulkState",
            api_v1.DeleteBulkStateRequest(store_name=store, states=items),
        ),
        _stores,
        st.lists(_items, max_size=3),
    ),
    st.builds(
        lambda store, ops: (
            "ExecuteStateTransaction",
            api_v1.ExecuteStateTransactionRequest(
                storeName=store,
                operations=[
                    api_v1.TransactionalStateOperation(operationType=k, request=i) for k, i in ops
                ],
            ),
        ),
        _stores,
        st.lists(
            st.tuples(st.sampled_from(["upsert", "delete"]) | protobuf_text, _items), max_size=3
        ),
    ),
    st.builds(
        lambda key, value: ("SetMetadata", api_v1.SetMetadataRequest(key=key, value=value)),
        protobuf_text,
        protobuf_text,
    ),
    st.just(("GetMetadata", api_v1.GetMetadataRequest())),
)


@settings(max_examples=examples(250))
@given(call=dapr_calls)
def _dapr_example(target: Target, call: tuple[str, Any]) -> None:
    method, request = call
    target.tally.examples += 1
    call_grpc(getattr(target.dapr, method), request, f"{method} {request}"[:300], target.tally)


def test_fuzz_dapr_runtime_api_calls(target: Target) -> None:
    _dapr_example(target)
    target.assert_healthy()
