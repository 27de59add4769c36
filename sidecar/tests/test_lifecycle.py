"""Instance lifecycle: suspend/resume, terminate, purge, ID reuse, list, history, rerun.

The client calls as daprd serves them (ID reuse, terminate, suspend/resume, purge, list,
history, rerun: dapr/dapr pkg/runtime/wfengine and its workflow integration suite).
Deliberate deviation (lead's decision): ResumeInstance on an instance that is not suspended is
a no-op and the instance keeps running; daprd would forward executionResumed and the SDK would
fail the instance with WorkflowStateError (dapr.ext.workflow _durabletask worker.py).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus

from sidecar.tests.harness import WAIT, HandledResults, WorkflowApp, history_types, wait_until


def _register_waiter(app: WorkflowApp, name: str = "waiter"):
    @app.runtime.workflow(name=name)
    def waiter(ctx, _):
        return (yield ctx.wait_for_external_event("my_event"))

    return waiter


# -- suspend / resume -------------------------------------------------------------------------


def test_suspend_holds_events_until_resume(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    iid = client.schedule_new_workflow(waiter)

    client.pause_workflow(iid)
    suspended = client.get_workflow_state(iid)
    client.raise_workflow_event(iid, "my_event", data=42)
    # The event reaches the worker in a turn of the suspended instance, which holds it.
    assert wait_until(lambda: "eventRaised" in history_types(client, iid))
    still = client.get_workflow_state(iid)
    client.resume_workflow(iid)
    resumed = client.get_workflow_state(iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert suspended is not None and suspended.runtime_status == WorkflowStatus.SUSPENDED
    assert still is not None and still.runtime_status == WorkflowStatus.SUSPENDED
    assert resumed is not None
    assert resumed.runtime_status in (WorkflowStatus.RUNNING, WorkflowStatus.COMPLETED)
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == "42"
    types = history_types(client, iid)
    assert "executionSuspended" in types and "executionResumed" in types


def test_suspend_holds_timer_until_resume(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="timed")
    def timed(ctx, _):
        yield ctx.create_timer(timedelta(seconds=1))
        return "after timer"

    client = app.start()
    iid = client.schedule_new_workflow(timed)
    client.pause_workflow(iid)
    # The timer fires while the instance is suspended, and is held with it.
    assert wait_until(lambda: "timerFired" in history_types(client, iid))
    still = client.get_workflow_state(iid)
    client.resume_workflow(iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert still is not None and still.runtime_status == WorkflowStatus.SUSPENDED
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"after timer"'


def test_suspend_twice_is_harmless(sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    """Suspending twice is harmless, as on daprd. The SDK buffers a second executionSuspended and, on
    resume, re-suspends while draining its own buffer, appending to the list it iterates: an
    endless loop that eats memory. So the worker runs in its own (memory-capped) process, and
    the sidecar must not deliver a redundant suspend (as it does not deliver a redundant
    resume)."""
    from sidecar.tests.harness import new_client, spawn_worker, split_address, stop_process

    worker = spawn_worker(int(split_address(sidecar.grpc_address)[1]))
    # Suspend/resume block until a worker turn commits; a stuck worker must not hang the test.
    monkeypatch.setenv("DAPR_API_TIMEOUT_SECONDS", "10")
    client = new_client(sidecar.grpc_address)
    try:
        iid = client.schedule_new_workflow("suspendable")
        client.pause_workflow(iid)
        client.pause_workflow(iid)
        suspended = client.get_workflow_state(iid)
        client.raise_workflow_event(iid, "my_event", data="x")
        client.resume_workflow(iid)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=10)
    finally:
        stop_process(worker, timeout=5)
        client.close()

    assert suspended is not None and suspended.runtime_status == WorkflowStatus.SUSPENDED
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"x"'


def test_resume_running_instance_is_noop(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    iid = client.schedule_new_workflow(waiter)
    # A start returns once the instance is saved; resume it once it runs (its first turn done).
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)

    client.resume_workflow(iid)
    after_resume = client.get_workflow_state(iid)
    # Nothing was sent to the worker (it would fail the instance on executionResumed).
    assert "executionResumed" not in history_types(client, iid)
    client.raise_workflow_event(iid, "my_event", data="still alive")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert after_resume is not None
    assert after_resume.runtime_status == WorkflowStatus.RUNNING
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.failure_details is None
    assert state.serialized_output == '"still alive"'


def test_resume_after_resume_is_noop(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    iid = client.schedule_new_workflow(waiter)
    client.pause_workflow(iid)
    client.resume_workflow(iid)
    client.resume_workflow(iid)
    client.raise_workflow_event(iid, "my_event", data=1)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == "1"


def test_terminate_suspended_instance(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    iid = client.schedule_new_workflow(waiter)
    client.pause_workflow(iid)
    client.terminate_workflow(iid, output="bye")
    state = client.get_workflow_state(iid)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.TERMINATED
    assert state.serialized_output == '"bye"'


# -- terminate --------------------------------------------------------------------------------


def test_terminate_running_instance_sets_output(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    iid = client.schedule_new_workflow(waiter)
    client.terminate_workflow(iid, output="some reason for termination")
    # TerminateInstance returns once the instance is terminal (as durabletask-go's executor
    # and daprd block on it): no wait needed.
    state = client.get_workflow_state(iid)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.TERMINATED
    assert state.serialized_output == json.dumps("some reason for termination")
    assert history_types(client, iid)[-1] == "executionCompleted"
    # Events after termination are accepted and dropped.
    client.raise_workflow_event(iid, "my_event", data=1)
    assert client.get_workflow_state(iid).runtime_status == WorkflowStatus.TERMINATED


def test_terminate_completed_instance_is_noop(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="finisher")
    def finisher(ctx, _):
        return "finished"

    client = app.start()
    iid = client.schedule_new_workflow(finisher)
    client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    before = history_types(client, iid)
    client.terminate_workflow(iid, output="too late")
    state = client.get_workflow_state(iid)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"finished"'
    assert history_types(client, iid) == before


def test_terminate_while_activity_runs(app: WorkflowApp, sidecar) -> None:
    handled = HandledResults(sidecar)
    entered = threading.Event()
    release = threading.Event()

    @app.runtime.activity(name="blocking")
    def blocking(ctx, _):
        entered.set()
        release.wait(WAIT)
        return "activity result"

    @app.runtime.workflow(name="busy")
    def busy(ctx, _):
        return (yield ctx.call_activity(blocking))

    client = app.start()
    iid = client.schedule_new_workflow(busy)
    assert entered.wait(WAIT)
    try:
        client.terminate_workflow(iid, output="stopped")
        state = client.get_workflow_state(iid)
    finally:
        release.set()

    assert state is not None
    assert state.runtime_status == WorkflowStatus.TERMINATED
    assert state.serialized_output == '"stopped"'
    # The late activity result, once the sidecar has handled it, changed nothing.
    assert handled.wait_for('"activity result"')
    final = client.get_workflow_state(iid)
    assert final is not None
    assert final.runtime_status == WorkflowStatus.TERMINATED
    assert final.serialized_output == '"stopped"'


# -- purge ------------------------------------------------------------------------------------


def test_purge_running_instance_refused(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    iid = client.schedule_new_workflow(waiter)

    with pytest.raises(grpc.RpcError) as err:
        client.purge_workflow(iid)

    # daprd: a plain error (UNKNOWN) with durabletask-go's api.ErrNotCompleted text.
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert err.value.details() == (
        "failed to purge workflow state: orchestration has not yet completed"
    )
    state = client.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.RUNNING
    assert history_types(client, iid)


def test_purge_suspended_instance_refused(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    iid = client.schedule_new_workflow(waiter)
    client.pause_workflow(iid)

    with pytest.raises(grpc.RpcError) as err:
        client.purge_workflow(iid)

    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert err.value.details() == (
        "failed to purge workflow state: orchestration has not yet completed"
    )
    state = client.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.SUSPENDED


@pytest.mark.parametrize("ending", ["completed", "failed", "terminated"])
def test_purge_terminal_instance_removes_everything(app: WorkflowApp, ending: str) -> None:
    @app.runtime.workflow(name="ender")
    def ender(ctx, how: str):
        if how == "failed":
            raise RuntimeError("failing on purpose")
        if how == "terminated":
            yield ctx.wait_for_external_event("never")
        return how

    client = app.start()
    iid = client.schedule_new_workflow(ender, input=ending, instance_id=f"purge-{ending}")
    if ending == "terminated":
        client.terminate_workflow(iid)
    client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert iid in list(client.iter_workflow_instance_ids())

    client.purge_workflow(iid)

    assert client.get_workflow_state(iid) is None
    with pytest.raises(grpc.RpcError) as err:
        client.get_workflow_history(iid)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert iid not in list(client.iter_workflow_instance_ids())
    with pytest.raises(grpc.RpcError) as again:
        client.purge_workflow(iid)  # already gone
    assert again.value.code() == grpc.StatusCode.UNKNOWN
    assert (
        again.value.details()
        == "failed to purge workflow state: failed to fetch workflow state: no such instance exists"
    )
    # The ID is reusable with a fresh execution.
    client.schedule_new_workflow(ender, input="completed", instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"completed"'


# -- instance-ID reuse ------------------------------------------------------------------------


def test_id_reuse_while_running_refused(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    client.schedule_new_workflow(waiter, instance_id="dup-1", input="first")
    client.wait_for_workflow_start("dup-1", timeout_in_seconds=WAIT)  # a start does not wait

    with pytest.raises(grpc.RpcError) as err:
        client.schedule_new_workflow(waiter, instance_id="dup-1", input="second")

    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "an active workflow with ID 'dup-1' already exists" in err.value.details()
    state = client.get_workflow_state("dup-1")
    assert state is not None
    assert state.runtime_status == WorkflowStatus.RUNNING
    assert state.serialized_input == '"first"'


def test_id_reuse_while_pending_refused(app: WorkflowApp) -> None:
    from datetime import UTC, datetime

    waiter = _register_waiter(app)
    client = app.start()
    later = datetime.now(UTC) + timedelta(seconds=30)
    client.schedule_new_workflow(waiter, instance_id="dup-pending", start_at=later)

    with pytest.raises(grpc.RpcError) as err:
        client.schedule_new_workflow(waiter, instance_id="dup-pending")

    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_id_reuse_after_completion_starts_fresh(app: WorkflowApp) -> None:
    @app.runtime.activity(name="tag")
    def tag(ctx, value):
        return f"tagged:{value}"

    @app.runtime.workflow(name="reusable")
    def reusable(ctx, value):
        return (yield ctx.call_activity(tag, input=value))

    client = app.start()
    client.schedule_new_workflow(reusable, instance_id="reuse-1", input="one")
    first = client.wait_for_workflow_completion("reuse-1", timeout_in_seconds=WAIT)
    first_history = history_types(client, "reuse-1")
    client.schedule_new_workflow(reusable, instance_id="reuse-1", input="two")
    second = client.wait_for_workflow_completion("reuse-1", timeout_in_seconds=WAIT)

    assert first is not None and first.serialized_output == '"tagged:one"'
    assert second is not None
    assert second.runtime_status == WorkflowStatus.COMPLETED
    assert second.serialized_input == '"two"'
    assert second.serialized_output == '"tagged:two"'
    # Fresh execution: the old history is gone, not appended to.
    assert history_types(client, "reuse-1") == first_history
    assert list(client.iter_workflow_instance_ids()).count("reuse-1") == 1


def test_id_reuse_after_failure_starts_fresh(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="fails_first")
    def fails_first(ctx, value):
        if value == "bad":
            raise ValueError("bad value")
        return value

    client = app.start()
    client.schedule_new_workflow(fails_first, instance_id="reuse-f", input="bad")
    failed = client.wait_for_workflow_completion("reuse-f", timeout_in_seconds=WAIT)
    client.schedule_new_workflow(fails_first, instance_id="reuse-f", input="good")
    ok = client.wait_for_workflow_completion("reuse-f", timeout_in_seconds=WAIT)

    assert failed is not None and failed.runtime_status == WorkflowStatus.FAILED
    assert ok is not None
    assert ok.runtime_status == WorkflowStatus.COMPLETED
    assert ok.failure_details is None
    assert ok.serialized_output == '"good"'


def test_id_reuse_concurrent_double_start_one_wins(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    barrier = threading.Barrier(2)

    def start(n: int) -> str:
        barrier.wait()
        try:
            client.schedule_new_workflow(waiter, instance_id="race-1", input=n)
            return "ok"
        except grpc.RpcError as err:
            return err.code().name

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(start, [1, 2]))

    assert outcomes == ["ALREADY_EXISTS", "ok"]
    client.wait_for_workflow_start("race-1", timeout_in_seconds=WAIT)  # a start does not wait
    state = client.get_workflow_state("race-1")
    assert state is not None and state.runtime_status == WorkflowStatus.RUNNING


# -- list -------------------------------------------------------------------------------------


def test_list_instance_ids_pages_cover_all_exactly_once(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="noop")
    def noop(ctx, _):
        return None

    client = app.start()
    ids = {client.schedule_new_workflow(noop, instance_id=f"list-{n:03d}") for n in range(25)}
    for i in ids:
        client.wait_for_workflow_completion(i, timeout_in_seconds=WAIT)

    pages = []
    token = None
    while True:
        page = client.list_workflow_instance_ids(page_size=10, continuation_token=token)
        pages.append(page)
        if page.continuation_token is None:
            break
        token = page.continuation_token
        assert len(pages) < 10

    listed = [i for p in pages for i in p.instance_ids]
    assert [len(p.instance_ids) for p in pages] == [10, 10, 5]
    assert [p.continuation_token is None for p in pages] == [False, False, True]
    assert sorted(listed) == sorted(ids)
    assert set(client.iter_workflow_instance_ids(page_size=7)) == ids
    assert sorted(client.list_workflow_instance_ids().instance_ids) == sorted(ids)

    client.purge_workflow("list-003")
    assert set(client.iter_workflow_instance_ids()) == ids - {"list-003"}


def test_list_instance_ids_includes_running_and_pending(app: WorkflowApp) -> None:
    from datetime import UTC, datetime

    waiter = _register_waiter(app)
    client = app.start()
    client.schedule_new_workflow(waiter, instance_id="running-1")
    client.schedule_new_workflow(
        waiter, instance_id="pending-1", start_at=datetime.now(UTC) + timedelta(seconds=60)
    )

    assert set(client.iter_workflow_instance_ids()) == {"running-1", "pending-1"}


def test_list_instance_ids_empty_store(app: WorkflowApp) -> None:
    page = app.client.list_workflow_instance_ids(page_size=5)

    assert page.instance_ids == []
    assert page.continuation_token is None


# -- history ----------------------------------------------------------------------------------


def test_history_of_running_instance_is_committed_only(app: WorkflowApp) -> None:
    waiter = _register_waiter(app)
    client = app.start()
    iid = client.schedule_new_workflow(waiter)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)  # a start does not wait for it

    # The sentinel timer of an indefinite wait is recorded as timerCreated in the first turn.
    assert history_types(client, iid) == ["workflowStarted", "executionStarted", "timerCreated"]


def test_history_unknown_instance_not_found(app: WorkflowApp) -> None:
    with pytest.raises(grpc.RpcError) as err:
        app.client.get_workflow_history("does-not-exist")

    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- rerun ------------------------------------------------------------------------------------


def _register_three_steps(app: WorkflowApp, runs: list[str]):
    @app.runtime.activity(name="step")
    def step(ctx, value: str) -> str:
        runs.append(value)
        return f"<{value}>"

    @app.runtime.workflow(name="three")
    def three(ctx, _):
        a = yield ctx.call_activity(step, input="a")
        b = yield ctx.call_activity(step, input="b")
        c = yield ctx.call_activity(step, input="c")
        return [a, b, c]

    return three


def test_rerun_from_second_activity_reruns_only_later_steps(app: WorkflowApp) -> None:
    runs: list[str] = []
    three = _register_three_steps(app, runs)
    client = app.start()
    src = client.schedule_new_workflow(three, instance_id="rerun-src")
    client.wait_for_workflow_completion(src, timeout_in_seconds=WAIT)
    scheduled = [
        e for e in client.get_workflow_history(src) if e.event_type.value == "taskScheduled"
    ]
    assert all(e.is_rerunnable for e in scheduled)
    runs.clear()

    new_id = client.rerun_workflow_from_event(src, scheduled[1].event_id)
    state = client.wait_for_workflow_completion(new_id, timeout_in_seconds=WAIT)
    source = client.get_workflow_state(src)

    assert new_id and new_id != src
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == ["<a>", "<b>", "<c>"]
    assert runs == ["b", "c"]
    assert source is not None and source.runtime_status == WorkflowStatus.COMPLETED


def test_rerun_with_new_id_and_overwritten_input(app: WorkflowApp) -> None:
    runs: list[str] = []
    three = _register_three_steps(app, runs)
    client = app.start()
    src = client.schedule_new_workflow(three)
    client.wait_for_workflow_completion(src, timeout_in_seconds=WAIT)
    scheduled = [
        e for e in client.get_workflow_history(src) if e.event_type.value == "taskScheduled"
    ]
    runs.clear()

    new_id = client.rerun_workflow_from_event(
        src, scheduled[2].event_id, new_instance_id="rerun-new", input="z"
    )
    state = client.wait_for_workflow_completion("rerun-new", timeout_in_seconds=WAIT)

    assert new_id == "rerun-new"
    assert state is not None
    assert json.loads(state.serialized_output) == ["<a>", "<b>", "<z>"]
    assert runs == ["z"]


def test_rerun_error_codes(app: WorkflowApp) -> None:
    runs: list[str] = []
    three = _register_three_steps(app, runs)

    @app.runtime.workflow(name="kid")
    def kid(ctx, _):
        return "kid"

    @app.runtime.workflow(name="has_kid")
    def has_kid(ctx, _):
        return (yield ctx.call_child_workflow(kid, instance_id="rerun-kid"))

    waiter = _register_waiter(app)
    client = app.start()
    done = client.schedule_new_workflow(three, instance_id="rerun-done")
    client.wait_for_workflow_completion(done, timeout_in_seconds=WAIT)
    client.schedule_new_workflow(has_kid, instance_id="rerun-parent")
    client.wait_for_workflow_completion("rerun-parent", timeout_in_seconds=WAIT)
    client.schedule_new_workflow(waiter, instance_id="rerun-running")
    events = client.get_workflow_history(done)
    first_task = next(e for e in events if e.event_type.value == "taskScheduled")
    completion = events[-1]
    assert completion.event_type.value == "executionCompleted"

    def code_of(*args, **kwargs) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as err:
            client.rerun_workflow_from_event(*args, **kwargs)
        return err.value.code()

    assert code_of("rerun-running", 1) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of("rerun-missing", 1) == grpc.StatusCode.NOT_FOUND
    assert code_of(done, 999) == grpc.StatusCode.NOT_FOUND
    assert code_of("rerun-kid", 1) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(done, first_task.event_id, new_instance_id="rerun-parent") == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    assert code_of(done, first_task.event_id, new_instance_id=done) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    if completion.event_id >= 0:
        assert code_of(done, completion.event_id) == grpc.StatusCode.NOT_FOUND
    assert code_of(done, first_task.event_id, new_child_workflow_instance_id="x") == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    # Nothing was created by the refused reruns.
    assert set(client.iter_workflow_instance_ids()) == {
        "rerun-done",
        "rerun-parent",
        "rerun-kid",
        "rerun-running",
    }
    assert runs == ["a", "b", "c"]
