# The image deploy/ runs, dapr-orders:0.1.0: one image for the web process (gunicorn
# ordersite.wsgi, the default command) and the worker (python manage.py runworker); each
# manifest picks its command. No secret is baked in: DJANGO_SECRET_KEY, DATABASE_URL and
# DAPR_API_TOKEN come from the manifests' Secrets at run time.
#
#   docker build -t dapr-orders:0.1.0 .
#
# (Built where a Docker engine and a registry are reachable; see docs/dapr.md.)
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="dapr-orders" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="Order management on Dapr Workflow: web and worker"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ORDERS_VAR_DIR=/var/lib/orders

WORKDIR /app

# Dependencies first: a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY manage.py ./
COPY ordersite ./ordersite
COPY orders ./orders
COPY sidecar ./sidecar

# The manifests run as 10001:10001 (runAsNonRoot); the settings write only under ORDERS_VAR_DIR.
RUN groupadd --system --gid 10001 orders \
 && useradd --system --uid 10001 --gid orders --no-create-home --shell /usr/sbin/nologin orders \
 && install -d -o orders -g orders -m 0700 /var/lib/orders
USER 10001:10001

# gunicorn binds 0.0.0.0:$PORT when PORT is set (the web manifest sets 8000).
ENV PORT=8000
EXPOSE 8000
CMD ["gunicorn", "ordersite.wsgi"]
