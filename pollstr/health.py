"""Liveness and readiness for operators and their probes, and the worker heartbeat.

- ``GET /healthz``: the process answers. Touches no dependency, so a database outage
  never gets healthy web containers restarted.
- ``GET /readyz``: every dependency a request needs answers: the database, the Redis
  cache, the channel layer, the Celery broker, and at least one worker whose heartbeat
  is fresh. JSON with each check's result and time; 200 when all pass, 503 naming the
  ones that failed. Errors are reported by class only (the log line has the message):
  the endpoint is public and must not describe the network behind it.

Both are answered by :class:`OperatorEndpointsMiddleware` before host validation,
sessions, login or the verified-session middleware, so a probe that calls the
container by IP works and nothing a probe does can be gated.

Prometheus sees the same: each scrape of a web replica's ``/metrics`` runs the readiness
checks (:class:`ReadinessCollector`: ``pollstr_readiness_check``, 1 or 0 per check) and
reports how old the newest worker heartbeat is (``pollstr_worker_heartbeat_age_seconds``),
which deploy/prometheus/alerts.yml alerts on.

Workers prove they are alive with :class:`WorkerHeartbeat`, a Celery bootstep whose
timer runs on the worker's own event loop: it touches ``WORKER_HEARTBEAT_FILE`` (the
container's healthcheck, ``scripts/worker-healthcheck``, reads its age) and stores a
timestamp in the cache (what ``/readyz`` reads). A worker whose loop is stuck stops
beating; no ``celery inspect`` process is forked to find out.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import bootsteps
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

HEARTBEAT_CACHE_KEY = "pollstr:worker-heartbeat"
IN_PROCESS = "in-process"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    seconds: float
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"ok": self.ok, "seconds": round(self.seconds, 4)}
        if self.detail:
            entry["detail" if self.ok else "error"] = self.detail
        return entry


class CheckFailed(Exception):
    """A check's own verdict (as opposed to an error raised by a client library)."""


# --- the checks ------------------------------------------------------------------------------
# Each returns a short detail on success and raises on failure. They run in threads of
# their own: a database connection opened here is this thread's and is closed here.


def check_database() -> str:
    from django.db import connections

    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()
    return connection.vendor


def check_cache() -> str:
    from django.core.cache import caches

    cache = caches["default"]
    probe = f"{time.time():.6f}"
    cache.set("pollstr:health:probe", probe, timeout=30)
    if cache.get("pollstr:health:probe") != probe:
        raise CheckFailed("the cache did not return what was stored")
    return type(cache).__name__


def check_channel_layer() -> str:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise CheckFailed("no channel layer configured")
    hosts = getattr(layer, "hosts", None)
    if not hosts:
        return IN_PROCESS
    for host in hosts:
        _redis_client(host).ping()
    return f"{len(hosts)} redis host(s)"


def _redis_client(host: dict[str, Any]) -> Any:
    import redis

    timeout = _timeout()
    options = {k: v for k, v in host.items() if k != "address"}
    options.setdefault("socket_connect_timeout", timeout)
    options.setdefault("socket_timeout", timeout)
    if "address" in host:
        return redis.Redis.from_url(host["address"], **options)
    return redis.Redis(**options)


def check_broker() -> str:
    from pollstr.celery import app

    if app.conf.task_always_eager:
        return "eager: tasks run in the caller"
    if str(app.conf.broker_url).startswith("memory://"):
        return IN_PROCESS
    with app.connection_for_write() as connection:
        # Kombu's Redis channel pings the server when it is created.
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=math.ceil(_timeout()))
        connection.default_channel  # noqa: B018 - creating it is the check
        return str(connection.transport.driver_name)


def check_worker() -> str:
    from pollstr.celery import app

    if app.conf.task_always_eager:
        return "eager: tasks run in the caller"
    age = heartbeat_age()
    if age is None:
        raise CheckFailed("no worker heartbeat")
    if age > settings.WORKER_HEARTBEAT_MAX_AGE:
        raise CheckFailed(f"last worker heartbeat {age:.0f} s ago")
    return f"heartbeat {age:.1f} s ago"


def heartbeat_age() -> float | None:
    """Seconds since the newest heartbeat any worker stored; None if none is stored."""
    from django.core.cache import cache

    beat = cache.get(HEARTBEAT_CACHE_KEY)
    if not isinstance(beat, dict) or "at" not in beat:
        return None
    return time.time() - float(beat["at"])


READINESS_CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "broker": check_broker,
    "worker": check_worker,
}


def _timeout() -> float:
    return float(settings.HEALTH_CHECK_TIMEOUT)


def run_checks(checks: dict[str, Callable[[], str]] | None = None) -> list[CheckResult]:
    """Run the checks in parallel, each bounded by HEALTH_CHECK_TIMEOUT."""
    checks = checks or READINESS_CHECKS
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    try:
        started = {
            name: (pool.submit(_timed, check), time.monotonic()) for name, check in checks.items()
        }
        deadline = time.monotonic() + _timeout()
        return [_result(name, future, start, deadline) for name, (future, start) in started.items()]
    finally:
        # A check stuck in a client library is left to its own socket timeout.
        pool.shutdown(wait=False, cancel_futures=True)


def _timed(check: Callable[[], str]) -> tuple[str, float]:
    start = time.monotonic()
    detail = check()
    return detail, time.monotonic() - start


def _result(name: str, future: Any, start: float, deadline: float) -> CheckResult:
    try:
        detail, seconds = future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        logger.warning("readiness: %s did not answer within %s s", name, _timeout())
        return CheckResult(name, False, time.monotonic() - start, "timed out")
    except CheckFailed as failed:
        logger.warning("readiness: %s failed: %s", name, failed)
        return CheckResult(name, False, time.monotonic() - start, str(failed))
    except Exception as error:
        logger.warning("readiness: %s failed: %s: %s", name, type(error).__name__, error)
        return CheckResult(name, False, time.monotonic() - start, type(error).__name__)
    return CheckResult(name, True, seconds, detail)


# --- the endpoints -----------------------------------------------------------------------------


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    results = run_checks()
    failed = [result.name for result in results if not result.ok]
    body = {
        "status": "unavailable" if failed else "ok",
        "failed": failed,
        "checks": {result.name: result.as_json() for result in results},
    }
    return JsonResponse(body, status=503 if failed else 200)


class ReadinessCollector(Collector):
    """What /readyz says, as metrics, computed at each scrape of a web replica."""

    def collect(self) -> Iterator[Metric]:
        checks = GaugeMetricFamily(
            "pollstr_readiness_check",
            "1 when the readiness check (as GET /readyz runs it) passes at scrape time, else 0.",
            labels=["check"],
        )
        for result in run_checks():
            checks.add_metric([result.name], 1.0 if result.ok else 0.0)
        yield checks
        try:
            age = heartbeat_age()
        except Exception as error:  # the cache check above reports the outage
            logger.warning("heartbeat age unavailable: %s", type(error).__name__)
            return
        yield GaugeMetricFamily(
            "pollstr_worker_heartbeat_age_seconds",
            "Seconds since the newest worker heartbeat (+Inf when no worker ever beat).",
            value=math.inf if age is None else age,
        )


class OperatorEndpointsMiddleware:
    """Answers /healthz, /readyz and /metrics first, before anything can refuse them.

    Probes and scrapers call a container by IP or service name, which ALLOWED_HOSTS
    rightly refuses for pages; these endpoints carry no session and no page, and
    /metrics has its own access rule.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from pollstr.metrics import metrics
        from two_factor.services.budget import BudgetCollector

        self.get_response = get_response
        live = [ReadinessCollector(), BudgetCollector()]
        self.endpoints: dict[str, Callable[[HttpRequest], HttpResponse]] = {
            "/healthz": healthz,
            "/readyz": readyz,
            "/metrics": lambda request: metrics(request, live=live),
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        endpoint = self.endpoints.get(request.path_info)
        if endpoint is not None:
            return endpoint(request)
        return self.get_response(request)


# --- the worker's heartbeat -------------------------------------------------------------------


def heartbeat_write(*, nodename: str) -> None:
    """Touch the heartbeat file and store the time in the cache; never raises."""
    now = time.time()
    path = settings.WORKER_HEARTBEAT_FILE
    if path:
        try:
            Path(path).touch()
        except OSError as error:
            logger.warning("worker heartbeat file %s: %s", path, error)
    try:
        from django.core.cache import cache

        cache.set(
            HEARTBEAT_CACHE_KEY,
            {"at": now, "node": nodename},
            timeout=int(settings.WORKER_HEARTBEAT_MAX_AGE) * 2,
        )
    except Exception as error:  # the broker may be fine while the cache is not
        logger.warning("worker heartbeat not stored: %s: %s", type(error).__name__, error)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Beats every WORKER_HEARTBEAT_INTERVAL seconds on the worker's timer."""

    requires = ("celery.worker.components:Timer",)
    label = "Pollstr heartbeat"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        nodename = str(getattr(parent, "hostname", "") or "worker")
        heartbeat_write(nodename=nodename)
        self.tref = parent.timer.call_repeatedly(
            float(settings.WORKER_HEARTBEAT_INTERVAL),
            heartbeat_write,
            kwargs={"nodename": nodename},
        )

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


def install_worker_heartbeat() -> None:
    """Add the heartbeat to every worker this app starts (idempotent)."""
    from pollstr.celery import app

    app.steps["worker"].add(WorkerHeartbeat)
