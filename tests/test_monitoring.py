"""What operators watch: the alert rules (deploy/prometheus/) pass promtool's checks and
unit tests, and the rules and the Grafana dashboard (deploy/grafana/) name only metrics
that /metrics serves, except the two the SMS budget (issue #18, part 3) will add.

/metrics also serves the readiness checks and the worker heartbeat's age, computed at
each scrape (pollstr/health.py), which the "readiness failing" and "no worker heartbeat"
alerts read.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "pollstr.json"
# Prometheus's own series about each scrape.
PROMETHEUS_OWN = {"up"}
NO_PROMTOOL = (
    "promtool is not installed: the alert rules cannot be checked. It comes with Debian's "
    "prometheus package: run `make services` (scripts/ensure-services.sh installs it) or "
    "apt-get install prometheus"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail(NO_PROMTOOL)
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", str(RULES))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_each_alert_fires_on_its_series_and_not_on_look_alikes() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_is_no_rubber_stamp(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(RULES.read_text().replace("> 60", "> > 60", 1))

    assert promtool("check", "rules", str(broken)).returncode != 0


def _alerts() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def test_the_rules_cover_what_operators_are_paged_for() -> None:
    metrics_alerted = " ".join(_alerts().values())
    for metric in (
        "pollstr_worker_heartbeat_age_seconds",  # no worker heartbeat
        "pollstr_celery_queue_length",  # queue growing
        "pollstr_provider_errors_total",  # provider error rate
        "pollstr_sms_governor_paused",  # conversion governor tripped
        "pollstr_sms_spend_ratio",  # spend cap near
        "pollstr_readiness_check",  # readiness failing
    ):
        assert metric in metrics_alerted, f"no alert reads {metric}"


def _served_names(client: Client) -> set[str]:
    """Every sample name /metrics can serve (families without samples yet included)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content[:300]
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    names = set()
    for family in text_string_to_metric_families(response.content.decode()):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def _metrics_named(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"\b(pollstr_[a-z0-9_]+|up)\b", without_strings))


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_expression_names_a_metric_that_is_served(client: Client, db: None) -> None:
    served = _served_names(client)
    assert "pollstr_verifications_total" in served
    assert "pollstr_provider_request_seconds_count" in served
    known = served | PROMETHEUS_OWN

    exprs = {f"alert {name}": expr for name, expr in _alerts().items()}
    exprs |= {f"dashboard: {expr}": expr for expr in _dashboard_exprs()}
    for where, expr in exprs.items():
        named = _metrics_named(expr)
        assert named, f"{where} names no metric"
        unknown = named - known
        assert not unknown, f"{where} names {sorted(unknown)}, which /metrics does not serve"


def test_the_dashboard_shows_every_metric_the_alerts_read() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pollstr"
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert all(panel.get("targets") for panel in panels)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    shown = set().union(*(_metrics_named(expr) for expr in _dashboard_exprs()))
    alerted = set().union(*(_metrics_named(expr) for expr in _alerts().values()))
    assert alerted <= shown, f"not on the dashboard: {sorted(alerted - shown)}"


# --- readiness and the heartbeat, as metrics -------------------------------------------------


def _scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content[:300]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_a_scrape_reports_each_readiness_check(
    client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pollstr import health

    def cache_down() -> str:
        raise ConnectionError("cache unreachable")

    monkeypatch.setitem(health.READINESS_CHECKS, "cache", cache_down)
    samples = _scrape(client)

    assert samples[("pollstr_readiness_check", (("check", "database"),))] == 1.0
    assert samples[("pollstr_readiness_check", (("check", "cache"),))] == 0.0
    assert {labels for name, labels in samples if name == "pollstr_readiness_check"} == {
        (("check", name),) for name in health.READINESS_CHECKS
    }


def test_a_scrape_reports_the_age_of_the_newest_heartbeat(client: Client, db: None) -> None:
    from django.core.cache import cache

    from pollstr.health import HEARTBEAT_CACHE_KEY

    cache.delete(HEARTBEAT_CACHE_KEY)
    never: Any = _scrape(client)[("pollstr_worker_heartbeat_age_seconds", ())]
    assert math.isinf(never)

    cache.set(HEARTBEAT_CACHE_KEY, {"at": time.time() - 42, "node": "w@host"})
    age = _scrape(client)[("pollstr_worker_heartbeat_age_seconds", ())]
    assert 42 <= age < 52
