"""Scenarios: what the SDK's client calls answer on unknown, finished, invalid and stalled
instances (gRPC status codes and messages), and rerun from an event."""

from __future__ import annotations

from typing import Any

from dapr.ext.workflow import WorkflowRuntime

from .differential import Program, attempt, scenario


def _register(p: Program) -> Any:
    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="note")
        def note(ctx, text):
            p.record(text)
            return f"noted {text}"

        @rt.workflow(name="noter")
        def noter(ctx, text):
            first = yield ctx.call_activity(note, input=text)
            reply = yield ctx.wait_for_external_event("go")
            second = yield ctx.call_activity(note, input=reply)
            return [first, second]

    return register


@scenario("client errors")
def calls_on_unknown_instances(p: Program) -> dict[str, Any]:
    p.worker(_register(p))
    c = p.client
    gone = "never-started"
    return {
        "get": attempt(lambda: c.get_workflow_state(gone)),
        "raise event": attempt(lambda: c.raise_workflow_event(gone, "go", data=1)),
        "terminate": attempt(lambda: c.terminate_workflow(gone)),
        "pause": attempt(lambda: c.pause_workflow(gone)),
        "resume": attempt(lambda: c.resume_workflow(gone)),
        "purge": attempt(lambda: c.purge_workflow(gone)),
        "history": attempt(lambda: c.get_workflow_history(gone)),
        "rerun": attempt(lambda: c.rerun_workflow_from_event(gone, 0)),
        "wait for start": attempt(lambda: c.wait_for_workflow_start(gone, timeout_in_seconds=1)),
    }


@scenario("client errors")
def calls_on_finished_instances(p: Program) -> dict[str, Any]:
    p.worker(_register(p))
    c = p.client
    iid = c.schedule_new_workflow("noter", input="a", instance_id="finished")
    p.wait_for_history(iid, "timerCreated")  # waiting for "go"
    c.raise_workflow_event(iid, "go", data="b")
    final = p.wait(iid)
    return {
        "final": final,
        "raise event": attempt(lambda: c.raise_workflow_event(iid, "go", data=1)),
        "terminate": attempt(lambda: c.terminate_workflow(iid)),
        "pause": attempt(lambda: c.pause_workflow(iid)),
        "resume": attempt(lambda: c.resume_workflow(iid)),
        "state after": p.state(iid),
        "history": p.history(iid),
    }


@scenario("client errors")
def calls_with_invalid_arguments(p: Program) -> dict[str, Any]:
    p.worker(_register(p))
    c = p.client
    return {
        "start with a bad id": attempt(
            lambda: c.schedule_new_workflow("noter", input="x", instance_id="no spaces allowed")
        ),
        "start with a long id": attempt(
            lambda: c.schedule_new_workflow("noter", input="x", instance_id="x" * 80)
        ),
        "unregistered workflow": p.wait(
            c.schedule_new_workflow("nobody_has_this", instance_id="orphan")
        ),
    }


@scenario("rerun from an event")
def rerun_from_event(p: Program) -> dict[str, Any]:
    p.worker(_register(p))
    c = p.client
    iid = c.schedule_new_workflow("noter", input="first", instance_id="rerun-src")
    p.wait_for_history(iid, "timerCreated")  # waiting for "go"
    c.raise_workflow_event(iid, "go", data="second")
    source = p.wait(iid)
    events = c.get_workflow_history(iid)
    rerunnable = [(e.event_id, e.event_type.value) for e in events if e.is_rerunnable]
    running = c.schedule_new_workflow("noter", input="r", instance_id="rerun-running")
    c.wait_for_workflow_start(running, timeout_in_seconds=30)
    last_task = max(event_id for event_id, kind in rerunnable if kind == "taskScheduled")
    new_id = c.rerun_workflow_from_event(
        iid, last_task, new_instance_id="rerun-new", input="replaced"
    )
    rerun = p.wait(new_id)
    of_running = attempt(lambda: c.rerun_workflow_from_event(running, 0))
    c.terminate_workflow(running)
    return {
        "source": source,
        "rerunnable": rerunnable,
        "rerun": rerun,
        "log": p.log,
        "source history": p.history(iid),
        "rerun history": p.history(new_id),
        "rerun history ids": [
            (e.event_id, e.event_type.value) for e in c.get_workflow_history(new_id)
        ],
        "rerun of a running instance": of_running,
        "rerun onto an existing id": attempt(
            lambda: c.rerun_workflow_from_event(iid, last_task, new_instance_id="rerun-new")
        ),
        "rerun from a non-rerunnable event": attempt(
            lambda: c.rerun_workflow_from_event(iid, 9999)
        ),
    }
