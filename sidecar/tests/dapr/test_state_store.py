"""StateStore on a real SQLite file: values, ETags, concurrency, atomicity, durability."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from sidecar.dapr.state_store import (
    FIRST_WRITE,
    DeleteRequest,
    ETagInvalid,
    ETagMismatch,
    IllegalKey,
    SetRequest,
    StateRequestInvalid,
    StateStore,
    StateStoreNotConfigured,
    StateStoreNotFound,
    TransactionFailed,
)
from sidecar.storage.store import Store

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(fn(), 10)

    return asyncio.run(main())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = Store(str(tmp_path / "state.db"))
    store.start()
    yield store
    store.close()


@pytest.fixture
def state(db: Store) -> StateStore:
    return StateStore(db, ["statestore", "other"])


def test_save_then_get_returns_value_and_etag(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("cars", b'{"quantity": 10}')])
        entry = await state.get("statestore", "cars")
        assert entry.value == b'{"quantity": 10}'
        assert entry.etag is not None and entry.etag.isdigit()

    run(body)


def test_get_missing_key_has_no_value_and_no_etag(state: StateStore) -> None:
    entry = run(lambda: state.get("statestore", "nothing"))
    assert (entry.key, entry.value, entry.etag) == ("nothing", None, None)


def test_save_with_matching_etag_updates_and_issues_new_etag(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("k", b"1")])
        first = await state.get("statestore", "k")
        await state.save("statestore", [SetRequest("k", b"2", etag=first.etag)])
        second = await state.get("statestore", "k")
        assert second.value == b"2"
        assert second.etag != first.etag

    run(body)


def test_save_with_stale_etag_is_refused_and_keeps_value(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("k", b"1")])
        stale = (await state.get("statestore", "k")).etag
        await state.save("statestore", [SetRequest("k", b"2")])
        with pytest.raises(ETagMismatch) as info:
            await state.save("statestore", [SetRequest("k", b"3", etag=stale)])
        assert info.value.code == "ABORTED" and info.value.http_status == 409
        assert info.value.error_code == "ERR_STATE_SAVE"
        assert info.value.message.startswith(
            "failed saving state in state store statestore: possible etag mismatch."
            " error from state store: "
        )
        assert (await state.get("statestore", "k")).value == b"2"

    run(body)


def test_save_with_etag_for_missing_key_is_a_mismatch(state: StateStore) -> None:
    with pytest.raises(ETagMismatch, match="key 'ghost' does not exist"):
        run(lambda: state.save("statestore", [SetRequest("ghost", b"1", etag="12345")]))
    assert run(lambda: state.get("statestore", "ghost")).value is None


def test_save_with_malformed_etag_is_invalid(state: StateStore) -> None:
    with pytest.raises(ETagInvalid) as info:
        run(lambda: state.save("statestore", [SetRequest("k", b"1", etag="not-an-etag")]))
    assert info.value.code == "INVALID_ARGUMENT" and info.value.http_status == 400
    assert "invalid etag value: 'not-an-etag'" in info.value.message


def test_empty_etag_means_no_etag(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("k", b"1")])
        await state.save("statestore", [SetRequest("k", b"2", etag="")])
        assert (await state.get("statestore", "k")).value == b"2"

    run(body)


def test_first_write_without_etag_inserts_once(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("k", b"1", concurrency=FIRST_WRITE)])
        with pytest.raises(ETagMismatch, match="key 'k' already exists"):
            await state.save("statestore", [SetRequest("k", b"2", concurrency=FIRST_WRITE)])
        current = await state.get("statestore", "k")
        assert current.value == b"1"
        await state.save(
            "statestore", [SetRequest("k", b"3", etag=current.etag, concurrency=FIRST_WRITE)]
        )
        assert (await state.get("statestore", "k")).value == b"3"

    run(body)


def test_bulk_save_with_one_stale_etag_writes_nothing(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("a", b"a1"), SetRequest("b", b"b1")])
        with pytest.raises(ETagMismatch):
            await state.save(
                "statestore", [SetRequest("a", b"a2"), SetRequest("b", b"b2", etag="777")]
            )
        entries = await state.get_bulk("statestore", ["a", "b"])
        assert [e.value for e in entries] == [b"a1", b"b1"]

    run(body)


def test_delete_honours_etag(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("k", b"1")])
        etag = (await state.get("statestore", "k")).etag
        with pytest.raises(ETagMismatch) as info:
            await state.delete("statestore", DeleteRequest("k", etag="99"))
        assert info.value.error_code == "ERR_STATE_DELETE"
        assert info.value.message.startswith(
            "failed deleting state with key k: possible etag mismatch."
        )
        assert (await state.get("statestore", "k")).value == b"1"
        await state.delete("statestore", DeleteRequest("k", etag=etag))
        assert (await state.get("statestore", "k")).value is None

    run(body)


def test_delete_missing_key_without_etag_succeeds(state: StateStore) -> None:
    run(lambda: state.delete("statestore", DeleteRequest("never-there")))


def test_etag_of_deleted_key_does_not_match_the_recreated_key(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("k", b"old")])
        old = (await state.get("statestore", "k")).etag
        await state.delete("statestore", DeleteRequest("k"))
        await state.save("statestore", [SetRequest("k", b"new")])
        with pytest.raises(ETagMismatch):
            await state.save("statestore", [SetRequest("k", b"lost update", etag=old)])
        assert (await state.get("statestore", "k")).value == b"new"

    run(body)


def test_get_bulk_keeps_request_order_and_reports_missing_keys(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("x", b"1"), SetRequest("y", b"2")])
        entries = await state.get_bulk("statestore", ["y", "missing", "x", "y"])
        assert [(e.key, e.value) for e in entries] == [
            ("y", b"2"),
            ("missing", None),
            ("x", b"1"),
            ("y", b"2"),
        ]
        assert entries[0].etag == entries[3].etag is not None
        assert entries[1].etag is None

    run(body)


def test_transaction_applies_operations_in_order(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("gone", b"1")])
        await state.transact(
            "statestore",
            [
                SetRequest("a", b"1"),
                DeleteRequest("gone"),
                SetRequest("b", b"2"),
                DeleteRequest("b"),
            ],
        )
        entries = await state.get_bulk("statestore", ["a", "gone", "b"])
        assert [e.value for e in entries] == [b"1", None, None]

    run(body)


def test_transaction_with_stale_etag_changes_nothing(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("a", b"1")])
        with pytest.raises(TransactionFailed) as info:
            await state.transact(
                "statestore", [SetRequest("b", b"2"), DeleteRequest("a", etag="5")]
            )
        assert info.value.code == "INTERNAL" and info.value.http_status == 500
        assert info.value.error_code == "ERR_STATE_TRANSACTION"
        assert info.value.message.startswith(
            "error while executing state transaction: possible etag mismatch."
        )
        entries = await state.get_bulk("statestore", ["a", "b"])
        assert [e.value for e in entries] == [b"1", None]

    run(body)


def test_stores_do_not_share_keys(state: StateStore) -> None:
    async def body() -> None:
        await state.save("statestore", [SetRequest("k", b"main")])
        await state.save("other", [SetRequest("k", b"other")])
        assert (await state.get("statestore", "k")).value == b"main"
        assert (await state.get("other", "k")).value == b"other"

    run(body)


def test_unknown_store_is_refused_as_daprd_does(state: StateStore) -> None:
    with pytest.raises(StateStoreNotFound) as info:
        run(lambda: state.get("nope", "k"))
    assert info.value.message == "state store nope is not found"
    assert info.value.error_code == "ERR_STATE_STORE_NOT_FOUND"
    assert (info.value.code, info.value.http_status) == ("INVALID_ARGUMENT", 400)


def test_no_store_configured_is_a_failed_precondition(db: Store) -> None:
    with pytest.raises(StateStoreNotConfigured) as info:
        run(lambda: StateStore(db, []).save("statestore", [SetRequest("k", b"1")]))
    assert info.value.message == "state store statestore is not configured"
    assert (info.value.code, info.value.http_status) == ("FAILED_PRECONDITION", 500)


def test_key_with_daprd_separator_is_illegal(state: StateStore) -> None:
    with pytest.raises(IllegalKey) as info:
        run(lambda: state.save("statestore", [SetRequest("app||k", b"1")]))
    assert info.value.message == "input key/keyPrefix 'app||k' can't contain '||'"
    assert info.value.error_code == "ERR_MALFORMED_REQUEST"


def test_empty_key_is_refused(state: StateStore) -> None:
    with pytest.raises(StateRequestInvalid, match="state key cannot be empty"):
        run(lambda: state.save("statestore", [SetRequest("", b"1")]))


def test_saved_state_survives_reopening_the_database(tmp_path: Path) -> None:
    path = str(tmp_path / "durable.db")
    first = Store(path)
    first.start()
    run(lambda: StateStore(first, ["statestore"]).save("statestore", [SetRequest("k", b"kept")]))
    first.close()

    second = Store(path)
    second.start()
    try:
        entry = run(lambda: StateStore(second, ["statestore"]).get("statestore", "k"))
    finally:
        second.close()
    assert entry.value == b"kept"
