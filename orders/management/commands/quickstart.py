"""manage.py quickstart: the Dapr Workflow quickstart's console app, through Django, in one process.

It starts the embedded sidecar on WORKFLOW_GRPC_PORT and a workflow runtime in this process,
restocks the quickstart's inventory, orders 1 car and waits for the workflow, printing the
quickstart's lines. It uses databases of its own under var/ (recreated on every run), so it never
touches the shop's orders or stock and always starts from 10 cars.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from orders import workflow_client
from orders.embedded_sidecar import sidecar_start
from orders.models import InventoryItem, amount_text
from orders.observability import tracing_configure
from orders.services.inventory import inventory_seed
from orders.services.orders import order_place
from orders.workflows.runtime import runtime_create

ITEM_NAME = "Cars"
QUANTITY = 1


def _use_own_database(path: Path) -> None:
    """Point the default connection at a fresh SQLite file before anything else touches it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    connections.close_all()
    config = connections.settings["default"]
    config.update(
        ENGINE="django.db.backends.sqlite3",
        NAME=str(path),
        USER="",
        PASSWORD="",
        HOST="",
        PORT="",
        OPTIONS={"transaction_mode": "IMMEDIATE", "timeout": 30},
    )
    del connections["default"]


class Command(BaseCommand):
    help = "Run the Dapr Workflow quickstart (order 1 car) with the embedded sidecar."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help="gRPC port (default: WORKFLOW_GRPC_PORT; 0 picks a free one).",
        )
        parser.add_argument(
            "--timeout", type=float, default=60.0, help="Seconds to wait for the workflow."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The activities log the quickstart's lines; show them with the rest of its output.
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                handler.setStream(sys.stdout)
        tracing_configure(service_name="orders-worker")
        var = Path(settings.VAR_DIR)
        _use_own_database(var / "quickstart.sqlite3")
        call_command("migrate", verbosity=0, interactive=False)
        workflows_db = var / "quickstart-workflows.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{workflows_db}{suffix}").unlink(missing_ok=True)

        port = settings.WORKFLOW_GRPC_PORT if options["port"] is None else options["port"]
        self.stdout.write("*** Welcome to the Dapr Workflow console app sample!")
        self.stdout.write("*** Using this app, you can place orders that start workflows.")
        try:
            # No metrics port: a console demo must not take 9090 from a running `make run`.
            sidecar = sidecar_start(db_path=workflows_db, port=port, metrics=False)
        except Exception as error:
            raise CommandError(f"Could not start the embedded sidecar: {error}") from error
        runtime = None
        try:
            workflow_client.use_address(sidecar.grpc_address)
            runtime = runtime_create(sidecar.grpc_address)
            runtime.start()
            self._purchase(options["timeout"])
        finally:
            if runtime is not None:
                runtime.shutdown()
            workflow_client.use_address(None)
            sidecar.stop()

    def _purchase(self, timeout: float) -> None:
        inventory_seed()
        for item in InventoryItem.objects.order_by("pk"):
            self.stdout.write(
                f"item: InventoryItem(item_name={item.name}, "
                f"per_item_cost={amount_text(item.unit_cost)}, quantity={item.on_hand})"
            )
        self.stdout.write("==========Begin the purchase of item:==========")
        self.stdout.write(f"Starting order workflow, purchasing {QUANTITY} of {ITEM_NAME.lower()}")
        item = InventoryItem.objects.get(name=ITEM_NAME)
        order = order_place(item_id=item.pk, quantity=QUANTITY)
        state = workflow_client.client().wait_for_workflow_completion(
            order.id, timeout_in_seconds=int(timeout)
        )
        if state is None:
            raise CommandError(f"Workflow {order.id} not found")
        status = state.runtime_status.name
        if status != "COMPLETED":
            raise CommandError(f"Workflow {order.id} ended {status}: {state.failure_details}")
        result = json.loads(state.serialized_output) if state.serialized_output else None
        self.stdout.write(f"Workflow completed! Result: {json.dumps(result)}")
        self.stdout.write(f"Purchase of item is  {status.title()}")
