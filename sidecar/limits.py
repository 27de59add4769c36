"""The sidecar's size limits: the largest message either edge takes or sends, and the largest
work item an instance may need.

Every limit derives from daprd's ``--max-body-size`` (default ``4Mi``), which daprd applies to
the request bodies of its HTTP and gRPC servers and, on gRPC, to what it sends as well
(dapr/dapr cmd/daprd/options/options.go, pkg/api/grpc/server.go: MaxRecvMsgSize and
MaxSendMsgSize). A work item for a worker is a message the sidecar sends, so it must stay under
that limit too; dapr.ext.workflow's worker receives without limit of its own (its channel sets
``grpc.max_receive_message_length`` to -1 unless the app sets ``max_grpc_message_length`` or
DAPR_GRPC_MAX_INBOUND_MESSAGE_SIZE_BYTES).

daprd's workflow orchestrator measures a workflow's next work item as the protobuf size of its
history plus its inbox, and stops one that exceeds 95% of the body limit, leaving the rest for
the ``workflowStarted`` event and the framing (dapr/dapr pkg/actors/targets/workflow/
orchestrator/payloadsize.go). The embedded sidecar measures the same way, against the same
threshold; docs/sidecar-apis.md, "Size limits", says what happens at each way in.
"""

from __future__ import annotations

from google.protobuf.message import Message

MAX_BODY_BYTES = 4 * 1024 * 1024  # daprd's default --max-body-size (4Mi)

# daprd's payloadStallNumerator / payloadStallDenominator: 95% of the body limit.
WORK_ITEM_LIMIT_BYTES = MAX_BODY_BYTES * 95 // 100


def varint_size(value: int) -> int:
    """Bytes of a protobuf varint holding ``value`` (a non-negative length)."""
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def framed_size(message: Message) -> int:
    """Bytes ``message`` takes as one element of a repeated field: tag, length, body."""
    body = message.ByteSize()
    return 1 + varint_size(body) + body


def text_size(text: str | None) -> int:
    """Bytes a string field holding ``text`` adds (0 when absent), framed as above."""
    if text is None:
        return 0
    body = len(text.encode("utf-8", errors="surrogatepass"))
    return 1 + varint_size(body) + body


def describe(size: int) -> str:
    """How a refusal names the limit, e.g. '4,400,278 bytes, over the limit of 3,984,588'."""
    return (
        f"{size:,} bytes, over the limit of {WORK_ITEM_LIMIT_BYTES:,} bytes (95% of the "
        f"{MAX_BODY_BYTES:,}-byte max body size, as daprd's --max-body-size)"
    )
