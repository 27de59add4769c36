"""Child workflows: results, failures, retries (ID reuse), recursive terminate and purge.

Scenarios as in dapr/python-sdk's durabletask end-to-end tests and daprd's workflow integration
suite; createChildWorkflow and the parent's notification as durabletask-go's backend applies them
(backend/runtimestate/applier.go) and daprd answers an occupied child ID (childwf.go in dapr/dapr
pkg/actors/targets/workflow/orchestrator).
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta

import grpc
import pytest
from dapr.ext.workflow import RetryPolicy, TaskFailedError, WorkflowStatus, when_all
from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.tests.harness import (
    WAIT,
    WorkflowApp,
    history_types,
    in_thread,
    parked_waiters,
    wait_until,
)


def test_child_workflow_result_returned_to_parent(app: WorkflowApp) -> None:
    @app.runtime.activity(name="shout")
    def shout(ctx, text: str) -> str:
        return text.upper()

    @app.runtime.workflow(name="child")
    def child(ctx, text: str):
        return (yield ctx.call_activity(shout, input=text))

    @app.runtime.workflow(name="parent")
    def parent(ctx, text: str):
        result = yield ctx.call_child_workflow(child, input=text)
        return f"parent got {result}"

    client = app.start()
    iid = client.schedule_new_workflow(parent, input="hi")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    child_state = client.get_workflow_state(f"{iid}:0001")

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"parent got HI"'
    assert child_state is not None
    assert child_state.runtime_status == WorkflowStatus.COMPLETED
    assert child_state.name == "child"
    assert child_state.serialized_input == '"hi"'
    assert child_state.serialized_output == '"HI"'
    types = history_types(client, iid)
    assert "childWorkflowInstanceCreated" in types
    assert "childWorkflowInstanceCompleted" in types


def test_child_workflow_reports_parent_instance(app: WorkflowApp, stub) -> None:
    @app.runtime.workflow(name="kid")
    def kid(ctx, _):
        return 1

    @app.runtime.workflow(name="mum")
    def mum(ctx, _):
        return (yield ctx.call_child_workflow(kid, instance_id="kid-of-mum"))

    client = app.start()
    iid = client.schedule_new_workflow(mum, instance_id="mum-1")
    client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    res = stub.GetInstance(pb.GetInstanceRequest(instanceId="kid-of-mum"))

    assert res.exists
    assert res.workflowState.parentInstanceId.value == "mum-1"
    assert res.workflowState.workflowStatus == pb.ORCHESTRATION_STATUS_COMPLETED


def test_child_workflow_fan_out_uses_derived_ids(app: WorkflowApp) -> None:
    counter = 0
    lock = threading.Lock()

    @app.runtime.activity(name="increment")
    def increment(ctx, _):
        nonlocal counter
        with lock:
            counter += 1

    @app.runtime.workflow(name="worker_child")
    def worker_child(ctx, count: int):
        for _ in range(count):
            yield ctx.call_activity(increment)
        return ctx.instance_id

    @app.runtime.workflow(name="fan_parent")
    def fan_parent(ctx, count: int):
        return (
            yield when_all([ctx.call_child_workflow(worker_child, input=3) for _ in range(count)])
        )

    client = app.start()
    iid = client.schedule_new_workflow(fan_parent, input=10)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == [f"{iid}:{n:04x}" for n in range(1, 11)]
    assert counter == 30


def test_child_workflow_failure_surfaces_in_parent(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="bad_child")
    def bad_child(ctx, _):
        raise RuntimeError("child blew up")

    @app.runtime.workflow(name="catching_parent")
    def catching_parent(ctx, _):
        try:
            yield ctx.call_child_workflow(bad_child)
        except TaskFailedError as err:
            return {"message": err.details.message, "type": err.details.error_type}
        return None

    @app.runtime.workflow(name="uncaught_parent")
    def uncaught_parent(ctx, _):
        yield ctx.call_child_workflow(bad_child)

    client = app.start()
    caught = client.schedule_new_workflow(catching_parent)
    uncaught = client.schedule_new_workflow(uncaught_parent)
    caught_state = client.wait_for_workflow_completion(caught, timeout_in_seconds=WAIT)
    uncaught_state = client.wait_for_workflow_completion(uncaught, timeout_in_seconds=WAIT)
    child_state = client.get_workflow_state(f"{caught}:0001")

    assert caught_state is not None
    assert caught_state.runtime_status == WorkflowStatus.COMPLETED
    output = json.loads(caught_state.serialized_output)
    assert output == {"message": "child blew up", "type": "RuntimeError"}
    assert uncaught_state is not None
    assert uncaught_state.runtime_status == WorkflowStatus.FAILED
    assert uncaught_state.failure_details is not None
    assert uncaught_state.failure_details.error_type == "TaskFailedError"
    assert (
        "Sub-orchestration task #1 failed: child blew up" in uncaught_state.failure_details.message
    )
    assert child_state is not None and child_state.runtime_status == WorkflowStatus.FAILED
    assert "childWorkflowInstanceFailed" in history_types(client, caught)


def test_child_workflow_retry_policy_reuses_child_id(app: WorkflowApp) -> None:
    child_runs = 0
    activity_runs = 0
    policy = RetryPolicy(
        first_retry_interval=timedelta(seconds=0.05),
        max_number_of_attempts=3,
        backoff_coefficient=1,
        max_retry_interval=timedelta(seconds=0.5),
    )

    @app.runtime.activity(name="always_throws")
    def always_throws(ctx, _):
        nonlocal activity_runs
        activity_runs += 1
        raise RuntimeError("Kah-BOOOOM!!!")

    @app.runtime.workflow(name="retry_child")
    def retry_child(ctx, _):
        nonlocal child_runs
        if not ctx.is_replaying:
            child_runs += 1
        yield ctx.call_activity(always_throws, retry_policy=policy)

    @app.runtime.workflow(name="retry_parent")
    def retry_parent(ctx, _):
        yield ctx.call_child_workflow(retry_child, retry_policy=policy)

    client = app.start()
    iid = client.schedule_new_workflow(retry_parent)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "TaskFailedError"
    assert "Sub-orchestration task #" in state.failure_details.message
    assert state.failure_details.message.endswith("failed: Kah-BOOOOM!!!")
    assert activity_runs == 9
    assert child_runs == 3
    types = history_types(client, iid)
    assert types.count("childWorkflowInstanceCreated") == 3
    assert types.count("childWorkflowInstanceFailed") == 3


def test_child_workflow_retry_succeeds_on_second_attempt(app: WorkflowApp) -> None:
    attempts = 0

    @app.runtime.workflow(name="flaky_child")
    def flaky_child(ctx, _):
        nonlocal attempts
        if not ctx.is_replaying:
            attempts += 1
        if attempts < 2:
            raise RuntimeError("first attempt fails")
        return "child ok"

    policy = RetryPolicy(first_retry_interval=timedelta(seconds=0.1), max_number_of_attempts=3)

    @app.runtime.workflow(name="patient_parent")
    def patient_parent(ctx, _):
        return (yield ctx.call_child_workflow(flaky_child, retry_policy=policy))

    client = app.start()
    iid = client.schedule_new_workflow(patient_parent)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"child ok"'
    assert attempts == 2


def test_child_workflow_id_occupied_by_running_instance_fails_parent_task(
    app: WorkflowApp,
) -> None:
    @app.runtime.workflow(name="squatter")
    def squatter(ctx, _):
        yield ctx.wait_for_external_event("leave")

    @app.runtime.workflow(name="wants_id")
    def wants_id(ctx, _):
        try:
            yield ctx.call_child_workflow(squatter, instance_id="taken-id")
        except TaskFailedError as err:
            return err.details.message
        return "created"

    client = app.start()
    client.schedule_new_workflow(squatter, instance_id="taken-id")
    iid = client.schedule_new_workflow(wants_id)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    squatter_state = client.get_workflow_state("taken-id")

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert "already exists" in json.loads(state.serialized_output)
    assert squatter_state is not None
    assert squatter_state.runtime_status == WorkflowStatus.RUNNING


@pytest.mark.parametrize("recursive", [True, False], ids=["recursive", "non_recursive"])
def test_terminate_parent_with_children(app: WorkflowApp, recursive: bool) -> None:
    activity_runs = 0
    lock = threading.Lock()

    @app.runtime.activity(name="after_timer")
    def after_timer(ctx, _):
        nonlocal activity_runs
        with lock:
            activity_runs += 1

    @app.runtime.workflow(name="sleepy_child")
    def sleepy_child(ctx, _):
        yield ctx.create_timer(timedelta(seconds=2))
        yield ctx.call_activity(after_timer)
        return "child done"

    @app.runtime.workflow(name="big_parent")
    def big_parent(ctx, count: int):
        yield when_all([ctx.call_child_workflow(sleepy_child) for _ in range(count)])

    client = app.start()
    iid = client.schedule_new_workflow(big_parent, input=5)
    children = [f"{iid}:{n:04x}" for n in range(1, 6)]
    for child in children:
        assert client.wait_for_workflow_start(child, timeout_in_seconds=WAIT) is not None
    client.terminate_workflow(iid, output="stop", recursive=recursive)
    parent = client.get_workflow_state(iid)

    assert parent is not None
    assert parent.runtime_status == WorkflowStatus.TERMINATED
    assert parent.serialized_output == '"stop"'
    if recursive:
        for child in children:
            st = client.wait_for_workflow_completion(child, timeout_in_seconds=WAIT)
            assert st is not None and st.runtime_status == WorkflowStatus.TERMINATED
        # Nothing may run after termination, not even once the children's timers fall due.
        # A child started now has the same timer, due after theirs: timers are taken in the
        # order they fall due, so once its activity has run theirs have been passed.
        canary = client.schedule_new_workflow(sleepy_child)
        st = client.wait_for_workflow_completion(canary, timeout_in_seconds=WAIT)
        assert st is not None and st.runtime_status == WorkflowStatus.COMPLETED
        assert activity_runs == 1  # the canary's own
        for child in children:
            types = history_types(client, child)
            assert "timerFired" not in types and "taskScheduled" not in types
    else:
        for child in children:
            st = client.wait_for_workflow_completion(child, timeout_in_seconds=WAIT)
            assert st is not None and st.runtime_status == WorkflowStatus.COMPLETED
        assert activity_runs == 5
        # The children's completions reach a terminated parent and are dropped.
        assert client.get_workflow_state(iid).runtime_status == WorkflowStatus.TERMINATED


def test_purge_recursive_removes_all_descendants(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="grandchild")
    def grandchild(ctx, _):
        return "gc"

    @app.runtime.workflow(name="middle")
    def middle(ctx, _):
        return (yield ctx.call_child_workflow(grandchild, instance_id=f"{ctx.instance_id}_L2"))

    @app.runtime.workflow(name="root")
    def root(ctx, _):
        return (yield ctx.call_child_workflow(middle, instance_id=f"{ctx.instance_id}_L1"))

    client = app.start()
    iid = client.schedule_new_workflow(root, instance_id="tree")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.serialized_output == '"gc"'
    family = ["tree", "tree_L1", "tree_L1_L2"]
    assert all(client.get_workflow_state(i) is not None for i in family)

    client.purge_workflow("tree")

    for i in family:
        assert client.get_workflow_state(i) is None
        with pytest.raises(grpc.RpcError) as err:
            client.get_workflow_history(i)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert not set(family) & set(client.iter_workflow_instance_ids())
    # Purged IDs are free again.
    again = client.schedule_new_workflow(root, instance_id="tree")
    done = client.wait_for_workflow_completion(again, timeout_in_seconds=WAIT)
    assert done is not None and done.runtime_status == WorkflowStatus.COMPLETED


def test_purge_non_recursive_keeps_children(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="leaf")
    def leaf(ctx, _):
        return "leaf"

    @app.runtime.workflow(name="stem")
    def stem(ctx, _):
        return (yield ctx.call_child_workflow(leaf, instance_id="stem-leaf"))

    client = app.start()
    iid = client.schedule_new_workflow(stem, instance_id="stem")
    client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    client.purge_workflow("stem", recursive=False)

    assert client.get_workflow_state("stem") is None
    leaf_state = client.get_workflow_state("stem-leaf")
    assert leaf_state is not None and leaf_state.runtime_status == WorkflowStatus.COMPLETED


def test_terminate_recursive_reaches_grandchildren(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="deep_leaf")
    def deep_leaf(ctx, _):
        yield ctx.wait_for_external_event("never")

    @app.runtime.workflow(name="deep_mid")
    def deep_mid(ctx, _):
        yield ctx.call_child_workflow(deep_leaf, instance_id=f"{ctx.instance_id}_L2")

    @app.runtime.workflow(name="deep_root")
    def deep_root(ctx, _):
        yield ctx.call_child_workflow(deep_mid, instance_id=f"{ctx.instance_id}_L1")

    client = app.start()
    client.schedule_new_workflow(deep_root, instance_id="deep")
    assert client.wait_for_workflow_start("deep_L1_L2", timeout_in_seconds=WAIT) is not None
    assert wait_until(
        lambda: (
            (s := client.get_workflow_state("deep_L1_L2")) is not None
            and s.runtime_status == WorkflowStatus.RUNNING
        ),
        timeout=10,
    )
    client.terminate_workflow("deep")

    for i in ["deep", "deep_L1", "deep_L1_L2"]:
        st = client.wait_for_workflow_completion(i, timeout_in_seconds=WAIT)
        assert st is not None and st.runtime_status == WorkflowStatus.TERMINATED


def test_a_new_run_of_the_id_is_not_told_the_old_runs_end(app: WorkflowApp, sidecar) -> None:
    """A recursive terminate finishes its children after the parent's end is on disk; the ID
    may be started again meanwhile, and a waiter on the new run must not get the old outcome."""

    @app.runtime.workflow(name="idle_child")
    def idle_child(ctx, _):
        yield ctx.wait_for_external_event("never")

    @app.runtime.workflow(name="parent_of_idle")
    def parent_of_idle(ctx, _):
        yield ctx.call_child_workflow(idle_child)

    @app.runtime.workflow(name="second_run")
    def second_run(ctx, _):
        return (yield ctx.wait_for_external_event("go"))

    client = app.start()
    client.schedule_new_workflow(parent_of_idle, instance_id="P")
    assert client.wait_for_workflow_start("P:0001", timeout_in_seconds=WAIT) is not None
    # Both idle: the parent's turn that started the child is applied, the child waits.
    assert wait_until(lambda: "childWorkflowInstanceCreated" in history_types(client, "P"))
    assert wait_until(lambda: history_types(client, "P:0001")[-1:] == ["timerCreated"])

    engine = sidecar.engine
    terminate_children = engine.turns.terminate_children
    children_reached, children_gate = threading.Event(), threading.Event()

    async def held_terminate_children(inst, output):  # holds open the window the bug needs
        children_reached.set()  # the parent's end is on disk, and it has left memory
        await asyncio.get_running_loop().run_in_executor(None, children_gate.wait, WAIT)
        await terminate_children(inst, output)

    engine.turns.terminate_children = held_terminate_children
    try:
        terminating, _ = in_thread(
            lambda: client.terminate_workflow("P", output="stop", recursive=True)
        )
        assert children_reached.wait(WAIT)
        ended = client.get_workflow_state("P")
        assert ended is not None and ended.runtime_status == WorkflowStatus.TERMINATED
        client.schedule_new_workflow(second_run, instance_id="P")
        waiter = app.new_client()
        waiting, box = in_thread(
            lambda: waiter.wait_for_workflow_completion("P", timeout_in_seconds=WAIT)
        )
        assert wait_until(lambda: parked_waiters(sidecar, "P") == 1)  # on the new run
    finally:
        children_gate.set()
    # The old run's end has been announced (the terminate call parks on the ID next, as
    # daprd's does) and the new run's waiter is still waiting.
    assert wait_until(lambda: parked_waiters(sidecar, "P") == 2)
    assert waiting.is_alive()
    running = client.get_workflow_state("P")
    client.raise_workflow_event("P", "go", data="second")
    waiting.join(WAIT)
    terminating.join(WAIT)

    assert running is not None and running.runtime_status == WorkflowStatus.RUNNING
    assert "error" not in box
    assert box["result"].runtime_status == WorkflowStatus.COMPLETED
    assert box["result"].serialized_output == '"second"'
