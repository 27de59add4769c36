"""``python -m bench --web``: the order page's status partial under gunicorn, 50 pollers.

A fresh database (migrated, one seeded order in ``processing`` with a timeline line), gunicorn
serving ``ordersite.wsgi`` as the Procfile does (2 sync workers unless --web-workers), and
``/orders/<id>/`` requested with ``HX-Request: true`` (the status partial):

* pollers (the target): locust (PyPI), 50 users each polling as an open order page does
  (bench/locustfile.py: a request, then 0.5-1.5 s of pause).
* saturation (information, when wrk is installed: ``apt-get install wrk``): wrk with 50
  connections and no pause: the most the partial can serve on this machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.report import Target, fmt
from bench.util import PYTHON, REPO, BenchError, free_port, spawn, stop_process, wait_port

SEED_ORDER = """
from django.utils import timezone
from orders.models import InventoryItem, Order, OrderEvent
item, _ = InventoryItem.objects.get_or_create(
    name="Cars", defaults={"unit_cost": 5000, "on_hand": 100})
order = Order.objects.create(item=item, quantity=1, total_cost=5000, status="processing",
                             scheduled_at=timezone.now())
OrderEvent.objects.create(order=order, step="received",
                          message=f"Received order {order.id} for 1 cars at $5000 !")
print("ORDER", order.id)
"""


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    def duration_ms(value: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
        if not m:
            raise BenchError(f"cannot read wrk duration {value!r}")
        return float(m[1]) * UNITS[m[2]]

    out: dict[str, Any] = {}
    for q in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", text, re.M)
        if m:
            out[f"p{q}_ms"] = round(duration_ms(m[1]), 2)
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if m:
        out["mean_ms"] = round(duration_ms(m[1]), 2)
        out["max_ms"] = round(duration_ms(m[3]), 2)
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if m:
        out["requests"] = int(m[1])
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["requests_per_s"] = float(m[1])
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m[1]) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = m[1].strip() if m else None
    return out


def wrk(url: str, seconds: int, connections: int) -> dict[str, Any]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    cmd += ["-H", "HX-Request: true", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:300]}")
    result = parse_wrk(done.stdout)
    result["raw"] = done.stdout
    return result


def locust(base: str, path: str, users: int, seconds: int, workdir: Path, log: Any) -> dict:
    prefix = workdir / "locust"
    cmd = [
        str(Path(PYTHON).parent / "locust"),
        "-f",
        str(REPO / "bench" / "locustfile.py"),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--host",
        base,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    env = {**os.environ, "BENCH_ORDER_PATH": path}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    log.write(done.stdout + done.stderr)
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        raise BenchError(f"locust failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    with stats.open() as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    row = rows.get("Aggregated") or next(iter(rows.values()))
    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "requests_per_s": round(float(row["Requests/s"]), 1),
        "mean_ms": round(float(row["Average Response Time"]), 2),
        "p50_ms": float(row["50%"]),
        "p90_ms": float(row["90%"]),
        "p99_ms": float(row["99%"]),
        "max_ms": round(float(row["Max Response Time"]), 1),
    }


def cpu_of_tree(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def suite(args: argparse.Namespace, workdir: Path, log: Any, out: dict[str, Any]) -> None:
    print("- web: the order status partial under gunicorn ...", flush=True)
    res: dict[str, Any] = {}
    out["web"] = res
    if not (Path(PYTHON).parent / "locust").exists():
        msg = "locust not found: pip install -r requirements-bench.txt, then run --web again"
        print(f"  {msg}")
        res["skipped"] = msg
        out.setdefault("failures", []).append(f"web: {msg}")
        return
    var = workdir / "web"
    var.mkdir(exist_ok=True)
    env = {
        "ORDERS_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "ordersite.settings",
        "DJANGO_DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }
    # The bench's own SQLite database in var/, whatever DATABASE_URL this shell has.
    base_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    for step in (
        [PYTHON, "manage.py", "migrate", "--noinput"],
        [PYTHON, "manage.py", "shell", "-c", SEED_ORDER],
    ):
        done = subprocess.run(
            step,
            cwd=REPO,
            env={**base_env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        log.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(step[:3])} failed: {done.stderr.strip()[-300:]}")
    order_id = re.search(r"ORDER (\w+)", done.stdout)[1]
    port = free_port()
    workers = args.web_workers
    gunicorn = spawn(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "ordersite.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "10",
        ],
        log,
        env=env,
        drop_env=("DATABASE_URL",),
    )
    base = f"http://127.0.0.1:{port}"
    path = f"/orders/{order_id}/"
    url = base + path
    seconds = 8 if args.quick else 30
    try:
        wait_port(port, gunicorn)
        request = urllib.request.Request(url, headers={"HX-Request": "true"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
            if response.status != 200 or "<html" in body.lower():
                raise BenchError(f"{url} did not answer with the status partial")
        for _ in range(20):  # warm every worker's connection and templates
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        master = psutil.Process(gunicorn.pid)
        runs = [("pollers", 50, seconds)]
        if shutil.which("wrk"):
            runs.append(("saturation", 50, max(5, seconds // 2)))
        else:
            print("  (wrk not installed: no saturation run; apt-get install wrk)")
        for name, conns, secs in runs:
            cpu0, t0 = cpu_of_tree(master), time.perf_counter()
            if name == "pollers":
                r = locust(base, path, conns, secs, workdir, log)
                r["tool"] = "locust"
            else:
                r = wrk(url, secs, conns)
                r["tool"] = "wrk"
            r["gunicorn_cores"] = round(
                (cpu_of_tree(master) - cpu0) / (time.perf_counter() - t0), 2
            )
            r["seconds"] = secs
            r["connections"] = conns
            res[name] = r
            print(
                f"  {name}: {conns} connections, {fmt(r.get('requests_per_s'))} req/s, p50 "
                f"{fmt(r.get('p50_ms'), 2)} ms, p99 {fmt(r.get('p99_ms'), 2)} ms, max "
                f"{fmt(r.get('max_ms'), 1)} ms, failed {r.get('failures', r.get('non_2xx'))}, "
                f"gunicorn {r['gunicorn_cores']} cores ({r['tool']})",
                flush=True,
            )
            if r.get("failures") or r.get("non_2xx") or r.get("socket_errors"):
                out.setdefault("failures", []).append(
                    f"web {name}: failed {r.get('failures', r.get('non_2xx'))}, "
                    f"socket errors {r.get('socket_errors')}"
                )
    finally:
        stop_process(gunicorn)
    res["gunicorn_workers"] = workers
    res["url"] = "/orders/<id>/ with HX-Request: true (order in processing: 200, polling on)"
    pollers = res.get("pollers", {})
    targets = [
        Target(
            "status partial p99 < 50 ms with 50 concurrent pollers (gunicorn)",
            pollers.get("p99_ms"),
            50.0,
            False,
            f"p50 {fmt(pollers.get('p50_ms'), 2)} ms, {fmt(pollers.get('requests_per_s'))} "
            f"req/s; saturated p99 {fmt(res.get('saturation', {}).get('p99_ms'), 1)} ms at "
            f"{fmt(res.get('saturation', {}).get('requests_per_s'))} req/s",
        )
    ]
    out.setdefault("targets", []).extend(t.as_dict() for t in targets)
    print()
    print(report.targets_table(targets))
