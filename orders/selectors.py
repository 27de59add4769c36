"""Reads of the order domain: what views, admin and the worker show or sweep."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, F, QuerySet
from django.utils import timezone

from orders import workflow_client
from orders.exceptions import OrderNotFound
from orders.models import FINAL_STATUSES, InventoryItem, Order, OrderEvent, OrderStatus
from orders.order_steps import Step, order_steps

User = AbstractBaseUser | AnonymousUser

# Staff who may view orders (managers, superusers) see every customer's on the shop's pages.
VIEW_ALL_PERMISSION = "orders.view_order"


def inventory_list() -> QuerySet[InventoryItem]:
    return InventoryItem.objects.all()


def orders_visible(*, user: User) -> QuerySet[Order]:
    """The orders ``user`` may see: staff (who may view orders) all of them, a customer their
    own, an anonymous visitor none."""
    orders = Order.objects.select_related("item", "decided_by")
    if user.is_active and user.has_perm(VIEW_ALL_PERMISSION):
        return orders
    if not user.is_authenticated:
        return orders.none()
    return orders.filter(placed_by=user.pk)


def order_list(*, user: User, status: str | None = None) -> QuerySet[Order]:
    orders = orders_visible(user=user)
    if status in OrderStatus.values:
        orders = orders.filter(status=status)
    return orders


def order_get_visible(*, order_id: str, user: User) -> Order:
    """The order, if ``user`` may see it; another customer's order is as unknown as a missing
    one (``OrderNotFound``), so its id reveals nothing."""
    try:
        return orders_visible(user=user).get(pk=order_id)
    except Order.DoesNotExist:
        raise OrderNotFound(f"There is no order {order_id}.") from None


@dataclass(frozen=True)
class OrderProgress:
    """What the order page shows: the order, its workflow's steps, the manager's decision, the
    time left for it, and ``version``, which changes whenever any of them does."""

    order: Order
    steps: list[Step]
    decision: str | None
    time_left: timedelta | None
    version: str
    cancellable: bool


def order_progress(*, order_id: str, user: User) -> OrderProgress:
    """The order page's content for ``user`` (``OrderNotFound`` if they may not see it)."""
    order = order_get_visible(order_id=order_id, user=user)
    events = list(order.events.all())
    ledger = {entry.step: entry for entry in order.ledger.all()}
    steps = order_steps(
        order=order,
        events={event.step: event for event in events},
        ledger=ledger,
        needs_approval=order.total_cost > settings.ORDER_APPROVAL_THRESHOLD,
    )
    return OrderProgress(
        order=order,
        steps=steps,
        decision=decision_text(order=order, events=events),
        time_left=approval_time_left(order=order),
        version=f"{order.status}/{order.updated_at.timestamp()}/{len(events)}/{len(ledger)}",
        # Its customer may cancel while nobody has decided (staff cancel in the admin).
        cancellable=order.placed_by_id == user.pk
        and order.status == OrderStatus.AWAITING_APPROVAL
        and order.approved is None,
    )


@dataclass(frozen=True)
class Quote:
    """What an order of ``quantity`` ``item`` would cost, and whether a manager must approve it."""

    item: InventoryItem
    quantity: int
    total: Decimal
    threshold: Decimal

    @property
    def needs_approval(self) -> bool:
        return self.total > self.threshold


def order_quote(*, item: InventoryItem, quantity: int) -> Quote:
    return Quote(
        item=item,
        quantity=quantity,
        total=item.unit_cost * quantity,
        threshold=settings.ORDER_APPROVAL_THRESHOLD,
    )


def order_timeline(*, order: Order) -> QuerySet[OrderEvent]:
    return order.events.all()


def decision_text(*, order: Order, events: Iterable[OrderEvent]) -> str | None:
    """The manager's decision as the order page states it; None while there is none.

    A decision sent in the approval window's last moment can reach the workflow after its
    timer has cancelled the order: the page then says the decision came too late, rather than
    "Approved" next to "Cancelled"."""
    if order.approved is None or order.decided_by is None:
        return None
    text = f"{'Approved' if order.approved else 'Rejected'} by {order.decided_by.get_username()}"
    if any(event.step == "timed_out" for event in events):  # the workflow's timeout step
        return f"{text}, too late: the approval window had closed"
    return text


def order_recorded_decision(*, order_id: str) -> bool | None:
    """The manager's decision as the approval service recorded it (who and when, under the
    approve permission): True, False, or None when nobody has decided."""
    decision = (
        Order.objects.filter(pk=order_id, decided_at__isnull=False)
        .values_list("approved", flat=True)
        .first()
    )
    return decision


def approval_time_left(*, order: Order) -> timedelta | None:
    """Time until an order awaiting approval is cancelled; None when nobody is waited for."""
    if order.status != OrderStatus.AWAITING_APPROVAL or order.approval_deadline is None:
        return None
    return max(order.approval_deadline - timezone.now(), timedelta(0))


def orders_never_scheduled(*, older_than: timedelta) -> list[str]:
    """Orders whose workflow the engine never accepted (web crashed, engine was down)."""
    cutoff = timezone.now() - older_than
    return list(
        Order.objects.filter(
            scheduled_at__isnull=True, status=OrderStatus.PLACED, created_at__lte=cutoff
        ).values_list("id", flat=True)
    )


def orders_with_undelivered_decision(*, older_than: timedelta) -> list[str]:
    """Decided orders whose workflow has not acted on the decision yet."""
    cutoff = timezone.now() - older_than
    return list(
        Order.objects.filter(
            status=OrderStatus.AWAITING_APPROVAL, approved__isnull=False, decided_at__lte=cutoff
        ).values_list("id", flat=True)
    )


def orders_in_progress_exist() -> bool:
    """True while an order still needs the worker: placed or processing, or a manager's
    decision its workflow has not acted on yet."""
    return (
        Order.objects.filter(status__in=[OrderStatus.PLACED, OrderStatus.PROCESSING]).exists()
        or Order.objects.filter(
            status=OrderStatus.AWAITING_APPROVAL, approved__isnull=False
        ).exists()
    )


def orders_in_flight(*, older_than: timedelta) -> list[str]:
    """Scheduled orders not in a final state, not touched for a while."""
    cutoff = timezone.now() - older_than
    return list(
        Order.objects.filter(scheduled_at__isnull=False, updated_at__lte=cutoff)
        .exclude(status__in=FINAL_STATUSES)
        .values_list("id", flat=True)
    )


# --- the approval desk (admin) ------------------------------------------------------------------


def orders_awaiting_decision() -> QuerySet[Order]:
    """Orders waiting for a manager's decision, the first whose approval window closes on top.

    A decision already recorded but not yet acted on by the workflow waits for the engine, not
    for a manager, so it is not counted."""
    return (
        Order.objects.select_related("item")
        .filter(status=OrderStatus.AWAITING_APPROVAL, approved__isnull=True)
        .order_by(F("approval_deadline").asc(nulls_last=True), "created_at")
    )


@dataclass(frozen=True)
class StatusCount:
    status: str
    label: str
    count: int


@dataclass(frozen=True)
class UrgentOrder:
    order: Order
    time_left: timedelta | None


@dataclass(frozen=True)
class ApprovalDesk:
    """What the admin index tells a manager at a glance."""

    awaiting: int
    most_urgent: list[UrgentOrder]
    today: list[StatusCount]
    today_total: int


def orders_today_by_status() -> list[StatusCount]:
    """Orders placed today (the site's time zone), counted by status in the statuses' order."""
    counts = dict(
        Order.objects.filter(created_at__date=timezone.localdate())
        .order_by()  # no default ordering in the GROUP BY
        .values_list("status")
        .annotate(count=Count("id"))
        .values_list("status", "count")
    )
    return [
        StatusCount(status=value, label=label, count=counts[value])
        for value, label in OrderStatus.choices
        if counts.get(value)
    ]


def approval_desk(*, urgent: int = 5) -> ApprovalDesk:
    waiting = orders_awaiting_decision()
    today = orders_today_by_status()
    return ApprovalDesk(
        awaiting=waiting.count(),
        most_urgent=[
            UrgentOrder(order=order, time_left=approval_time_left(order=order))
            for order in waiting[:urgent]
        ],
        today=today,
        today_total=sum(row.count for row in today),
    )


@dataclass(frozen=True)
class EngineStep:
    """One line of the engine's history of an order's workflow instance, as the admin shows it."""

    at: datetime
    since_start: timedelta
    what: str
    name: str
    failure: str | None


# The SDK's history event types (dapr.ext.workflow's WorkflowHistoryEventType) in words. The
# per-turn markers (WORKFLOW_STARTED / WORKFLOW_COMPLETED: the engine's orchestratorStarted and
# orchestratorCompleted) are left out: they mark replays, not steps of the order.
_ENGINE_EVENT_TEXT = {
    "EXECUTION_STARTED": "Workflow started",
    "EXECUTION_COMPLETED": "Workflow completed",
    "EXECUTION_TERMINATED": "Workflow terminated",
    "EXECUTION_SUSPENDED": "Workflow suspended",
    "EXECUTION_RESUMED": "Workflow resumed",
    "EXECUTION_STALLED": "Workflow stalled",
    "TASK_SCHEDULED": "Activity scheduled",
    "TASK_COMPLETED": "Activity completed",
    "TASK_FAILED": "Activity failed",
    "TIMER_CREATED": "Timer created",
    "TIMER_FIRED": "Timer fired",
    "EVENT_RAISED": "Event received",
    "EVENT_SENT": "Event sent",
    "CHILD_WORKFLOW_INSTANCE_CREATED": "Child workflow started",
    "CHILD_WORKFLOW_INSTANCE_COMPLETED": "Child workflow completed",
    "CHILD_WORKFLOW_INSTANCE_FAILED": "Child workflow failed",
    "CONTINUE_AS_NEW": "Continued as new",
}
_TURN_MARKERS = frozenset({"WORKFLOW_STARTED", "WORKFLOW_COMPLETED"})


def order_engine_history(*, order_id: str) -> list[EngineStep] | None:
    """The engine's history of the order's workflow instance (its id is the order's), oldest
    first; None when the engine has no such instance (not scheduled yet, or purged).

    Raises ``EngineUnavailable`` when the engine cannot be asked."""
    events = workflow_client.workflow_history(order_id)
    if events is None:
        return None
    # A completion names no activity (or child workflow); the event it closes does.
    scheduled = {event.event_id: event.name for event in events if event.event_id >= 0}
    shown = [event for event in events if event.kind not in _TURN_MARKERS]
    # Offsets count from the workflow's start: daprd records the first turn's marker before
    # executionStarted but stamps it a few milliseconds later.
    start = next((e.at for e in shown if e.kind == "EXECUTION_STARTED"), None)
    if start is None and shown:
        start = shown[0].at
    steps = []
    for event in shown:
        what = _ENGINE_EVENT_TEXT.get(event.kind, event.kind.replace("_", " ").capitalize())
        if event.kind == "EXECUTION_COMPLETED" and event.failure:
            what = "Workflow failed"
        name = event.name or ""
        if not name and event.scheduled_id is not None:
            name = scheduled.get(event.scheduled_id) or ""
        steps.append(
            EngineStep(
                at=event.at,
                since_start=event.at - start if start else timedelta(0),
                what=what,
                name=name,
                failure=event.failure,
            )
        )
    return steps


# daprd tags its workflow and activity spans with the instance id under this key (dapr's
# durabletask-go, api/helpers/tracing.go); the order's id is its instance id.
TRACE_INSTANCE_TAG = "durabletask.task.instance_id"


def order_trace_url(*, order: Order) -> str | None:
    """A Zipkin UI search for the order's trace, or None when tracing is off (no ZIPKIN_UI_URL).

    Zipkin's UI (Lens) runs a search from its URL when it has a lookback and a limit; the range
    starts a little before the order was placed (the web request's span comes first) and ends
    a little after now (the link is followed later than the page is drawn)."""
    base = settings.ZIPKIN_UI_URL.rstrip("/")
    if not base:
        return None
    start = order.created_at - timedelta(minutes=5)
    end = timezone.now() + timedelta(hours=1)
    query = urlencode(
        {
            "annotationQuery": f"{TRACE_INSTANCE_TAG}={order.id}",
            "lookback": "range",
            "startTs": int(start.timestamp() * 1000),
            "endTs": int(end.timestamp() * 1000),
            "limit": 10,
        }
    )
    return f"{base}/zipkin/?{query}"
