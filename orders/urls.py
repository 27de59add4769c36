from __future__ import annotations

from django.urls import path

from orders import views

app_name = "orders"

urlpatterns = [
    path("", views.order_create, name="create"),
    path("orders/", views.order_list, name="list"),
    path("orders/<str:order_id>/", views.order_detail, name="detail"),
]
