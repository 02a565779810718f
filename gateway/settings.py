"""One settings module. The profile follows from which variables are set (see README)."""

from __future__ import annotations

import re
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from gateway.env import env_bool, env_float, env_int, env_list, env_secret, env_str, is_set

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / ".data")))

DATABASE_URL = env_str("DATABASE_URL", "")
REDIS_URL = env_str("REDIS_URL", "")
EMBEDDED = not DATABASE_URL


def _embedded_secret(filename: str, make: callable) -> str:  # type: ignore[valid-type]
    """A secret kept in DATA_DIR, created on first use. Only the embedded profile uses this."""
    path = DATA_DIR / filename
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


SECRET_KEY = env_secret("SECRET_KEY")
SECRETS_ENCRYPTION_KEYS = [k for k in (env_secret("SECRETS_ENCRYPTION_KEY") or "").split(",") if k.strip()]
if EMBEDDED:
    SECRET_KEY = SECRET_KEY or _embedded_secret("secret_key", lambda: secrets.token_urlsafe(50))
    SECRETS_ENCRYPTION_KEYS = SECRETS_ENCRYPTION_KEYS or [_embedded_secret("secrets_encryption_key", _fernet_key)]
elif not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DATABASE_URL is set (production profile).")
elif not SECRETS_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("SECRETS_ENCRYPTION_KEY must be set when DATABASE_URL is set (production profile).")


def _check_fernet_keys(keys: list[str]) -> None:
    """Each key must be a Fernet key, so a typo stops startup here rather than failing the first
    provider write with a 500. The message never repeats a key."""
    from cryptography.fernet import Fernet

    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.strip().encode())
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"SECRETS_ENCRYPTION_KEY: key {position} of {len(keys)} is not a Fernet key (32 url-safe "
                'base64-encoded bytes; make one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            ) from None


_check_fernet_keys(SECRETS_ENCRYPTION_KEYS)

DEBUG = env_bool("DEBUG", EMBEDDED)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "django_htmx",
    "template_partials",
    "ninja",
    "gateway",
    "billing",
    "approvals",
    "portal",
]

# The full stack serves the portal, the admin and the management API. /v1 never sees it:
# gateway/asgi.py sends it to a lean handler with no middleware at all.
MIDDLEWARE = [
    "gateway.probe_middleware.HealthProbes",  # first: probes by pod IP pass no host check
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "gateway.audit.middleware.AuditContextMiddleware",  # who changes what, from where (audit log)
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "gateway.security.SecurityHeaders",
]

ROOT_URLCONF = "gateway.urls"
PROXY_URLCONF = "gateway.proxy.urls"
ASGI_APPLICATION = "gateway.asgi.application"
WSGI_APPLICATION = "gateway.wsgi.application"

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
                "portal.context_processors.portal",
            ],
        },
    },
]


def _database(url: str) -> dict:
    """DATABASE_URL parsed; a URL that is not PostgreSQL's or SQLite's stops startup. The message
    never repeats the URL (it holds the password)."""
    try:
        parsed = dj_database_url.parse(url)
    except Exception:  # dj_database_url raises several kinds, all meaning "not a database URL"
        parsed = {}
    if parsed.get("ENGINE") not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        raise ImproperlyConfigured(
            "DATABASE_URL must be a PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/NAME, special "
            "characters in the password %-encoded) or sqlite:///PATH."
        )
    return parsed


DATABASES = {
    "default": _database(DATABASE_URL)
    if DATABASE_URL
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "gateway.sqlite3"}
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI, connections come from psycopg's pool rather than being kept per thread.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1, minimum=0),
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=1),
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
    }
else:
    # IMMEDIATE: a writing transaction takes the lock when it begins, so two writers queue up
    # (for `timeout` seconds) instead of failing with "database is locked" on lock upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    DATABASES["default"]["TEST"] = {"NAME": DATA_DIR / "test.sqlite3"}

if EMBEDDED:
    DATA_DIR.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix:// (redis://HOST:6379/0).")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_FUNCTION": "gateway.installation.cache_key",  # i:<installation id>: first
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# With acks_late, Redis hands a task whose worker vanished to another worker after this many
# seconds (kombu's default is an hour); every task is idempotent, and none runs that long.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 900, minimum=60)}
# The queue tasks go to and workers read by default (installations sharing one Redis need their own).
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")
CELERY_TASK_IGNORE_RESULT = True  # tasks that return something worth keeping opt in (ignore_result=False)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    # Open the new month's budgets (allowances in, unused ones out) just after midnight UTC on the
    # first; the proxy also opens a month lazily when it first reads a budget in it.
    "billing-open-periods": {"task": "billing.open_periods", "schedule": crontab(minute=5, hour=0, day_of_month="1")},
    # Delete request logs past their project's retention (LOG_RETENTION_DAYS by default), in batches.
    "gateway-purge-request-logs": {"task": "gateway.purge_request_logs", "schedule": crontab(minute=15, hour=3)},
}

if EMAIL_HOST := env_str("EMAIL_HOST", ""):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD") or ""
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Symbiosis Gateway <gateway@localhost>")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- People: accounts, sign-in and the portal ---
# The gateway's external base URL: absolute links in mail, the OIDC redirect URI, the snippets.
PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
if not PUBLIC_URL.startswith(("http://", "https://")) or "?" in PUBLIC_URL or "#" in PUBLIC_URL:
    raise ImproperlyConfigured(f"PUBLIC_URL must be an http(s) base URL without query or fragment, got {PUBLIC_URL!r}")
# Single sign-on through the organisation's OpenID provider (gateway/sso.py). The redirect URI to
# register there is {PUBLIC_URL}/accounts/oidc/sso/login/callback/. Read again at each request
# (gateway.sso.sso_config), so only the shape is checked here.
OIDC_ISSUER = env_str("OIDC_ISSUER", "").strip().rstrip("/")
OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID", "").strip()
OIDC_CLIENT_SECRET = env_secret("OIDC_CLIENT_SECRET") or ""
OIDC_SCOPES = env_str("OIDC_SCOPES", "openid email profile").split()
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups").strip()
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "single sign-on").strip()  # "Sign in with <this>"
if OIDC_ISSUER:
    if not OIDC_ISSUER.startswith(("https://", "http://")) or "?" in OIDC_ISSUER or "#" in OIDC_ISSUER:
        raise ImproperlyConfigured(f"OIDC_ISSUER must be an http(s) URL without query or fragment, got {OIDC_ISSUER!r}")
    if not OIDC_CLIENT_ID:
        raise ImproperlyConfigured("OIDC_CLIENT_ID must be set when OIDC_ISSUER is set.")
    if not OIDC_CLIENT_SECRET:
        raise ImproperlyConfigured("OIDC_CLIENT_SECRET (or _FILE) must be set when OIDC_ISSUER is set.")
    if "openid" not in OIDC_SCOPES:
        raise ImproperlyConfigured(f"OIDC_SCOPES must include openid, got {' '.join(OIDC_SCOPES)!r}")
    if not OIDC_GROUPS_CLAIM:
        raise ImproperlyConfigured("OIDC_GROUPS_CLAIM must not be empty.")
elif OIDC_CLIENT_ID or OIDC_CLIENT_SECRET:
    raise ImproperlyConfigured("OIDC_ISSUER must be set when OIDC_CLIENT_ID or OIDC_CLIENT_SECRET is set.")
# Seconds the identity provider's discovery document, and a validated IdP access token's user
# (bearer tokens on the management API), are kept before being asked again.
OIDC_DISCOVERY_TTL = env_float("OIDC_DISCOVERY_TTL", 300.0)
OIDC_TOKEN_CACHE_TTL = env_float("OIDC_TOKEN_CACHE_TTL", 60.0)
OIDC_TIMEOUT = env_float("OIDC_TIMEOUT", 10.0, minimum=0.1)  # seconds per call to the identity provider
# Username and password sign-in: on in the embedded profile, off in production unless set.
LOCAL_LOGIN = env_bool("LOCAL_LOGIN", EMBEDDED)

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/accounts/login/"
ACCOUNT_ADAPTER = "gateway.sso.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "gateway.sso.SocialAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_UNIQUE_EMAIL = False  # pre-provisioned users are linked by verified email (gateway/sso.py), not refused
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # linking by email is ours (gateway/sso.py), with its own rules
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_OPENID_CONNECT_URL_PREFIX = "oidc"
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not EMBEDDED and env_bool("SECURE_COOKIES", True)
# HTTPS (Django's SecurityMiddleware; README "Security headers"). Off unless set: turning HSTS on
# commits browsers to HTTPS for SECURE_HSTS_SECONDS, so it is the operator's decision.
# `manage.py check --deploy` warns about each one left unset; a variable set explicitly (to 0 or
# false) is a decision, not an oversight, and its warning is silenced.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and scrapes come over plain HTTP from inside the network (the probes are also answered
# before the redirect, by gateway.probe_middleware).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SILENCED_SYSTEM_CHECKS = [
    check
    for variable, check in (
        ("SECURE_HSTS_SECONDS", "security.W004"),
        ("SECURE_HSTS_INCLUDE_SUBDOMAINS", "security.W005"),
        ("SECURE_SSL_REDIRECT", "security.W008"),
        ("SECURE_COOKIES", "security.W012"),
        ("SECURE_COOKIES", "security.W016"),
        ("SECURE_HSTS_PRELOAD", "security.W021"),
    )
    if is_set(variable)
]
# Content-Security-Policy (gateway/security.py): CSP_REPORT_URI adds a report-uri directive;
# CSP_REPORT_ONLY sends the policy as Content-Security-Policy-Report-Only (to try a change).
CSP_REPORT_URI = env_str("CSP_REPORT_URI", "").strip()
if CSP_REPORT_URI and (
    not CSP_REPORT_URI.startswith(("https://", "http://", "/")) or any(c in CSP_REPORT_URI for c in " ;,")
):
    raise ImproperlyConfigured(
        f"CSP_REPORT_URI must be an http(s) URL or a path without spaces, ';' or ',', got {CSP_REPORT_URI!r}"
    )
CSP_REPORT_ONLY = env_bool("CSP_REPORT_ONLY", False)

# Text lines in the embedded profile, one JSON object per line (with the request id) in production.
# Every line passes the secret scrubber first (gateway/telemetry/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text" if EMBEDDED else "json")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").strip().upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {LOG_LEVEL!r}")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be text or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"scrub_secrets": {"()": "gateway.telemetry.logs.ScrubSecrets"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "gateway.telemetry.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["scrub_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- The proxy (/v1) ---
PROXY_MAX_BODY_BYTES = env_int("PROXY_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(PROXY_MAX_BODY_BYTES, 2_621_440)
UPSTREAM_CONNECT_TIMEOUT = env_float("UPSTREAM_CONNECT_TIMEOUT", 5.0)
UPSTREAM_TIMEOUT = env_float("UPSTREAM_TIMEOUT", 600.0)
UPSTREAM_MAX_CONNECTIONS = env_int("UPSTREAM_MAX_CONNECTIONS", 1000, minimum=1)
UPSTREAM_MAX_RESPONSE_BYTES = env_int("UPSTREAM_MAX_RESPONSE_BYTES", 64 * 1024 * 1024, minimum=1024)
CATALOG_CACHE_TTL = env_float("CATALOG_CACHE_TTL", 30.0)
# Upstreams on loopback, link-local and private addresses (self-hosted vLLM, Ollama, TGI) are
# refused at connect time unless this is on; cloud metadata addresses always are (gateway/netpolicy.py).
UPSTREAM_ALLOW_PRIVATE_NETWORKS = env_bool("UPSTREAM_ALLOW_PRIVATE_NETWORKS", False)
# Failed authentications per client address (/v1 keys, admin and portal sign-in): after
# AUTH_FAILURE_LIMIT failures within AUTH_FAILURE_WINDOW seconds, 429 until the window ends.
AUTH_FAILURE_LIMIT = env_int("AUTH_FAILURE_LIMIT", 20, minimum=1)
AUTH_FAILURE_WINDOW = env_int("AUTH_FAILURE_WINDOW", 300, minimum=1)
# Reverse proxies in front of the gateway that append to X-Forwarded-For (0: the peer is the client).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# The portal's sign-in (allauth) counts failures by the same rules, per address and per username.
ACCOUNT_RATE_LIMITS = {"login_failed": f"{AUTH_FAILURE_LIMIT}/{AUTH_FAILURE_WINDOW}s/ip,5/300s/key"}
# How long keys and models already read keep serving past their TTL while the database is away
CATALOG_STALE_GRACE = env_float("CATALOG_STALE_GRACE", 600.0)
# The longest a request waits for a first read of a key, the models or a budget (gateway/hotcache.py),
# and how often a process pings a database it found away (gateway/dbstate.py).
DATABASE_HOT_PATH_TIMEOUT = env_float("DATABASE_HOT_PATH_TIMEOUT", 1.0)
DATABASE_PROBE_INTERVAL = env_float("DATABASE_PROBE_INTERVAL", 1.0)
# Retries, fallbacks and circuit breaking (gateway/proxy/router.py, breaker.py)
ROUTER_MAX_ATTEMPTS = env_int("ROUTER_MAX_ATTEMPTS", 3, minimum=1)
ROUTER_BACKOFF_BASE = env_float("ROUTER_BACKOFF_BASE", 0.25)
ROUTER_BACKOFF_MAX = env_float("ROUTER_BACKOFF_MAX", 8.0)
ROUTER_RETRY_AFTER_CAP = env_float("ROUTER_RETRY_AFTER_CAP", 10.0)
ROUTER_DEADLINE = env_float("ROUTER_DEADLINE", 60.0)
CIRCUIT_FAILURE_THRESHOLD = env_int("CIRCUIT_FAILURE_THRESHOLD", 5, minimum=1)
CIRCUIT_COOLDOWN = env_float("CIRCUIT_COOLDOWN", 30.0)
DEMO_PROVIDER_ENABLED = env_bool("DEMO_PROVIDER_ENABLED", DEBUG)
# Output tokens assumed for a request that sets no max_tokens (rate-limit reservations)
DEFAULT_MAX_TOKENS = env_int("DEFAULT_MAX_TOKENS", 1024, minimum=1)
# Prompt tokens a budget hold counts per image (gateway/proxy/limits.py): the largest any provider
# publishes (gpt-4o-mini's 48,169 for a 2048x768 image at high detail), with a margin.
BUDGET_IMAGE_TOKENS = env_int("BUDGET_IMAGE_TOKENS", 50_000, minimum=1)
RATELIMIT_REDIS_TIMEOUT = env_float("RATELIMIT_REDIS_TIMEOUT", 1.0)
# Leases (gateway/proxy/ratelimit.py, billing/budget.py): far from its limits, a process admits
# requests from a slice of the limits it took from Redis, and gives the unused part back after
# GOVERNANCE_LEASE_SECONDS. Off: every governed request asks Redis.
GOVERNANCE_LEASES = env_bool("GOVERNANCE_LEASES", True)
# Allocations between two collections of the garbage collector's youngest generation (Python's
# default: 700); the heap imported at start-up is frozen out of its reach (gateway/asgi.py). The
# oldest generation is collected every 2nd collection of the middle one (Python's: 10th), so the
# cycles a finished stream leaves are freed within a round of streams, not kept (and grown).
GC_THRESHOLD = (env_int("GC_THRESHOLD", 20_000, minimum=100), 10, 2)
GOVERNANCE_LEASE_SECONDS = env_float("GOVERNANCE_LEASE_SECONDS", 0.5)
# Request logs: buffered per process, written in batches (gateway/proxy/logbuffer.py)
LOG_FLUSH_INTERVAL = env_float("LOG_FLUSH_INTERVAL", 1.0)
LOG_FLUSH_BATCH = env_int("LOG_FLUSH_BATCH", 500, minimum=1)
LOG_BUFFER_MAX = env_int("LOG_BUFFER_MAX", 200_000, minimum=100)
# What request logs keep of bodies by default: full, redacted or metadata (projects may be stricter)
LOG_BODIES = env_str("LOG_BODIES", "redacted")
if LOG_BODIES not in ("full", "redacted", "metadata"):
    raise ImproperlyConfigured("LOG_BODIES must be one of: full, redacted, metadata.")
LOG_BODY_MAX_BYTES = env_int("LOG_BODY_MAX_BYTES", 32_768, minimum=256)  # per body, then a truncation marker
LOG_RETENTION_DAYS = env_int("LOG_RETENTION_DAYS", 30, minimum=1)

# --- Billing (billing/) ---
BILLING_CURRENCY = env_str("BILLING_CURRENCY", "EUR")
if not re.fullmatch(r"[A-Z]{3}", BILLING_CURRENCY):
    raise ImproperlyConfigured(
        f"BILLING_CURRENCY must be an ISO 4217 code (three capital letters), got {BILLING_CURRENCY!r}"
    )
# Price per million tokens charged for a deployment that has none. Empty: such a model is refused
# for projects with a budget and logged with no cost elsewhere (never silently free).
BILLING_DEFAULT_INPUT_PRICE = env_str("BILLING_DEFAULT_INPUT_PRICE", "").strip()
BILLING_DEFAULT_OUTPUT_PRICE = env_str("BILLING_DEFAULT_OUTPUT_PRICE", "").strip()
for _name, _raw_price in (
    ("BILLING_DEFAULT_INPUT_PRICE", BILLING_DEFAULT_INPUT_PRICE),
    ("BILLING_DEFAULT_OUTPUT_PRICE", BILLING_DEFAULT_OUTPUT_PRICE),
):
    try:
        _price = Decimal(_raw_price) if _raw_price else Decimal(0)
    except InvalidOperation:
        _price = Decimal("NaN")
    if not _price.is_finite() or _price < 0:
        raise ImproperlyConfigured(
            f"{_name} must be a price per million tokens (a decimal number, 0 or more), got {_raw_price!r}"
        )
if bool(BILLING_DEFAULT_INPUT_PRICE) != bool(BILLING_DEFAULT_OUTPUT_PRICE):
    raise ImproperlyConfigured(
        "BILLING_DEFAULT_INPUT_PRICE and BILLING_DEFAULT_OUTPUT_PRICE are set together or not at all."
    )
# How long a budget reservation lives when its process dies before settling it (seconds)
BUDGET_RESERVATION_TTL = env_float("BUDGET_RESERVATION_TTL", 900.0)
# How long a budget lease (billing/budget.py) outlives the last sign of life of its process (seconds)
BUDGET_LEASE_TTL = env_float("BUDGET_LEASE_TTL", 10.0)
BUDGET_CACHE_TTL = env_float("BUDGET_CACHE_TTL", 10.0)
# Prefix of the budget counters' Redis keys (installations sharing one Redis need their own)
BUDGET_REDIS_PREFIX = env_str("BUDGET_REDIS_PREFIX", "symbiosis:budget")

# --- Approvals (approvals/) ---
# Hours after filing at which a pending request's approvers are reminded (once), the request is
# escalated to the administrators (once), and it expires; 0 turns a step off. The requester is
# told at each step. Beat checks every APPROVAL_CHECK_MINUTES minutes.
APPROVAL_REMIND_AFTER_HOURS = env_float("APPROVAL_REMIND_AFTER_HOURS", 24.0)
APPROVAL_ESCALATE_AFTER_HOURS = env_float("APPROVAL_ESCALATE_AFTER_HOURS", 72.0)
APPROVAL_EXPIRE_AFTER_HOURS = env_float("APPROVAL_EXPIRE_AFTER_HOURS", 168.0)
_approval_steps = [
    h for h in (APPROVAL_REMIND_AFTER_HOURS, APPROVAL_ESCALATE_AFTER_HOURS, APPROVAL_EXPIRE_AFTER_HOURS) if h
]
if _approval_steps != sorted(set(_approval_steps)):
    raise ImproperlyConfigured(
        "APPROVAL_REMIND_AFTER_HOURS < APPROVAL_ESCALATE_AFTER_HOURS < APPROVAL_EXPIRE_AFTER_HOURS must hold "
        "(0 turns a step off)."
    )
APPROVAL_CHECK_MINUTES = env_int("APPROVAL_CHECK_MINUTES", 10, minimum=1)
# How long the decision link in an approver's mail works (hours). It also stops working once the
# request has been decided, cancelled or has expired.
APPROVAL_LINK_MAX_AGE_HOURS = env_float("APPROVAL_LINK_MAX_AGE_HOURS", 168.0, minimum=0.01)
CELERY_BEAT_SCHEDULE |= {
    f"approvals-{step}-due-requests": {
        "task": f"approvals.{step}_due_requests",
        "schedule": APPROVAL_CHECK_MINUTES * 60.0,
    }
    for step in ("remind", "escalate", "expire")
}

# --- Telemetry (gateway/telemetry/) ---
# OpenTelemetry reads its standard OTEL_* variables itself (endpoints, headers, timeouts, resource
# attributes, batch sizes); these decide only whether each signal is exported. Nothing is exported
# unless an OTLP endpoint is set, so the embedded profile stays silent (and offline) by default.
OTEL_SDK_DISABLED = env_bool("OTEL_SDK_DISABLED", False)
_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT", "")
TELEMETRY_TRACES = (
    not OTEL_SDK_DISABLED
    and bool(_OTLP_ENDPOINT or env_str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""))
    and env_str("OTEL_TRACES_EXPORTER", "otlp") != "none"
)
TELEMETRY_METRICS = (
    not OTEL_SDK_DISABLED
    and bool(_OTLP_ENDPOINT or env_str("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", ""))
    and env_str("OTEL_METRICS_EXPORTER", "otlp") != "none"
)
for _name in (
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
):
    if env_str(_name, "http/protobuf") != "http/protobuf":
        raise ImproperlyConfigured(f"{_name}: the gateway exports OTLP over HTTP only (http/protobuf, port 4318).")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "symbiosis-gateway")
# Prompts and completions on spans (gen_ai.input.messages, ...): off unless explicitly enabled.
TELEMETRY_CAPTURE_CONTENT = env_bool("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", False)
# Finished requests waiting for the telemetry worker; beyond it they are dropped and counted.
TELEMETRY_QUEUE_MAX = env_int("TELEMETRY_QUEUE_MAX", 10_000, minimum=100)
# Bearer token for GET /metrics (Prometheus text format); unset: no /metrics (404).
METRICS_TOKEN = env_secret("METRICS_TOKEN") or ""
