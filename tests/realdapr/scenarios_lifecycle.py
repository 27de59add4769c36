"""Scenarios: child workflows, continue-as-new, suspend/resume, terminate (recursive too), purge,
instance-ID reuse, scheduled start, and what a new worker receives after the old one stopped."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from dapr.ext.workflow import WorkflowRuntime, when_all

from .differential import Program, attempt, scenario


def _waiter(rt: WorkflowRuntime, name: str = "waiter") -> None:
    @rt.workflow(name=name)
    def waiter(ctx, _):
        return (yield ctx.wait_for_external_event("go"))


@scenario("child workflows")
def child_workflows(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="label")
        def label(ctx, text):
            p.record(text)
            return text.upper()

        @rt.workflow(name="child")
        def child(ctx, text):
            if text == "bad":
                raise ValueError("child refused its input")
            return (yield ctx.call_activity(label, input=text))

        @rt.workflow(name="parent")
        def parent(ctx, items):
            first = yield ctx.call_child_workflow(child, input=items[0], instance_id="kid-0")
            rest = yield when_all(
                [ctx.call_child_workflow(child, input=item) for item in items[1:]]
            )
            try:
                yield ctx.call_child_workflow(child, input="bad", instance_id="kid-bad")
            except Exception as exc:  # TaskFailedError with the child's failure
                return {"first": first, "rest": rest, "failed": str(exc)}

    p.worker(register)
    iid = p.client.schedule_new_workflow("parent", input=["a", "b", "c"], instance_id="parent-1")
    return {
        "parent": p.wait(iid),
        "kid-0": p.state("kid-0"),
        "kid-bad": p.state("kid-bad"),
        "ran": sorted(p.log),
    }


@scenario("continue-as-new")
def continue_as_new(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="tick")
        def tick(ctx, n):
            p.record(n)

        @rt.workflow(name="looper")
        def looper(ctx, state):
            yield ctx.call_activity(tick, input=state["n"])
            if state["n"] < 3:
                extra = None
                if state["n"] == 1:
                    extra = yield ctx.wait_for_external_event("more")
                ctx.continue_as_new(
                    {"n": state["n"] + 1, "seen": [*state["seen"], extra]}, save_events=True
                )
                return
            return state

    p.worker(register)
    iid = p.client.schedule_new_workflow("looper", input={"n": 0, "seen": []}, instance_id="loop-1")
    # Raised while generation 0 runs: carried to generation 1 by save_events.
    p.client.raise_workflow_event(iid, "more", data="carried")
    return {"final": p.wait(iid), "log": p.log, "history": p.history(iid)}


@scenario("suspend/resume")
def suspend_resume(p: Program) -> dict[str, Any]:
    p.worker(_waiter)
    iid = p.client.schedule_new_workflow("waiter", instance_id="pausable")
    p.client.wait_for_workflow_start(iid, timeout_in_seconds=30)
    p.client.pause_workflow(iid)
    suspended = p.wait_status(iid, "SUSPENDED")
    p.client.raise_workflow_event(iid, "go", data="while suspended")
    still = p.wait_status(iid, "SUSPENDED")
    p.client.resume_workflow(iid)
    final = p.wait(iid)
    return {
        "suspended": suspended,
        "after event": still,
        "final": final,
        "pause completed": attempt(lambda: p.client.pause_workflow(iid)),
        "resume completed": attempt(lambda: p.client.resume_workflow(iid)),
        "history": p.history(iid),
    }


@scenario("suspend/resume")
def resume_of_a_running_instance(p: Program) -> dict[str, Any]:
    """Resume sent to an instance that is not suspended (README: the sidecar ignores it)."""
    p.worker(_waiter)
    iid = p.client.schedule_new_workflow("waiter", instance_id="not-paused")
    p.wait_for_history(iid, "timerCreated")
    resumed = attempt(lambda: p.client.resume_workflow(iid))
    p.wait_for(lambda: False, timeout=1.5)  # time for a turn, if the engine sends one
    after = p.state(iid)
    if after.get("status") == "RUNNING":
        p.client.raise_workflow_event(iid, "go", data="later")
    final = p.wait(iid, timeout=15)

    def outcome(view: dict[str, Any]) -> dict[str, Any]:  # the stack trace names file paths
        failure = view.get("failure") or {}
        return {"status": view.get("status"), "output": view.get("output"), **{
            k: failure.get(k) for k in ("type", "message") if failure
        }}  # fmt: skip

    return {"resume": resumed, "after resume": outcome(after), "final": outcome(final)}


@scenario("terminate")
def terminate(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        _waiter(rt)
        _waiter(rt, "kid_waiter")

        @rt.workflow(name="family")
        def family(ctx, _):
            return (yield ctx.call_child_workflow("kid_waiter", instance_id=ctx.instance_id + "-k"))

    p.worker(register)
    alone = p.client.schedule_new_workflow("waiter", instance_id="term-alone")
    rec = p.client.schedule_new_workflow("family", instance_id="term-rec")
    flat = p.client.schedule_new_workflow("family", instance_id="term-flat")
    for child in ("term-rec-k", "term-flat-k"):
        p.wait_status(child, "RUNNING")
    p.client.terminate_workflow(alone, output={"reason": "cancelled"})
    p.client.terminate_workflow(rec)  # recursive by default
    p.client.terminate_workflow(flat, recursive=False)
    observed = {
        "alone": p.wait(alone),
        "recursive parent": p.wait(rec),
        "recursive child": p.wait("term-rec-k"),
        "flat parent": p.wait(flat),
        "flat child": p.state("term-flat-k"),
        "terminate again": attempt(lambda: p.client.terminate_workflow(alone)),
        "history": p.history(alone),
    }
    p.client.raise_workflow_event("term-flat-k", "go", data="still alive")
    observed["flat child after event"] = p.wait("term-flat-k")
    return observed


@scenario("purge")
def purge(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        _waiter(rt)

        @rt.workflow(name="with_kid")
        def with_kid(ctx, _):
            return (yield ctx.call_child_workflow("waiter", instance_id="purge-kid"))

    p.worker(register)
    done = p.client.schedule_new_workflow("waiter", instance_id="purge-done")
    p.client.raise_workflow_event(done, "go", data=1)
    p.wait(done)
    running = p.client.schedule_new_workflow("waiter", instance_id="purge-running")
    parent = p.client.schedule_new_workflow("with_kid", instance_id="purge-parent")
    p.wait_status("purge-kid", "RUNNING")
    p.client.raise_workflow_event("purge-kid", "go", data=2)
    p.wait(parent)
    return {
        "purge completed": attempt(lambda: p.client.purge_workflow(done)),
        "state after purge": p.state(done),
        "purge running": attempt(lambda: p.client.purge_workflow(running)),
        "running after purge": p.state(running)["status"],
        "purge parent": attempt(lambda: p.client.purge_workflow(parent)),
        "child after parent purge": p.state("purge-kid"),
        "purge unknown": attempt(lambda: p.client.purge_workflow("no-such-instance")),
    }


@scenario("instance-ID reuse")
def instance_id_reuse(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="echo")
        def echo(ctx, value):
            if value == "wait":
                yield ctx.wait_for_external_event("go")
            return value

    p.worker(register)
    first = p.client.schedule_new_workflow("echo", input="one", instance_id="reused")
    first_final = p.wait(first)
    second = p.client.schedule_new_workflow("echo", input="two", instance_id="reused")
    second_final = p.wait(second)
    running = p.client.schedule_new_workflow("echo", input="wait", instance_id="busy")
    p.client.wait_for_workflow_start(running, timeout_in_seconds=30)
    clash = attempt(lambda: p.client.schedule_new_workflow("echo", input="x", instance_id="busy"))
    p.client.terminate_workflow(running)
    p.wait(running)
    return {
        "first": first_final,
        "second": second_final,
        "history of the reused id": p.history("reused"),
        "start over a running instance": clash,
    }


@scenario("scheduled start")
def scheduled_start(p: Program) -> dict[str, Any]:
    start_at = datetime.now(UTC) + timedelta(seconds=3)

    def register(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="later")
        def later(ctx, _):
            started = ctx.current_utc_datetime.replace(tzinfo=UTC)
            return {"on time": started >= start_at - timedelta(milliseconds=50)}
            yield  # a generator: the SDK runs it as a workflow

    p.worker(register)
    iid = p.client.schedule_new_workflow(
        "later", input={"due": "soon"}, instance_id="later-1", start_at=start_at
    )
    return {"before": p.state(iid), "final": p.wait(iid)}


@scenario("worker restart")
def worker_restart_mid_workflow(p: Program) -> dict[str, Any]:
    """The worker stops while an activity runs and the workflow waits; a new worker (new
    process code: the same names) gets the activity again and the workflow's next turn."""
    release = threading.Event()
    generation = {"n": 1}

    def register(rt: WorkflowRuntime) -> None:
        worker = generation["n"]

        @rt.activity(name="slow")
        def slow(ctx, n):
            p.record(["slow", n, "worker", worker])
            if worker == 1:
                release.wait(10)  # the old worker is shut down meanwhile
            return n * 10

        @rt.activity(name="quick")
        def quick(ctx, n):
            p.record(["quick", n, "worker", worker])
            return n

        @rt.workflow(name="restartable")
        def restartable(ctx, _):
            a = yield ctx.call_activity(quick, input=1)
            event = yield ctx.wait_for_external_event("go")
            b = yield ctx.call_activity(slow, input=2)
            return [a, event, b]

    p.worker(register)
    iid = p.client.schedule_new_workflow("restartable", instance_id="restart-1")
    p.wait_for_history(iid, "timerCreated")  # waiting for "go"
    p.client.raise_workflow_event(iid, "go", data="before restart")
    p.wait_for(lambda: ["slow", 2, "worker", 1] in p.log)
    # The old worker's activity answers only once the worker is gone: its result is lost.
    stopping = threading.Thread(target=p.stop_worker)
    stopping.start()
    stopping.join(8)
    release.set()
    stopping.join()
    generation["n"] = 2
    p.worker(register)
    final = p.wait(iid)
    return {"final": final, "log": p.log, "history": p.history(iid)}
