"""Accounts: customers who place orders, and the staff account that may approve them (what
``manage.py seed`` creates)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from orders.exceptions import WeakPassword

MANAGER_PERMISSIONS = [
    "approve_order",
    "view_order",
    "change_order",
    "view_inventoryitem",
    "change_inventoryitem",
]


def manager_account_create(*, username: str, password: str) -> AbstractBaseUser | None:
    """Create the staff account that may approve orders; None if it already exists. The password
    must pass the site's password validators (``WeakPassword`` says which it failed)."""
    with transaction.atomic():
        user = _account_create(username=username, password=password, is_staff=True)
        if user is not None:
            user.user_permissions.add(  # type: ignore[attr-defined]
                *Permission.objects.filter(
                    content_type__app_label="orders", codename__in=MANAGER_PERMISSIONS
                )
            )
    return user


def customer_account_create(*, username: str, password: str) -> AbstractBaseUser | None:
    """Create a customer: may place orders and follow (and, while they await approval, cancel)
    their own, nothing else. None if the username is taken; ``WeakPassword`` as for managers."""
    with transaction.atomic():
        return _account_create(username=username, password=password, is_staff=False)


def _account_create(*, username: str, password: str, is_staff: bool) -> AbstractBaseUser | None:
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    try:
        validate_password(password, user=user_model(username=username))
    except ValidationError as error:
        raise WeakPassword(" ".join(error.messages)) from None
    return user_model.objects.create_user(username=username, password=password, is_staff=is_staff)
