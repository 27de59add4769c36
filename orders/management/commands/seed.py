"""manage.py seed: the quickstart's inventory (once), and on the first run the `manager` and
`customer` accounts."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orders.exceptions import WeakPassword
from orders.models import amount_text
from orders.services.accounts import customer_account_create, manager_account_create
from orders.services.inventory import inventory_seed

AccountCreate = Callable[..., AbstractBaseUser | None]


class Command(BaseCommand):
    help = (
        "Create the seed inventory, a `manager` account allowed to approve orders and a demo"
        " `customer` account."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for item in inventory_seed():
            self.stdout.write(
                f"Added {item.name} (${amount_text(item.unit_cost)}, {item.on_hand} on hand)"
            )
        # Both accounts or neither: a refused CUSTOMER_PASSWORD must not leave a manager whose
        # generated password was never shown.
        with transaction.atomic():
            lines = [
                self._account(
                    "manager", "staff account", "MANAGER_PASSWORD", manager_account_create
                ),
                self._account(
                    "customer",
                    "demo customer account",
                    "CUSTOMER_PASSWORD",
                    customer_account_create,
                ),
            ]
        for line in lines:
            if line:
                self.stdout.write(line)

    def _account(self, username: str, kind: str, variable: str, create: AccountCreate) -> str:
        """Create the account once, its password from ``variable``, else random; returns what to
        tell the operator (a generated password is shown this once), "" if it existed."""
        password = os.environ.get(variable) or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        try:
            created = create(username=username, password=password)
        except WeakPassword as error:
            raise CommandError(f"{variable} is refused: {error}") from None
        if created is None:
            return ""
        if generated:
            return (
                f"Created the {kind} `{username}` with password {password} "
                f"(shown once; set {variable} to choose it)."
            )
        return f"Created the {kind} `{username}` (password from {variable})."
