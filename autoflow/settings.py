"""AutoFlow settings: one module, configured by environment variables only.

Two modes, chosen by configuration alone:
- embedded default (no environment): DEBUG on, SQLite in WAL mode, in-memory channel layer,
  cache and job queue; development keys are generated once into `.autoflow-dev.json`;
- production (`DEBUG=false`): `DATABASE_URL`, `REDIS_URL` and the keys are required.
"""

from __future__ import annotations

import socket
import sys
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

from autoflow.config import (
    env_bool,
    env_int,
    env_list,
    env_rate,
    env_size,
    load_dev_keys,
    parse_encryption_keys,
)

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env_bool("DEBUG", default=True)
TESTING = "pytest" in sys.modules or env_bool("AUTOFLOW_TESTING", default=False)


def _secret(name: str) -> str:
    """Return a secret from the environment; only the embedded default may invent one."""
    value = env.str(name, default="")
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(f"{name} is required when DEBUG is false; set it.")
    return load_dev_keys(BASE_DIR / ".autoflow-dev.json")[name]


SECRET_KEY = _secret("SECRET_KEY")
JWT_SIGNING_KEY = _secret("JWT_SIGNING_KEY")
AUTOFLOW_ENCRYPTION_KEYS = parse_encryption_keys(
    "AUTOFLOW_ENCRYPTION_KEY",
    _secret("AUTOFLOW_ENCRYPTION_KEY"),
    env.str("AUTOFLOW_ENCRYPTION_OLD_KEYS", default=""),
)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
if DEBUG or TESTING:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]

REDIS_URL = env.str("REDIS_URL", default="")
if not DEBUG and not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL is required when DEBUG is false; set it.")
EMBEDDED = not REDIS_URL

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "corsheaders",
    "csp",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_results",
    "django_celery_beat",
    "autoflow",
    "accounts",
    "nodes",
    "workflows",
    "executions",
    "triggers",
    "live",
    "ops",
]

MIDDLEWARE = [
    "ops.metrics.RequestMetricsMiddleware",
    "autoflow.middleware.RequestIdMiddleware",
    "autoflow.middleware.ApiErrorMiddleware",
    "autoflow.loop_middleware.SecurityMiddleware",
    "autoflow.middleware.StaticFilesMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "autoflow.loop_middleware.CSPMiddleware",
    "autoflow.loop_middleware.SessionMiddleware",
    "autoflow.loop_middleware.CommonMiddleware",
    "autoflow.loop_middleware.CsrfViewMiddleware",
    "autoflow.loop_middleware.AuthenticationMiddleware",
    "autoflow.loop_middleware.MessageMiddleware",
    "autoflow.loop_middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "autoflow.urls"
ASGI_APPLICATION = "autoflow.asgi.application"
WSGI_APPLICATION = "autoflow.wsgi.application"
APPEND_SLASH = False

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

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    _database: dict[str, Any] = environ.Env.db_url_config(DATABASE_URL)
except Exception as error:  # django-environ raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL is malformed: {error}") from error
if _database.get("ENGINE") not in (
    "django.db.backends.sqlite3",
    "django.db.backends.postgresql",
    "django.db.backends.postgresql_psycopg2",
):
    raise ImproperlyConfigured(
        "DATABASE_URL must be a postgres://... or sqlite:///... URL, not "
        f"{DATABASE_URL.split(':', 1)[0]!r}."
    )
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["OPTIONS"] = {
        # WAL lets the worker thread write while the web thread reads; IMMEDIATE takes the
        # write lock up front so two writers queue instead of failing with "database locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif _database["ENGINE"] in (
    "django.db.backends.postgresql",
    "django.db.backends.postgresql_psycopg2",
):
    # Django's backend; its health check skips the round trip on a quiet socket.
    _database["ENGINE"] = "autoflow.postgresql"
    _database["CONN_HEALTH_CHECKS"] = True
    # 0: a connection is closed when its request (or task) ends. HTTP requests and WebSocket
    # consumers run on the long-lived threads of autoflow.request_threads and Celery tasks in
    # pool children, which keep theirs (WORKER_DATABASE_CONN_MAX_AGE); this covers the rest
    # (management commands and other short-lived threads), where connections could pile up.
    _database["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", default=0)
    _database["OPTIONS"] = {
        "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", default=5),
        # psycopg prepares a statement once it has run 5 times on a connection (its default,
        # which Django turns off) and PostgreSQL keeps the plan. Only the server-side-bound hot
        # statements of autoflow.statements qualify (Django's own cursors bind client-side and
        # never prepare); parsing and planning them was two thirds of PostgreSQL's CPU per
        # webhook run. Off for a pooler in transaction mode (PgBouncer before 1.21).
        "prepare_threshold": (
            5 if env_bool("DATABASE_PREPARED_STATEMENTS", default=True) else None
        ),
    }
    # Opt-in: a request whose client disconnects mid-view never returns its pooled connection
    # (Django skips request_finished), and a pool that loses connections ends in PoolTimeout.
    if env_bool("DATABASE_POOL", default=False):
        _database["CONN_MAX_AGE"] = 0
        _database["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", default=10),
            "timeout": 5,
        }
    _database.setdefault("TEST", {})
    if env.str("TEST_DATABASE_NAME", default=""):
        _database["TEST"]["NAME"] = env.str("TEST_DATABASE_NAME")
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, broker ------------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "autoflow.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "autoflow",
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                # A down Redis must not turn requests into 500s: rate limits fail open.
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
    # django-ratelimit's counters, in one round trip a hit (`autoflow.cache.RateLimitCache`).
    CACHES["ratelimit"] = {**CACHES["default"], "BACKEND": "autoflow.cache.RateLimitCache"}
    # No socket timeout on the channel layer's connections, on purpose. redis-py bounds a send
    # with asyncio.wait_for when one is set, and on Python 3.11 wait_for swallows a
    # cancellation that lands as the send completes: a closing socket's channel-layer receive
    # then runs on and its consumer never finishes. (redis-py 8 defaults to 5 s, the same 5 s
    # channels-redis blocks in BZPOPMIN, which also kills idle receives with code 1011.) A dead
    # peer is found by TCP keepalive instead, and a stale pooled connection by a health check.
    CHANNEL_LAYER_CONNECTION = {
        "socket_timeout": None,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        # Probe after 15 s idle, every 5 s, give up after 3 (where the platform names them).
        "socket_keepalive_options": {
            getattr(socket, name): value
            for name, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
            if hasattr(socket, name)
        },
        "health_check_interval": 30,
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "autoflow.channel_layer.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, **CHANNEL_LAYER_CONNECTION}],
                "capacity": 5000,
                "expiry": 30,
            },
        }
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "ratelimit": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "ratelimit",
        },
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "autoflow.redis"

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

ACCESS_TOKEN_MINUTES = env_int("ACCESS_TOKEN_MINUTES", default=15, minimum=1)
REFRESH_TOKEN_DAYS = env_int("REFRESH_TOKEN_DAYS", default=7, minimum=1)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=ACCESS_TOKEN_MINUTES),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=REFRESH_TOKEN_DAYS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "CHECK_USER_IS_ACTIVE": True,
    "UPDATE_LAST_LOGIN": False,
}

# --- REST -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JwtAuthentication",
        "accounts.authentication.ApiKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.permissions.HasRequiredScope",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["autoflow.ratelimit.GeneralRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["autoflow.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "autoflow.pagination.PageNumberPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "autoflow.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "AutoFlow API",
    "DESCRIPTION": "Workflow automation: workflows, executions, credentials and webhooks.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api",
    # The schema and docs are public: credentials sent along (even stale ones) are ignored.
    "SERVE_AUTHENTICATION": [],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "autoflow.schema.document_page_not_found",
    ],
}

# --- Limits ---------------------------------------------------------------------------------
MAX_REQUEST_BYTES = env_size("MAX_REQUEST_BYTES", default=2 * 1024 * 1024)
NODE_OUTPUT_MAX_BYTES = env_size("NODE_OUTPUT_MAX_BYTES", default=1024 * 1024)
GRAPH_MAX_NODES = env_int("GRAPH_MAX_NODES", default=500)
GRAPH_MAX_BYTES = env_size("GRAPH_MAX_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES

RATE_LIMIT_GENERAL = env_rate("RATE_LIMIT_GENERAL", default="100/15m")
RATE_LIMIT_AUTH = env_rate("RATE_LIMIT_AUTH", default="5/15m")
RATE_LIMIT_REFRESH = env_rate("RATE_LIMIT_REFRESH", default="30/15m")
RATE_LIMIT_WEBHOOK = env_rate("RATE_LIMIT_WEBHOOK", default="600/1m")
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", default=0)
if EMBEDDED:
    # One process owns the in-memory cache in the embedded default, so it is the shared cache.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", default=5, minimum=1)
# A Celery pool child, or one of a web process's request threads, is long-lived, so it keeps
# its PostgreSQL connection between tasks or requests until it is older than this.
WORKER_DATABASE_CONN_MAX_AGE = env_int("WORKER_DATABASE_CONN_MAX_AGE", default=300, minimum=0)
# Long-lived threads per web process that run requests' sync code (and keep a connection each).
WEB_REQUEST_THREADS = env_int("WEB_REQUEST_THREADS", default=8, minimum=1)
HTTP_NODE_ALLOWED_HOSTS = env_list("HTTP_NODE_ALLOWED_HOSTS", default=[])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
WEBHOOK_RESPOND_TIMEOUT_SECONDS = env_int("WEBHOOK_RESPOND_TIMEOUT_SECONDS", default=30)
EXECUTION_RETENTION_DAYS_SUCCEEDED = env_int("EXECUTION_RETENTION_DAYS_SUCCEEDED", default=14)
EXECUTION_RETENTION_DAYS_FAILED = env_int("EXECUTION_RETENTION_DAYS_FAILED", default=90)
EXECUTION_RETENTION_DAYS_CANCELLED = env_int("EXECUTION_RETENTION_DAYS_CANCELLED", default=30)

# --- Security -------------------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", default=["http://localhost:5173"])
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "if-match",
    "idempotency-key",
    "x-api-key",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = ["ETag", "X-Request-ID", "Retry-After"]
# Browsers call the REST API cross-origin; pages, docs and health checks are same-origin only.
# Named here also because django-cors-headers reads it on every request, and a setting Django
# does not have costs an exception per read (2 % of the web process's CPU under webhook load).
CORS_URLS_REGEX = r"^/api(?:/|$)"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # Swagger UI sets inline styles on its elements.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", "ws:", "wss:"],
        "font-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING
if WHITENOISE_USE_FINDERS:
    # Files come from the finders here, so an uncollected STATIC_ROOT is expected, not a fault.
    warnings.filterwarnings("ignore", message=r"No directory at: .*staticfiles")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = (
    # max_retries 0: a publish meets a down broker once, not kombu's ~6 s of reconnect
    # attempts, so execute and webhooks still answer at once (the sweeper enqueues later).
    # The worker's consumer passes its own retry count and keeps reconnecting.
    {"visibility_timeout": 3600, "socket_connect_timeout": 2, "socket_timeout": 5}
    if REDIS_URL
    # kombu's virtual transports poll once a second unless told otherwise.
    else {"polling_interval": 0.01}
)
# kombu's Redis transport, reusing its command client (autoflow/broker.py); any other scheme
# (sentinel://) keeps the transport kombu picks for it.
CELERY_BROKER_TRANSPORT = (
    "autoflow.broker:Transport" if REDIS_URL.startswith(("redis://", "rediss://")) else None
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_WORKER_CONCURRENCY = WORKER_CONCURRENCY
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "flush-expired-tokens": {
        "task": "accounts.tasks.flush_expired_tokens_task",
        "schedule": timedelta(days=1),
    },
}

# Execution engine: a worker holds a run through a lease it renews by heartbeat; the sweeper
# wakes due waits, re-enqueues queued runs nobody took, and takes over runs whose lease lapsed.
EXECUTION_LEASE_SECONDS = env_int("EXECUTION_LEASE_SECONDS", default=15, minimum=2)
EXECUTION_SWEEP_SECONDS = env_int("EXECUTION_SWEEP_SECONDS", default=5, minimum=1)
EXECUTION_MAX_RECOVERIES = env_int("EXECUTION_MAX_RECOVERIES", default=3)
# Waits up to this long ride a Celery countdown; longer ones are woken by the sweeper.
EXECUTION_COUNTDOWN_MAX_SECONDS = env_int("EXECUTION_COUNTDOWN_MAX_SECONDS", default=300)
EXECUTION_REQUEUE_AFTER_SECONDS = env_int("EXECUTION_REQUEUE_AFTER_SECONDS", default=60, minimum=1)
CELERY_BEAT_SCHEDULE["sweep-executions"] = {
    "task": "executions.tasks.sweep_executions_task",
    "schedule": timedelta(seconds=EXECUTION_SWEEP_SECONDS),
    "options": {"expires": EXECUTION_SWEEP_SECONDS},
}

# Retention: a daily beat task deletes finished executions older than these, in batches.
EXECUTION_PRUNE_BATCH_SIZE = env_int("EXECUTION_PRUNE_BATCH_SIZE", default=1000, minimum=1)
CELERY_BEAT_SCHEDULE["prune-executions"] = {
    "task": "ops.tasks.prune_executions_task",
    "schedule": timedelta(days=1),
}

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if DEBUG else "json")
if LOG_FORMAT not in ("console", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be 'console' or 'json'.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": "autoflow.logging.structured_formatter",
            "fmt": LOG_FORMAT,
        },
    },
    "handlers": {
        "stream": {"class": "logging.StreamHandler", "formatter": "structured"},
    },
    "root": {"handlers": ["stream"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
    },
}
RATELIMIT_FAIL_OPEN = True
RATELIMIT_USE_CACHE = "ratelimit"
