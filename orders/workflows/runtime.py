"""Registration of the order workflow and its activities with the SDK's ``WorkflowRuntime``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from dapr.ext.workflow import WorkflowRuntime

from orders import workflow_client
from orders.workflows import activities
from orders.workflows.order_processing import order_processing_workflow


def runtime_create(address: str | None = None, **options: Any) -> WorkflowRuntime:
    """A ``WorkflowRuntime`` with the order workflow and its activities registered (not started).

    The workflow is registered under the name the client schedules it by
    (``workflow_client.ORDER_WORKFLOW``); each activity under its function's name.
    """
    runtime = workflow_client.sdk_build(WorkflowRuntime, address, **options)
    runtime.register_workflow(
        _registrable(order_processing_workflow), name=workflow_client.ORDER_WORKFLOW
    )
    for activity in activities.ALL:
        runtime.register_activity(_registrable(activity))
    return runtime


def _registrable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A fresh function object with fn's name and signature.

    The SDK marks a function as registered on the function object itself and refuses a second
    registration, so one process could host only one runtime in its lifetime (tests, quickstart
    after runworker). Registering a wrapper keeps the module-level functions unmarked.
    """

    @functools.wraps(fn)
    def registered(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return registered
