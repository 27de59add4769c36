"""The accounts: the manager seed creates, customers (seed's demo one, and sign-ups)."""

from __future__ import annotations

import pytest

from orders.exceptions import WeakPassword
from orders.services.accounts import customer_account_create, manager_account_create


class TestManagerAccount:
    def test_manager_account_can_approve(self, db):
        user = manager_account_create(username="manager", password="s3cret-pass")
        assert user is not None and user.is_staff
        assert user.has_perm("orders.approve_order")
        assert manager_account_create(username="manager", password="x") is None


class TestCustomerAccount:
    def test_a_customer_may_order_but_not_see_others_orders_or_the_admin(self, db):
        user = customer_account_create(username="customer", password="a-Long-pass-4821")
        assert user is not None and not user.is_staff and not user.is_superuser
        assert not user.has_perm("orders.view_order")
        assert user.check_password("a-Long-pass-4821")
        assert customer_account_create(username="customer", password="a-Long-pass-4821") is None

    @pytest.mark.parametrize("password", ["123", "password", "customer1"])
    def test_a_weak_password_is_refused_with_the_reasons(self, db, password):
        with pytest.raises(WeakPassword):
            customer_account_create(username="customer", password=password)
