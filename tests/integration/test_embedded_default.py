"""`make run`'s embedded default, as a newcomer gets it: no PostgreSQL, no Redis, no
Vonage. The same commands as the Makefile (migrate, load_demo, daphne) in a clean
environment; the whole verification flow over real HTTP, with the Celery worker thread
inside the server process and the sandbox inbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import stack

pytestmark = pytest.mark.integration


def _embedded_env(var_dir: Path) -> dict[str, str]:
    dropped = ("DATABASE_", "REDIS_", "CELERY_", "TEST_", "TWO_FACTOR_", "SECRET_KEY", "FAST_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update({"POLLSTR_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"})
    return env


def _csrf(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _status(session: requests.Session, url: str) -> str:
    match = re.search(r'data-status="(\w+)"', session.get(url).text)
    assert match
    return match.group(1)


def _wait_for_status(session: requests.Session, url: str, wanted: str) -> None:
    deadline = time.monotonic() + 20
    while (status := _status(session, url)) != wanted:
        assert time.monotonic() < deadline, f"still {status}, never {wanted}"
        time.sleep(0.1)


def test_the_embedded_default_serves_the_whole_flow_without_any_service(tmp_path):
    env = _embedded_env(tmp_path)
    for command in (["migrate", "--noinput"], ["load_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=stack.BASE_DIR,
            env=env,
            check=True,
            capture_output=True,
        )
    with stack.daphne_server(env) as web:
        base = web.url
        browser = requests.Session()
        browser.trust_env = False  # loopback only, never a proxy
        login = browser.get(f"{base}/accounts/login/")
        response = browser.post(
            f"{base}/accounts/login/",
            data={
                "username": "test",
                "password": "test1234",
                "next": "/polls/1/",
                "csrfmiddlewaretoken": _csrf(login.text),
            },
        )
        assert response.url == f"{base}/2fa/?next=%2Fpolls%2F1%2F"

        response = browser.post(
            response.url,
            data={"number": "+33 6 12 34 56 78", "csrfmiddlewaretoken": _csrf(response.text)},
        )
        verify_url = response.url
        assert re.search(r"/2fa/v/[0-9a-f-]+/$", verify_url)
        # The code page itself (what the no-JavaScript "Refresh status" link reloads).
        status_url = verify_url
        _wait_for_status(browser, status_url, "sent")

        inbox = browser.get(f"{base}/2fa/sandbox/").text
        code = re.search(r'data-to="33612345678">.*?class="sandbox-code">(\d+)<', inbox, re.S)
        assert code, "the sandbox inbox shows no code for the number"
        page = browser.get(verify_url).text
        browser.post(
            verify_url + "code/", data={"code": code.group(1), "csrfmiddlewaretoken": _csrf(page)}
        )
        _wait_for_status(browser, status_url, "verified")

        response = browser.get(verify_url + "complete/")
        assert response.url == f"{base}/polls/1/"
        assert response.status_code == 200
        assert "Your phone is verified" in response.text
        log = web.log_text()
        assert "Embedded Celery worker started" in log
        assert "Task two_factor.send_code" in log
        assert "succeeded" in log
    # The embedded default kept its data and generated secret in the var directory.
    assert (tmp_path / "pollstr.sqlite3").exists()
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
