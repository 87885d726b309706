"""A documented, one-command way to create an operator account (issue 17, rough edge 8):
the runbook's "verification is stuck" steps need the admin."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_readme_and_runbook_say_how_to_create_an_operator_account():
    readme = (ROOT / "README.md").read_text()
    runbook = (ROOT / "docs" / "OPERATIONS.md").read_text()

    assert "make admin" in readme
    assert "make admin" in runbook
    assert "python manage.py createsuperuser" in runbook  # the docker compose way


def test_make_admin_creates_a_superuser_on_the_embedded_default(tmp_path):
    up_to_date = subprocess.run(["make", "-q", ".venv/.runtime"], cwd=ROOT, check=False)
    if up_to_date.returncode != 0:
        pytest.skip("the virtualenv's runtime stamp is out of date: make would reinstall it")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "CELERY_", "PYTEST_"))
    }
    env.update(
        POLLSTR_VAR_DIR=str(tmp_path),
        DJANGO_SUPERUSER_USERNAME="operator",
        DJANGO_SUPERUSER_EMAIL="ops@example.com",
        DJANGO_SUPERUSER_PASSWORD="an-operator-passphrase-1",
    )

    done = subprocess.run(
        ["make", "-s", "admin", "NOINPUT=1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "pollstr.sqlite3") as db:
        rows = db.execute("SELECT username, is_staff, is_superuser FROM auth_user").fetchall()
    assert rows == [("operator", 1, 1)]
