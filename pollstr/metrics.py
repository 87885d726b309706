"""Prometheus metrics: what is counted, how it is exposed, who may read it.

Every process counts into prometheus-client's registry. With several processes per
container (gunicorn's web workers, Celery's prefork children) the environment variable
``PROMETHEUS_MULTIPROC_DIR`` names an empty directory (a tmpfs in docker-compose.yml)
where each process writes its values; a scrape adds them up. Without it (``make run``,
tests, ``--pool=solo``) the process's own registry is read.

Where to scrape (docs/OPERATIONS.md lists every metric):

- web: ``GET /metrics`` on every web container: requests, starts, websockets, queue
  depth (read from the broker at scrape time);
- worker: each worker container serves the same format on ``WORKER_METRICS_PORT``
  (provider calls, sends, verdicts, task retries). No push gateway: Prometheus finds
  the replicas by DNS (the compose service name resolves to all of them).

Both answer only a client whose address is in ``METRICS_ALLOWED_IPS`` or that sends
``Authorization: Bearer <METRICS_TOKEN>``.
"""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import logging
import math
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# --- what is counted ---------------------------------------------------------------------------

VERIFICATIONS = Counter(
    "pollstr_verifications",
    "Verification state changes, by the state reached (started = a new verification), "
    "channel (sms, voice, none) and reason.",
    ["event", "channel", "reason"],
)
PROVIDER_REQUEST_SECONDS = Histogram(
    "pollstr_provider_request_seconds",
    "Time of one call to the verification provider, by gateway, operation and outcome.",
    ["gateway", "operation", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PROVIDER_ERRORS = Counter(
    "pollstr_provider_errors",
    "Provider calls that raised, by gateway, operation, error class and HTTP status "
    "(none when the error came without one, e.g. a timeout).",
    ["gateway", "operation", "error", "status"],
)
TASK_RETRIES = Counter("pollstr_task_retries", "Celery task retries, by task.", ["task"])
RATE_LIMIT_REFUSALS = Counter(
    "pollstr_rate_limit_refusals", "Requests refused by a rate limit, by limit.", ["limit"]
)
CODES_SAVED = Counter(
    "pollstr_two_factor_codes_saved",
    "Sessions verified by a remembered device instead of a code (web).",
)
WEBSOCKETS_OPEN = Gauge(
    "pollstr_websocket_connections",
    "Websocket connections open now (accepted and not yet closed).",
    multiprocess_mode="livesum",
)
QUEUE_LENGTH_NAME = "pollstr_celery_queue_length"

_EVENT_NAMES = {"queued": "started"}
_REASON_CUT = re.compile(r"[:.(]")


def reason_label(reason: str) -> str:
    """A short, bounded label from a transition reason: its first clause, lower case,
    digits replaced (a reason never makes a new time series per number or count)."""
    clause = _REASON_CUT.split(reason or "", maxsplit=1)[0]
    text = re.sub(r"\d", "#", " ".join(clause.lower().split()))
    return text[:48] or "none"


def verification_counted(*, to_status: str, channel: str, reason: str) -> None:
    VERIFICATIONS.labels(
        event=_EVENT_NAMES.get(to_status, to_status),
        channel=channel or "none",
        reason=reason_label(reason),
    ).inc()


# --- who may read them ------------------------------------------------------------------------


def metrics_allowed(*, remote_addr: str | None, authorization: str | None) -> bool:
    """Allowed from an address in METRICS_ALLOWED_IPS, or with the bearer token.

    A wrong token is refused even from an allowed address: whoever sends one meant to
    use the token, and a typo must show up, not pass by luck.
    """
    token = str(getattr(settings, "METRICS_TOKEN", "") or "")
    if authorization:
        scheme, _, given = authorization.partition(" ")
        return (
            bool(token)
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), token.encode())
        )
    return _address_allowed(remote_addr)


def _address_allowed(remote_addr: str | None) -> bool:
    try:
        address = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        return False
    for network in getattr(settings, "METRICS_ALLOWED_IPS", []):
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS: %r is not an address or network", network)
    return False


# --- how they are exposed ---------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _ThisProcess(Collector):
    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class QueueDepthCollector(Collector):
    """Messages waiting in each Celery queue, read from the broker at scrape time."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            QUEUE_LENGTH_NAME,
            "Messages waiting in a Celery queue (not yet taken).",
            labels=["queue"],
        )
        try:
            for queue, length in queue_lengths().items():
                family.add_metric([queue], length)
        except Exception as error:  # a scrape must still answer when the broker is down
            logger.warning("queue depth unavailable: %s", type(error).__name__)
            return
        yield family


def queue_lengths(timeout: float = 2.0) -> dict[str, int]:
    from pollstr.celery import app

    names = sorted(app.amqp.queues) or [app.conf.task_default_queue]
    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=math.ceil(timeout))
        channel = connection.default_channel
        lengths = {}
        for name in names:
            try:
                lengths[name] = channel.queue_declare(queue=name, passive=True).message_count  # type: ignore[attr-defined]
            except connection.channel_errors:
                lengths[name] = 0  # declared by nobody yet: nothing waits in it
                channel = connection.channel()
        return lengths


def scrape_registry(*, with_queues: bool, live: Iterable[Collector] = ()) -> CollectorRegistry:
    """The values to serve: this process's (or every process's, in multiprocess mode),
    the queue depths when ``with_queues``, and the ``live`` collectors, read at scrape
    time (pollstr.health's readiness checks on the web)."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    if with_queues:
        registry.register(QueueDepthCollector())
    for collector in live:
        registry.register(collector)
    return registry


def metrics(request: HttpRequest, *, live: Iterable[Collector] = ()) -> HttpResponse:
    """GET /metrics: the Prometheus text format, for allowed clients only."""
    if not metrics_allowed(
        remote_addr=request.META.get("REMOTE_ADDR"),
        authorization=request.headers.get("Authorization"),
    ):
        return HttpResponse(
            "Metrics are restricted: send Authorization: Bearer <METRICS_TOKEN>.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    body = generate_latest(scrape_registry(with_queues=True, live=live))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


# --- websockets ---------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class WebsocketConnectionsMiddleware:
    """ASGI middleware: counts websocket connections from accept to the app's end."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            await self.app(scope, receive, send)
            return
        accepted = False

        async def counting_send(message: Message) -> None:
            nonlocal accepted
            if message.get("type") == "websocket.accept" and not accepted:
                accepted = True
                WEBSOCKETS_OPEN.inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if accepted:
                WEBSOCKETS_OPEN.dec()


# --- the worker's side --------------------------------------------------------------------------

_exporter_lock = threading.Lock()
_exporter: Any = None


def serve_worker_metrics(*, port: int, host: str = "0.0.0.0") -> int:  # noqa: S104 - a container's own port
    """Serve this worker's metrics on ``host:port`` (a daemon thread); return the port.

    Started once per worker (the main process); prefork children count into the
    multiprocess directory, which this server adds up at each scrape.
    """
    global _exporter
    from wsgiref.simple_server import make_server

    from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler, make_wsgi_app

    with _exporter_lock:
        if _exporter is not None:
            return int(_exporter.server_port)
        exposition = make_wsgi_app(scrape_registry(with_queues=False))

        def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if not metrics_allowed(
                remote_addr=environ.get("REMOTE_ADDR"),
                authorization=environ.get("HTTP_AUTHORIZATION"),
            ):
                start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"Metrics are restricted: send Authorization: Bearer <METRICS_TOKEN>.\n"]
            return exposition(environ, start_response)

        _exporter = make_server(
            host, port, guarded, ThreadingWSGIServer, handler_class=_SilentHandler
        )
        threading.Thread(target=_exporter.serve_forever, name="worker-metrics", daemon=True).start()
        logger.info("Worker metrics on http://%s:%s/metrics", host, _exporter.server_port)
        return int(_exporter.server_port)


def _worker_ready(**_: Any) -> None:
    port = int(getattr(settings, "WORKER_METRICS_PORT", 0) or 0)
    if port:
        serve_worker_metrics(port=port)


def _task_retried(sender: Any = None, **_: Any) -> None:
    TASK_RETRIES.labels(task=getattr(sender, "name", None) or "unknown").inc()


def _process_gone(**_: Any) -> None:
    # Live gauges (websockets) of an exited process must stop counting at once.
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


def connect_celery_signals() -> None:
    """Idempotent: called from two_factor's AppConfig.ready() in every process."""
    from celery.signals import task_retry, worker_process_shutdown, worker_ready

    worker_ready.connect(_worker_ready, weak=False, dispatch_uid="pollstr.metrics")
    task_retry.connect(_task_retried, weak=False, dispatch_uid="pollstr.metrics")
    worker_process_shutdown.connect(_process_gone, weak=False, dispatch_uid="pollstr.metrics")


atexit.register(_process_gone)
