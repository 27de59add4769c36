"""The table and the targets: every verdict is computed from the figures of this run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


MAIN_HEADERS = [
    "configuration",
    "worker procs",
    "throughput wf/s",
    "seq p50 ms",
    "seq p99 ms",
    "engine CPU ms/wf",
    "worker CPU ms/wf",
    "all CPU ms/wf",
    "engine peak RSS MB",
    "worker peak RSS MB",
    "other load (cores)",
]


def main_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        cpu = r["cpu_ms_per_wf"]
        rss = r["peak_rss_mb"]
        workers_rss = rss.get("workers") or []
        rows.append(
            [
                r["label"],
                str(r["workers"]),
                fmt(r["throughput_wps"]),
                fmt(r["seq_p50_ms"]),
                fmt(r["seq_p99_ms"]),
                fmt(cpu.get("engine")),
                fmt(cpu.get("workers")),
                fmt(cpu.get("total")),
                fmt(rss.get("engine")),
                "/".join(fmt(x, 0) for x in workers_rss) or "-",
                fmt(r.get("other_load_cores"), 2),
            ]
        )
    return table(MAIN_HEADERS, rows)


@dataclass
class Target:
    name: str
    measured: float | None  # the ratio or value compared with the limit
    limit: float
    higher_is_better: bool
    detail: str = ""
    informational: bool = False  # shown for comparison, not one of the targets

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "N/A"
        if self.informational:
            return "info"
        ok = self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit
        return "PASS" if ok else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "verdict": self.verdict,
            "measured": None if self.measured is None else round(self.measured, 3),
            "limit": self.limit,
            "comparison": ">=" if self.higher_is_better else "<=",
            "detail": self.detail,
        }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def find(results: list[dict[str, Any]], config: str, workers: int) -> dict[str, Any] | None:
    for r in results:
        if r["config"] == config and r["workers"] == workers:
            return r
    return None


def main_targets(results: list[dict[str, Any]]) -> list[Target]:
    def tput(config: str, workers: int) -> float | None:
        r = find(results, config, workers)
        return None if r is None else r["throughput_wps"]

    def p50(config: str, workers: int) -> float | None:
        r = find(results, config, workers)
        return None if r is None else r["seq_p50_ms"]

    targets = []
    for w in (1, 2):
        d, m = tput("sidecar-durable", w), tput("sidecar-memory", w)
        targets.append(
            Target(
                f"durable throughput within 10% of in-memory ({w} worker{'s' if w > 1 else ''})",
                ratio(d, m),
                0.90,
                True,
                f"durable {fmt(d)} / in-memory {fmt(m)} wf/s",
            )
        )
    # The targets compare with DBOS as it sets SQLite up (the figures the targets were set
    # from); the same ratios against DBOS on WAL are printed for comparison.
    for dbos, informational in (("dbos", False), ("dbos-wal", True)):
        base = tput(dbos, 1)
        name = "DBOS" if dbos == "dbos" else "DBOS on WAL"
        for w, limit in ((1, 1.3), (2, 1.8)):
            d = tput("sidecar-durable", w)
            targets.append(
                Target(
                    f"{w} worker process{'es' if w > 1 else ''}: durable >= {limit}x "
                    f"{name} throughput",
                    ratio(d, base),
                    limit,
                    True,
                    f"durable {fmt(d)} / {name} (1 process) {fmt(base)} wf/s",
                    informational,
                )
            )
        d, b = p50("sidecar-durable", 1), p50(dbos, 1)
        targets.append(
            Target(
                f"sequential p50 <= 1.25x {name}'s",
                ratio(d, b),
                1.25,
                False,
                f"durable {fmt(d)} ms / {name} {fmt(b)} ms",
                informational,
            )
        )
    # How close to the SDK's own ceiling: the same figures against a backend doing nothing.
    for w in (1, 2):
        d, f = tput("sidecar-durable", w), tput("sdk-floor", w)
        targets.append(
            Target(
                f"durable throughput vs the SDK floor ({w} worker{'s' if w > 1 else ''})",
                ratio(d, f),
                1.0,
                True,
                f"durable {fmt(d)} / floor {fmt(f)} wf/s",
                informational=True,
            )
        )
    d, f = p50("sidecar-durable", 1), p50("sdk-floor", 1)
    targets.append(
        Target(
            "sequential p50 vs the SDK floor",
            ratio(d, f),
            1.0,
            False,
            f"durable {fmt(d)} ms / floor {fmt(f)} ms",
            informational=True,
        )
    )
    return targets


def targets_table(targets: list[Target]) -> str:
    rows = [
        [
            t.verdict,
            t.name,
            fmt(t.measured, 2),
            ("≥ " if t.higher_is_better else "≤ ") + fmt(t.limit, 2),
            t.detail,
        ]
        for t in targets
    ]
    return table(["verdict", "target", "measured", "limit", "figures"], rows)
