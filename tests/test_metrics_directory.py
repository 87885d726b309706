"""PROMETHEUS_MULTIPROC_DIR: a missing directory is created at start-up, and one that
cannot be is named in a clear ImproperlyConfigured (not a FileNotFoundError from
prometheus-client in every process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Settings, then the first metrics (pollstr.metrics creates a gauge at import).
COUNT_ONE = (
    "import django; django.setup(); "
    "from pollstr import metrics; metrics.RATE_LIMIT_REFUSALS.labels(limit='probe').inc(); "
    "print('counted')"
)


def _start(directory: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "pollstr.settings",
        "POLLSTR_VAR_DIR": str(tmp_path / "var"),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    return subprocess.run(
        [sys.executable, "-c", COUNT_ONE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_directory_is_created_and_the_process_counts_into_it(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet" / "there"

    started = _start(directory, tmp_path)

    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "counted"
    assert list(directory.glob("counter_*.db")), "no counter file in the directory"


def test_a_directory_that_cannot_exist_stops_start_up_naming_the_variable(
    tmp_path: Path,
) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a directory")

    started = _start(occupied / "metrics", tmp_path)

    assert started.returncode != 0
    assert "ImproperlyConfigured" in started.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in started.stderr
    assert "FileNotFoundError" not in started.stderr
