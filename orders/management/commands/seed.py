"""manage.py seed: the quickstart's inventory (once) and the manager account (first run)."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from orders.exceptions import WeakPassword
from orders.models import amount_text
from orders.services.accounts import manager_account_create
from orders.services.inventory import inventory_seed


class Command(BaseCommand):
    help = "Create the seed inventory and a `manager` account allowed to approve orders."

    def handle(self, *args: Any, **options: Any) -> None:
        for item in inventory_seed():
            self.stdout.write(
                f"Added {item.name} (${amount_text(item.unit_cost)}, {item.on_hand} on hand)"
            )
        password = os.environ.get("MANAGER_PASSWORD") or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        try:
            created = manager_account_create(username="manager", password=password)
        except WeakPassword as error:
            raise CommandError(f"MANAGER_PASSWORD is refused: {error}") from None
        if created is None:
            return
        if generated:
            self.stdout.write(
                f"Created the staff account `manager` with password {password} "
                "(shown once; set MANAGER_PASSWORD to choose it)."
            )
        else:
            self.stdout.write(
                "Created the staff account `manager` (password from MANAGER_PASSWORD)."
            )
