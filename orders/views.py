"""Views: parse, call one service or selector, render. The same view serves a page and, for
htmx, its fragment."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseStopPolling

from orders import selectors
from orders.exceptions import OrderError, OrderNotFound
from orders.forms import OrderForm
from orders.models import OrderStatus
from orders.services.orders import order_place


@never_cache  # each visitor's form carries its own token
@require_http_methods(["GET", "POST"])
def order_create(request: HttpRequest) -> HttpResponse:
    form = OrderForm(request.POST or None)
    if form.is_valid():
        try:
            order = order_place(
                item_id=form.cleaned_data["item"].pk,
                quantity=form.cleaned_data["quantity"],
                form_token=form.cleaned_data["form_token"] or None,
            )
        except OrderError as error:
            form.add_error(None, str(error))
        else:
            return redirect("orders:detail", order_id=order.id)
    return render(request, "orders/create.html", {"form": form})


@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    orders = selectors.order_list(status=status)[:200]
    context = {"orders": orders, "status": status, "statuses": OrderStatus.choices}
    return render(request, "orders/list.html", context)


@require_GET
def order_detail(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        order = selectors.order_get(order_id=order_id)
    except OrderNotFound as error:
        raise Http404(str(error)) from error
    events = list(selectors.order_timeline(order=order))
    context = {
        "order": order,
        "events": events,
        "decision": selectors.decision_text(order=order, events=events),
        "time_left": selectors.approval_time_left(order=order),
    }
    if not request.htmx:
        return render(request, "orders/detail.html", context)
    response = render(request, "orders/_status.html", context)
    if order.is_final:
        # 286 tells htmx to swap this last fragment in and stop polling.
        return HttpResponseStopPolling(response.content)
    return response
