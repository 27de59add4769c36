"""Admin: inventory with a restock action; orders as the managers' approval desk.

Actions and the Approve / Reject pages are interfaces: each calls one service per order and
reports the outcome with ``message_user``; a refusal (``OrderError``) is a message, never a
traceback. The index's approval summary is the ``approval_desk`` template tag's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxValueValidator
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import ngettext

from orders import selectors
from orders.exceptions import EngineUnavailable, OrderError
from orders.models import (
    MAX_UNITS,
    InventoryItem,
    LedgerEntry,
    Order,
    OrderEvent,
    OrderStatus,
    money,
)
from orders.services.approvals import APPROVE_PERMISSION, order_approve, order_reject
from orders.services.inventory import inventory_restock
from orders.services.orders import order_cancel
from orders.templatetags.order_tags import duration

# The index shows the approval desk above the stock app list (templates/admin/orders/).
admin.site.index_template = "admin/orders/desk_index.html"
# No navigation sidebar: it repeats the index's app list and takes 300 px the approval queue
# needs to fit 1280 px beside its filters; the breadcrumbs lead back to the index on every page.
admin.site.enable_nav_sidebar = False


class RestockForm(ActionForm):
    # Text, checked by the action: an invalid number in an IntegerField would make Django's
    # changelist answer "No action selected." instead of saying what is wrong with it.
    quantity = forms.CharField(
        initial="10", required=False, label="Units", widget=forms.NumberInput(attrs={"min": 1})
    )


@admin.register(InventoryItem)
class InventoryItemAdmin(admin.ModelAdmin):
    list_display = ["name", "price", "on_hand", "reserved", "sold"]
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

    @admin.display(description="Unit cost", ordering="unit_cost")
    def price(self, item: InventoryItem) -> str:
        return money(item.unit_cost)

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
    fields = ["created_at", "step", "quantity", "money_amount"]
    readonly_fields = fields

    @admin.display(description="Amount")
    def money_amount(self, entry: LedgerEntry) -> str:
        return money(entry.amount)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """The approval desk: the queue (changelist), and each order's page, read-only, with the
    manager's decision, Approve / Reject for those allowed, and the engine's history."""

    # Few, narrow columns: the queue fits 1280 px beside the admin's navigation and filters.
    list_display = ["short_id", "what", "total", "status", "time_left", "decision", "placed"]
    list_display_links = ["short_id"]
    list_filter = ["status", "item"]
    date_hierarchy = "created_at"
    search_fields = ["id"]
    fieldsets = [
        (None, {"fields": ["id", "item", "quantity", "total", "status", "result"]}),
        ("Approval", {"fields": ["approval_deadline"]}),
        ("Workflow", {"fields": ["scheduled_at", "created_at", "updated_at"]}),
    ]
    readonly_fields = [
        "id",
        "item",
        "quantity",
        "total",
        "status",
        "result",
        "approval_deadline",
        "scheduled_at",
        "created_at",
        "updated_at",
    ]
    inlines = [OrderEventInline, LedgerEntryInline]
    actions = ["approve_orders", "reject_orders", "cancel_orders"]
    change_form_template = "admin/orders/order/change_form.html"

    class Media:
        css = {"all": ["orders/admin_desk.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        return super().get_queryset(request).select_related("item", "decided_by")

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # The approval queue: orders awaiting approval first, the most urgent on top, then the
        # newest. Here, not in get_queryset: the changelist orders by this (or by the model's
        # ordering), replacing a queryset's own order_by; a click on a column still overrides.
        awaiting_first = Case(
            When(status=OrderStatus.AWAITING_APPROVAL, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return [awaiting_first.asc(), F("approval_deadline").asc(nulls_last=True), "-created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orders are placed on the order form, which starts their workflow

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        # An order's record is written by its workflow and the services, never typed in: its
        # page is read-only (no Save buttons). Change permission still allows the changelist's
        # Cancel action, which asks without an object.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False  # the ledger refers to orders; cancel instead

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)

    # --- columns and fields --------------------------------------------------------------------

    @admin.display(description="Order", ordering="id")
    def short_id(self, order: Order) -> str:
        # The id's first 8 hex digits tell orders apart at a glance; the full id (the workflow
        # instance id) is in the link's title, read by screen readers and found by search.
        return format_html(
            '<span class="order-id" title="{}" aria-hidden="true">{}…</span>'
            '<span class="visually-hidden">{}</span>',
            order.id,
            order.id[:8],
            order.id,
        )

    @admin.display(description="Item", ordering="item__name")
    def what(self, order: Order) -> str:
        return f"{order.quantity} × {order.item.name}"

    @admin.display(description="Total", ordering="total_cost")
    def total(self, order: Order) -> str:
        return money(order.total_cost)

    @admin.display(description="Time left", ordering="approval_deadline")
    def time_left(self, order: Order) -> str:
        return duration(selectors.approval_time_left(order=order))

    @admin.display(description="Decision")
    def decision(self, order: Order) -> str:
        if order.approved is None:
            return ""
        verdict = "Approved" if order.approved else "Rejected"
        who = order.decided_by.get_username() if order.decided_by else "someone"
        when = f", {_short_time(order.decided_at)}" if order.decided_at else ""
        return f"{verdict} by {who}{when}"

    @admin.display(description="Placed", ordering="created_at")
    def placed(self, order: Order) -> str:
        return _short_time(order.created_at)

    # --- the order's page ------------------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        order = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        # Only a page that is shown needs the engine (a POST here is refused: read-only).
        if request.method == "GET" and order and self.has_view_permission(request, order):
            context.update(self._desk_context(request, order))
        return super().change_view(request, object_id, form_url, context)

    def _desk_context(self, request: HttpRequest, order: Order) -> dict[str, Any]:
        awaits = order.status == OrderStatus.AWAITING_APPROVAL and order.approved is None
        try:
            history, engine_error = selectors.order_engine_history(order_id=order.id), None
        except EngineUnavailable as error:
            history, engine_error = None, str(error)
        return {
            "awaits_decision": awaits,
            "can_decide": awaits and self.has_approve_permission(request),
            "time_left": selectors.approval_time_left(order=order),
            "decision_sentence": _decision_sentence(order),
            "engine_history": history,
            "engine_error": engine_error,
            "trace_url": selectors.order_trace_url(order=order),
        }

    def get_urls(self) -> list[URLPattern]:
        decide = [
            path(
                "<path:object_id>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name="orders_order_approve",
            ),
            path(
                "<path:object_id>/reject/",
                self.admin_site.admin_view(self.reject_view),
                name="orders_order_reject",
            ),
        ]
        return decide + super().get_urls()  # before the catch-all "<path:object_id>/"

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide_view(request, object_id, approve=True)

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide_view(request, object_id, approve=False)

    def _decide_view(self, request: HttpRequest, object_id: str, *, approve: bool) -> HttpResponse:
        """Approve or reject one order after a confirmation page, as Django's delete view does:
        GET (or the order page's button, a POST without ``post``) asks, POST ``post=yes``
        decides. The approval service is the judge of who may decide; its refusal is a
        message on the order's page."""
        order = self.get_object(request, unquote(object_id))
        if order is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, order):
            raise PermissionDenied
        verb = "approve" if approve else "reject"
        order_page = HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))
        if request.method == "POST" and request.POST.get("post") == "yes":
            try:
                (order_approve if approve else order_reject)(order_id=order.id, user=request.user)
            except OrderError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                done = "approved" if approve else "rejected"
                self.message_user(request, f"Order {order.id} {done}.", messages.SUCCESS)
            return order_page
        if not self.has_approve_permission(request):
            self.message_user(
                request, "You are not allowed to approve or reject orders.", messages.ERROR
            )
            return order_page
        if order.status != OrderStatus.AWAITING_APPROVAL or order.approved is not None:
            self.message_user(
                request,
                f"Order {order.id} is not awaiting a decision "
                f"({order.get_status_display().lower()}); nothing to {verb}.",
                messages.WARNING,
            )
            return order_page
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} this order?",
            "subtitle": None,
            "opts": self.opts,
            "object": order,
            "verb": verb,
            "time_left": selectors.approval_time_left(order=order),
            "threshold": money(settings.ORDER_APPROVAL_THRESHOLD),
        }
        return TemplateResponse(request, "admin/orders/order/decide_confirmation.html", context)

    # --- changelist actions ----------------------------------------------------------------------

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


def _short_time(moment: datetime) -> str:
    """Today just the time ("2:05 p.m.", the admin's time format), else "Dec 3, 2:05 p.m.":
    the queue's time columns stay narrow."""
    local = timezone.localtime(moment)
    time = formats.time_format(local, "TIME_FORMAT")
    if local.date() == timezone.localdate():
        return time
    return f"{formats.date_format(local, 'M j')}, {time}"


def _decision_sentence(order: Order) -> str | None:
    """Who decided and when: "Approved by boss on Dec 4, 2026, 17:20:52"."""
    text = selectors.decision_text(order=order, events=order.events.all())
    if text is None or order.decided_at is None:
        return text
    when = formats.date_format(timezone.localtime(order.decided_at), "DATETIME_FORMAT")
    who, late, why = text.partition(", too late")
    return f"{who} on {when}{late}{why}"
