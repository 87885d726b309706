"""Django and the libraries it runs with: the project, the database, Redis as cache and
channel layer, sessions and security, accounts, static files.

With no environment at all it runs the embedded default: SQLite, an in-process cache and
channel layer (pollstr/settings/__init__.py says where the rest lives).
"""

from __future__ import annotations

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
    env_float,
    env_int,
    env_keys,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
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
    # Django's, leaving the cookie alone for a request whose key was just replaced.
    "accounts.sessions.SessionMiddleware",
    # The voter's language: the switch's cookie, else the browser's Accept-Language
    # (after sessions, before common, as Django's documentation places it).
    "django.middleware.locale.LocaleMiddleware",
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
            "libraries": {"pollstr": "pollstr.template_tags"},
        },
    },
]

# Django's form renderer, with its <input> widgets written in Python (a quarter of a form
# page's CPU in templates otherwise): pollstr/form_renderer.py.
FORM_RENDERER = "pollstr.form_renderer.FormRenderer"

# --- Database -----------------------------------------------------------------------------
DATABASE_LIMITS = DatabaseLimits(
    pool_min_size=env_int("DATABASE_POOL_MIN_SIZE", 2, minimum=0, maximum=100),
    pool_max_size=env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=1, maximum=100),
    pool_timeout=env_float("DATABASE_POOL_TIMEOUT", 5.0, minimum=0.1, maximum=60),
    statement_timeout_ms=env_int("DATABASE_STATEMENT_TIMEOUT_MS", 5000, minimum=0),
    connect_timeout=env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=2, maximum=60),
    prepare_threshold=env_int("DATABASE_PREPARE_THRESHOLD", 5, minimum=0, maximum=1000),
)
# Threads per web process serving HTTP (pollstr/http_bridge.py). Requests are short and
# CPU-bound between sub-millisecond queries: more threads than cores only make them fight
# over the GIL (measured under P2: 10 threads cost 50% more CPU per voter than 4; 2 cost
# about 8 % less than 4 in one slow phase of the machine, and no less in a fast one and
# an intermediate one: benchmarks/results/gc-admission-2026-12-07/). It stays 4: a
# request that waits on a locked table holds its thread for the statement timeout, and
# with 2 a burst queued behind such requests answered its last 503 after 9.2 s, past the
# 5.5 s that tests/faults/test_database_faults.py allows (4 answer within it). Each
# thread holds at most one pooled database connection.
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

# --- Redis: cache and channel layer (and Celery's broker, pollstr/settings/celery.py) -----
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
            "BACKEND": "pollstr.channel_layers.RedisChannelLayer",
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
# How often (seconds, jittered) an open websocket re-reads its stored session; logout and
# password changes close sockets at once without it (two_factor/consumers.py).
LIVE_SOCKET_RECHECK_SECONDS = env_float("LIVE_SOCKET_RECHECK_SECONDS", 60.0, minimum=0.05)

# --- Auth ---------------------------------------------------------------------------------
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
# Django's ModelBackend with a cheaper read of each request's user; Django's own stays
# listed second for sessions signed in through it (accounts/backends.py).
AUTHENTICATION_BACKENDS = [
    "accounts.backends.AccountBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "polls:index"
LOGOUT_REDIRECT_URL = "polls:index"

# --- Sessions and security ----------------------------------------------------------------
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
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=5)
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- I18N / static ------------------------------------------------------------------------
# English is the source language (and the default: the tests assert English); French and
# Spanish come from locale/<lang>/LC_MESSAGES/django.po, compiled by `make run` and the test
# targets, never committed compiled. Adding a language: docs/OPERATIONS.md.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "French"), ("es", "Spanish")]
LOCALE_PATHS = [BASE_DIR / "locale"]
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
