"""Hostile bodies on the state and metadata HTTP API: each gets a 4xx with daprd's error shape,
nothing unparseable is stored, and reads keep returning valid JSON (dapr/http_bodies.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.proto import api_v1, common_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from sidecar import Sidecar
from sidecar.limits import MAX_BODY_BYTES
from sidecar.tests.harness import WAIT, sidecar_start

STATE = "/v1.0/state/statestore"


def _strict_json(text: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


class Http:
    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def error(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        status, raw = self(method, path, body)
        return status, _strict_json(raw)


@pytest.fixture
def sidecar(db_path: Path) -> Iterator[Sidecar]:
    sc = sidecar_start(db_path, http_port=0)
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def http(sidecar: Sidecar) -> Http:
    return Http(sidecar.http_port or 0)


@pytest.fixture
def dapr(sidecar: Sidecar) -> Iterator[dapr_pb2_grpc.DaprStub]:
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        yield dapr_pb2_grpc.DaprStub(channel)


def _bulk(http: Http, keys: list[str]) -> list[dict[str, Any]]:
    status, raw = http("POST", f"{STATE}/bulk", json.dumps({"keys": keys}).encode())
    assert status == 200
    return list(_strict_json(raw))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'[{"key":"\\ud800","value":1}]', id="lone surrogate in a key"),
        pytest.param(b'[{"key":"k","value":"\\udfff and more"}]', id="lone surrogate in a value"),
        pytest.param(b'[{"key":"k","value":{"\\ud800":1}}]', id="lone surrogate in a member"),
        pytest.param(b'[{"key":"k","value":"\xff\xfe"}]', id="bytes that are not UTF-8"),
        pytest.param(b'[{"key":"k","value":NaN}]', id="NaN"),
        pytest.param(b'[{"key":"k","value":Infinity}]', id="Infinity"),
        pytest.param(b'[{"key":"k","value":[-Infinity]}]', id="-Infinity"),
        pytest.param(b'[{"key":"k","value":1e400}]', id="a number past float64"),
        pytest.param(b'[{"key":"k","value":' + b"9" * 5000 + b"}]", id="a 5000-digit number"),
        pytest.param(
            b'[{"key":"k","value":' + b"[" * 100_000 + b"]" * 100_000 + b"}]",
            id="100,000 nested arrays",
        ),
        pytest.param(b'[{"key":1,"value":1}]', id="a key that is not a string"),
        pytest.param(b'{"key":"k"}', id="not an array"),
    ],
)
def test_state_save_refuses_what_json_cannot_hold_and_stores_nothing(
    http: Http, body: bytes
) -> None:
    status, error = http.error("POST", STATE, body)

    assert status == 400
    assert error["errorCode"] == "ERR_MALFORMED_REQUEST" and error["message"]
    assert [item for item in _bulk(http, ["k"]) if "data" in item] == []


def test_deep_nesting_is_refused_with_gos_words(http: Http) -> None:
    deep = b'[{"key":"deep","value":' + b"[" * 100_000 + b"]" * 100_000 + b"}]"

    _, error = http.error("POST", STATE, deep)

    assert "exceeded max depth" in error["message"]


def test_transaction_and_bulk_refuse_hostile_bodies(http: Http) -> None:
    refused = [
        http.error("POST", f"{STATE}/transaction", body)
        for body in (
            b'{"operations":[{"operation":"upsert","request":{"key":"\\ud800","value":1}}]}',
            b'{"operations":[{"operation":"upsert","request":{"key":"k","value":NaN}}]}',
            b'{"operations":{"not":"a list"}}',
            b"[]",
        )
    ]
    refused.append(http.error("POST", f"{STATE}/bulk", b'{"keys":["\\udc00"]}'))
    refused.append(http.error("POST", f"{STATE}/bulk", b'{"keys":[1]}'))

    assert [status for status, _ in refused] == [400] * 6
    assert {error["errorCode"] for _, error in refused} == {"ERR_MALFORMED_REQUEST"}


def test_state_body_over_the_body_limit_is_refused_as_daprd_does(http: Http) -> None:
    body = b'[{"key":"big","value":"' + b"z" * MAX_BODY_BYTES + b'"}]'

    status, error = http.error("POST", STATE, body)

    assert status == 400
    assert error == {"errorCode": "ERR_MALFORMED_REQUEST", "message": "stream too large"}


def test_bulk_read_stays_valid_json_whatever_was_stored(
    http: Http, dapr: dapr_pb2_grpc.DaprStub
) -> None:
    saved = [{"key": "number", "value": 1.5e300}, {"key": "text", "value": "naïve ☃"}]
    assert http("POST", STATE, json.dumps(saved).encode())[0] == 204
    # gRPC saves bytes as they are: none of these is JSON a bulk read may embed raw.
    raw_values = {"nan": b"NaN", "deep": b"[" * 5000 + b"]" * 5000, "binary": b"\x00\xff"}
    dapr.SaveState(
        api_v1.SaveStateRequest(
            store_name="statestore",
            states=[common_v1.StateItem(key=k, value=v) for k, v in raw_values.items()],
        ),
        timeout=WAIT,
    )

    items = {item["key"]: item["data"] for item in _bulk(http, [*raw_values, "number", "text"])}

    assert items["number"] == 1.5e300 and items["text"] == "naïve ☃"
    assert items["nan"] == "NaN" and items["deep"] == "[" * 5000 + "]" * 5000
    assert items["binary"] == "\x00\ufffd"


def test_metadata_put_over_the_body_limit_is_refused_as_daprd_does(http: Http) -> None:
    status, error = http.error("PUT", "/v1.0/metadata/big", b"m" * (MAX_BODY_BYTES + 1))

    assert status == 400
    assert error == {
        "errorCode": "ERR_BODY_READ",
        "message": "failed to read request body: stream too large",
    }


def test_metadata_as_a_whole_stays_within_one_answer(
    http: Http, dapr: dapr_pb2_grpc.DaprStub
) -> None:
    two_and_a_half_mb = b"m" * 2_500_000
    first = http("PUT", "/v1.0/metadata/first", two_and_a_half_mb)
    second = http.error("PUT", "/v1.0/metadata/second", two_and_a_half_mb)
    replaced = http("PUT", "/v1.0/metadata/first", b"small")
    with pytest.raises(grpc.RpcError) as over_grpc:
        dapr.SetMetadata(
            api_v1.SetMetadataRequest(key="third", value="v" * 4_000_000), timeout=WAIT
        )
    status, raw = http("GET", "/v1.0/metadata")
    answer = dapr.GetMetadata(api_v1.GetMetadataRequest(), timeout=WAIT)

    assert first[0] == 204 and replaced[0] == 204
    assert second[0] == 413 and second[1]["errorCode"] == "ERR_METADATA_TOO_LARGE"
    assert over_grpc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status == 200 and _strict_json(raw)["extended"] == {"first": "small"}
    assert dict(answer.extended_metadata) == {"first": "small"}


def test_header_bytes_that_are_not_utf8_get_an_answer(http: Http) -> None:
    """aiohttp hands such bytes on as surrogate escapes; quoting them must not break the answer
    (the fuzz tests found a bare 500 here)."""
    assert http("POST", STATE, b'[{"key":"k","value":1}]')[0] == 204
    conn = HTTPConnection("127.0.0.1", http.port, timeout=WAIT)
    try:
        conn.request("DELETE", f"{STATE}/k", headers={"If-Match": "\x80\xff"})
        response = conn.getresponse()
        status, error = response.status, _strict_json(response.read())
    finally:
        conn.close()

    assert status == 400 and error["errorCode"] == "ERR_STATE_DELETE"
    assert "is not an etag issued by this store" in error["message"]


def test_api_token_of_bytes_that_are_not_utf8_is_refused(db_path: Path) -> None:
    sidecar = sidecar_start(db_path, http_port=0, api_token="secret")
    conn = HTTPConnection("127.0.0.1", sidecar.http_port or 0, timeout=WAIT)
    try:
        conn.request("GET", "/v1.0/metadata", headers={"dapr-api-token": "s\xe9cret\x80"})
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
        sidecar.stop()

    assert status == 401 and body == b"invalid api token\n"
