"""What operators read and probe: logs, metrics, health and readiness, worker heartbeats
(docs/OPERATIONS.md)."""

from __future__ import annotations

from pollstr.env import env_choice, env_directory, env_float, env_int, env_list, env_str
from pollstr.logs import logging_config

# --- Logging ------------------------------------------------------------------------------
# One line per event, with the request id; LOG_FORMAT=json for log shippers.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", {"text", "json"})
LOGGING = logging_config(level=env_str("LOG_LEVEL", "INFO"), log_format=LOG_FORMAT)

# --- Metrics ------------------------------------------------------------------------------
# /metrics (and a worker's exporter) answer these addresses, or a Bearer METRICS_TOKEN.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
# prometheus-client reads this variable itself; a missing directory would fail every
# process's first metric, so it is created (or refused) here, before any metric exists.
PROMETHEUS_MULTIPROC_DIR = env_directory("PROMETHEUS_MULTIPROC_DIR")
# A worker serves its own metrics on this port (0: off).
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)

# --- Processes ----------------------------------------------------------------------------
# The cyclic garbage collector's young-generation threshold in web and worker processes,
# set once they have started, with all they loaded by then frozen (pollstr/collector.py;
# Python's default is 700). 0 leaves the collector as Python sets it.
GC_THRESHOLD = env_int("GC_THRESHOLD", 10_000, minimum=0, maximum=1_000_000)

# --- Health and readiness (pollstr/health.py) ---------------------------------------------
# Seconds each of /readyz's checks (run in parallel) may take before it counts as failed.
HEALTH_CHECK_TIMEOUT = env_float("HEALTH_CHECK_TIMEOUT", 3.0, minimum=0.1, maximum=30)
# The file a worker touches on every heartbeat (scripts/worker-healthcheck reads its age);
# unset: no file, the heartbeat goes to the cache only.
WORKER_HEARTBEAT_FILE = env_str("WORKER_HEARTBEAT_FILE")
# Seconds between a worker's heartbeats ...
WORKER_HEARTBEAT_INTERVAL = env_int("WORKER_HEARTBEAT_INTERVAL", 10, minimum=1, maximum=300)
# ... and the age past which /readyz says no worker is alive.
WORKER_HEARTBEAT_MAX_AGE = env_int("WORKER_HEARTBEAT_MAX_AGE", 60, minimum=2, maximum=3600)
