"""manage.py runworker: host the workflow runtime (see orders.worker.Worker)."""

from __future__ import annotations

import os
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from orders.observability import tracing_configure
from orders.worker import Worker, run_child
from sidecar import SidecarStartError


class Command(BaseCommand):
    help = (
        "Run the order workflow worker: the embedded sidecar (unless under `dapr run`) and "
        "N worker processes. Stops gracefully on the first SIGTERM/SIGINT, at once on the second."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--processes",
            type=int,
            default=os.cpu_count() or 1,
            help="Worker processes to start (default: one per core); 0 runs the runtime in "
            "this process.",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help="Embedded sidecar gRPC port (default: WORKFLOW_GRPC_PORT; 0 picks a free one).",
        )
        parser.add_argument(
            "--db",
            type=Path,
            default=None,
            help="Embedded sidecar database (default: WORKFLOW_DB_PATH).",
        )
        parser.add_argument(
            "--sweep-interval",
            type=float,
            default=None,
            help="Seconds between sweeps for unscheduled orders.",
        )
        parser.add_argument(
            "--max-seconds",
            type=float,
            default=None,
            help="Stop gracefully after this many seconds.",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Schedule what is waiting, stop when no order is in progress.",
        )
        # Internal: how the parent starts its worker processes.
        parser.add_argument("--child", action="store_true", help="(internal)")
        parser.add_argument("--address", default="", help="(internal)")
        parser.add_argument("--parent-pid", type=int, default=None, help="(internal)")

    def handle(self, *args: Any, **options: Any) -> None:
        # The worker's spans (the SDK's activity spans and the activities' work) join each
        # order's trace; the embedded sidecar reads the same configuration for its own.
        tracing_configure(service_name="orders-worker")
        if options["child"]:
            if not options["address"]:
                raise CommandError("--child needs --address")
            run_child(options["address"], options["parent_pid"])
            return
        if options["processes"] < 0:
            raise CommandError("--processes must be 0 or more")
        _require_migrated_database()
        worker = Worker(
            processes=options["processes"],
            grpc_port=options["port"],
            db_path=options["db"],
            sweep_interval=options["sweep_interval"],
            max_seconds=options["max_seconds"],
            once=options["once"],
        )
        try:
            worker.run()
        except SidecarStartError as error:  # one line for the operator, not a traceback
            raise CommandError(str(error)) from error


def _require_migrated_database() -> None:
    """The worker reads and writes orders from its first second: refuse to start on a
    database that lacks tables, with the command that fixes it."""
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise CommandError(
            "the database has unapplied migrations: run `python manage.py migrate` "
            "(or `make setup`) first"
        )
