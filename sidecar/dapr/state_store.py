"""The Dapr state API's key/value store, kept in the sidecar's SQLite database (``state`` table).

One ``StateStore`` serves every configured store name (``components.py``); rows are keyed
by (store, key), so stores never see each other's keys. Values are opaque bytes: the edges turn
HTTP JSON values into bytes before calling in, as daprd does before handing them to a component.

Contract:

* Writes (``save``, ``delete``, ``transact``) go through ``Store.write``: each call is one op in
  the group commit, so it is all-or-nothing (a bulk save or a transaction with one stale ETag
  changes nothing) and the coroutine returns only after the data is on disk. Reads see committed
  data only.
* ETags are opaque strings issued by this store (a fresh random 62-bit number per write, so a key
  that is deleted and written again never gets an ETag a client may still hold). A write or
  delete that carries an ETag succeeds only if it matches the stored one; a write without one
  wins unless its concurrency is ``first-write``, which then only inserts. An empty ETag counts
  as none, as daprd treats it.
* Errors are ``StateError`` subclasses carrying daprd's error code, HTTP status and message for
  the operation, so both edges report exactly what daprd reports. Nothing changes on error.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.errors import SidecarError
from sidecar.storage import sql
from sidecar.storage.store import Store

FIRST_WRITE = "first-write"
LAST_WRITE = "last-write"

# daprd reserves this separator for its key prefixes ("<appID>||<key>") and refuses keys holding it
# (dapr/dapr pkg/components/state/state_config.go); we refuse them too so data moves both ways.
KEY_SEPARATOR = "||"

_ETAG_BITS = 62


@dataclass(frozen=True)
class StateEntry:
    """One key as read: ``value``/``etag`` are ``None`` when the key does not exist."""

    key: str
    value: bytes | None
    etag: str | None


@dataclass(frozen=True)
class SetRequest:
    key: str
    value: bytes
    etag: str | None = None
    concurrency: str = ""  # FIRST_WRITE, LAST_WRITE or "" (= last-write)


@dataclass(frozen=True)
class DeleteRequest:
    key: str
    etag: str | None = None
    concurrency: str = ""


# -- errors -------------------------------------------------------------------------------------


class StateError(SidecarError):
    """A state API failure as daprd reports it: ``error_code`` is its ``errorCode`` (HTTP body),
    ``reason`` the ErrorInfo reason on gRPC, ``http_status`` the HTTP status."""

    code = "INTERNAL"
    http_status = 500

    def __init__(self, message: str, *, error_code: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.reason = reason or error_code


class StateStoreNotFound(StateError):
    code = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, store: str) -> None:
        super().__init__(
            f"state store {store} is not found",
            error_code="ERR_STATE_STORE_NOT_FOUND",
            reason="DAPR_STATE_NOT_FOUND",
        )
        self.store = store


class StateStoreNotConfigured(StateError):
    code = "FAILED_PRECONDITION"
    http_status = 500

    def __init__(self, store: str) -> None:
        super().__init__(
            f"state store {store} is not configured",
            error_code="ERR_STATE_STORE_NOT_CONFIGURED",
            reason="DAPR_STATE_NOT_CONFIGURED",
        )
        self.store = store


class IllegalKey(StateError):
    code = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, key: str) -> None:
        super().__init__(
            f"input key/keyPrefix '{key}' can't contain '{KEY_SEPARATOR}'",
            error_code="ERR_MALFORMED_REQUEST",
            reason="DAPR_STATE_ILLEGAL_KEY",
        )
        self.key = key


class StateRequestInvalid(StateError):
    """Bad input the store itself refuses (empty key, unknown concurrency or operation)."""

    code = "INVALID_ARGUMENT"
    http_status = 400


class UnsupportedOperation(StateError):
    """A transaction operation other than upsert/delete (daprd: UNIMPLEMENTED on gRPC, 400 on
    HTTP)."""

    code = "UNIMPLEMENTED"
    http_status = 400

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"operation type {operation} not supported",
            error_code="ERR_NOT_SUPPORTED_STATE_OPERATION",
        )


class ETagMismatch(StateError):
    code = "ABORTED"
    http_status = 409


class ETagInvalid(StateError):
    code = "INVALID_ARGUMENT"
    http_status = 400


class TransactionFailed(StateError):
    """daprd reports every store error of a transaction, ETag errors included, as
    ERR_STATE_TRANSACTION with 500/INTERNAL (pkg/api/grpc/grpc.go, pkg/api/http/http.go)."""


class _Conflict(Exception):
    """Raised inside a write op; the public method turns it into the operation's error."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "mismatch" | "invalid"
        self.detail = detail


# -- the store ----------------------------------------------------------------------------------


class StateStore:
    """The state stores named ``names``, all kept in ``store``'s ``state`` table."""

    def __init__(self, store: Store, names: Sequence[str]) -> None:
        self.store = store
        self.names = tuple(names)

    def check_store(self, name: str) -> None:
        """Raise daprd's error for a store name that is not served."""
        if not self.names:
            raise StateStoreNotConfigured(name)
        if name not in self.names:
            raise StateStoreNotFound(name)

    async def get(self, store: str, key: str) -> StateEntry:
        self.check_store(store)
        _check_key(key, "ERR_STATE_GET")
        row = self.store.read(lambda conn: sql.read_state(conn, store, key))
        if row is None:
            return StateEntry(key, None, None)
        return StateEntry(key, row[0], str(row[1]))

    async def get_bulk(self, store: str, keys: Sequence[str]) -> list[StateEntry]:
        """Entries in the order of ``keys`` (duplicates repeated), absent keys included."""
        self.check_store(store)
        for key in keys:
            _check_key(key, "ERR_STATE_BULK_GET")
        unique = list(dict.fromkeys(keys))

        found = self.store.read(lambda conn: sql.read_states(conn, store, unique)) if unique else {}
        return [
            StateEntry(k, found[k][0], str(found[k][1]))
            if k in found
            else StateEntry(k, None, None)
            for k in keys
        ]

    async def save(self, store: str, items: Sequence[SetRequest]) -> None:
        """Write ``items`` atomically (one transaction: all or none)."""
        self.check_store(store)
        for item in items:
            _check_key(item.key, "ERR_STATE_SAVE")
            _check_concurrency(item.concurrency, "ERR_STATE_SAVE")
        if not items:
            return

        def op(conn: sqlite3.Connection) -> None:
            for item in items:
                _apply_set(conn, store, item)

        try:
            await self.store.write(op)
        except _Conflict as exc:
            raise _etag_error(
                exc, "ERR_STATE_SAVE", f"failed saving state in state store {store}"
            ) from None

    async def delete(self, store: str, request: DeleteRequest) -> None:
        """Delete one key; deleting an absent key without an ETag succeeds."""
        self.check_store(store)
        _check_key(request.key, "ERR_STATE_DELETE")
        _check_concurrency(request.concurrency, "ERR_STATE_DELETE")
        try:
            await self.store.write(lambda conn: _apply_delete(conn, store, request))
        except _Conflict as exc:
            raise _etag_error(
                exc, "ERR_STATE_DELETE", f"failed deleting state with key {request.key}"
            ) from None

    async def delete_bulk(self, store: str, requests: Sequence[DeleteRequest]) -> None:
        """Delete several keys atomically (gRPC DeleteBulkState)."""
        self.check_store(store)
        for request in requests:
            _check_key(request.key, "ERR_STATE_BULK_DELETE")
            _check_concurrency(request.concurrency, "ERR_STATE_BULK_DELETE")
        if not requests:
            return

        def op(conn: sqlite3.Connection) -> None:
            for request in requests:
                _apply_delete(conn, store, request)

        try:
            await self.store.write(op)
        except _Conflict as exc:
            raise _etag_error(
                exc, "ERR_STATE_BULK_DELETE", f"failed deleting state in state store {store}"
            ) from None

    async def transact(self, store: str, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        """Apply upserts and deletes in order, atomically."""
        self.check_store(store)
        for operation in operations:
            _check_key(operation.key, "ERR_STATE_TRANSACTION")
            _check_concurrency(operation.concurrency, "ERR_STATE_TRANSACTION")
        if not operations:
            return

        def op(conn: sqlite3.Connection) -> None:
            for operation in operations:
                if isinstance(operation, SetRequest):
                    _apply_set(conn, store, operation)
                else:
                    _apply_delete(conn, store, operation)

        try:
            await self.store.write(op)
        except _Conflict as exc:
            raise TransactionFailed(
                f"error while executing state transaction: {_etag_text(exc)}",
                error_code="ERR_STATE_TRANSACTION",
            ) from None


# -- write ops (on the store's writer thread; an op that raises is rolled back alone) --------


def _apply_set(conn: sqlite3.Connection, store: str, item: SetRequest) -> None:
    etag = _new_etag()
    if item.etag:
        expected = _parse_etag(item.etag)
        cur = conn.execute(sql.STATE_UPDATE_IF_ETAG, (item.value, etag, store, item.key, expected))
        if cur.rowcount == 0:
            raise _Conflict("mismatch", _mismatch_detail(conn, store, item.key, item.etag))
    elif item.concurrency == FIRST_WRITE:
        cur = conn.execute(sql.STATE_INSERT_IF_ABSENT, (store, item.key, item.value, etag))
        if cur.rowcount == 0:
            raise _Conflict(
                "mismatch",
                f"key '{item.key}' already exists and first-write concurrency needs an etag",
            )
    else:
        conn.execute(sql.STATE_UPSERT, (store, item.key, item.value, etag))


def _apply_delete(conn: sqlite3.Connection, store: str, request: DeleteRequest) -> None:
    if request.etag:
        expected = _parse_etag(request.etag)
        cur = conn.execute(sql.STATE_DELETE_IF_ETAG, (store, request.key, expected))
        if cur.rowcount == 0:
            raise _Conflict("mismatch", _mismatch_detail(conn, store, request.key, request.etag))
    else:
        conn.execute(sql.STATE_DELETE, (store, request.key))


def _mismatch_detail(conn: sqlite3.Connection, store: str, key: str, etag: str) -> str:
    exists = conn.execute(sql.STATE_EXISTS, (store, key)).fetchone()
    if exists is None:
        return f"key '{key}' does not exist, so etag '{etag}' cannot match"
    return f"etag '{etag}' does not match the current etag of key '{key}'"


def _new_etag() -> int:
    return secrets.randbits(_ETAG_BITS) | 1  # never 0, so never confused with "no etag"


def _parse_etag(etag: str) -> int:
    if not etag.isascii() or not etag.isdigit() or len(etag) > 19 or int(etag) >= 1 << _ETAG_BITS:
        raise _Conflict("invalid", f"'{etag}' is not an etag issued by this store")
    return int(etag)


def _etag_text(exc: _Conflict) -> str:
    # The wording of components-contrib's state.ETagError, which daprd's messages embed.
    if exc.kind == "invalid":
        return f"invalid etag value: {exc.detail}"
    return f"possible etag mismatch. error from state store: {exc.detail}"


def _etag_error(exc: _Conflict, error_code: str, context: str) -> StateError:
    cls = ETagInvalid if exc.kind == "invalid" else ETagMismatch
    return cls(f"{context}: {_etag_text(exc)}", error_code=error_code)


def _check_key(key: str, error_code: str) -> None:
    if not key:
        raise StateRequestInvalid("state key cannot be empty", error_code=error_code)
    if KEY_SEPARATOR in key:
        raise IllegalKey(key)


def _check_concurrency(concurrency: str, error_code: str) -> None:
    if concurrency not in ("", FIRST_WRITE, LAST_WRITE):
        raise StateRequestInvalid(
            f"concurrency '{concurrency}' is not one of '{FIRST_WRITE}', '{LAST_WRITE}'",
            error_code=error_code,
        )
