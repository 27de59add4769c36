"""The order domain's records, mirroring the quickstart's: inventory, orders, their timeline.

Stock accounting: ``on_hand`` is what new orders may reserve, ``reserved`` is held for orders in
flight, ``sold`` has left the shop. Reserving, releasing and selling move units between the three
columns, so ``on_hand + reserved + sold`` changes only on restock. Every movement and every payment
is one ``LedgerEntry`` keyed by (order, step) under a unique constraint: an activity that runs twice
finds its entry and changes nothing the second time.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

# The largest count a PositiveIntegerField holds on every database (PostgreSQL's integer). An
# item's on_hand + reserved + sold never exceeds it (restock checks), so no column can overflow.
MAX_UNITS = 2**31 - 1
# The largest amount Order.total_cost holds (14 digits, 2 of them cents).
MAX_TOTAL = Decimal("999999999999.99")


def amount_text(amount: Decimal) -> str:
    """5000.00 -> "5000", 12.50 -> "12.50": the quickstart prints whole dollars bare."""
    return f"{amount:.0f}" if amount == amount.to_integral_value() else f"{amount:.2f}"


def money(amount: Decimal | int | float | str) -> str:
    """How the site and the admin show money: 15000 -> "$15,000.00"."""
    return f"${Decimal(str(amount)):,.2f}"


def new_order_id() -> str:
    return uuid.uuid4().hex


class InventoryItem(models.Model):
    name = models.CharField(max_length=100, unique=True)
    unit_cost = models.DecimalField(max_digits=12, decimal_places=2)
    on_hand = models.PositiveIntegerField(default=0, help_text="Units free to reserve.")
    reserved = models.PositiveIntegerField(default=0, help_text="Units held for orders in flight.")
    sold = models.PositiveIntegerField(default=0, help_text="Units delivered to completed orders.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(unit_cost__gte=0), name="inventory_unit_cost_gte_0"),
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="inventory_on_hand_gte_0"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="inventory_reserved_gte_0"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def in_stock(self) -> int:
        """Units physically in the shop: free plus held for orders not yet completed."""
        return self.on_hand + self.reserved


class OrderStatus(models.TextChoices):
    PLACED = "placed", "Placed"
    PROCESSING = "processing", "Processing"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    COMPLETED = "completed", "Completed"
    INSUFFICIENT_STOCK = "insufficient_stock", "Not processed: insufficient stock"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


FINAL_STATUSES = frozenset(
    {
        OrderStatus.COMPLETED,
        OrderStatus.INSUFFICIENT_STOCK,
        OrderStatus.REJECTED,
        OrderStatus.CANCELLED,
        OrderStatus.FAILED,
    }
)


class Order(models.Model):
    """One purchase; its primary key is also the workflow instance id."""

    id = models.CharField(primary_key=True, max_length=64, default=new_order_id, editable=False)
    # Who placed it: a customer sees only their own orders. Null for orders placed before shop
    # accounts existed; a deleted account leaves its orders (and their ledger) in place.
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="orders",
    )
    item = models.ForeignKey(InventoryItem, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField()
    total_cost = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(
        max_length=32, choices=OrderStatus.choices, default=OrderStatus.PLACED, db_index=True
    )
    approval_deadline = models.DateTimeField(null=True, blank=True)
    approved = models.BooleanField(null=True, blank=True, help_text="The manager's decision.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # Null until the engine has accepted the workflow; runworker schedules those left null.
    scheduled_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    result = models.JSONField(null=True, blank=True, help_text="The workflow's output.")

    class Meta:
        ordering = ["-created_at"]
        permissions = [("approve_order", "Can approve or reject orders")]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="order_quantity_gte_1"),
            models.CheckConstraint(condition=Q(total_cost__gte=0), name="order_total_cost_gte_0"),
        ]

    def __str__(self) -> str:
        return f"Order {self.id}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class OrderEvent(models.Model):
    """One line of an order's timeline: each notification the workflow sends, once. Its time is
    when that step of the workflow ended; the order page derives each step's duration from it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    step = models.CharField(max_length=40)
    message = models.TextField()
    # Why the order stopped here, when it failed: the error of the step that failed.
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "step"], name="order_event_once_per_step")
        ]

    def __str__(self) -> str:
        return self.message


class LedgerStep(models.TextChoices):
    RESERVE = "reserve", "Stock reserved"
    RELEASE = "release", "Reservation released"
    DEDUCT = "deduct", "Stock sold"
    PAYMENT = "payment", "Payment taken"
    REFUND = "refund", "Payment refunded"


class LedgerEntry(models.Model):
    """The record that an effect happened; its uniqueness is what makes activities idempotent."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="ledger")
    step = models.CharField(max_length=16, choices=LedgerStep.choices)
    item = models.ForeignKey(InventoryItem, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=0)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["order", "step"], name="ledger_once_per_order_step")
        ]

    def __str__(self) -> str:
        return f"{self.get_step_display()} for order {self.order_id}"
