"""Views: parse, call one service or selector, render. The same view serves a page and, for
htmx, its fragment. Every shop page but the login and sign-up pages needs a login; a customer
sees only their own orders (another's answers 404, as a missing one does)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from orders import selectors
from orders.exceptions import OrderError, OrderNotFound
from orders.forms import OrderForm
from orders.models import OrderStatus
from orders.services.accounts import customer_account_create
from orders.services.orders import order_cancel, order_place

# The one backend that logs a new customer in (django-axes's, listed first, only guards logins).
SIGNUP_BACKEND = "django.contrib.auth.backends.ModelBackend"


@never_cache  # each visitor's form carries its own token
@login_required
@require_http_methods(["GET", "POST"])
def order_create(request: HttpRequest) -> HttpResponse:
    form = OrderForm(request.POST or None)
    if form.is_valid():
        try:
            order = order_place(
                item_id=form.cleaned_data["item"].pk,
                quantity=form.cleaned_data["quantity"],
                form_token=form.cleaned_data["form_token"] or None,
                placed_by=request.user,  # type: ignore[arg-type]
            )
        except OrderError as error:
            form.add_order_error(error)
        else:
            return redirect("orders:detail", order_id=order.id)
    return render(request, "orders/create.html", {"form": form, "quote": form.quote()})


@login_required
@require_GET
def order_quote(request: HttpRequest) -> HttpResponse:
    """The order form's live total (htmx): what the item and quantity chosen so far cost."""
    form = OrderForm(request.GET)
    return render(request, "orders/_quote.html", {"form": form, "quote": form.quote()})


@login_required
@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    orders = selectors.order_list(user=request.user, status=status)[:200]
    context = {"orders": orders, "status": status, "statuses": OrderStatus.choices}
    return render(request, "orders/list.html", context)


@login_required
@require_GET
def order_detail(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        progress = selectors.order_progress(order_id=order_id, user=request.user)
    except OrderNotFound as error:
        raise Http404(str(error)) from error
    if not request.htmx:
        return render(request, "orders/detail.html", {"progress": progress})
    if request.GET.get("seen") == progress.version:
        # Nothing changed since the page's last swap: htmx swaps nothing on a 204, so the
        # page (and a focused button in it) stays as it is.
        return HttpResponse(status=204)
    response = render(request, "orders/_status.html", {"progress": progress})
    if progress.order.is_final:
        # 286 tells htmx to swap this last fragment in and stop polling.
        return HttpResponseStopPolling(response.content)
    return response


@login_required
@require_POST
def order_cancel_view(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        selectors.order_get_visible(order_id=order_id, user=request.user)
        order_cancel(order_id=order_id, user=request.user)
    except OrderNotFound as error:
        raise Http404(str(error)) from error
    except OrderError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Your order is cancelled and its stock returned.")
    return redirect("orders:detail", order_id=order_id)


@never_cache
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """A new customer account (Django's UserCreationForm checks the name and the password),
    logged in at once and sent to the order form."""
    form = UserCreationForm(request.POST or None)
    if form.is_valid():
        try:
            user = customer_account_create(
                username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
            )
        except OrderError as error:
            form.add_error("password1", str(error))
        else:
            if user is None:  # taken between the form's check and now
                form.add_error("username", "A user with that username already exists.")
            else:
                login(request, user, backend=SIGNUP_BACKEND)
                return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/signup.html", {"form": form})
