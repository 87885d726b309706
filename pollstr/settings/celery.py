"""Celery: the broker, delivery guarantees, time limits, retries, beat's schedule and the
worker's pool and queues (docs/ARCHITECTURE.md, "Deadlines and the reconciler")."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from pollstr.env import env_bool, env_choice, env_float, env_int, env_str
from pollstr.settings.django import REDIS_URL
from pollstr.settings.two_factor import TWO_FACTOR_RECONCILE_INTERVAL

# --- The broker and delivery --------------------------------------------------------------
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
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
# The modules a worker imports for its tasks (two_factor.apps imports tasks.verification
# in every process too: services enqueue through it).
CELERY_IMPORTS = ["tasks.verification", "tasks.retention"]
# No external broker: a worker thread inside the server process consumes the in-memory
# queue, so a request still returns before its task runs.
CELERY_EMBEDDED_WORKER = env_bool(
    "CELERY_EMBEDDED_WORKER", CELERY_BROKER_URL.startswith("memory://")
)

# --- Time limits and retries --------------------------------------------------------------
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 30, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 45, minimum=2)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT, or it never fires."
    )
# A retry waits a jittered countdown that doubles from the base up to the maximum
# (tasks/verification.py, retry_countdown).
TASK_RETRY_BASE_DELAY = env_float("TASK_RETRY_BASE_DELAY", 2.0, minimum=0.01, maximum=60)
TASK_RETRY_MAX_DELAY = env_float("TASK_RETRY_MAX_DELAY", 60.0, minimum=0.01, maximum=600)
if CELERY_BROKER_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT + TASK_RETRY_MAX_DELAY:
    raise ImproperlyConfigured(
        "CELERY_BROKER_VISIBILITY_TIMEOUT must be longer than CELERY_TASK_TIME_LIMIT plus "
        f"TASK_RETRY_MAX_DELAY ({CELERY_TASK_TIME_LIMIT} + {TASK_RETRY_MAX_DELAY:g} s), or "
        "Redis hands running and waiting tasks to a second worker."
    )

# --- Beat ---------------------------------------------------------------------------------
# Task names as the tasks declare them (tasks/); tests/two_factor/test_tasks.py proves each
# is registered.
CELERY_BEAT_SCHEDULE = {
    # The reconciler's sweep (pollstr/settings/two_factor.py has its interval).
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

# --- The worker ---------------------------------------------------------------------------
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
# Workers log through LOGGING (pollstr/settings/operators.py): the web's format and
# request ids.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
