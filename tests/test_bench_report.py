"""The benchmark's verdicts come from the run's own figures (bench/report.py)."""

from __future__ import annotations

from typing import Any

from bench import report


def row(config: str, workers: int, wps: float, p50: float) -> dict[str, Any]:
    return {"config": config, "workers": workers, "throughput_wps": wps, "seq_p50_ms": p50}


def verdicts(results: list[dict[str, Any]]) -> dict[str, tuple[str, float | None]]:
    return {t.name: (t.verdict, t.measured) for t in report.main_targets(results)}


RESULTS = [
    row("sidecar-durable", 1, 65.0, 24.0),
    row("sidecar-durable", 2, 80.0, 25.0),
    row("sidecar-memory", 1, 70.0, 23.0),
    row("sidecar-memory", 2, 100.0, 23.0),
    row("sdk-floor", 1, 64.0, 20.0),
    row("sdk-floor", 2, 82.0, 20.0),
    row("dbos", 1, 40.0, 16.0),
    row("dbos-wal", 1, 60.0, 11.0),
]


def test_targets_are_judged_against_dbos_as_it_sets_sqlite_up() -> None:
    v = verdicts(RESULTS)
    assert v["1 worker process: durable >= 1.3x DBOS throughput"] == ("PASS", 65.0 / 40.0)
    assert v["2 worker processes: durable >= 1.8x DBOS throughput"] == ("PASS", 2.0)
    assert v["sequential p50 <= 1.25x DBOS's"] == ("MISS", 24.0 / 16.0)
    assert v["durable throughput within 10% of in-memory (1 worker)"][0] == "PASS"
    assert v["durable throughput within 10% of in-memory (2 workers)"] == ("MISS", 0.8)


def test_dbos_on_wal_and_the_sdk_floor_are_shown_but_not_judged() -> None:
    v = verdicts(RESULTS)
    assert v["1 worker process: durable >= 1.3x DBOS on WAL throughput"] == ("info", 65.0 / 60.0)
    assert v["sequential p50 vs the SDK floor"] == ("info", 24.0 / 20.0)
    assert v["durable throughput vs the SDK floor (2 workers)"][0] == "info"


def test_a_configuration_left_out_gives_no_verdict() -> None:
    v = verdicts([r for r in RESULTS if r["config"] != "dbos"])
    assert v["1 worker process: durable >= 1.3x DBOS throughput"] == ("N/A", None)
    table = report.targets_table(report.main_targets(RESULTS))
    assert "| MISS    | sequential p50 <= 1.25x DBOS's" in table
