from __future__ import annotations

from django.apps import AppConfig


class TwoFactorConfig(AppConfig):
    name = "two_factor"
    verbose_name = "Two-factor verification"

    def ready(self) -> None:
        import tasks.verification  # noqa: F401 - registers the tasks services enqueue
        from pollstr import collector, health, logs, metrics
        from two_factor import signals, telemetry  # noqa: F401 - signals connects auth receivers

        telemetry.connect()
        # Every process loads this app: web processes publish tasks with the request id,
        # workers take it back, count retries, beat and export their metrics, and settle
        # their garbage collector once ready (pollstr/collector.py).
        logs.connect_celery_signals()
        metrics.connect_celery_signals()
        collector.connect_celery_signals()
        health.install_worker_heartbeat()
