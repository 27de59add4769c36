"""Workflow versioning (named versions) and patching, across worker restarts.

As durabletask-go's backend (backend/orchestration.go) and daprd's orchestrator (versioning.go)
handle it: the worker reports ``WorkflowResponse.version{name, patches}``; the
sidecar stores it on the turn's workflowStarted, and on replay the SDK picks the version and
the patches from there. A version the worker no longer has stalls the instance (STALLED, not
terminal). Non-determinism and versioning scenarios as in dapr/python-sdk's durabletask tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import pytest
from dapr.ext.workflow import WorkflowRuntime, WorkflowStatus
from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.tests.harness import WAIT, WorkflowApp, wait_until


def _register_v1(runtime: WorkflowRuntime, *, latest: bool) -> None:
    @runtime.versioned_workflow(name="order_flow", version_name="v1", is_latest=latest)
    def order_flow_v1(ctx, _):
        yield ctx.wait_for_external_event("go")
        return "v1"


def _register_v2(runtime: WorkflowRuntime, *, latest: bool) -> None:
    @runtime.versioned_workflow(name="order_flow", version_name="v2", is_latest=latest)
    def order_flow_v2(ctx, _):
        yield ctx.wait_for_external_event("go")
        return "v2"


def _restart_worker(app: WorkflowApp, *registrations) -> None:
    app.stop_runtime()
    runtime = app.new_runtime()
    for register in registrations:
        register(runtime)
    app.runtime = runtime
    app.start(runtime)


def test_versioned_workflow_new_instance_uses_latest(app: WorkflowApp, stub) -> None:
    _register_v1(app.runtime, latest=False)
    _register_v2(app.runtime, latest=True)
    client = app.start()
    iid = client.schedule_new_workflow("order_flow")
    client.raise_workflow_event(iid, "go")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    raw = stub.GetInstance(pb.GetInstanceRequest(instanceId=iid))

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"v2"'
    assert raw.workflowState.version.value == "v2"


def test_versioned_workflow_in_flight_keeps_its_version(app: WorkflowApp) -> None:
    _register_v1(app.runtime, latest=True)
    client = app.start()
    old = client.schedule_new_workflow("order_flow")
    client.wait_for_workflow_start(old, timeout_in_seconds=WAIT)  # its first turn runs as v1

    # Deploy v2 as latest while keeping v1: the in-flight instance must replay as v1.
    _restart_worker(
        app, lambda rt: _register_v1(rt, latest=False), lambda rt: _register_v2(rt, latest=True)
    )
    new = client.schedule_new_workflow("order_flow")
    client.raise_workflow_event(old, "go")
    client.raise_workflow_event(new, "go")
    old_state = client.wait_for_workflow_completion(old, timeout_in_seconds=WAIT)
    new_state = client.wait_for_workflow_completion(new, timeout_in_seconds=WAIT)

    assert old_state is not None and old_state.serialized_output == '"v1"'
    assert new_state is not None and new_state.serialized_output == '"v2"'


def test_versioned_workflow_missing_version_stalls(app: WorkflowApp, stub) -> None:
    _register_v1(app.runtime, latest=True)
    client = app.start()
    iid = client.schedule_new_workflow("order_flow")
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)  # its first turn runs as v1

    _restart_worker(app, lambda rt: _register_v2(rt, latest=True))
    client.raise_workflow_event(iid, "go")
    assert wait_until(
        lambda: (
            (s := client.get_workflow_state(iid)) is not None
            and s.runtime_status == WorkflowStatus.STALLED
        )
    )
    state = client.get_workflow_state(iid)
    history = [e.event_type.value for e in client.get_workflow_history(iid)]

    assert state is not None
    assert state.runtime_status == WorkflowStatus.STALLED
    assert "executionStalled" in history
    assert "executionCompleted" not in history
    # STALLED is not terminal: purge refuses it (daprd: a plain error, UNKNOWN; its text is
    # api.ErrStalled's "workflow is stalled" on a non-recursive purge, ErrNotCompleted's on the
    # SDK's default recursive one, docs/sidecar-apis.md "Differences").
    with pytest.raises(grpc.RpcError) as err:
        client.purge_workflow(iid)
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert err.value.details() == f"workflow '{iid}' is stalled"
    assert client.get_workflow_state(iid) is not None


def _register_patched(runtime: WorkflowRuntime, *, with_patch: bool, log: list[str]) -> None:
    @runtime.activity(name="old_step")
    def old_step(ctx, _):
        log.append("old")
        return "old"

    @runtime.activity(name="new_step")
    def new_step(ctx, _):
        log.append("new")
        return "new"

    @runtime.workflow(name="patched_flow")
    def patched_flow(ctx, _):
        if with_patch and ctx.is_patched("use-new-step"):
            first = yield ctx.call_activity(new_step)
        else:
            first = yield ctx.call_activity(old_step)
        second = yield ctx.wait_for_external_event("go")
        return [first, second]


def test_patch_new_instance_takes_patched_path_and_replays(app: WorkflowApp) -> None:
    log: list[str] = []
    _register_patched(app.runtime, with_patch=True, log=log)
    client = app.start()
    iid = client.schedule_new_workflow("patched_flow")
    assert wait_until(lambda: log == ["new"])

    # Replay happens on every later turn: if the sidecar lost the recorded patch, the replay
    # would take the old path and hit a NonDeterminismError (old_step vs new_step).
    _restart_worker(app, lambda rt: _register_patched(rt, with_patch=True, log=log))
    client.raise_workflow_event(iid, "go", data="done")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.failure_details
    assert json.loads(state.serialized_output) == ["new", "done"]
    assert log == ["new"]


def test_patch_in_flight_instance_keeps_unpatched_path(app: WorkflowApp) -> None:
    log: list[str] = []
    _register_patched(app.runtime, with_patch=False, log=log)
    client = app.start()
    old = client.schedule_new_workflow("patched_flow")
    assert wait_until(lambda: log == ["old"])

    _restart_worker(app, lambda rt: _register_patched(rt, with_patch=True, log=log))
    new = client.schedule_new_workflow("patched_flow")
    client.raise_workflow_event(old, "go", data="o")
    client.raise_workflow_event(new, "go", data="n")
    old_state = client.wait_for_workflow_completion(old, timeout_in_seconds=WAIT)
    new_state = client.wait_for_workflow_completion(new, timeout_in_seconds=WAIT)

    assert old_state is not None
    assert old_state.runtime_status == WorkflowStatus.COMPLETED, old_state.failure_details
    assert json.loads(old_state.serialized_output) == ["old", "o"]
    assert new_state is not None
    assert json.loads(new_state.serialized_output) == ["new", "n"]
    assert log == ["old", "new"]


def test_non_determinism_fails_instance(app: WorkflowApp) -> None:
    @app.runtime.activity(name="step_a")
    def step_a(ctx, _):
        return "a"

    @app.runtime.workflow(name="shifty")
    def shifty(ctx, _):
        yield ctx.call_activity(step_a)
        return (yield ctx.wait_for_external_event("go"))

    client = app.start()
    iid = client.schedule_new_workflow(shifty)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)  # its first turn runs as before

    def changed(rt: WorkflowRuntime) -> None:
        @rt.activity(name="step_b")
        def step_b(ctx, _):
            return "b"

        @rt.workflow(name="shifty")
        def shifty_changed(ctx, _):
            yield ctx.call_activity(step_b)
            return (yield ctx.wait_for_external_event("go"))

    _restart_worker(app, changed)
    client.raise_workflow_event(iid, "go", data=1)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "NonDeterminismError"


def test_stalled_instance_runs_on_when_a_worker_with_its_version_connects(
    app: WorkflowApp, stub
) -> None:
    """daprd retries a stalled turn once the stalling worker is gone, so a worker deployed
    with the missing version finishes the instance without a restart of the sidecar (the
    SDK's versioning example, part2); the stall is recorded once."""
    _register_v1(app.runtime, latest=True)
    client = app.start()
    iid = client.schedule_new_workflow("order_flow")
    # The first turn (which records v1) is committed before that worker goes.
    assert wait_until(
        lambda: "timerCreated" in [e.event_type.value for e in client.get_workflow_history(iid)]
    )
    _restart_worker(app, lambda rt: _register_v2(rt, latest=True))
    client.raise_workflow_event(iid, "go")
    assert wait_until(
        lambda: client.get_workflow_state(iid).runtime_status == WorkflowStatus.STALLED
    )

    _restart_worker(
        app, lambda rt: _register_v1(rt, latest=False), lambda rt: _register_v2(rt, latest=True)
    )
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    history = [e.event_type.value for e in client.get_workflow_history(iid)]

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"v1"'
    assert history.count("executionStalled") == 1


def test_patch_check_removed_under_a_running_instance_stalls(app: WorkflowApp, stub) -> None:
    @app.runtime.workflow(name="patch_check")
    def with_check(ctx, _):
        ctx.is_patched("patch1")
        yield ctx.wait_for_external_event("go")
        return 1

    client = app.start()
    iid = client.schedule_new_workflow("patch_check")
    assert wait_until(
        lambda: "timerCreated" in [e.event_type.value for e in client.get_workflow_history(iid)]
    )

    def without_check(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="patch_check")
        def patch_check(ctx, _):
            yield ctx.wait_for_external_event("go")
            return 1

    _restart_worker(app, without_check)
    client.raise_workflow_event(iid, "go")
    assert wait_until(
        lambda: client.get_workflow_state(iid).runtime_status == WorkflowStatus.STALLED
    )
    raw = stub.GetInstanceHistory(pb.GetInstanceHistoryRequest(instanceId=iid))
    stalls = [e.executionStalled for e in raw.events if e.HasField("executionStalled")]

    assert [(s.reason, s.description) for s in stalls] == [
        (pb.PATCH_MISMATCH, "Patch mismatch. History patches: [patch1], current patches: []. ")
    ]


def test_patch_added_before_a_pending_event_wait_completes(app: WorkflowApp) -> None:
    """The SDK's versioning example, test 5: code that gains a patched step before the event
    wait an instance is in replays the unpatched branch, whose activity reuses the id of the
    wait's timer; daprd accepts that and so must the sidecar (it used to refuse the turn with
    "action id 2 is already used", and the instance stalled)."""
    log: list[str] = []

    def deploy(patched: bool) -> Callable[[WorkflowRuntime], None]:
        def register(rt: WorkflowRuntime) -> None:
            @rt.activity(name="say")
            def say(ctx, text):
                log.append(text)

            @rt.workflow(name="patching")
            def patching(ctx, _):
                yield ctx.call_activity(say, input="start")
                if patched:
                    branch = "patched" if ctx.is_patched("patch1") else "not patched"
                    yield ctx.call_activity(say, input=branch)
                yield ctx.wait_for_external_event("event")
                return "done"

        return register

    deploy(False)(app.runtime)
    client = app.start()
    iid = client.schedule_new_workflow("patching")
    assert wait_until(
        lambda: "timerCreated" in [e.event_type.value for e in client.get_workflow_history(iid)]
    )
    _restart_worker(app, deploy(True))
    client.raise_workflow_event(iid, "event")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert log == ["start", "not patched"]
