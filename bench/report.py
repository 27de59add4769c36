"""The main table: a row per configuration, columns of figures, and each row's ratios to the
reference row (the SDK floor with as many worker processes). A new configuration is a new row;
the table needs no change for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]

# What every row is read against: a backend that does nothing, the SDK's own cost.
REFERENCE = "sdk-floor"


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Row], Any]
    digits: int = 1


FIGURES = [
    Column("configuration", lambda r: r["label"]),
    Column("worker procs", lambda r: r["workers"]),
    Column("throughput wf/s", lambda r: r["throughput_wps"]),
    Column("seq p50 ms", lambda r: r["seq_p50_ms"]),
    Column("seq p99 ms", lambda r: r["seq_p99_ms"]),
    Column("engine CPU ms/wf", lambda r: r["cpu_ms_per_wf"]["engine"]),
    Column("worker CPU ms/wf", lambda r: r["cpu_ms_per_wf"]["workers"]),
    Column("all CPU ms/wf", lambda r: r["cpu_ms_per_wf"]["total"]),
    Column("engine peak RSS MB", lambda r: r["peak_rss_mb"]["engine"]),
    Column(
        "worker peak RSS MB", lambda r: "/".join(f"{x:.0f}" for x in r["peak_rss_mb"]["workers"])
    ),
    Column("other load (cores)", lambda r: r["other_load_cores"], 2),
]

# Figures read as a ratio to the reference row's: name -> the figure.
RATIOS: dict[str, Callable[[Row], float | None]] = {
    "throughput": lambda r: r["throughput_wps"],
    "seq_p50": lambda r: r["seq_p50_ms"],
    "all_cpu": lambda r: r["cpu_ms_per_wf"]["total"],
}
RATIO_HEADERS = {
    "throughput": "wf/s ÷ floor",
    "seq_p50": "seq p50 ÷ floor",
    "all_cpu": "CPU ÷ floor",
}


def reference_for(row: Row, rows: list[Row]) -> Row | None:
    return next(
        (r for r in rows if r["config"] == REFERENCE and r["workers"] == row["workers"]), None
    )


def ratios_to_reference(row: Row, rows: list[Row]) -> dict[str, float | None]:
    """``row``'s figures divided by the reference row's with as many worker processes (None
    for every ratio when that row was not run)."""
    ref = reference_for(row, rows)
    return {
        name: None if ref is None else ratio(figure(row), figure(ref))
        for name, figure in RATIOS.items()
    }


def main_table(rows: list[Row]) -> str:
    headers = [c.header for c in FIGURES] + list(RATIO_HEADERS.values())
    cells = []
    for row in rows:
        ratios = ratios_to_reference(row, rows)
        cells.append(
            [fmt(c.value(row), c.digits) for c in FIGURES]
            + [fmt(ratios[name], 2) for name in RATIO_HEADERS]
        )
    return table(headers, cells)
