"""The manager account seed creates."""

from __future__ import annotations

from orders.services.accounts import manager_account_create


class TestManagerAccount:
    def test_manager_account_can_approve(self, db):
        user = manager_account_create(username="manager", password="s3cret-pass")
        assert user is not None and user.is_staff
        assert user.has_perm("orders.approve_order")
        assert manager_account_create(username="manager", password="x") is None
