"""Differences between daprd and the embedded sidecar that are kept on purpose, each with its
reason and each engine's pinned (normalised) value for the keys that differ; docs/sidecar-apis.md
lists them too. A scenario not named here must observe the same on both engines, and a pinned
value that changes on either engine fails the scenario, so a kept difference cannot drift."""

from __future__ import annotations

from .comparison import Deliberate

_NOT_FOUND = "unable to find workflow with the provided instance ID: {}"
# daprd 1.18.2 formats this message with one argument too many, so Go appends its own error
# text: "%!(EXTRA *fmt.wrapError=...)".
_EXTRA = _NOT_FOUND + "%!(EXTRA *fmt.wrapError={})"
_PURGE = "failed to purge workflow state: failed to fetch workflow state: no such instance exists"
_TERMINATE = "failed to submit termination request:: no such instance exists"
_GO_FMT = (
    "daprd 1.18.2 formats its not-found message with an extra argument, so Go appends "
    "'%!(EXTRA *fmt.wrapError=<its internal error>)'; the sidecar answers the message alone"
)
_SAVE = "failed saving state in state store statestore: possible etag mismatch. error from state store: "
_DELETE = "failed deleting state with key {}: possible etag mismatch. error from state store: "
_REDIS_SAVE = "ERR user_script:14: failed to set key <app id>||{} script: d908b9553add63a82e03589b5c6d01a7654ef0f2, on @user_script:14."
_REDIS_DELETE = "ERR user_script:6: failed to delete <app id>||{} script: 2446db0de2c963f100727b388f03ead01d18c265, on @user_script:6."
_FIRST_WRITE = "key '{}' already exists and first-write concurrency needs an etag"
_STORE = (
    "the state store's own words: daprd passes on the Redis store's Lua script error (naming "
    "its app-prefixed key); the sidecar's store names the key and the ETag. Redis also takes "
    "first-write without an ETag over an existing key as a plain write; the sidecar's store "
    "refuses it, as Dapr documents first-write (and as its PostgreSQL store does)"
)

_RESUME_FAILED = {
    "status": "FAILED",
    "output": None,
    "type": "WorkflowStateError",
    "message": "Don't know how to handle event of type 'executionResumed'",
}
_PENDING = {"custom_status": None, "failure": None, "output": None, "status": "PENDING"}

DELIBERATE: dict[str, Deliberate] = {
    "scheduled_start": Deliberate(
        reason=(
            "before its start time daprd 1.18.2 holds a scheduled instance as a reminder only "
            "and reads it as PENDING with no name and no input; the sidecar stores the instance "
            "when asked and reads both"
        ),
        daprd={"before": {**_PENDING, "name": "", "input": None}},
        sidecar={"before": {**_PENDING, "name": "later", "input": '{"due": "soon"}'}},
    ),
    "rerun_from_event": Deliberate(
        reason=(
            "daprd 1.18.2 copies the source history into the rerun with each turn's actions "
            "moved after the next turn's workflowStarted (the event wait's timer after the "
            "event); the sidecar copies it in the source's order; the rerun runs and ends alike"
        ),
        daprd={
            "rerun history": [
                "executionStarted", "taskScheduled", "taskCompleted", "eventRaised",
                "timerCreated", "taskScheduled", "taskCompleted", "executionCompleted",
            ],
            "rerun history ids": [
                [-1, "workflowStarted"], [-1, "executionStarted"], [-1, "workflowStarted"],
                [1, "taskScheduled"], [-1, "taskCompleted"], [-1, "workflowStarted"],
                [-1, "eventRaised"], [2, "timerCreated"], [3, "taskScheduled"],
                [-1, "workflowStarted"], [-1, "taskCompleted"], [4, "executionCompleted"],
            ],
        },
        sidecar={
            "rerun history": [
                "executionStarted", "taskScheduled", "taskCompleted", "timerCreated",
                "eventRaised", "taskScheduled", "taskCompleted", "executionCompleted",
            ],
            "rerun history ids": [
                [-1, "workflowStarted"], [-1, "executionStarted"], [1, "taskScheduled"],
                [-1, "workflowStarted"], [-1, "taskCompleted"], [2, "timerCreated"],
                [-1, "workflowStarted"], [-1, "eventRaised"], [3, "taskScheduled"],
                [-1, "workflowStarted"], [-1, "taskCompleted"], [4, "executionCompleted"],
            ],
        },
    ),
    "resume_of_a_running_instance": Deliberate(
        reason=(
            "resuming an instance that is not suspended: daprd delivers executionResumed and "
            "the SDK's worker fails the workflow on it (WorkflowStateError); the sidecar sends "
            "nothing and the workflow runs on (README: what it does not do)"
        ),
        daprd={
            "after resume": _RESUME_FAILED,
            "final": _RESUME_FAILED,
        },
        sidecar={
            "after resume": {"output": None, "status": "RUNNING"},
            "final": {"output": '"later"', "status": "COMPLETED"},
        },
    ),
    "runtime_grpc_workflow_api": Deliberate(
        reason=_GO_FMT,
        daprd={
            "Purge unknown": {"code": "NOT_FOUND", "reason": None, "details": _EXTRA.format("grpc-nobody", _PURGE)},
            "Terminate unknown": {"code": "NOT_FOUND", "reason": None, "details": _EXTRA.format("grpc-nobody", _TERMINATE)},
        },
        sidecar={
            "Purge unknown": {"code": "NOT_FOUND", "reason": None, "details": _NOT_FOUND.format("grpc-nobody")},
            "Terminate unknown": {"code": "NOT_FOUND", "reason": None, "details": _NOT_FOUND.format("grpc-nobody")},
        },
    ),
    "runtime_http_workflow_api": Deliberate(
        reason=_GO_FMT,
        daprd={
            "purge unknown": {"status": 404, "etag": False, "body": {"errorCode": "ERR_INSTANCE_ID_NOT_FOUND", "message": _EXTRA.format("http-nobody", _PURGE)}},
            "terminate unknown": {"status": 404, "etag": False, "body": {"errorCode": "ERR_INSTANCE_ID_NOT_FOUND", "message": _EXTRA.format("http-nobody", _TERMINATE)}},
        },
        sidecar={
            "purge unknown": {"status": 404, "etag": False, "body": {"errorCode": "ERR_INSTANCE_ID_NOT_FOUND", "message": _NOT_FOUND.format("http-nobody")}},
            "terminate unknown": {"status": 404, "etag": False, "body": {"errorCode": "ERR_INSTANCE_ID_NOT_FOUND", "message": _NOT_FOUND.format("http-nobody")}},
        },
    ),
    "state_api_grpc": Deliberate(
        reason=_STORE,
        daprd={
            "save with a stale etag": {"code": "ABORTED", "reason": "ERR_STATE_SAVE", "details": _SAVE + _REDIS_SAVE.format("order-1")},
            "delete with a stale etag": {"code": "ABORTED", "reason": "ERR_STATE_DELETE", "details": _DELETE.format("order-1") + _REDIS_DELETE.format("order-1")},
            "first-write over a key": "ok",
        },
        sidecar={
            "save with a stale etag": {"code": "ABORTED", "reason": "ERR_STATE_SAVE", "details": _SAVE + "etag '987654' does not match the current etag of key 'order-1'"},
            "delete with a stale etag": {"code": "ABORTED", "reason": "ERR_STATE_DELETE", "details": _DELETE.format("order-1") + "etag '987654' does not match the current etag of key 'order-1'"},
            "first-write over a key": {"code": "ABORTED", "reason": "ERR_STATE_SAVE", "details": _SAVE + _FIRST_WRITE.format("order-fw")},
        },
    ),
    "state_api_http": Deliberate(
        reason=(
            _STORE + "; a body that is not JSON is refused in the words of each one's JSON "
            "parser (Go's, Python's); daprd wraps an illegal key's message in its internal "
            "'api error' text with BadRequest and ResourceInfo details, and names its app id "
            "in an unknown store's ErrorInfo: the sidecar has no app id, and keeps the message "
            "plain with the ErrorInfo alone"
        ),
        daprd={
            "stale etag": {"status": 409, "etag": False, "body": {"errorCode": "ERR_STATE_SAVE", "message": _SAVE + _REDIS_SAVE.format("sku-1")}},
            "delete with a stale etag": {"status": 409, "etag": False, "body": {"errorCode": "ERR_STATE_DELETE", "message": _DELETE.format("sku-1") + _REDIS_DELETE.format("sku-1")}},
            "first-write over a key": {"status": 204, "etag": False, "body": None},
            "bad body": {"status": 400, "etag": False, "body": {"errorCode": "ERR_MALFORMED_REQUEST", "message": "invalid character 'o' in literal null (expecting 'u')"}},
            "key with ||": {"status": 400, "etag": False, "body": {
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.BadRequest", "field_violations": [{"description": "api error: code = InvalidArgument desc = input key/keyPrefix 'a||b' can't contain '||'", "field": "a||b"}]},
                    {"@type": "type.googleapis.com/google.rpc.ResourceInfo", "description": "", "owner": "", "resource_name": "statestore", "resource_type": "state"},
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "domain": "dapr.io", "metadata": None, "reason": "DAPR_STATE_ILLEGAL_KEY"},
                ],
                "errorCode": "ERR_MALFORMED_REQUEST",
                "message": "api error: code = InvalidArgument desc = input key/keyPrefix 'a||b' can't contain '||'",
            }},
            "unknown store": {"status": 400, "etag": False, "body": {
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "domain": "dapr.io", "metadata": {"appID": "<app id>"}, "reason": "DAPR_STATE_NOT_FOUND"}],
                "errorCode": "ERR_STATE_STORE_NOT_FOUND", "message": "state store nostore is not found",
            }},
        },
        sidecar={
            "stale etag": {"status": 409, "etag": False, "body": {"errorCode": "ERR_STATE_SAVE", "message": _SAVE + "etag '987654' does not match the current etag of key 'sku-1'"}},
            "delete with a stale etag": {"status": 409, "etag": False, "body": {"errorCode": "ERR_STATE_DELETE", "message": _DELETE.format("sku-1") + "etag '987654' does not match the current etag of key 'sku-1'"}},
            "first-write over a key": {"status": 409, "etag": False, "body": {"errorCode": "ERR_STATE_SAVE", "message": _SAVE + _FIRST_WRITE.format("sku-fw")}},
            "bad body": {"status": 400, "etag": False, "body": {"errorCode": "ERR_MALFORMED_REQUEST", "message": "invalid JSON: Expecting value: line 1 column 1 (char 0)"}},
            "key with ||": {"status": 400, "etag": False, "body": {
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "domain": "dapr.io", "metadata": None, "reason": "DAPR_STATE_ILLEGAL_KEY"}],
                "errorCode": "ERR_MALFORMED_REQUEST",
                "message": "input key/keyPrefix 'a||b' can't contain '||'",
            }},
            "unknown store": {"status": 400, "etag": False, "body": {
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "domain": "dapr.io", "metadata": None, "reason": "DAPR_STATE_NOT_FOUND"}],
                "errorCode": "ERR_STATE_STORE_NOT_FOUND", "message": "state store nostore is not found",
            }},
        },
    ),
    "sdk example history_propagation.py": Deliberate(
        reason=(
            "history propagation (a child workflow or activity reading its parent's history, "
            "daprd 1.18) is not served by the sidecar: the propagation field is dropped and "
            "get_propagated_history() returns None, the SDK's documented behaviour on a sidecar "
            "without it (README: what the sidecar does not do)"
        ),
        daprd={"stdout": [
            "*** audit activity result: logged",
            "*** child workflow result: paid",
            "*** child workflow result: paid",
            "*** log_summary saw parent on app <app id> with validate_merchant -> completed=True output={\"merchant_id\": \"merchant-42\", \"valid\": true}",
            "*** process_payment received parent context for merchant 'merchant-42'",
            "*** validating merchant merchant-42",
            "*** workflow completed: status=COMPLETED output={\"child\": \"paid\", \"audit\": \"logged\"}",
            "<exit 0>",
        ]},
        sidecar={"stdout": [
            "*** audit activity result: no-history",
            "*** child workflow result: no-history",
            "*** child workflow result: no-history",
            "*** log_summary: no propagated history (sidecar may not support it)",
            "*** process_payment: no propagated history",
            "*** validating merchant merchant-42",
            "*** workflow completed: status=COMPLETED output={\"child\": \"no-history\", \"audit\": \"no-history\"}",
            "<exit 0>",
        ]},
    ),
}  # fmt: skip
