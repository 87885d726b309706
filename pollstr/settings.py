"""Pollstr settings: one module, driven by the environment (see .env.example).

With no environment at all it runs the embedded default: SQLite, an in-process cache,
an in-process Celery worker and channel layer, and the sandbox SMS gateway.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from pollstr.env import (
    DatabaseLimits,
    database_from_url,
    embedded_secret_key,
    env_bool,
    env_choice,
    env_directory,
    env_float,
    env_int,
    env_keys,
    env_list,
    env_str,
    env_table,
)
from pollstr.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("POLLSTR_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
DATABASE_URL = env_str("DATABASE_URL")
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if DATABASE_URL:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set in the environment when DATABASE_URL is."
        )
    # The embedded default keeps a generated key beside its SQLite file, so sessions
    # survive a restart of `make run` without a secret ever living in the repository.
    SECRET_KEY = embedded_secret_key(VAR_DIR / "secret_key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "phonenumber_field",
    "channels",
    "accounts",
    "polls",
    "two_factor",
]

MIDDLEWARE = [
    # Health, readiness and metrics answer before host checks, sessions or login.
    "pollstr.health.OperatorEndpointsMiddleware",
    "pollstr.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "pollstr.unavailable.ServiceUnavailableMiddleware",
    "pollstr.errors.RateLimitedMiddleware",
    "two_factor.middleware.VerifiedSessionMiddleware",
]

ROOT_URLCONF = "pollstr.urls"
ASGI_APPLICATION = "pollstr.asgi.application"

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
                "two_factor.context_processors.two_factor",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_LIMITS = DatabaseLimits(
    pool_min_size=env_int("DATABASE_POOL_MIN_SIZE", 2, minimum=0, maximum=100),
    pool_max_size=env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=1, maximum=100),
    pool_timeout=env_float("DATABASE_POOL_TIMEOUT", 5.0, minimum=0.1, maximum=60),
    statement_timeout_ms=env_int("DATABASE_STATEMENT_TIMEOUT_MS", 5000, minimum=0),
    connect_timeout=env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=2, maximum=60),
)
# Threads per web process serving HTTP (pollstr/http_bridge.py). Requests are short and
# CPU-bound between sub-millisecond queries: more threads than cores only make them fight
# over the GIL (measured under P2: 10 threads cost 50% more CPU per voter than 4; see
# benchmarks/README.md). Each thread holds at most one pooled database connection.
WEB_HTTP_THREADS = env_int(
    "WEB_HTTP_THREADS",
    min(4, DATABASE_LIMITS.pool_max_size),
    minimum=1,
    maximum=DATABASE_LIMITS.pool_max_size,
)
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL, DATABASE_LIMITS)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "pollstr.sqlite3",
            # The embedded worker writes from another thread: wait for locks instead of
            # failing, and take the write lock up front so transactions never deadlock.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Django's test runner names the test database; the separate worker process of the
    # integration tests is pointed at it through TEST_NAME.
    DATABASES["default"]["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME") or None}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Celery broker, channel layer -------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "pollstr.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "pollstr"),
            # The rate limiter needs the cache on every action: a dead or hung Redis must
            # fail the request within a second or two (the web answers 503), not hang it.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }
    # channels_redis blocks up to 5 s (RedisChannelLayer.brpop_timeout) in every receive,
    # and redis-py's default read timeout is 5 s too: idle websockets were closed every
    # few seconds. Reads get a timeout well above that block; keepalive and the health
    # check find connections a Redis restart killed before a command is sent on them.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 10,
                        "socket_connect_timeout": 2,
                        "socket_keepalive": True,
                        "health_check_interval": 15,
                        # A connection a restart closed is retried once on a new one; a
                        # hung Redis (a timeout) is not, so a publish gives up in 10 s.
                        "retry": Retry(
                            ExponentialWithJitterBackoff(base=0.1, cap=0.5),
                            1,
                            supported_errors=(RedisConnectionError,),
                        ),
                    }
                ],
                "prefix": env_str("CHANNELS_PREFIX", "pollstr:asgi"),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "pollstr.channel_layers.EmbeddedChannelLayer"}}

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://localhost/")
# How long Redis waits before handing an unacknowledged task (acks_late) of a vanished
# worker to another one. It must outlast the longest task and the longest retry
# countdown (checked below); the reconciler, not this timeout, is what re-drives lost
# work quickly.
CELERY_BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_BROKER_VISIBILITY_TIMEOUT", 300, minimum=60)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    # The in-memory broker polls; a short interval keeps "queued" brief in `make run`.
    "polling_interval": 0.1,
    # Prefixes every broker key: deployments (or test runs) can share one Redis db.
    "global_keyprefix": env_str("CELERY_BROKER_KEY_PREFIX"),
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 30, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 45, minimum=2)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# No external broker: a worker thread inside the server process consumes the in-memory
# queue, so a request still returns before its task runs.
TASK_RETRY_BASE_DELAY = env_float("TASK_RETRY_BASE_DELAY", 2.0, minimum=0.01, maximum=60)
TASK_RETRY_MAX_DELAY = env_float("TASK_RETRY_MAX_DELAY", 60.0, minimum=0.01, maximum=600)
CELERY_IMPORTS = ["tasks.verification", "tasks.retention"]
if CELERY_BROKER_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT + TASK_RETRY_MAX_DELAY:
    raise ImproperlyConfigured(
        "CELERY_BROKER_VISIBILITY_TIMEOUT must be longer than CELERY_TASK_TIME_LIMIT plus "
        f"TASK_RETRY_MAX_DELAY ({CELERY_TASK_TIME_LIMIT} + {TASK_RETRY_MAX_DELAY:g} s), or "
        "Redis hands running and waiting tasks to a second worker."
    )
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT, or it never fires."
    )

# --- The reconciler (docs/ARCHITECTURE.md, "Deadlines and the reconciler") ---------------
# Every live verification keeps its next deadline in the database; this sweep drives the
# ones past it, so a lost task costs at most about one interval.
TWO_FACTOR_RECONCILE_INTERVAL = env_int("TWO_FACTOR_RECONCILE_INTERVAL", 5, minimum=1, maximum=300)
# A queued verification whose task has not started after this long is re-enqueued ...
TWO_FACTOR_QUEUED_GRACE = env_int("TWO_FACTOR_QUEUED_GRACE", 30, minimum=2, maximum=3600)
# ... and one still queued after this long fails with a sentence ("ask for a new code").
TWO_FACTOR_QUEUED_MAX_AGE = env_int("TWO_FACTOR_QUEUED_MAX_AGE", 300, minimum=10, maximum=86400)
# Provider calls one send may make in all (task retries and re-drives together).
TWO_FACTOR_MAX_SEND_ATTEMPTS = env_int("TWO_FACTOR_MAX_SEND_ATTEMPTS", 6, minimum=1, maximum=20)
CELERY_BEAT_SCHEDULE = {
    "two_factor.reconcile": {
        "task": "two_factor.reconcile",
        "schedule": float(TWO_FACTOR_RECONCILE_INTERVAL),
        # A sweep that waited a whole interval in the queue is superseded by the next.
        "options": {"expires": float(TWO_FACTOR_RECONCILE_INTERVAL)},
    },
    # Old verifications and their audit trail go after TWO_FACTOR_RETENTION_DAYS.
    "two_factor.purge_old_records": {
        "task": "two_factor.purge_old_records",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}
# Days a finished verification, its audit events and the provider's callbacks are kept
# (two_factor/retention.py); the hourly sweep deletes older ones.
TWO_FACTOR_RETENTION_DAYS = env_int("TWO_FACTOR_RETENTION_DAYS", 90, minimum=1, maximum=3650)
CELERY_EMBEDDED_WORKER = env_bool(
    "CELERY_EMBEDDED_WORKER", CELERY_BROKER_URL.startswith("memory://")
)
# `celery worker` takes its pool and concurrency from here unless given on its command
# line (docker-compose.yml sets them per deployment). A provider call is ~all waiting
# (hundreds of ms of I/O, ~1 ms of CPU), so the default is many threads per process:
# each thread keeps its own Vonage client and HTTP keep-alive session
# (two_factor/gateways/vonage.py) and holds no database connection during the call.
# Threads cannot be killed: a call is bounded by VONAGE_TIMEOUT instead of the hard
# time limit (which prefork enforces).
CELERY_WORKER_POOL = env_choice(
    "CELERY_WORKER_POOL", "threads", {"prefork", "threads", "solo", "eventlet", "gevent"}
)
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 50, minimum=1, maximum=256)
# Code checks have a queue of their own: a voter waiting on "Checking your code…" never
# waits behind a backlog of sends. A worker consumes every queue unless started with
# --queues (docker-compose.yml's `worker-checks` serves only checks).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES: dict[str, dict[str, str]] = {"celery": {}, "checks": {}}
CELERY_TASK_ROUTES = {
    "two_factor.check_code": {"queue": "checks"},
    "two_factor.next_channel": {"queue": "checks"},
}
# Workers log through LOGGING below (same format and request ids as the web).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Auth -----------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if env_bool("FAST_PASSWORD_HASHER", False):
    # Tests only: argon2 on every login would dominate the suite's time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The keys of a vote's phone hash (one vote per phone; polls/phone_hashes.py), apart from
# SECRET_KEY: "v2:<new key>,v1:<old key>", newest first. New votes use the first; a vote
# is found under any key listed, so adding a key keeps old votes counted
# (docs/OPERATIONS.md, "Rotating secrets"). Unset with DATABASE_URL: votes stay keyed
# with SECRET_KEY, and `manage.py check` warns.
VOTE_HASH_KEYS = env_keys("VOTE_HASH_KEYS", reserved=frozenset({"legacy"}))
if not VOTE_HASH_KEYS and not DATABASE_URL:
    VOTE_HASH_KEYS = [("v1", embedded_secret_key(VAR_DIR / "vote_hash_key"))]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "polls:index"
LOGOUT_REDIRECT_URL = "polls:index"

# --- Sessions and security ------------------------------------------------------------------
# Database sessions read through the cache, that never send a malformed cookie key to the
# database or the cache (accounts/sessions.py). A cached session is re-read from the
# database at least this often, which bounds how stale an entry the cache could not
# update during a Redis outage can be.
SESSION_ENGINE = "accounts.sessions"
SESSION_CACHE_SECONDS = env_int("SESSION_CACHE_SECONDS", 60, minimum=1, maximum=86400)
# After the cache failed a session read, a process reads sessions from the database alone
# for this long (a hung Redis costs one request its socket timeout, not every request).
SESSION_CACHE_RETRY_SECONDS = env_int("SESSION_CACHE_RETRY_SECONDS", 10, minimum=1, maximum=600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE = env_bool("SECURE_COOKIES", not DEBUG and bool(DATABASE_URL))
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# A refused CSRF token gets the site's page and a way back (pollstr/errors.py).
CSRF_FAILURE_VIEW = "pollstr.errors.csrf_failure"
# How many reverse proxies of ours stand in front of the app: X-Forwarded-For is believed
# for exactly that many hops (pollstr/client_ip.py). 0: the header is ignored.
# How often (seconds, jittered) an open websocket re-reads its stored session; logout and
# password changes close sockets at once without it (two_factor/consumers.py).
LIVE_SOCKET_RECHECK_SECONDS = env_float("LIVE_SOCKET_RECHECK_SECONDS", 60.0, minimum=0.05)
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=5)
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- I18N / static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Two-factor ------------------------------------------------------------------------------


def _gateway_class_path(value: str) -> tuple[str, str]:
    """(TWO_FACTOR_GATEWAY, TWO_FACTOR_GATEWAY_CLASS) for the variable's value: the names
    existing env files use ("sandbox", "vonage"), or the dotted path of a class that
    implements two_factor.gateways.VerifyGateway. Its module must exist; the class is
    imported at the first gateway call (two_factor.gateways.get_gateway)."""
    import importlib.util
    import re

    aliases = {
        "sandbox": "two_factor.gateways.sandbox.SandboxGateway",
        "vonage": "two_factor.gateways.vonage.client.VonageGateway",
    }
    name = value.strip()
    if name.lower() in aliases:
        return name.lower(), aliases[name.lower()]
    # A known class keeps its short name: the dev inbox, say, is offered for "sandbox".
    for alias, path in aliases.items():
        if name == path:
            return alias, path
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", name):
        raise ImproperlyConfigured(
            f"TWO_FACTOR_GATEWAY must be sandbox, vonage or the dotted path of a gateway "
            f"class; got {value!r}."
        )
    module = name.rpartition(".")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ImproperlyConfigured(f"TWO_FACTOR_GATEWAY {value!r}: no module {module!r}.")
    return name, name


TWO_FACTOR_GATEWAY, TWO_FACTOR_GATEWAY_CLASS = _gateway_class_path(
    env_str("TWO_FACTOR_GATEWAY", "sandbox")
)
# The sandbox's dev inbox lists every code it "sent": on for the embedded default and
# DEBUG, off for a deployment (DATABASE_URL set) unless an operator asks for it.
TWO_FACTOR_SANDBOX_INBOX = env_bool("TWO_FACTOR_SANDBOX_INBOX", DEBUG or not DATABASE_URL)
TWO_FACTOR_BRAND = env_str("TWO_FACTOR_BRAND", "Pollstr")
TWO_FACTOR_CODE_LENGTH = env_int("TWO_FACTOR_CODE_LENGTH", 6, minimum=4, maximum=10)
TWO_FACTOR_CHANNEL_TIMEOUT = env_int("TWO_FACTOR_CHANNEL_TIMEOUT", 180, minimum=15, maximum=900)
TWO_FACTOR_MAX_WRONG_CODES = 3
TWO_FACTOR_VERIFIED_MAX_AGE = env_int("TWO_FACTOR_VERIFIED_MAX_AGE", 12 * 3600, minimum=60)
# Days a device the voter asked us to remember verifies their sessions without a code
# (two_factor/services/devices.py); 0 takes the "Remember this device" box off the code page.
TWO_FACTOR_REMEMBER_DAYS = env_int("TWO_FACTOR_REMEMBER_DAYS", 30, minimum=0, maximum=365)
TWO_FACTOR_DEVICE_COOKIE_NAME = "pollstr_device"
TWO_FACTOR_ALLOWED_REGIONS = env_list("TWO_FACTOR_ALLOWED_REGIONS", [])
TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES = env_bool("TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES", False)
TWO_FACTOR_RESEND_COOLDOWN = env_int("TWO_FACTOR_RESEND_COOLDOWN", 30, minimum=0)
TWO_FACTOR_RATE_LIMITS = {
    # name: (max events, window seconds)
    "start_per_user": (env_int("RATE_START_PER_USER", 5, minimum=1), 3600),
    "start_per_number": (env_int("RATE_START_PER_NUMBER", 5, minimum=1), 3600),
    # Sliding windows (two_factor/limits.py). Per IP: only accounts without a verified
    # number count, with a ceiling a busy office or carrier NAT doesn't reach.
    "start_per_ip": (env_int("RATE_START_PER_IP", 100, minimum=1), 3600),
    # The same accounts' codes per network (/24 IPv4, /64 IPv6: pollstr/client_ip.py),
    # so a pumping run can't hop addresses within its own block.
    "start_per_network": (env_int("RATE_START_PER_NETWORK", 200, minimum=1), 3600),
    # New accounts per address and per network: fresh accounts are what pumping needs.
    "signup_per_ip": (env_int("RATE_SIGNUP_PER_IP", 10, minimum=1), 3600),
    "signup_per_network": (env_int("RATE_SIGNUP_PER_NETWORK", 30, minimum=1), 3600),
    "start_per_session": (env_int("RATE_START_PER_SESSION", 5, minimum=1), 3600),
    "start_global_daily": (env_int("RATE_START_GLOBAL_DAILY", 10000, minimum=1), 86400),
    "check_per_user": (env_int("RATE_CHECK_PER_USER", 20, minimum=1), 3600),
    "number_per_user": (env_int("RATE_NUMBER_PER_USER", 10, minimum=1), 3600),
    # Failed sign-ins; a full limit refuses before the password is even checked.
    "login_failures_per_username": (
        env_int("RATE_LOGIN_FAILURES_PER_USERNAME", 10, minimum=1),
        900,
    ),
    "login_failures_per_ip": (env_int("RATE_LOGIN_FAILURES_PER_IP", 50, minimum=1), 900),
}

# --- The SMS budget (two_factor/services/budget.py; docs/OPERATIONS.md, "The SMS budget") ---
# What one code costs, per destination region, in the currency of the provider account
# (Vonage bills and reports `price` in it). The defaults are placeholders of the right
# order: set SMS_PRICES from your own price list, e.g. "GB:0.0456,FR:0.0735,*:0.12".
TWO_FACTOR_SMS_CURRENCY = env_str("SMS_CURRENCY", "EUR")
TWO_FACTOR_SMS_PRICES = env_table("SMS_PRICES", {"*": 0.10})
# Daily caps per destination region (UTC days), in codes and in money; * is every region
# not named. A region at its cap gets no code until midnight UTC, and the voter is told.
TWO_FACTOR_COUNTRY_DAILY_SENDS = env_table("SMS_COUNTRY_DAILY_SENDS", {"*": 2000.0}, whole=True)
TWO_FACTOR_COUNTRY_DAILY_SPEND = env_table("SMS_COUNTRY_DAILY_SPEND", {"*": 200.0})
# All regions together, in money.
TWO_FACTOR_DAILY_SPEND = env_float("SMS_DAILY_SPEND", 1000.0, minimum=0)
# The conversion governor: over a sliding window, when a country (or a mobile prefix:
# the country code and the first PREFIX_DIGITS digits of the national number) had at
# least its floor of codes sent and fewer than THRESHOLD of them were verified, new
# codes to it pause for COOLDOWN seconds. Codes younger than GRACE seconds are not
# judged yet (a voter takes a minute to type one); each scope is judged at most every
# EVALUATE_EVERY seconds per worker fleet, so judging costs one query, not one per send.
TWO_FACTOR_GOVERNOR = {
    "window": env_int("SMS_GOVERNOR_WINDOW", 3600, minimum=60, maximum=7 * 86400),
    "grace": env_int("SMS_GOVERNOR_GRACE", 180, minimum=0, maximum=3600),
    "prefix_floor": env_int("SMS_GOVERNOR_PREFIX_FLOOR", 20, minimum=1),
    "country_floor": env_int("SMS_GOVERNOR_COUNTRY_FLOOR", 200, minimum=1),
    "threshold": env_float("SMS_GOVERNOR_THRESHOLD", 0.2, minimum=0, maximum=1),
    "cooldown": env_int("SMS_GOVERNOR_COOLDOWN", 3600, minimum=60, maximum=7 * 86400),
    "prefix_digits": env_int("SMS_GOVERNOR_PREFIX_DIGITS", 3, minimum=1, maximum=8),
    "evaluate_every": env_int("SMS_GOVERNOR_EVALUATE_EVERY", 10, minimum=0, maximum=3600),
}
TWO_FACTOR_SANDBOX_LATENCY = env_float("TWO_FACTOR_SANDBOX_LATENCY", 0.0, minimum=0, maximum=30)
TWO_FACTOR_SANDBOX_FAILURE_RATE = env_float(
    "TWO_FACTOR_SANDBOX_FAILURE_RATE", 0.0, minimum=0, maximum=1
)
TWO_FACTOR_WEBHOOK_BASE_URL = env_str("TWO_FACTOR_WEBHOOK_BASE_URL")


def _webotp_host(value: str) -> str:
    """The host an SMS names on its last line, "@<host> #<code>", for WebOTP: a browser
    hands the code only to a page of that host. Default: the first plain ALLOWED_HOSTS
    entry (not a wildcard or a ".domain" pattern); "" (no such line) when there is none."""
    host = value.strip().lower()
    if host and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host):
        raise ImproperlyConfigured(
            f"TWO_FACTOR_WEBOTP_HOST must be a host name such as polls.example.org; got {value!r}."
        )
    return host


TWO_FACTOR_WEBOTP_HOST = _webotp_host(
    env_str(
        "TWO_FACTOR_WEBOTP_HOST",
        next((h for h in ALLOWED_HOSTS if re.fullmatch(r"[A-Za-z0-9.-]+", h) and h[0] != "."), ""),
    )
)

VONAGE_API_KEY = env_str("VONAGE_API_KEY")
VONAGE_API_SECRET = env_str("VONAGE_API_SECRET")
VONAGE_APPLICATION_ID = env_str("VONAGE_APPLICATION_ID")
VONAGE_PRIVATE_KEY = env_str("VONAGE_PRIVATE_KEY")
VONAGE_SIGNATURE_SECRET = env_str("VONAGE_SIGNATURE_SECRET")
# The account's Verify template for the SMS (its text ends "@<TWO_FACTOR_WEBOTP_HOST>
# #${code}", docs/OPERATIONS.md "WebOTP"); unset: the account's default template.
VONAGE_VERIFY_TEMPLATE_ID = env_str("VONAGE_VERIFY_TEMPLATE_ID").strip()
if VONAGE_VERIFY_TEMPLATE_ID and not re.fullmatch(r"[0-9a-fA-F-]{36}", VONAGE_VERIFY_TEMPLATE_ID):
    raise ImproperlyConfigured(
        f"VONAGE_VERIFY_TEMPLATE_ID must be a template's UUID; got {VONAGE_VERIFY_TEMPLATE_ID!r}."
    )
# How old (seconds) a signed provider callback may be; older ones are refused as stale.
TWO_FACTOR_WEBHOOK_MAX_AGE = env_int("TWO_FACTOR_WEBHOOK_MAX_AGE", 300, minimum=1, maximum=3600)
VONAGE_API_HOST = env_str("VONAGE_API_HOST", "api.nexmo.com")
VONAGE_TIMEOUT = env_int("VONAGE_TIMEOUT", 10, minimum=1, maximum=60)

# --- Logging -------------------------------------------------------------------------------
# One line per event, with the request id; LOG_FORMAT=json for log shippers.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", {"text", "json"})
LOGGING = logging_config(level=env_str("LOG_LEVEL", "INFO"), log_format=LOG_FORMAT)

# --- Operators: health, metrics (docs/OPERATIONS.md) -------------------------------------------
# /metrics (and a worker's exporter) answer these addresses, or a Bearer METRICS_TOKEN.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
# prometheus-client reads this variable itself; a missing directory would fail every
# process's first metric, so it is created (or refused) here, before any metric exists.
PROMETHEUS_MULTIPROC_DIR = env_directory("PROMETHEUS_MULTIPROC_DIR")
# A worker serves its own metrics on this port (0: off).
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)
HEALTH_CHECK_TIMEOUT = env_float("HEALTH_CHECK_TIMEOUT", 3.0, minimum=0.1, maximum=30)
WORKER_HEARTBEAT_FILE = env_str("WORKER_HEARTBEAT_FILE")
WORKER_HEARTBEAT_INTERVAL = env_int("WORKER_HEARTBEAT_INTERVAL", 10, minimum=1, maximum=300)
WORKER_HEARTBEAT_MAX_AGE = env_int("WORKER_HEARTBEAT_MAX_AGE", 60, minimum=2, maximum=3600)
