"""Hypothesis strategies for hostile inputs: text with lone surrogates, JSON that Go would refuse,
URL segments of arbitrary bytes, headers, and protobuf field values at their extremes."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import timestamp_pb2
from hypothesis import strategies as st

# Text of any code point, lone surrogates (category Cs) included: they reach the sidecar as
# JSON escapes ("\ud800") or, in protobuf, not at all (protobuf strings must be UTF-8).
any_text = st.text(st.characters(exclude_categories=()), max_size=30)
protobuf_text = st.text(max_size=30) | st.sampled_from(["", "x" * 1100, "a||b", "\x00", "☃"])

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
int32s = st.integers(*INT32) | st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31)])
int64s = st.integers(*INT64)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def json_text(value: Any) -> bytes:
    """JSON as a client would send it: lone surrogates escaped, everything else ASCII-safe."""
    return json.dumps(value, ensure_ascii=True).encode()


hostile_json = st.sampled_from(
    [
        b"NaN",
        b"[Infinity]",
        b'{"v":-Infinity}',
        b"1e400",
        b"9" * 5000,
        b"[" * 100_000 + b"]" * 100_000,
        b'"\\ud800"',
        b'"\xff"',
        b"\xef\xbb\xbf[]",
        b"[1,]",
        b"",
        b"null",
        b'{"key":',
    ]
)


def _splice(parts: tuple[bytes, bytes, bytes]) -> bytes:
    return parts[0] + parts[1] + parts[2]


# A JSON body: valid, hostile, hostile spliced into valid, or plain bytes.
json_bodies = st.one_of(
    json_values.map(json_text),
    hostile_json,
    st.tuples(st.just(b'[{"key":"k","value":'), hostile_json, st.just(b"}]")).map(_splice),
    st.binary(max_size=200),
)
raw_bodies = st.one_of(st.binary(max_size=300), json_bodies, any_text.map(json_text))

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def percent_encoded(raw: bytes) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in raw)


def url_segments(known: list[str]) -> st.SearchStrategy[str]:
    """A path segment or query value: one of ``known``, or arbitrary bytes, percent-encoded."""
    return st.one_of(
        st.sampled_from(known),
        any_text.map(lambda t: percent_encoded(t.encode("utf-8", "surrogatepass"))),
        st.binary(max_size=40).map(percent_encoded),
        st.sampled_from(["x" * 70, "a%7C%7Cb", "%00", "..", "caf%C3%A9"]),
    ).filter(bool)


_HEADER_NAMES = [
    "If-Match",
    "Content-Type",
    "dapr-api-token",
    "Accept",
    "traceparent",
    "Content-Encoding",
    "X-Anything",
    "metadata.ttlInSeconds",
]
_HEADER_VALUE = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
headers = st.dictionaries(st.sampled_from(_HEADER_NAMES), _HEADER_VALUE, max_size=3)

# Timestamps anywhere in their fields' range, most of them outside the valid 0001-9999 years.
timestamps = st.one_of(
    st.none(),
    st.builds(timestamp_pb2.Timestamp, seconds=int64s, nanos=int32s),
    st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.integers(-62135596800, 253402300799),
        nanos=st.integers(0, 999_999_999),
    ),
)
