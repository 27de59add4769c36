"""Request bodies of the Dapr HTTP API: read within the body limit and parsed as daprd parses
them, so that every body gets daprd's answer and nothing unparseable is stored.

* A body over ``sidecar.limits.MAX_BODY_BYTES`` (daprd's ``--max-body-size``) is refused as
  daprd refuses it (its body reader stops with "stream too large": dapr/kit streams): 400
  ``ERR_BODY_READ`` where daprd reads the body raw (workflow input, event data, metadata), 400
  ``ERR_MALFORMED_REQUEST`` where it decodes JSON straight off the stream (state).
* JSON is held to what Go's encoding/json, daprd's decoder, accepts: no ``NaN`` or
  ``Infinity``, no number beyond a float64's range (daprd decodes values into ``any``, so
  ``1e400`` is refused there too), bounded nesting (Go stops at 10,000 levels; Python's parser
  at its recursion limit, about 1,000, and deeper is refused with Go's words "exceeded max
  depth"). A stored value is therefore always valid JSON, and a bulk read that embeds it is too.
* Text must be Unicode: a lone surrogate (``"\\ud800"``) or bytes that are not UTF-8 are
  refused. daprd's Go decoder silently replaces both with U+FFFD instead, which makes distinct
  keys collide; a clear 400 is the kinder answer (docs/sidecar-apis.md lists the difference).
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from sidecar.dapr.state_store import FIRST_WRITE, LAST_WRITE, SetRequest
from sidecar.errors import SidecarError

BODY_READ = "ERR_BODY_READ"
MALFORMED_REQUEST = "ERR_MALFORMED_REQUEST"
_DESERIALIZING = "failed deserializing HTTP body: "


class MalformedRequest(SidecarError):
    """A body daprd refuses (400): ``error_code`` ERR_MALFORMED_REQUEST unless given."""

    code = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, message: str, error_code: str = MALFORMED_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.reason = error_code


def compact_json(value: Any) -> str:
    """JSON text as daprd writes it: compact, non-ASCII kept, never NaN or Infinity."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


async def read_raw(request: web.Request) -> bytes:
    """The body of a route daprd reads raw (workflow input, event data, metadata)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise MalformedRequest(
            "failed to read request body: stream too large", error_code=BODY_READ
        ) from None


async def read_json(request: web.Request, *, prefix: str = _DESERIALIZING) -> Any:
    """The body as JSON, refused as daprd refuses it (``prefix`` begins each message: daprd's
    state save reports the decoder's error bare, its other routes after this prefix)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise MalformedRequest(f"{prefix}stream too large") from None
    try:
        return json.loads(
            raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError:
        raise MalformedRequest(f"{prefix}the body is not UTF-8 text") from None
    except RecursionError:
        raise MalformedRequest(f"{prefix}invalid character '[' exceeded max depth") from None
    except ValueError as exc:  # json.JSONDecodeError, a constant, a number out of range
        raise MalformedRequest(f"{prefix}invalid JSON: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of the range of a float64")
    return value


def is_strict_json(text: str) -> bool:
    """Whether ``text`` is JSON that ``read_json`` would take (a bulk read embeds only such)."""
    try:
        json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        return False
    return True


def json_value_bytes(value: Any) -> bytes:
    """A decoded JSON value as the compact UTF-8 JSON text the store keeps."""
    try:
        return compact_json(value).encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRequest(f"{_DESERIALIZING}a string holds a lone surrogate") from None
    except RecursionError:
        raise MalformedRequest(
            f"{_DESERIALIZING}invalid character '[' exceeded max depth"
        ) from None


# -- the state API's shapes --------------------------------------------------------------------


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedRequest(f"{_DESERIALIZING}each {what} must be a JSON object")
    return value


def as_text(value: Any, field: str) -> str:
    """A string field: a JSON string that is valid Unicode."""
    if not isinstance(value, str):
        raise MalformedRequest(f'{_DESERIALIZING}"{field}" must be a string')
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRequest(f'{_DESERIALIZING}"{field}" holds a lone surrogate') from None
    return value


def text_field(item: dict[str, Any], field: str) -> str:
    return as_text(item.get(field, ""), field)


def optional_text_field(item: dict[str, Any], field: str) -> str | None:
    if item.get(field) is None:
        return None
    return text_field(item, field)


def concurrency(item: dict[str, Any]) -> str:
    options = item.get("options") or {}
    if not isinstance(options, dict):
        raise MalformedRequest(f'{_DESERIALIZING}"options" must be an object')
    value = options.get("concurrency") or ""
    if value not in ("", FIRST_WRITE, LAST_WRITE):
        raise MalformedRequest(f"{_DESERIALIZING}unknown concurrency {value!r}")
    return str(value)


def set_request(item: dict[str, Any]) -> SetRequest:
    # The JSON value is stored as its JSON text, as daprd's stores marshal a decoded value.
    return SetRequest(
        key=text_field(item, "key"),
        value=json_value_bytes(item.get("value")),
        etag=optional_text_field(item, "etag"),
        concurrency=concurrency(item),
    )
