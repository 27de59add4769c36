"""Scenarios: named workflow versions and patching (``ctx.is_patched``), with the code changed
under a running instance, as in the SDK's own versioning example (examples/workflow/versioning.py
of dapr/python-sdk)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dapr.ext.workflow import WorkflowRuntime

from .differential import Program, scenario


def _versions(p: Program, *versions: tuple[str, bool]) -> Callable[[WorkflowRuntime], None]:
    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="say")
        def say(ctx, text):
            p.record(text)

        for version, latest in versions:

            def make(version: str) -> Any:
                def flow(ctx, _):
                    yield ctx.call_activity(say, input=f"{version} started")
                    yield ctx.wait_for_external_event("go")
                    yield ctx.call_activity(say, input=f"{version} finished")
                    return version

                return flow

            rt.versioned_workflow(name="flow", version_name=version, is_latest=latest)(
                make(version)
            )

    return register


@scenario("versioning")
def versions_under_a_running_instance(p: Program) -> dict[str, Any]:
    p.worker(_versions(p, ("v1", True)))
    old = p.client.schedule_new_workflow("flow", instance_id="ver-old")
    p.wait_for_history(old, "timerCreated")
    p.worker(_versions(p, ("v1", False), ("v2", True)))
    new = p.client.schedule_new_workflow("flow", instance_id="ver-new")
    p.wait_for_history(new, "timerCreated")
    p.client.raise_workflow_event(old, "go")
    p.client.raise_workflow_event(new, "go")
    return {"old": p.wait(old), "new": p.wait(new), "log": sorted(p.log)}


@scenario("versioning")
def missing_version_stalls(p: Program) -> dict[str, Any]:
    p.worker(_versions(p, ("v1", True)))
    iid = p.client.schedule_new_workflow("flow", instance_id="ver-stall")
    p.wait_for_history(iid, "timerCreated")
    p.worker(_versions(p, ("v2", True)))
    p.client.raise_workflow_event(iid, "go")
    stalled = p.wait_status(iid, "STALLED", timeout=15)
    return {
        "status": stalled,
        "state": p.state(iid),
        "history": p.history(iid),
        "stalls": p.stalls(iid),
        "log": p.log,
    }


def _patched(p: Program, code: str) -> Callable[[WorkflowRuntime], None]:
    """The workflow of the SDK example's test 5 and 6: ``code`` names the version deployed."""

    def register(rt: WorkflowRuntime) -> None:
        @rt.activity(name="say")
        def say(ctx, text):
            p.record(text)

        @rt.workflow(name="patching")
        def patching(ctx, _):
            yield ctx.call_activity(say, input="start")
            if code in ("patch1", "both"):
                if ctx.is_patched("patch1"):
                    yield ctx.call_activity(say, input="patch1 is patched")
                else:
                    yield ctx.call_activity(say, input="patch1 is not patched")
            elif code == "silenced":
                ctx.is_patched("patch1")
            yield ctx.wait_for_external_event("event")
            if code != "patch1":
                if ctx.is_patched("patch2"):
                    yield ctx.call_activity(say, input="patch2 is patched")
                else:
                    yield ctx.call_activity(say, input="patch2 is not patched")
            return 1

    return register


@scenario("patching")
def patch_added_under_a_running_instance(p: Program) -> dict[str, Any]:
    """Deployed without patch1, the instance waits; the code that now checks patch1 before
    the wait (and patch2 after) must take the unpatched branch on replay and complete."""
    p.worker(_patched(p, "none"))
    iid = p.client.schedule_new_workflow("patching", instance_id="patch-added")
    p.wait_for_history(iid, "timerCreated")
    p.worker(_patched(p, "both"))
    p.client.raise_workflow_event(iid, "event")
    return {"final": p.wait(iid, timeout=20), "log": p.log, "history": p.history(iid)}


@scenario("patching")
def patch_remembered_across_code_changes(p: Program) -> dict[str, Any]:
    """The SDK example's test 6: patch1 was checked (silently) before the wait; the new code
    acts on it, and must see it as patched."""
    p.worker(_patched(p, "silenced"))
    iid = p.client.schedule_new_workflow("patching", instance_id="patch-kept")
    p.wait_for_history(iid, "timerCreated")
    p.worker(_patched(p, "both"))
    p.client.raise_workflow_event(iid, "event")
    return {"final": p.wait(iid, timeout=20), "log": p.log, "history": p.history(iid)}


@scenario("patching")
def patch_removed_stalls(p: Program) -> dict[str, Any]:
    """The SDK example's test 8: a patch the instance recorded is gone from the code."""

    def with_check(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="patch_check")
        def patch_check(ctx, _):
            ctx.is_patched("patch1")
            yield ctx.wait_for_external_event("event")
            return 1

    def without_check(rt: WorkflowRuntime) -> None:
        @rt.workflow(name="patch_check")
        def patch_check(ctx, _):
            yield ctx.wait_for_external_event("event")
            return 1

    p.worker(with_check)
    iid = p.client.schedule_new_workflow("patch_check", instance_id="patch-gone")
    p.wait_for_history(iid, "timerCreated")
    p.worker(without_check)
    p.client.raise_workflow_event(iid, "event")
    status = p.wait_status(iid, "STALLED", "COMPLETED", "FAILED", timeout=15)
    return {
        "status": status,
        "state": p.state(iid),
        "history": p.history(iid),
        "stalls": p.stalls(iid),
    }
