"""Settings: every deployment knob comes from the environment (see docs/webapp.md)."""

from __future__ import annotations

import os
import secrets
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else int(value)


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


# Local state (SQLite databases, the generated secret key) lives here, never in the repository.
VAR_DIR = Path(os.environ.get("ORDERS_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _kept_secret(file_name: str, nbytes: int) -> str:
    """A secret generated on first start and kept in var/ (mode 0600), the same for every process.

    Never a hard-coded default: a value in the repository would be the same for every
    installation.
    """
    path = VAR_DIR / file_name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(nbytes)
    # O_EXCL: two processes starting together must agree on one value, so the loser reads it back.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated on first start and kept in var/."""
    from_env = os.environ.get("SECRET_KEY") or os.environ.get("DJANGO_SECRET_KEY")
    return from_env or _kept_secret("secret_key", 50)


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "orders",
]

MIDDLEWARE = [
    # First: the request's span covers everything after it (passes through when untraced).
    "orders.observability.TracingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise serves /static/ from the gunicorn process itself: no nginx, no network.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username before a password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "ordersite.urls"
WSGI_APPLICATION = "ordersite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{VAR_DIR / 'orders.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Activities run on the SDK's worker threads next to gunicorn's processes: WAL lets readers
    # proceed during a write, IMMEDIATE takes the write lock at BEGIN so two writers queue on
    # busy_timeout instead of failing a lock upgrade half-way through a transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
    }
    # A file, not the in-memory default: the workflow worker's threads must see the test data.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"orders-test-{os.getpid()}.sqlite3")
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Without collectstatic (make run, tests) WhiteNoise finds files through the app finders.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "orders:login"
LOGIN_REDIRECT_URL = "orders:create"

# --- login throttling (django-axes) -------------------------------------------------------------
# After AXES_FAILURE_LIMIT wrong passwords in a row for one username from one address, that pair
# is refused (HTTP 429 and the lockout page) until the cool-off ends. Keyed on the pair so that
# nobody can lock a manager out from every address by guessing at their username.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_VERBOSE = False  # no banner on every manage.py command; failures are still logged
# The address is REMOTE_ADDR (django-ipware is not installed, so X-Forwarded-For, which anybody
# can forge, is never read): behind a proxy every client shares the proxy's address, and the
# lockout is then per username.

# --- HTTPS (see docs/webapp.md, "Production settings") ------------------------------------------
# HTTPS_ONLY=true says the site is served over HTTPS only: cookies become Secure, plain HTTP is
# redirected and HSTS is sent. Each default can still be overridden on its own.
HTTPS_ONLY = env_bool("HTTPS_ONLY")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS_ONLY)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS_ONLY)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS_ONLY)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS_ONLY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS_ONLY)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS_ONLY)
# Behind a TLS-terminating proxy (an Ingress) the request reaches gunicorn as plain HTTP; the
# proxy's X-Forwarded-Proto says what the browser used. Trust it only when told to: a client
# talking to gunicorn directly could otherwise claim HTTPS.
if env_bool("BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# --- the order workflow -----------------------------------------------------------------------

ORDER_APPROVAL_THRESHOLD = Decimal(os.environ.get("ORDER_APPROVAL_THRESHOLD", "50000"))
ORDER_APPROVAL_TIMEOUT = float(os.environ.get("ORDER_APPROVAL_TIMEOUT", "200"))
# How often runworker looks for orders that never got a workflow (seconds).
ORDER_RESCHEDULE_INTERVAL = float(os.environ.get("ORDER_RESCHEDULE_INTERVAL", "30"))

# The embedded sidecar runworker starts when no Dapr sidecar is around.
WORKFLOW_GRPC_HOST = os.environ.get("WORKFLOW_GRPC_HOST", "127.0.0.1")
WORKFLOW_GRPC_PORT = int(os.environ.get("WORKFLOW_GRPC_PORT", "50001"))
WORKFLOW_DB_PATH = Path(os.environ.get("WORKFLOW_DB_PATH", VAR_DIR / "workflows.db"))
# Set by `dapr run` next to the app: then that daprd is the engine, not the embedded sidecar.
DAPR_GRPC_PORT = os.environ.get("DAPR_GRPC_PORT") or None
# Where that daprd listens: its own pod by default; on Kubernetes the web pods reach the
# worker's sidecars through a Service (deploy/web.yaml), as the Dapr SDKs read it too.
DAPR_RUNTIME_HOST = os.environ.get("DAPR_RUNTIME_HOST") or "127.0.0.1"
# The engine's API token: the sidecar (embedded or daprd) refuses calls without it, so no other
# local process can start a workflow or raise a manager's decision. Under Dapr it is the
# DAPR_API_TOKEN daprd was given; embedded, DAPR_API_TOKEN or one generated at first start and
# kept in var/ like the secret key. The workflow client sends it (orders.workflow_client).
DAPR_API_TOKEN = os.environ.get("DAPR_API_TOKEN") or (
    None if DAPR_GRPC_PORT else _kept_secret("dapr_api_token", 32)
)

# Where managers open Zipkin's UI, e.g. http://127.0.0.1:9411 (tools/zipkin.sh starts one): the
# order's admin page links to the order's trace there. Empty (the default) means tracing is off
# and no link is shown.
ZIPKIN_UI_URL = os.environ.get("ZIPKIN_UI_URL", "").strip()

# --- tracing and metrics (see docs/sidecar-apis.md) ---------------------------------------------
# The Dapr Configuration file whose tracing section (samplingRate, zipkin or otel endpoint) both
# the embedded sidecar (as daprd's --config) and the app's own processes honour: the same file
# `dapr run -f .` gives daprd (dapr.yaml), so one file drives both modes. Empty: no tracing;
# unset: that file when it is there (the image leaves config/ out: daprd holds it there).
_dapr_config = BASE_DIR / "config" / "dapr-config.yaml"
DAPR_CONFIG = os.environ.get("DAPR_CONFIG", str(_dapr_config) if _dapr_config.is_file() else "")
# The embedded sidecar's app id (daprd's --app-id): its spans' service name and its metrics'
# app_id, the worker's appID in dapr.yaml.
WORKFLOW_APP_ID = os.environ.get("WORKFLOW_APP_ID", "orders-worker")
# Where the embedded sidecar serves daprd's workflow metrics (/metrics): 9090 as daprd; 0 picks
# a free port; "off" serves none.
_metrics_port = os.environ.get("WORKFLOW_METRICS_PORT", "9090").strip().lower()
WORKFLOW_METRICS_PORT = None if _metrics_port in {"off", "none", ""} else int(_metrics_port)
# Who may read the web's /metrics (the order counters): loopback only unless listed here.
METRICS_ALLOWED_ADDRESSES = env_list("METRICS_ALLOWED_ADDRESSES", "127.0.0.1,::1")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # The quickstart's format ("INFO:NotifyActivity:Received order ...").
        "seed": {"format": "%(levelname)s:%(name)s:%(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "seed"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"level": os.environ.get("DJANGO_LOG_LEVEL", "INFO"), "propagate": True},
    },
}
