"""Failed logins are throttled by django-axes: a guessed password stops working after the limit."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse

LOGIN = reverse("admin:login")
PASSWORD = "a-long-Correct-horse-77"


@pytest.fixture
def manager(db: None) -> User:
    return User.objects.create_user("manager", password=PASSWORD, is_staff=True)


def login(client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


class TestLoginThrottle:
    def test_31st_wrong_password_is_throttled_with_a_clear_message(self, client, manager):
        answers = [login(client, "manager", f"guess-{n}").status_code for n in range(31)]

        limit = settings.AXES_FAILURE_LIMIT
        assert limit <= 30
        # Before the limit: the login form again, with its error.
        assert answers[: limit - 1] == [200] * (limit - 1)
        # From the limit on, and the 31st wrong password in particular: refused.
        assert answers[30] == 429
        locked = login(client, "manager", "guess-31")
        assert locked.status_code == 429
        assert "Too many failed logins" in locked.content.decode()

    def test_right_password_is_refused_while_locked(self, client, manager):
        for n in range(settings.AXES_FAILURE_LIMIT):
            login(client, "manager", f"guess-{n}")

        response = login(client, "manager", PASSWORD)

        assert response.status_code == 429
        assert "_auth_user_id" not in client.session

    def test_lockout_is_per_username_and_address(self, client, manager):
        """A guesser elsewhere cannot lock the manager out of their own address."""
        for n in range(settings.AXES_FAILURE_LIMIT):
            login(client, "manager", f"guess-{n}", address="203.0.113.9")

        response = login(client, "manager", PASSWORD, address="127.0.0.1")

        assert response.status_code == 302
        assert client.session["_auth_user_id"] == str(manager.pk)

    def test_success_before_the_limit_resets_the_count(self, client, manager):
        limit = settings.AXES_FAILURE_LIMIT
        for n in range(limit - 1):
            login(client, "manager", f"guess-{n}")
        assert login(client, "manager", PASSWORD).status_code == 302
        client.logout()

        for n in range(limit - 1):
            assert login(client, "manager", f"again-{n}").status_code == 200
        assert login(client, "manager", PASSWORD).status_code == 302


class TestShopLoginThrottle:
    """Customers and staff log in on the shop's page (Django's LoginView); django-axes guards it
    through the authentication backend just as it guards the admin's."""

    SHOP_LOGIN = reverse("orders:login")

    def login(self, client, password: str):
        data = {"username": "manager", "password": password}
        return client.post(self.SHOP_LOGIN, data, REMOTE_ADDR="127.0.0.1")

    def test_the_shop_login_page_is_throttled_too(self, client, manager):
        limit = settings.AXES_FAILURE_LIMIT
        answers = [self.login(client, f"guess-{n}").status_code for n in range(limit - 1)]
        assert answers == [200] * (limit - 1)

        assert self.login(client, "guess-last").status_code == 429
        locked = self.login(client, PASSWORD)
        assert locked.status_code == 429
        assert "Too many failed logins" in locked.content.decode()
        assert "_auth_user_id" not in client.session

    def test_failures_on_either_page_count_together(self, client, manager):
        for n in range(settings.AXES_FAILURE_LIMIT - 1):
            login(client, "manager", f"guess-{n}")
        assert self.login(client, "guess-last").status_code == 429
