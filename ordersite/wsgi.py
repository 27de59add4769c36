"""WSGI entry point (gunicorn ordersite.wsgi); the web process's tracing is set up here, once
per gunicorn worker (orders.observability)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ordersite.settings")

application = get_wsgi_application()

from orders.observability import tracing_configure  # noqa: E402 - needs the settings loaded

tracing_configure(service_name="orders-web")
