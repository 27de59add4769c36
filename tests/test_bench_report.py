"""The benchmark's main table: every row's figures, and its ratios to the SDK floor's row with
as many worker processes, computed from the run's own figures (bench/report.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report


def row(config: str, workers: int, wps: float, p50: float, cpu: float) -> dict[str, Any]:
    return {
        "config": config,
        "label": config,
        "workers": workers,
        "throughput_wps": wps,
        "seq_p50_ms": p50,
        "seq_p99_ms": p50 * 2,
        "cpu_ms_per_wf": {"engine": None, "workers": cpu, "client": None, "total": cpu},
        "peak_rss_mb": {"engine": None, "workers": [60.4] * workers},
        "other_load_cores": 0.0,
    }


ROWS = [
    row("sidecar-durable", 1, 65.0, 24.0, 18.0),
    row("sidecar-durable", 2, 80.0, 25.0, 16.0),
    row("sdk-floor", 1, 64.0, 20.0, 15.0),
    row("sdk-floor", 2, 100.0, 20.0, 16.0),
    row("dbos", 1, 40.0, 16.0, 12.0),
    row("dbos", 3, 45.0, 16.0, 12.0),
]


def cells(table: str, label: str, workers: int) -> list[str]:
    """The cells of the table's line for ``label`` with ``workers`` worker processes."""
    for line in table.splitlines()[2:]:
        found = [c.strip() for c in line.strip("|").split("|")]
        if found[0] == label and found[1] == str(workers):
            return found
    raise AssertionError(f"no line for {label} x{workers} in\n{table}")


def test_each_row_is_read_against_the_floor_with_as_many_workers() -> None:
    ratios = report.ratios_to_reference(ROWS[1], ROWS)
    assert ratios["throughput"] == pytest.approx(0.8)  # 80 / the floor's 100 with 2 workers
    assert ratios["seq_p50"] == pytest.approx(1.25)
    assert ratios["all_cpu"] == pytest.approx(1.0)
    assert report.ratios_to_reference(ROWS[4], ROWS)["throughput"] == pytest.approx(40 / 64)


def test_the_table_shows_the_figures_and_the_ratios_of_every_row() -> None:
    table = report.main_table(ROWS)
    headers = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert headers[-3:] == ["wf/s ÷ floor", "seq p50 ÷ floor", "CPU ÷ floor"]
    assert len(table.splitlines()) == 2 + len(ROWS)
    durable = cells(table, "sidecar-durable", 1)
    assert durable[2:5] == ["65.0", "24.0", "48.0"]  # throughput, sequential p50 and p99
    assert durable[-3:] == ["1.02", "1.20", "1.20"]
    assert cells(table, "sdk-floor", 2)[-3:] == ["1.00", "1.00", "1.00"]
    assert cells(table, "sidecar-durable", 2)[9] == "60/60"  # each worker's peak RSS


def test_a_row_without_a_floor_row_has_figures_but_no_ratios() -> None:
    table = report.main_table(ROWS)
    assert cells(table, "dbos", 3)[2] == "45.0"
    assert cells(table, "dbos", 3)[-3:] == ["-", "-", "-"]
    without_floor = [r for r in ROWS if r["config"] != "sdk-floor"]
    assert report.ratios_to_reference(ROWS[0], without_floor) == {
        "throughput": None,
        "seq_p50": None,
        "all_cpu": None,
    }


def test_the_table_judges_nothing() -> None:
    table = report.main_table(ROWS)
    for verdict in ("PASS", "MISS", "target"):
        assert verdict not in table


def test_the_scale_summary_shows_each_comparison_of_the_checks_that_ran() -> None:
    from bench import scale

    chains = {
        "10": {"sidecar_cpu_ms_per_step": 2.0},
        "1000": {"sidecar_cpu_ms_per_step": 2.5},
        "sidecar_ratio": 1.25,
    }
    summary = scale.summary_table({"sizes": {}, "chains": chains}).splitlines()
    assert len(summary) == 2 + 1  # the chain's line only: the other checks did not run
    assert [c.strip() for c in summary[2].strip("|").split("|")] == [
        "1000- / 10-activity chain: sidecar CPU ms per step",
        "2.50",
        "2.00",
        "1.25",
    ]
