"""The store's group commit: ops of one batch share a transaction; a failing op fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from sidecar.storage.store import MAX_DEFERRED, Store


def insert(key: str):
    def op(conn: sqlite3.Connection) -> str:
        conn.execute(
            "INSERT INTO state (store, key, value, etag) VALUES ('s', ?, x'00', 1)", (key,)
        )
        return key

    return op


def insert_then_fail(key: str):
    def op(conn: sqlite3.Connection) -> None:
        insert(key)(conn)
        raise ValueError(f"{key} refused")

    return op


def keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [k for (k,) in conn.execute("SELECT key FROM state ORDER BY key")]


def test_a_failing_op_is_rolled_back_alone_and_the_rest_of_its_batch_commits(
    tmp_path: Path,
) -> None:
    store = Store(str(tmp_path / "s.db"))
    try:
        conn = store._writer
        batch = [
            (insert("a"), None, None),
            (insert_then_fail("b"), None, None),
            (insert("c"), None, None),
        ]
        results = Store._apply(conn, batch)  # type: ignore[arg-type]
        conn.execute("COMMIT")
    finally:
        store.close()
    assert [(ok, str(value)) for _, ok, value in results] == [
        (True, "a"),
        (False, "b refused"),
        (True, "c"),
    ]
    assert keys(tmp_path / "s.db") == ["a", "c"]


def test_a_batch_without_failures_commits_every_op(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    store.start()

    async def body() -> list[str]:
        return await asyncio.gather(*(store.write(insert(k)) for k in "xyz"))

    try:
        assert asyncio.run(body()) == ["x", "y", "z"]
    finally:
        store.close()
    assert keys(tmp_path / "s.db") == ["x", "y", "z"]


def test_write_reports_the_ops_own_error(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    store.start()

    async def body() -> None:
        await store.write(insert_then_fail("k"))

    try:
        with pytest.raises(ValueError, match="k refused"):
            asyncio.run(body())
    finally:
        store.close()
    assert keys(tmp_path / "s.db") == []


def held_store(tmp_path: Path, delay: float) -> Store:
    store = Store(str(tmp_path / "s.db"), commit_delay=delay)
    store.start()
    return store


async def taken_in(store: Store) -> None:
    """Wait until the writer has taken everything queued into its batch (and, with a defer key
    and a long delay, is holding it for more)."""
    deadline = asyncio.get_running_loop().time() + 10
    while not store._queue.empty():
        assert asyncio.get_running_loop().time() < deadline, "the writer took nothing"
        await asyncio.sleep(0.005)


def test_one_workflows_steps_share_one_commit_until_an_urgent_write_arrives(
    tmp_path: Path,
) -> None:
    # A delay far longer than the test: only the urgent write can end the wait.
    store = held_store(tmp_path, 30)

    async def body() -> list[str]:
        first = store.write(insert("a"), defer_key="wf")
        await taken_in(store)  # the writer is holding "a" for more
        second = store.write(insert("b"), defer_key="wf")
        await taken_in(store)
        assert not first.done() and not second.done()
        urgent = store.write(insert("c"))
        return list(await asyncio.wait_for(asyncio.gather(first, second, urgent), 10))

    try:
        assert asyncio.run(body()) == ["a", "b", "c"]
        assert store.commits == 1
    finally:
        store.close()
    assert keys(tmp_path / "s.db") == ["a", "b", "c"]


def test_a_step_of_another_workflow_ends_the_wait(tmp_path: Path) -> None:
    store = held_store(tmp_path, 30)

    async def body() -> list[str]:
        first = store.write(insert("a"), defer_key="wf-1")
        await taken_in(store)
        other = store.write(insert("b"), defer_key="wf-2")
        return list(await asyncio.wait_for(asyncio.gather(first, other), 10))

    try:
        assert asyncio.run(body()) == ["a", "b"]
        assert store.commits == 1
    finally:
        store.close()


def test_a_held_batch_commits_once_it_holds_max_deferred_steps(tmp_path: Path) -> None:
    store = held_store(tmp_path, 30)
    names = [f"k{i:02}" for i in range(MAX_DEFERRED)]

    async def body() -> list[str]:
        futures = [store.write(insert(k), defer_key="wf") for k in names]
        return list(await asyncio.wait_for(asyncio.gather(*futures), 10))

    try:
        assert asyncio.run(body()) == names
        assert store.commits == 1
    finally:
        store.close()


def test_the_delay_counts_from_the_latest_step(tmp_path: Path) -> None:
    # Steps 0.4 s apart with a 1 s delay: the batch stays open past the first step's second.
    store = held_store(tmp_path, 1.0)

    async def body() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        futures = [store.write(insert("a"), defer_key="wf")]
        for key in "bc":
            await asyncio.sleep(0.4)
            futures.append(store.write(insert(key), defer_key="wf"))
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        return loop.time() - began

    try:
        assert asyncio.run(body()) >= 1.8  # the last step's time plus the delay
        assert store.commits == 1
    finally:
        store.close()
    assert keys(tmp_path / "s.db") == ["a", "b", "c"]


def test_a_held_step_alone_commits_once_the_delay_has_passed(tmp_path: Path) -> None:
    store = held_store(tmp_path, 0.2)

    async def body() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.wait_for(store.write(insert("a"), defer_key="wf"), 10)
        return loop.time() - began

    try:
        assert asyncio.run(body()) >= 0.2
    finally:
        store.close()
    assert keys(tmp_path / "s.db") == ["a"]


def test_closing_the_store_commits_what_was_being_held(tmp_path: Path) -> None:
    store = held_store(tmp_path, 30)

    async def body() -> str:
        held = store.write(insert("a"), defer_key="wf")
        await taken_in(store)
        store.close()  # as the sidecar's shutdown does, on its loop
        return await asyncio.wait_for(held, 10)

    assert asyncio.run(body()) == "a"
    assert keys(tmp_path / "s.db") == ["a"]


def test_flush_commits_what_is_held_at_once(tmp_path: Path) -> None:
    store = held_store(tmp_path, 30)

    async def body() -> list[str | None]:
        held = store.write(insert("a"), defer_key="wf")
        await taken_in(store)
        assert not held.done()
        return list(await asyncio.wait_for(asyncio.gather(held, store.flush()), 10))

    try:
        assert asyncio.run(body()) == ["a", None]
        assert store.commits == 1
    finally:
        store.close()
    assert keys(tmp_path / "s.db") == ["a"]


def test_an_in_memory_store_never_holds_a_commit() -> None:
    assert Store(":memory:", commit_delay=30).commit_delay == 0


@pytest.mark.parametrize("delay", [-0.001, float("nan"), float("inf")])
def test_a_commit_delay_that_is_not_a_duration_is_refused(tmp_path: Path, delay: float) -> None:
    with pytest.raises(ValueError, match="commit_delay"):
        Store(str(tmp_path / "s.db"), commit_delay=delay)
