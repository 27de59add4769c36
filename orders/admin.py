"""Admin: inventory with a restock action; orders with the managers' approval queue.

Actions are interfaces: each calls one service per selected row and reports the outcome with
``message_user``; a refusal (``OrderError``) is a warning message, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.validators import MaxValueValidator
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest
from django.utils.translation import ngettext

from orders import selectors
from orders.exceptions import OrderError
from orders.models import MAX_UNITS, InventoryItem, LedgerEntry, Order, OrderEvent, OrderStatus
from orders.services.approvals import APPROVE_PERMISSION, order_approve, order_reject
from orders.services.inventory import inventory_restock
from orders.services.orders import order_cancel
from orders.templatetags.order_tags import duration


class RestockForm(ActionForm):
    # Text, checked by the action: an invalid number in an IntegerField would make Django's
    # changelist answer "No action selected." instead of saying what is wrong with it.
    quantity = forms.CharField(
        initial="10", required=False, label="Units", widget=forms.NumberInput(attrs={"min": 1})
    )


@admin.register(InventoryItem)
class InventoryItemAdmin(admin.ModelAdmin):
    list_display = ["name", "unit_cost", "on_hand", "reserved", "sold"]
    search_fields = ["name"]
    action_form = RestockForm
    actions = ["restock"]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "on_hand" and field is not None:
            # A PositiveIntegerField's range on SQLite is far larger than on PostgreSQL; an
            # item's units stay within MAX_UNITS everywhere (restock keeps them there).
            field.validators.append(MaxValueValidator(MAX_UNITS))
            field.widget.attrs["max"] = MAX_UNITS
        return field

    def get_readonly_fields(self, request: HttpRequest, obj: InventoryItem | None = None) -> list:
        # Stock changes go through restock and the workflow's ledger, not by typing a number.
        return ["on_hand", "reserved", "sold"] if obj is not None else ["reserved", "sold"]

    @admin.action(permissions=["change"], description="Restock selected items")
    def restock(self, request: HttpRequest, queryset: QuerySet[InventoryItem]) -> None:
        text = (request.POST.get("quantity") or "10").strip()
        # ASCII digits only ("²" is a digit to str.isdigit, not to int), and few of them (int()
        # refuses over 4,300); the service checks the range.
        units = int(text) if text.isascii() and text.isdecimal() and len(text) <= 12 else 0
        restocked, refusals = 0, {}
        for item in queryset:
            try:
                inventory_restock(item_id=item.pk, quantity=units)
            except OrderError as error:
                refusals[str(error)] = None  # a bad number is refused alike for every item
            else:
                restocked += 1
        for refusal in refusals:
            self.message_user(request, refusal, messages.ERROR)
        if restocked:
            self.message_user(
                request,
                ngettext(
                    "Restocked %(count)d item by %(units)d units.",
                    "Restocked %(count)d items by %(units)d units each.",
                    restocked,
                )
                % {"count": restocked, "units": units},
                messages.SUCCESS,
            )


class ReadOnlyOrderInline(admin.TabularInline):
    """A part of the order's record (timeline, ledger): shown, never edited here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Part of the order: whoever may see the order sees its timeline and ledger.
        return request.user.has_perm("orders.view_order") or request.user.has_perm(
            "orders.change_order"
        )


class OrderEventInline(ReadOnlyOrderInline):
    model = OrderEvent
    fields = ["created_at", "message"]
    readonly_fields = fields


class LedgerEntryInline(ReadOnlyOrderInline):
    model = LedgerEntry
    fields = ["created_at", "step", "quantity", "amount"]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "item",
        "quantity",
        "total_cost",
        "status",
        "time_left",
        "decision",
        "created_at",
    ]
    list_display_links = ["id"]
    list_filter = ["status", "item"]
    search_fields = ["id"]
    readonly_fields = [
        "id",
        "item",
        "quantity",
        "total_cost",
        "status",
        "approval_deadline",
        "approved",
        "decided_by",
        "decided_at",
        "scheduled_at",
        "created_at",
        "updated_at",
        "result",
    ]
    inlines = [OrderEventInline, LedgerEntryInline]
    actions = ["approve_orders", "reject_orders", "cancel_orders"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        # The approval queue: orders awaiting a decision first, the most urgent on top.
        return (
            super()
            .get_queryset(request)
            .select_related("item", "decided_by")
            .annotate(
                awaiting=Case(
                    When(status=OrderStatus.AWAITING_APPROVAL, then=Value(0)),
                    default=Value(1),
                    output_field=IntegerField(),
                )
            )
            .order_by("awaiting", "approval_deadline", "-created_at")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orders are placed on the order form, which starts their workflow

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False  # the ledger refers to orders; cancel instead

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)

    @admin.display(description="Time left")
    def time_left(self, order: Order) -> str:
        return duration(selectors.approval_time_left(order=order))

    @admin.display(description="Decision")
    def decision(self, order: Order) -> str:
        if order.approved is None:
            return ""
        verdict = "Approved" if order.approved else "Rejected"
        who = order.decided_by.get_username() if order.decided_by else "someone"
        return f"{verdict} by {who}"

    @admin.action(permissions=["approve"], description="Approve selected orders")
    def approve_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._apply(request, queryset, order_approve, "approved")

    @admin.action(permissions=["approve"], description="Reject selected orders")
    def reject_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._apply(request, queryset, order_reject, "rejected")

    @admin.action(permissions=["change"], description="Cancel selected orders")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._apply(request, queryset, order_cancel, "cancelled")

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Order],
        service: Callable[..., Order],
        done: str,
    ) -> None:
        count = 0
        for order_id in queryset.values_list("id", flat=True):
            try:
                service(order_id=order_id, user=request.user)
            except OrderError as error:
                self.message_user(request, str(error), messages.WARNING)
            else:
                count += 1
        if count:
            self.message_user(
                request,
                ngettext("%(count)d order %(done)s.", "%(count)d orders %(done)s.", count)
                % {"count": count, "done": done},
                messages.SUCCESS,
            )
