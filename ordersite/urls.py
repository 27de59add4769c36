from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Order management"
admin.site.site_title = "Orders admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("orders.urls")),
]
