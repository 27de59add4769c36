"""Fuzzing the Dapr HTTP API (state, metadata, workflows) with random and hostile bodies, keys,
instance ids and headers: every answer is a documented one (oracle.py), stored state reads back
as valid JSON, and afterwards the sidecar is healthy."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.tests.fuzz.oracle import Target, check_http, examples
from sidecar.tests.fuzz.strategies import (
    any_text,
    headers,
    json_bodies,
    json_text,
    json_values,
    percent_encoded,
    raw_bodies,
    url_segments,
)

STATE = "/v1.0/state/statestore"
KEYS = ["k1", "k2", "order-7"]
IDS = ["fuzz-a", "fuzz-b", "fuzz-c"]


def _strict(raw: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON answer")

    return json.loads(raw, parse_constant=refuse)


_items = st.fixed_dictionaries(
    {"key": st.sampled_from(KEYS) | any_text, "value": json_values},
    optional={
        "etag": st.none() | any_text | st.integers(),
        "options": st.fixed_dictionaries(
            {}, optional={"concurrency": st.sampled_from(["first-write", "last-write", "x", 3])}
        ),
    },
)
_state_requests = st.one_of(
    st.tuples(st.just("POST"), st.just(STATE), st.lists(_items, max_size=3).map(json_text)),
    st.tuples(st.sampled_from(["POST", "PUT"]), st.just(STATE), json_bodies),
    st.tuples(st.just("POST"), st.just(f"{STATE}/bulk"), json_bodies),
    st.tuples(
        st.just("POST"),
        st.just(f"{STATE}/bulk"),
        st.lists(st.sampled_from(KEYS) | any_text, max_size=4).map(
            lambda k: json_text({"keys": k})
        ),
    ),
    st.tuples(st.just("POST"), st.just(f"{STATE}/transaction"), json_bodies),
    st.tuples(
        st.just("POST"),
        st.just(f"{STATE}/transaction"),
        st.lists(
            st.fixed_dictionaries(
                {"operation": st.sampled_from(["upsert", "delete", "get"]), "request": _items}
            ),
            max_size=3,
        ).map(lambda ops: json_text({"operations": ops})),
    ),
    st.tuples(
        st.sampled_from(["GET", "DELETE"]),
        url_segments(KEYS).map(lambda key: f"{STATE}/{key}"),
        st.just(b""),
    ),
    st.tuples(
        st.sampled_from(["GET", "POST", "DELETE"]),
        url_segments(["statestore", "nostore"]).map(lambda s: f"/v1.0/state/{s}"),
        raw_bodies,
    ),
)


@settings(max_examples=examples(250))
@given(
    request=_state_requests,
    extra_headers=headers,
    query=st.sampled_from(["", "?concurrency=x", "?metadata.a=b"]),
)
def _state_example(
    target: Target, request: tuple[str, str, bytes], extra_headers: dict[str, str], query: str
) -> None:
    method, path, body = request
    target.tally.examples += 1
    answer = target.http(method, path + query, body, extra_headers)
    check_http(answer, f"{method} {path} {body[:80]!r}", target.tally)
    bulk = target.http("POST", f"{STATE}/bulk", json_text({"keys": KEYS}))
    assert bulk.status == 200
    _strict(bulk.body)


def test_fuzz_state_api_answers_every_request(target: Target) -> None:
    _state_example(target)
    target.assert_healthy()


_metadata_keys = url_segments(["fuzz", "owner"])


@settings(max_examples=examples(120))
@given(
    key=_metadata_keys,
    body=raw_bodies | st.binary(min_size=10_000, max_size=60_000),
    extra_headers=headers,
)
def _metadata_example(target: Target, key: str, body: bytes, extra_headers: dict[str, str]) -> None:
    target.tally.examples += 1
    answer = target.http("PUT", f"/v1.0/metadata/{key}", body, extra_headers)
    check_http(answer, f"PUT metadata/{key}", target.tally)
    read = target.http("GET", "/v1.0/metadata")
    assert read.status == 200
    _strict(read.body)


def test_fuzz_metadata_api_answers_every_request(target: Target) -> None:
    _metadata_example(target)
    target.assert_healthy()


_VERSIONS = ["v1.0", "v1.0-beta1", "v1.0-alpha1"]
_ids = url_segments(IDS)
_workflow_requests = st.one_of(
    st.builds(
        lambda v, c, name, iid, body: (
            "POST",
            f"/{v}/workflows/{c}/{name}/start?instanceID={iid}",
            body,
        ),
        st.sampled_from(_VERSIONS),
        url_segments(["dapr"]),
        url_segments(["wf", "order_processing_workflow"]),
        _ids | st.just(""),
        raw_bodies,
    ),
    st.builds(
        lambda v, iid: ("GET", f"/{v}/workflows/dapr/{iid}", b""),
        st.sampled_from(_VERSIONS),
        _ids,
    ),
    st.builds(
        lambda v, iid, op, body: ("POST", f"/{v}/workflows/dapr/{iid}/{op}", body),
        st.sampled_from(_VERSIONS),
        _ids,
        st.sampled_from(["terminate", "pause", "resume", "purge"]),
        raw_bodies,
    ),
    st.builds(
        lambda iid, event, body: ("POST", f"/v1.0/workflows/dapr/{iid}/raiseEvent/{event}", body),
        _ids,
        url_segments(["go", "approval"]),
        raw_bodies,
    ),
    st.builds(
        lambda method, segment: (method, f"/v1.0/workflows/{segment}", b""),
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
        any_text.map(lambda t: percent_encoded(t.encode("utf-8", "surrogatepass"))),
    ),
)


@settings(max_examples=examples(250))
@given(request=_workflow_requests, extra_headers=headers)
def _workflow_example(
    target: Target, request: tuple[str, str, bytes], extra_headers: dict[str, str]
) -> None:
    method, path, body = request
    target.tally.examples += 1
    answer = target.http(method, path, body, extra_headers)
    check_http(answer, f"{method} {path} {body[:80]!r}", target.tally)


def test_fuzz_workflow_api_answers_every_request(target: Target) -> None:
    # Some of the ids exist (running, terminated), so commands meet every state.
    for iid in IDS:
        assert (
            target.http("POST", f"/v1.0/workflows/dapr/wf/start?instanceID={iid}", b"1").status
            == 202
        )
    assert target.http("POST", f"/v1.0/workflows/dapr/{IDS[1]}/terminate").status == 202
    _workflow_example(target)
    target.assert_healthy()
