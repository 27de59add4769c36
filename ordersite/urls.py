from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from orders.metrics import metrics_view

admin.site.site_header = "Order management"
admin.site.site_title = "Orders admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("", include("orders.urls")),
]
