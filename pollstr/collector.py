"""The cyclic garbage collector, set for a long-running server process.

CPython frees almost every object by reference counting the moment it is no longer
used; the cyclic collector is only for objects that refer to each other in a cycle. By
default it still walks every young container object after each 700 net allocations of
them, and, every hundred such passes or so, *every* container object the process holds:
Django, the apps, the URL conf, the compiled templates and statements, all alive until
the process ends. A web process allocates thousands of containers per request, so under
``make bench``'s P2 the collector took a few per cent of every web and worker process's
CPU, and each full pass paused a web process's requests and sockets for about 0.2 s (the
figures: docs/ARCHITECTURE.md, "The garbage collector leaves start-up alone").

`settle()`, once a process has started (the web tier from pollstr/asgi.py, a Celery worker
from its ``worker_ready`` signal):

- collects once and **freezes** what is left (``gc.freeze()``): what start-up loaded is
  never walked again; nothing of it is freed later anyway;
- raises the young generation's threshold to ``GC_THRESHOLD`` (default 10,000): a
  request's cycles (exception tracebacks, some of Django's request objects) wait a little
  longer to be freed. What that holds is bounded by the threshold: at most that many
  container objects allocated since the last pass, a few megabytes.

``GC_THRESHOLD=0`` leaves Python's collector as it is.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


def settle() -> bool:
    """Freeze what the process has loaded and raise the young generation's threshold.
    False (and nothing done) when ``GC_THRESHOLD`` is 0. Settling again (a forked child
    after its own start-up) freezes what was loaded since."""
    threshold = settings.GC_THRESHOLD
    if not threshold:
        return False
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)
    logger.info(
        "Garbage collector settled: %d objects frozen, young-generation threshold %d",
        gc.get_freeze_count(),
        threshold,
    )
    return True


def _settle(**_: Any) -> None:
    settle()


def connect_celery_signals() -> None:
    """Idempotent: called from two_factor's AppConfig.ready() in every process. A worker
    settles once it is ready; a prefork pool's child once it is initialised."""
    from celery.signals import worker_process_init, worker_ready

    worker_ready.connect(_settle, weak=False, dispatch_uid="pollstr.collector")
    worker_process_init.connect(_settle, weak=False, dispatch_uid="pollstr.collector")
