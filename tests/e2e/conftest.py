"""A real stack for browser tests: daphne and a separate Celery worker process on
PostgreSQL and Redis, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from tests import stack

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls
# (setting up polls, reading results) are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Where screenshots go: docs/screenshots when POLLSTR_SCREENSHOTS names it, else a temp dir.
SCREENSHOT_DIR = os.environ.get("POLLSTR_SCREENSHOTS", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed browser test's report ends with its worker's and daphne's last log lines:
    what the stack did is gone with its processes once the test ends."""
    report = yield
    running = getattr(item, "funcargs", {}).get("e2e_stack")
    if report.failed and call.when == "call" and isinstance(running, dict):
        for label in ("worker", "web"):
            child = running.get(label)
            if child is not None:
                report.sections.append((f"{label} log, last lines", child.process.log_tail(80)))
    return report


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        # make test installs it (scripts/ensure-services.sh); a bare pytest run must say so.
        pytest.fail(
            f"{CHROMIUM} is missing: run `make test` (installs it as root) or "
            "`apt-get install -y chromium`."
        )
    return CHROMIUM


@pytest.fixture
def stack_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings (environment variables) the stack's processes get on top of the usual
    ones; a test sets them with ``parametrize("stack_settings", [{...}], indirect=True)``."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def e2e_stack(
    transactional_db: None, chromium_path: str, stack_settings: dict[str, str]
) -> Iterator[dict[str, Any]]:
    if not connection.settings_dict["ENGINE"].endswith("postgresql"):
        pytest.skip(
            "browser tests need PostgreSQL: daphne and the worker are separate processes "
            "that cannot share the SQLite test database (make test uses PostgreSQL)"
        )
    redis_url = stack.redis_url_for_tests()
    if not stack.redis_ping(redis_url):
        pytest.fail(f"Redis is not reachable at {redis_url}: start it (make test does).")
    call_command("load_demo", verbosity=0)
    env = stack.stack_env(
        database_url=stack.database_url(connection.settings_dict),
        redis_url=redis_url,
        extra={"TWO_FACTOR_SANDBOX_INBOX": "1", "LOG_LEVEL": "INFO", **stack_settings},
    )
    with stack.celery_worker_and_daphne(env, concurrency=2) as (worker, web):
        yield {"url": web.url, "web": web, "worker": worker}


@pytest.fixture(scope="module")
def _chromium(chromium_path: str) -> Iterator[Any]:
    """One Chromium per test module (each launch costs about half a second)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser(_chromium: Any) -> Iterator[Any]:
    """Chromium for one test: each test opens its own contexts (cookies, storage and
    pages of their own), and whatever it leaves open is closed after it."""
    try:
        yield _chromium
    finally:
        for context in list(_chromium.contexts):
            context.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    target = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    return target
