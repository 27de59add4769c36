"""Scenarios: activities, retries, fan-out/fan-in, durable timers, external events (raced
against timers, buffered, in order), custom status."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from dapr.ext.workflow import RetryPolicy, WorkflowRuntime, when_all, when_any

from .differential import Program, scenario

FAST_RETRY = RetryPolicy(
    first_retry_interval=timedelta(milliseconds=500),
    max_number_of_attempts=3,
    backoff_coefficient=1.0,
)


@scenario("activities")
def activity_chain(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="step")
        def step(ctx, n):
            p.record(["step", n, ctx.task_id])
            return n + 1

        @rt.workflow(name="chain")
        def chain(ctx, n):
            a = yield ctx.call_activity(step, input=n)
            b = yield ctx.call_activity(step, input=a)
            c = yield ctx.call_activity("step", input=b)
            return [a, b, c]

    p.worker(register)
    iid = p.client.schedule_new_workflow("chain", input=1, instance_id="chain-1")
    return {"id": iid, "final": p.wait(iid), "log": p.log, "history": p.history(iid)}


@scenario("activities")
def activity_failure(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="broken")
        def broken(ctx, _):
            raise ValueError("the part is out of stock")

        @rt.activity(name="compensate")
        def compensate(ctx, message):
            p.record(["compensate", message])

        @rt.workflow(name="caught")
        def caught(ctx, _):
            try:
                yield ctx.call_activity(broken)
            except Exception as exc:  # TaskFailedError
                yield ctx.call_activity(compensate, input=str(exc))
                return "compensated"

        @rt.workflow(name="uncaught")
        def uncaught(ctx, _):
            yield ctx.call_activity(broken)

    p.worker(register)
    caught = p.client.schedule_new_workflow("caught", instance_id="caught-1")
    uncaught = p.client.schedule_new_workflow("uncaught", instance_id="uncaught-1")
    return {"caught": p.wait(caught), "uncaught": p.wait(uncaught), "log": p.log}


@scenario("retries")
def activity_retries(p: Program) -> dict[str, Any]:
    attempts: dict[str, int] = {}

    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="flaky")
        def flaky(ctx, key):
            attempts[key] = attempts.get(key, 0) + 1
            p.record([key, attempts[key]])
            if key == "recovers" and attempts[key] < 3:
                raise RuntimeError(f"attempt {attempts[key]} failed")
            if key == "never":
                raise RuntimeError(f"attempt {attempts[key]} failed")
            return f"{key} after {attempts[key]}"

        @rt.workflow(name="retrying")
        def retrying(ctx, key):
            return (yield ctx.call_activity(flaky, input=key, retry_policy=FAST_RETRY))

    p.worker(register)
    ok = p.client.schedule_new_workflow("retrying", input="recovers", instance_id="retry-ok")
    ok_final = p.wait(ok)
    bad = p.client.schedule_new_workflow("retrying", input="never", instance_id="retry-bad")
    return {"recovers": ok_final, "never": p.wait(bad), "log": p.log}


@scenario("retries")
def child_workflow_retries(p: Program) -> dict[str, Any]:
    runs: list[int] = []

    def register(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="shaky_child")
        def shaky_child(ctx, _):
            if not ctx.is_replaying:
                runs.append(1)
                p.record(["child run", len(runs)])
            if len(runs) < 2:
                raise RuntimeError("child failed")
            return "child ok"
            yield  # a generator: the SDK runs it as a workflow

        @rt.workflow(name="retry_parent")
        def retry_parent(ctx, _):
            return (
                yield ctx.call_child_workflow(
                    shaky_child, instance_id="retry-child", retry_policy=FAST_RETRY
                )
            )

    p.worker(register)
    iid = p.client.schedule_new_workflow("retry_parent", instance_id="retry-parent")
    return {"final": p.wait(iid), "log": p.log}


@scenario("fan-out/fan-in")
def fan_out_fan_in(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="square")
        def square(ctx, n):
            p.record(n)
            return n * n

        @rt.workflow(name="fan")
        def fan(ctx, count):
            results = yield when_all([ctx.call_activity(square, input=i) for i in range(count)])
            total = yield ctx.call_activity(square, input=sum(results))
            return {"squares": results, "total": total}

    p.worker(register)
    iid = p.client.schedule_new_workflow("fan", input=6, instance_id="fan-1")
    final = p.wait(iid)
    history = p.history(iid)
    # Parallel activities finish in any order: compare which ran, and the history's shape.
    return {"final": final, "ran": sorted(p.log), "history": sorted(history), "first": history[:3]}


@scenario("timers")
def durable_timers(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="sleeper")
        def sleeper(ctx, _):
            start = ctx.current_utc_datetime
            yield ctx.create_timer(timedelta(seconds=1))
            p.record("woke")
            yield ctx.create_timer(ctx.current_utc_datetime + timedelta(milliseconds=500))
            slept = (ctx.current_utc_datetime - start).total_seconds()
            return slept >= 1.5

    p.worker(register)
    iid = p.client.schedule_new_workflow("sleeper", instance_id="sleeper-1")
    return {"final": p.wait(iid), "log": p.log, "history": p.history(iid)}


@scenario("external events raced against timers")
def event_races_timer(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="approval")
        def approval(ctx, seconds):
            event = ctx.wait_for_external_event("approve")
            timeout = ctx.create_timer(timedelta(seconds=seconds))
            winner = yield when_any([event, timeout])
            if winner == timeout:
                return "timed out"
            return {"approved by": event.get_result()}

    p.worker(register)
    on_time = p.client.schedule_new_workflow("approval", input=30, instance_id="race-event")
    late = p.client.schedule_new_workflow("approval", input=1, instance_id="race-timer")
    p.client.wait_for_workflow_start(on_time, timeout_in_seconds=30)
    p.client.raise_workflow_event(on_time, "approve", data="manager")
    event_won, timer_won = p.wait(on_time), p.wait(late)
    # An event for an instance that already timed out is accepted and ignored.
    after_end = p.client.raise_workflow_event(late, "approve", data="too late")
    return {
        "event won": event_won,
        "timer won": timer_won,
        "late event": after_end,
        "state after late event": p.state(late),
    }


@scenario("external events")
def events_in_order_and_buffered(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="collector")
        def collector(ctx, _):
            yield ctx.create_timer(timedelta(seconds=1))  # events raised meanwhile are kept
            seen = []
            for _ in range(4):
                seen.append((yield ctx.wait_for_external_event("item")))
            other = yield ctx.wait_for_external_event("OTHER")  # names are case-insensitive
            return {"items": seen, "other": other}

    p.worker(register)
    iid = p.client.schedule_new_workflow("collector", instance_id="collector-1")
    p.client.wait_for_workflow_start(iid, timeout_in_seconds=30)
    for n in range(4):
        p.client.raise_workflow_event(iid, "item", data={"n": n})
    p.client.raise_workflow_event(iid, "other", data="x")
    return {"final": p.wait(iid), "history": p.history(iid)}


@scenario("custom status")
def custom_status(p: Program) -> dict[str, Any]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="reporter")
        def reporter(ctx, _):
            ctx.set_custom_status("waiting for go")
            yield ctx.wait_for_external_event("go")
            ctx.set_custom_status(json.dumps({"phase": "done", "steps": 2}))
            return "ok"

    p.worker(register)
    iid = p.client.schedule_new_workflow("reporter", instance_id="reporter-1")
    p.wait_for(lambda: (p.client.get_workflow_state(iid).serialized_custom_status or "") != "")
    waiting = p.state(iid)
    p.client.raise_workflow_event(iid, "go")
    return {"waiting": waiting, "final": p.wait(iid)}
