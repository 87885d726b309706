"""Structured logs and the request id that ties one voter's log lines together.

One id per web request (``X-Request-ID`` when the caller sent a short safe token, a
fresh one otherwise) lives in a context variable. Every log record gets it through
:class:`RequestIdFilter`; Celery tasks enqueued during the request carry it in a message
header and set it again in the worker before they run, so the provider call and the
push that follow in the worker log the same id. ``grep <id>`` follows a voter from the
form post to the verdict.

``LOG_FORMAT=json`` prints one JSON object per line; the default is readable text with
the same fields as ``key=value`` pairs. Log an event with :func:`log_event`.

This module is loaded by the logging configuration itself, before Django's apps: it
must not import models.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # settings import this module: keep Django's HTTP layer out of it
    from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
# The Celery message header that carries the id from the publisher to the worker.
TASK_HEADER = "pollstr_request_id"
# Short and inert: an id from outside ends up in every log line, so nothing that could
# forge a line (newlines, quotes) or bloat it is accepted.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,63}")
NO_REQUEST_ID = "-"

_request_id: ContextVar[str | None] = ContextVar("pollstr_request_id", default=None)


def new_request_id() -> str:
    return secrets.token_hex(8)


def request_id_from(header: str | None) -> str:
    """The caller's id if it is a short safe token, else a fresh one."""
    if header and _SAFE_ID.fullmatch(header):
        return header
    return new_request_id()


def safe_request_id(header: str | None) -> str | None:
    """``header`` if it is a short safe token, else None."""
    return header if header and _SAFE_ID.fullmatch(header) else None


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_id_bound(request_id: str | None) -> Iterator[str | None]:
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


class RequestIdMiddleware:
    """Binds the request id for the request's log lines and tasks; echoes it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        with request_id_bound(request_id):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


# --- log records -------------------------------------------------------------------------------


def log_event(
    logger: logging.Logger, event: str, /, level: int = logging.INFO, **fields: Any
) -> None:
    """One structured line: ``event`` names what happened, ``fields`` its facts.

    Callers pass only what is safe to keep: masked numbers, never a code or a secret.
    """
    logger.log(level, event, extra={"event": event, "fields": fields})


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or NO_REQUEST_ID
        return True


# What probes and scrapers call every few seconds: never access-logged, by any server
# (their failures are logged by the views).
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")


class QuietPathsFilter(logging.Filter):
    """Drops access-log lines (and Django's 5xx lines) for the operator endpoints."""

    PATHS = QUIET_PATHS

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        path = getattr(request, "path", None)
        if isinstance(path, str):
            return not path.startswith(self.PATHS)
        # Access loggers pass the path as an argument (uvicorn a tuple, gunicorn a dict).
        args = record.args
        values = args.values() if isinstance(args, dict) else (args or ())
        return not any(isinstance(v, str) and v.startswith(self.PATHS) for v in values)


class HostileHostFilter(logging.Filter):
    """A request for a host not in ALLOWED_HOSTS is a scanner or a misrouted probe, answered
    400: one WARNING line naming the host, not an ERROR with a traceback (Django logs it
    on ``django.security.DisallowedHost`` with the exception attached)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        record.exc_info = None
        record.exc_text = None
        return True


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message,
    request_id, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NO_REQUEST_ID),
        }
        for key, value in _record_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id] message key=value ...`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or NO_REQUEST_ID
        line = super().format(record)
        fields = _record_fields(record)
        if fields:
            pairs = " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
            first, newline, rest = line.partition("\n")
            line = f"{first} {pairs}{newline}{rest}"
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return (
        json.dumps(text, ensure_ascii=False) if (not text or re.search(r"[\s\"=]", text)) else text
    )


def logging_config(*, level: str, log_format: str) -> dict[str, Any]:
    """The LOGGING dict for settings: one console handler, the chosen format."""
    formatter = "json" if log_format == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "pollstr.logs.RequestIdFilter"},
            "quiet_paths": {"()": "pollstr.logs.QuietPathsFilter"},
            "hostile_host": {"()": "pollstr.logs.HostileHostFilter"},
        },
        "formatters": {
            "json": {"()": "pollstr.logs.JsonFormatter"},
            "text": {"()": "pollstr.logs.TextFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.channels.server": {"level": "WARNING"},
            "django.request": {"filters": ["quiet_paths"]},
            "django.security.DisallowedHost": {"filters": ["hostile_host"]},
            "uvicorn.access": {"filters": ["quiet_paths"]},
            "gunicorn.access": {"filters": ["quiet_paths"]},
        },
    }


# --- Celery: the id travels with the task ---------------------------------------------------


def _before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def _task_prerun(task: Any = None, task_id: str | None = None, **_: Any) -> None:
    if _runs_in_caller(task):
        return  # an eager task runs inside the request: it keeps the request's id
    carried = getattr(getattr(task, "request", None), TASK_HEADER, None)
    # A task nobody's request enqueued (beat's reconciler) logs under its own task id.
    request_id = carried if isinstance(carried, str) and _SAFE_ID.fullmatch(carried) else None
    _request_id.set(request_id or (task_id or new_request_id()).replace("-", "")[:16])


def _task_postrun(task: Any = None, **_: Any) -> None:
    if not _runs_in_caller(task):
        _request_id.set(None)


def _runs_in_caller(task: Any) -> bool:
    return bool(getattr(getattr(task, "request", None), "is_eager", False))


def connect_celery_signals() -> None:
    """Idempotent: called from two_factor's AppConfig.ready() in every process."""
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(_before_task_publish, weak=False, dispatch_uid="pollstr.logs")
    task_prerun.connect(_task_prerun, weak=False, dispatch_uid="pollstr.logs")
    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="pollstr.logs")
