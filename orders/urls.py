from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from orders import views

app_name = "orders"

urlpatterns = [
    path("", views.order_create, name="create"),
    path("quote/", views.order_quote, name="quote"),
    path("orders/", views.order_list, name="list"),
    path("orders/<str:order_id>/", views.order_detail, name="detail"),
    path("orders/<str:order_id>/cancel/", views.order_cancel_view, name="cancel"),
    # Django's own login and logout: customers and staff log in here; django-axes throttles
    # failed logins through the authentication backend, whichever page calls it.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path(
        "accounts/logout/", auth_views.LogoutView.as_view(next_page="orders:login"), name="logout"
    ),
    path("accounts/signup/", views.signup, name="signup"),
]
