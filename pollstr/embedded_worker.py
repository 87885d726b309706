"""The Celery worker of the embedded default: a thread beside the ASGI server.

With no broker service configured, tasks go through kombu's in-memory transport and
this worker consumes them, so a web request still returns before its task runs and
the task code is exactly the one the `worker` service runs in production.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_worker_thread: threading.Thread | None = None


def start_embedded_worker_if_configured() -> bool:
    if not settings.CELERY_EMBEDDED_WORKER or settings.CELERY_TASK_ALWAYS_EAGER:
        return False
    global _worker_thread
    with _lock:
        if _worker_thread is not None and _worker_thread.is_alive():
            return True
        from pollstr.celery import app

        worker = app.WorkController(
            concurrency=1,
            pool_cls="solo",
            hostname="embedded@pollstr",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            # Signal-based time limits cannot fire outside the main thread.
            task_time_limit=None,
            task_soft_time_limit=None,
        )
        _worker_thread = threading.Thread(target=worker.start, name="embedded-celery", daemon=True)
        _worker_thread.start()
        # The embedded default's Celery beat: the reconciler's sweep, through the same
        # task the `beat` service schedules in docker-compose.yml.
        threading.Thread(target=_reconcile_forever, name="embedded-beat", daemon=True).start()
    logger.info("Embedded Celery worker started (in-memory broker).")
    return True


def _reconcile_forever() -> None:
    from tasks.verification import reconcile

    interval = settings.TWO_FACTOR_RECONCILE_INTERVAL
    stop = threading.Event()
    while not stop.wait(interval):
        try:
            reconcile.apply_async(expires=interval)
        except Exception:
            logger.exception("Could not enqueue the reconciler's sweep")
