"""Settings for inventory_ops, read from the environment with working local defaults.

Environment (see README "Configuration"):
    DATABASE_URL   default: SQLite under var/ (WAL mode, busy timeout)
    REDIS_URL      default: redis://127.0.0.1:6379/0
    SECRET_KEY     required unless DEBUG is on
    DEBUG          default: off; DEBUG=1 for a local run (`make run` sets it)
    HTTPS          default: off; HTTPS=1 behind a TLS proxy (HSTS, redirect, secure cookies)
    ALLOWED_HOSTS  comma-separated, default: 127.0.0.1,localhost,[::1]
"""

import os
import sys
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from whitenoise.compress import Compressor

from core.timebounds import time_floor_parse

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Off unless asked for: a deployment that forgets the variable shows no tracebacks.
DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment (any long random string), "
            "or set DEBUG=1 for a local development run."
        )
    SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

# Behind a proxy that terminates TLS and sets X-Forwarded-Proto: one switch for HSTS, the
# redirect to https and cookies sent over TLS only. Probes of the process itself stay on http.
HTTPS = env_bool("HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "channels",
    "django_htmx",
    "django_rq",
    "ninja",
    # Bottom to top (ARCHITECTURE.md): core infrastructure, the stock ledger (app label
    # `inventory_ops`, kept from when it lived in the project package), the KPI read model (app
    # label `dashboards`, kept from when it lived there), corrections, ingest, the screens (app
    # label `screens`), on-call, demo data. `inventory_ops` is the project package, not an app.
    "core",
    "ledger",
    "slos",
    "kpis",
    "corrections",
    "ingest",
    "dashboards",
    "oncall",
    "demo",
]

MIDDLEWARE = [
    "inventory_ops.request_id.RequestIdMiddleware",
    # Counts every answer to an ingest POST, the outage 503s included (the availability SLO).
    "slos.middleware.IngestAvailabilityMiddleware",
    # Counts and times every answer, the refused and failed ones included (/metrics).
    "inventory_ops.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "inventory_ops.middleware.DependencyOutageMiddleware",
    "inventory_ops.middleware.PagesRequireLoginMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a refused login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "inventory_ops.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

WSGI_APPLICATION = None
ASGI_APPLICATION = "inventory_ops.asgi.application"

# --- Database -------------------------------------------------------------------------------
VAR_DIR.mkdir(exist_ok=True)
DEFAULT_SQLITE_URL = f"sqlite:///{VAR_DIR / 'inventory_ops.sqlite3'}"
DATABASE_URL = os.environ.get("DATABASE_URL") or DEFAULT_SQLITE_URL

DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the workers share one file: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock at BEGIN (no upgrade deadlocks), and the timeout makes a
    # writer wait for the lock instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not Django's shared in-memory database: threads in concurrency tests need real
    # locking, which shared-cache memory databases do not give.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_inventory_ops.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A server that does not answer (host down, network cut) fails a connection in seconds
    # instead of the kernel's TCP timeout (minutes): pages answer 503 meanwhile.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = int(
        os.environ.get("DATABASE_CONNECT_TIMEOUT_SECONDS", "3")
    )
    if env_bool("DATABASE_POOL", False):
        # Set by the ASGI entry point (asgi.py): under ASGI Django runs each request's sync code
        # on a thread of its own, and connections belong to threads, so persistent connections
        # are never reused there: each request paid for a new PostgreSQL connection (~7 ms of
        # client and server CPU, a backend fork) and left the old one open until garbage
        # collection. A pool hands connections from request to request instead (health-checked
        # on checkout). Waiting longer than `timeout` for one raises OperationalError: the API
        # answers 503, as when the database is down.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 2,
            "max_size": int(os.environ.get("DATABASE_POOL_MAX_SIZE", "20")),
            "timeout": float(os.environ.get("DATABASE_POOL_TIMEOUT_SECONDS", "5")),
            # The pool reconnects in the background with a doubling delay (1, 2, 4 ... s) for
            # `reconnect_timeout` (default 300 s): after a minute-long outage its next attempt
            # came up to ~50 s after PostgreSQL was back. Giving up after 2 s instead, the next
            # request starts a fresh attempt, so the process recovers within seconds.
            "reconnect_timeout": 2,
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and job queues ----------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # A read timeout above the layer's 5 s blocking pop: without one set, an idle
            # consumer's receive failed with "Timeout reading from Redis" after 5 s.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
            # The default capacity (100) drops messages silently under bursts (measured here);
            # updates are coalesced on the server, so a modest, explicit capacity is enough.
            "capacity": 1000,
            "expiry": 30,
            # Dashboard hubs renew their group memberships every minute (dashboards/live.py);
            # a Daphne process that died drops out of its groups after this many seconds.
            "group_expiry": 300,
        },
    }
}


def _redis_url_with_timeouts(url: str, **seconds: float) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in seconds.items():
        query.setdefault(name, str(value))
    return urlunsplit(parts._replace(query=urlencode(query)))


# Connect and read timeout of the Redis client the ingest API uses (rate limit, enqueue): a hung
# Redis delays a POST by seconds, and the batch waits in the database for the sweeper.
INGEST_REDIS_TIMEOUT_SECONDS = float(os.environ.get("INGEST_REDIS_TIMEOUT_SECONDS", "2"))

# The same timeouts for every RQ client of the web process (/readyz, /metrics, the on-call
# console), so that none hangs on a Redis that accepts connections and never answers (options in
# the URL win over a client's own arguments). RQ raises the read timeout of a worker's own
# connection above its blocking pop, so workers are unaffected.
RQ_REDIS_URL = _redis_url_with_timeouts(
    REDIS_URL,
    socket_connect_timeout=INGEST_REDIS_TIMEOUT_SECONDS,
    socket_timeout=INGEST_REDIS_TIMEOUT_SECONDS,
)
RQ_QUEUES = {
    "ingest": {"URL": RQ_REDIS_URL, "DEFAULT_TIMEOUT": 600},
    "default": {"URL": RQ_REDIS_URL, "DEFAULT_TIMEOUT": 1800},
}
# django-rq's own admin pages check only is_staff; ours at /admin/rq/ are for on-call only.
RQ_SHOW_ADMIN_LINK = False

# --- Content-Security-Policy (every response) -----------------------------------------------
# Scripts and styles only from this origin: no inline script, no inline style attribute, no
# eval. Chart data travels in JSON script elements (`json_script`), which are data, not script.
# One exception, for plotly.js: it creates an EMPTY <style> element and fills it through the
# CSSOM (insertRule), which CSP does not govern. Allowing the hash of the empty string admits
# that element and no <style> with any content, so injected markup still cannot style the page.
EMPTY_INLINE_STYLE_HASH = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", EMPTY_INLINE_STYLE_HASH],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    # 'self' covers the dashboard's WebSocket (ws:/wss: on the same host and port).
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username
# from one address, that pair is locked out for LOGIN_COOLOFF_MINUTES after the last attempt
# (or until an admin deletes the access attempt). Failures are logged and kept in the admin.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The log names who failed from where (passwords are always masked): what an operator reading
# it needs. A refused attempt during a lockout does not restart the cool-off.
AXES_SENSITIVE_PARAMETERS = []
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# --- I18n / time ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (served by WhiteNoise under Daphne) ---------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed names, gzip and brotli copies once `collectstatic` has run; plain names before it
# (inventory_ops/static_storage.py).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "inventory_ops.static_storage.CollectedStaticFilesStorage"},
}
STATIC_COLLECTED = (STATIC_ROOT / "staticfiles.json").exists()
# Collected files only, in production; a local run (or one with nothing collected) serves
# straight from the apps' static folders, so it needs no collectstatic step and shows edits.
WHITENOISE_USE_FINDERS = DEBUG or not STATIC_COLLECTED
if not STATIC_COLLECTED:
    # WhiteNoise indexes STATIC_ROOT at start unless DEBUG is on, and warns when it is missing:
    # an empty one is enough then, the finders serve the files.
    with suppress(OSError):
        STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_AUTOREFRESH = DEBUG
# Pages link only the hashed names; the plain copies would double collectstatic's compression
# work and the image. Source maps are for developer tools only: not worth compressing.
WHITENOISE_KEEP_ONLY_HASHED_FILES = True
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (*Compressor.SKIP_COMPRESS_EXTENSIONS, "map")

# --- Logging: everything to stdout ----------------------------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
# LOG_FORMAT=json: one JSON object a line (timestamp, level, logger, process, message,
# request_id, batch_id, and any extra fields), for a log collector; plain text otherwise.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
# RQ's own lines (a job started, done; the worker listening): one a job at INFO.
RQ_LOG_LEVEL = os.environ.get("RQ_LOG_LEVEL", "WARNING").strip().upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "inventory_ops.request_id.RequestIdFilter"},
        "batch_id": {"()": "core.logcontext.BatchIdFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "{levelname}{name}{process}{message}",
            "style": "{",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": sys.stdout,
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id", "batch_id"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "rq.worker": {"level": RQ_LOG_LEVEL},
        "rq.job": {"level": RQ_LOG_LEVEL},
    },
}

# --- Product settings -----------------------------------------------------------------------
INVENTORY_CURRENCY = os.environ.get("INVENTORY_CURRENCY", "USD")
# /metrics answers a scraper sending `Authorization: Bearer <METRICS_TOKEN>` (or an on-call
# user's session); unset, only on-call users may read it.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Corrections whose absolute value exceeds this wait for a manager's approval (docs/corrections.md).
CORRECTION_APPROVAL_THRESHOLD = os.environ.get("CORRECTION_APPROVAL_THRESHOLD", "1000")
# Restocking (docs/restocking.md): a SKU needs restocking when its stock covers fewer days of
# demand than a supplier's delivery takes; a suggestion covers this many days of demand. Each
# site may override both in the admin.
RESTOCK_LEAD_DAYS = int(os.environ.get("RESTOCK_LEAD_DAYS", "3"))
RESTOCK_TARGET_DAYS = int(os.environ.get("RESTOCK_TARGET_DAYS", "14"))

# --- Ingest ---------------------------------------------------------------------------------
# Requests may carry up to 5 MiB of events (docs/ingest.md); Django's default (2.5 MiB) would refuse
# them first. The ingest API answers 413 itself above 5 MiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024 + 64 * 1024
# X-Signature's t= may differ this much from the server's clock (docs/signing.md).
INGEST_SIGNATURE_TOLERANCE_SECONDS = 300
# A rotated feed token keeps working this long, so its producer can switch without a gap.
INGEST_TOKEN_GRACE_SECONDS = int(os.environ.get("INGEST_TOKEN_GRACE_SECONDS", str(24 * 3600)))
# Order events whose order is still unknown after this long are rejected ("unknown order").
INGEST_HOLD_SECONDS = int(os.environ.get("INGEST_HOLD_SECONDS", str(24 * 3600)))
# The worker's sweeper runs every INGEST_SWEEP_SECONDS and enqueues again a batch not done
# INGEST_SWEEP_GRACE_SECONDS after it arrived if it has no live job (see ingest/worker.py).
INGEST_SWEEP_SECONDS = float(os.environ.get("INGEST_SWEEP_SECONDS", "5"))
INGEST_SWEEP_GRACE_SECONDS = float(os.environ.get("INGEST_SWEEP_GRACE_SECONDS", "10"))
# Event times before EVENT_TIME_FLOOR (ISO 8601, UTC unless it names an offset) or more than
# EVENT_TIME_FUTURE_TOLERANCE_SECONDS after the time they are applied are rejected (a producer's
# clock or format gone wrong); see core/timebounds.py.
try:
    EVENT_TIME_FLOOR = time_floor_parse(os.environ.get("EVENT_TIME_FLOOR", "2000-01-01"))
except ValueError as error:
    raise ImproperlyConfigured(str(error)) from None
EVENT_TIME_FUTURE_TOLERANCE_SECONDS = float(
    os.environ.get("EVENT_TIME_FUTURE_TOLERANCE_SECONDS", str(24 * 3600))
)
# A batch is claimed (started) at most INGEST_MAX_ATTEMPTS times: once its processing raised
# that many times, or that many claims never finished (its worker was killed, ran out of
# memory), it is finished with its events as dead letters "processing_failed" (replayable)
# instead of being retried forever.
INGEST_MAX_ATTEMPTS = int(os.environ.get("INGEST_MAX_ATTEMPTS", "3"))
# A worker applies the batch of its job together with queued batches, oldest first, up to
# this many events in one transaction (per-transaction and per-stock-level costs are then paid
# once per group); 0 applies each batch alone. See docs/ingest.md.
INGEST_GROUP_EVENTS = int(os.environ.get("INGEST_GROUP_EVENTS", "10000"))

# Retention (`manage.py housekeeping`, daily; docs/operations.md "Retention"): raw batch bodies
# and the idempotency keys of applied events are dropped this many days after their batch
# arrived (an event re-sent after its key is gone is applied again), resolved dead letters
# are archived this many days after they were replayed or discarded. Ledger rows are never
# deleted.
INGEST_BODY_RETENTION_DAYS = int(os.environ.get("INGEST_BODY_RETENTION_DAYS", "30"))
INGEST_KEY_RETENTION_DAYS = int(os.environ.get("INGEST_KEY_RETENTION_DAYS", "90"))
DEAD_LETTER_RETENTION_DAYS = int(os.environ.get("DEAD_LETTER_RETENTION_DAYS", "90"))
HOUSEKEEPING_INTERVAL_SECONDS = int(os.environ.get("HOUSEKEEPING_INTERVAL_SECONDS", "86400"))

# Live dashboards (docs/dashboard.md): a watched scope is recomputed at once when a change is
# announced after a quiet spell, then at most once per coalescing interval while changes keep
# coming, and at least every DASHBOARD_REFRESH_S. The interval adapts to what the scope's last
# update cost, between DASHBOARD_COALESCE_MIN_MS and DASHBOARD_COALESCE_MAX_MS;
# DASHBOARD_COALESCE_MS, if set, pins it instead.
DASHBOARD_COALESCE_MS = (
    int(os.environ["DASHBOARD_COALESCE_MS"]) if os.environ.get("DASHBOARD_COALESCE_MS") else None
)
DASHBOARD_COALESCE_MIN_MS = int(os.environ.get("DASHBOARD_COALESCE_MIN_MS", "200"))
DASHBOARD_COALESCE_MAX_MS = int(os.environ.get("DASHBOARD_COALESCE_MAX_MS", "1000"))
DASHBOARD_REFRESH_S = float(os.environ.get("DASHBOARD_REFRESH_S", "10"))
# The live path computes a scope's "Restock now" panel at most this often (then once more at
# the end of the interval if an update in between showed the previous one).
DASHBOARD_RESTOCK_INTERVAL_S = float(os.environ.get("DASHBOARD_RESTOCK_INTERVAL_S", "2"))

# Worker liveness (ingest/heartbeats.py): each worker beats every WORKER_HEARTBEAT_SECONDS to a
# file in WORKER_HEARTBEAT_DIR (for `manage.py worker_alive`) and to Redis; three missed beats
# and it counts as gone.
WORKER_HEARTBEAT_SECONDS = float(os.environ.get("WORKER_HEARTBEAT_SECONDS", "5"))
WORKER_HEARTBEAT_DIR = Path(os.environ.get("WORKER_HEARTBEAT_DIR") or VAR_DIR / "run")

# --- On-call notifications (docs/oncall.md "Notifications") ---------------------------------
# Links in notifications (alert pages, runbooks) start with this: the address people open.
PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000")
# A failed delivery is tried again after each of these delays (seconds), then given up.
NOTIFICATION_RETRY_DELAYS = [
    int(delay) for delay in env_list("NOTIFICATION_RETRY_DELAYS", "30,120,600,1800")
]
# How long one webhook request may take before it counts as failed.
NOTIFICATION_TIMEOUT = float(os.environ.get("NOTIFICATION_TIMEOUT", "10"))
# How often an open, unacknowledged alert is sent again when its rule does not say (minutes;
# 0: never). Checked by the scheduled evaluation, so the effective step is its interval.
ALERT_REPEAT_MINUTES = int(os.environ.get("ALERT_REPEAT_MINUTES", "30"))
# Email goes through Django's default mailer, configured from these variables (SMTP unless
# EMAIL_BACKEND names another backend, e.g. django.core.mail.backends.console.EmailBackend).
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_BACKEND_PATH = os.environ.get("EMAIL_BACKEND", SMTP_BACKEND)
MAILERS = {"default": {"BACKEND": EMAIL_BACKEND_PATH}}
if EMAIL_BACKEND_PATH == SMTP_BACKEND:
    MAILERS["default"]["OPTIONS"] = {
        "host": os.environ.get("EMAIL_HOST", "localhost"),
        "port": int(os.environ.get("EMAIL_PORT", "25")),
        "username": os.environ.get("EMAIL_HOST_USER", ""),
        "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
        "use_tls": env_bool("EMAIL_USE_TLS", False),
        "timeout": int(os.environ.get("EMAIL_TIMEOUT", "10")),
    }
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "inventory_ops <oncall@localhost>")
