"""Managers' decisions: recorded with who made them, then sent to the workflow; refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orders.exceptions import ApprovalNotPermitted, ApprovalWindowClosed, NotAwaitingApproval
from orders.models import Order
from orders.services.approvals import order_approve, order_reject
from orders.services.inventory import inventory_reserve
from orders.services.orders import order_place, order_request_approval


def _awaiting(order: Order, seconds: float = 60) -> None:
    inventory_reserve(order_id=order.id)
    order_request_approval(order_id=order.id, deadline=timezone.now() + timedelta(seconds=seconds))


class TestDecisions:
    def test_approve_records_who_and_sends_event(
        self, cars, manager, no_engine, django_capture_on_commit_callbacks
    ):
        order = order_place(item_id=cars.pk, quantity=10)
        _awaiting(order)
        with django_capture_on_commit_callbacks(execute=True):
            order_approve(order_id=order.id, user=manager)
        order.refresh_from_db()
        assert order.approved is True
        assert order.decided_by == manager
        assert order.decided_at is not None
        assert ("approval", (order.id, True)) in no_engine

    def test_reject_sends_false(self, cars, manager, no_engine, django_capture_on_commit_callbacks):
        order = order_place(item_id=cars.pk, quantity=10)
        _awaiting(order)
        with django_capture_on_commit_callbacks(execute=True):
            order_reject(order_id=order.id, user=manager)
        order.refresh_from_db()
        assert order.approved is False
        assert ("approval", (order.id, False)) in no_engine

    def test_approve_without_permission_refused(self, cars, clerk, no_engine):
        order = order_place(item_id=cars.pk, quantity=10)
        _awaiting(order)
        with pytest.raises(ApprovalNotPermitted):
            order_approve(order_id=order.id, user=clerk)
        order.refresh_from_db()
        assert order.approved is None

    def test_approve_twice_refused(self, cars, manager, no_engine):
        order = order_place(item_id=cars.pk, quantity=10)
        _awaiting(order)
        order_approve(order_id=order.id, user=manager)
        with pytest.raises(NotAwaitingApproval):
            order_reject(order_id=order.id, user=manager)
        order.refresh_from_db()
        assert order.approved is True

    def test_approve_not_awaiting_refused(self, cars, manager, no_engine):
        order = order_place(item_id=cars.pk, quantity=1)
        with pytest.raises(NotAwaitingApproval):
            order_approve(order_id=order.id, user=manager)

    def test_approve_after_deadline_refused(self, cars, manager, no_engine):
        order = order_place(item_id=cars.pk, quantity=10)
        _awaiting(order, seconds=-1)
        with pytest.raises(ApprovalWindowClosed):
            order_approve(order_id=order.id, user=manager)
