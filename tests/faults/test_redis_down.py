"""A real daphne whose Redis (cache, rate limiter, broker, channel layer) goes away.

The Redis is a private ``redis-server`` this module starts on a free loopback port, so
stopping, freezing and restarting it touches nobody else. Pages that need no Redis keep
answering; actions, which count against the rate limiter first, answer 503 with the
"try again in a moment" sentence and change nothing; once Redis is back they work again.
"""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from tests import stack
from tests.conftest import PASSWORD
from tests.e2e.conftest import CHROMIUM_ARGS
from tests.phone_numbers import give_phone, unique_number
from tests.two_factor.verifications import create_verification
from two_factor.models import Status, Verification

pytestmark = [
    pytest.mark.integration,
    pytest.mark.redis,
    pytest.mark.skipif(
        not django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
        reason="the daphne child shares the test database: that needs PostgreSQL",
    ),
]

SENTENCE = "We're busy right now. Please try again in a moment."
# The cache's socket timeouts (settings CACHES) plus slack for a loaded machine.
HUNG_BOUND = 2.0 + 2.0
REFUSED_BOUND = 3.0


class PrivateRedis:
    """A ``redis-server`` child on a fixed loopback port that can be stopped and restarted."""

    def __init__(self) -> None:
        self.port = stack.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = Path(tempfile.mkdtemp(prefix="pollstr-redis-down-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self._dir)]
        argv += ["--daemonize", "no"]
        with (self._dir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        stack.wait_for(
            lambda: stack.redis_ping(self.url), what="the private redis-server", timeout=10
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    if not os.access("/usr/bin/redis-server", os.X_OK) and not _on_path("redis-server"):
        pytest.skip("these tests start their own redis-server: install redis-server")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _on_path(program: str) -> bool:
    from shutil import which

    return which(program) is not None


@pytest.fixture(scope="module")
def server(
    private_redis: PrivateRedis, django_db_setup: None, django_db_blocker: Any
) -> Iterator[stack.WebServer]:
    """daphne with everything Redis-backed on the private Redis, as a deployment has it."""
    with django_db_blocker.unblock():
        database_url = stack.database_url(connection.settings_dict)
    env = stack.stack_env(
        database_url=database_url,
        redis_url=private_redis.url,
        # Several starts in a row: no cooldown between "Text me a code" requests.
        extra={"TWO_FACTOR_RESEND_COOLDOWN": "0"},
    )
    with stack.daphne_server(env) as web:
        yield web


@pytest.fixture
def redis_up(private_redis: PrivateRedis) -> PrivateRedis:
    """The private Redis, running (a test before may have left it stopped)."""
    if private_redis.process is None:
        private_redis.start()
    return private_redis


class Browser:
    """A logged-in person's browser: session cookie, CSRF token, no redirects followed."""

    def __init__(self, base: str, session_key: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only: no proxy from the environment
        self.http.cookies.set(django_settings.SESSION_COOKIE_NAME, session_key)

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.base + path, allow_redirects=False, timeout=30)

    def post(self, path: str, data: dict[str, str], **headers: str) -> requests.Response:
        token = self.http.cookies.get(django_settings.CSRF_COOKIE_NAME)
        if token is None:
            page = self.get("/2fa/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
        return self.http.post(
            self.base + path,
            data=data,
            headers={"X-CSRFToken": token, **headers},
            allow_redirects=False,
            timeout=30,
        )


@pytest.fixture
def voter(transactional_db: None, server: stack.WebServer) -> tuple[Browser, Verification]:
    """A logged-in person with a number and a code on its way (SMS sent) to their session."""
    user = get_user_model().objects.create_user(username="redisless", password=PASSWORD)
    phone = give_phone(user)
    client = Client()
    client.force_login(user)
    session_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    now = timezone.now()
    verification = create_verification(
        user=user,
        session_key=session_key,
        number=phone.number,
        status=Status.SENT,
        request_id="redis-down-test",
        channel="sms",
        sent_at=now,
        channel_deadline=now + timedelta(minutes=10),
    )
    return Browser(server.url, session_key), verification


def assert_try_again(response: requests.Response, *, within: float) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers.get("Retry-After"), dict(response.headers)
    assert SENTENCE in html.unescape(response.text)
    assert response.elapsed.total_seconds() < within


def timed_post(browser: Browser, path: str, data: dict[str, str], **headers: str):
    started = time.monotonic()
    response = browser.post(path, data, **headers)
    return response, time.monotonic() - started


def test_during_a_redis_outage_actions_answer_503_pages_load_and_both_recover(
    redis_up: PrivateRedis, voter: tuple[Browser, Verification], server: stack.WebServer
) -> None:
    browser, verification = voter
    code_url = f"/2fa/v/{verification.pk}/code/"
    assert browser.get("/2fa/").status_code == 200  # and the CSRF cookie is set

    redis_up.stop()

    # Pages: nothing on them needs Redis.
    assert browser.get("/").status_code == 200
    assert browser.get("/2fa/").status_code == 200
    assert browser.get(f"/2fa/v/{verification.pk}/").status_code == 200
    # Actions: the rate limiter comes first, and it cannot count.
    assert_try_again(browser.post("/2fa/", {}), within=REFUSED_BOUND)
    assert_try_again(browser.post(code_url, {"code": "123456"}), within=REFUSED_BOUND)
    fragment = browser.post(code_url, {"code": "123456"}, **{"HX-Request": "true"})
    assert_try_again(fragment, within=REFUSED_BOUND)
    assert "<html" not in fragment.text
    assert "pollstr:unavailable" in fragment.headers.get("HX-Trigger", "")
    # A refused action changed nothing: no new verification, the code still awaited.
    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert Verification.objects.filter(user=verification.user).count() == 1

    redis_up.start()

    started = browser.post("/2fa/", {})
    assert started.status_code == 302, (started.status_code, started.text[:300])
    assert started.headers["Location"].startswith("/2fa/v/")
    new = Verification.objects.filter(user=verification.user).exclude(pk=verification.pk).get()
    # What the worker would do next (none runs here): the SMS went out.
    Verification.objects.filter(pk=new.pk).update(status=Status.SENT, request_id="after")
    submitted = browser.post(f"/2fa/v/{new.pk}/code/", {"code": "123456"})
    assert submitted.status_code == 302, (submitted.status_code, submitted.text[:300])
    new.refresh_from_db()
    assert new.status == Status.CHECKING
    log = server.log_text()
    assert "redis unavailable, answered 503 to POST /2fa/" in log
    assert "Internal Server Error" not in log


def test_a_hung_redis_fails_an_action_within_the_socket_timeout(
    redis_up: PrivateRedis, voter: tuple[Browser, Verification]
) -> None:
    browser, verification = voter
    assert browser.get("/2fa/").status_code == 200

    redis_up.freeze()
    try:
        response, seconds = timed_post(browser, f"/2fa/v/{verification.pk}/code/", {"code": "1"})
        # A malformed code is refused before the limiter (the page again, the code kept
        # to fix, 400): no Redis needed for that.
        assert response.status_code == 400, response.status_code
        assert seconds < HUNG_BOUND
        response, seconds = timed_post(browser, "/2fa/", {})
    finally:
        redis_up.thaw()

    assert_try_again(response, within=HUNG_BOUND)
    assert seconds < HUNG_BOUND
    assert isinstance(redis.Redis.from_url(redis_up.url).ping(), bool)


def test_a_redis_restart_between_two_actions_costs_no_request(
    redis_up: PrivateRedis, voter: tuple[Browser, Verification], server: stack.WebServer
) -> None:
    browser, _ = voter
    refusals_before = server.log_text().count("answered 503")
    # The server now holds open connections to this Redis (cache, broker)...
    assert browser.post("/2fa/", {}).status_code == 302

    # ... which a restart closes while nobody is asking.
    redis_up.stop()
    redis_up.start()

    answers = [browser.post("/2fa/", {}).status_code for _ in range(3)]
    assert answers == [302, 302, 302]
    assert server.log_text().count("answered 503") == refusals_before


def test_a_websocket_during_a_redis_outage_is_refused_with_try_again_never_a_500(
    redis_up: PrivateRedis, voter: tuple[Browser, Verification], server: stack.WebServer
) -> None:
    browser, verification = voter

    def handshake() -> tuple[int | None, int | None]:
        return websocket_handshake(server, verification, browser)

    assert handshake() == (None, None)  # Redis up: the socket opens with the current state
    redis_up.stop()
    status, code = handshake()
    # Refused before the handshake (403) or closed with "try again later" (4013): never a 500.
    assert status in (None, 403), status
    assert status == 403 or code == 4013, (status, code)
    redis_up.start()
    assert "Internal Server Error" not in server.log_text()
    assert "Live updates unavailable" in server.log_text()


class SignInPage:
    """A browser on the sign-in page: reads its CSRF token, posts without redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.trust_env = False

    def token(self) -> str:
        page = self.http.get(self.base + "/accounts/login/", timeout=30)
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]

    def post(self, username: str, password: str, token: str) -> requests.Response:
        return self.http.post(
            self.base + "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            allow_redirects=False,
            timeout=30,
        )


def test_sign_in_keeps_working_during_a_redis_outage_and_is_still_throttled(
    redis_up: PrivateRedis, transactional_db: None, server: stack.WebServer
) -> None:
    get_user_model().objects.create_user(username="outage-signin", password=PASSWORD)
    page = SignInPage(server.url)

    redis_up.stop()
    try:
        answers = [
            page.post("outage-signin", "wrong password", page.token()).status_code
            for _ in range(12)
        ]
        # Wrong passwords are refused as ever, then the (in-process) throttle closes.
        assert answers[0] == 200, answers
        assert 429 in answers, answers
        assert 503 not in answers, answers
        assert 500 not in answers, answers
    finally:
        redis_up.start()
    assert "Redis unreachable, counting in-process" in server.log_text()
    assert "Internal Server Error" not in server.log_text()


def test_a_right_password_signs_in_during_a_redis_outage(
    redis_up: PrivateRedis, transactional_db: None, server: stack.WebServer
) -> None:
    get_user_model().objects.create_user(username="outage-ok", password=PASSWORD)
    page = SignInPage(server.url)
    token = page.token()
    redis_up.stop()
    try:
        answer = page.post("outage-ok", PASSWORD, token)
    finally:
        redis_up.start()
    assert answer.status_code == 302, (answer.status_code, answer.text[:300])


# --- all of it at once: Redis restarted under load, a browser watching ------------------------

OUTAGE = 8.0  # seconds Redis stays down
LIVE_LOST = "Live updates are paused"


@dataclass
class Load:
    """Steady traffic from a few voters while Redis goes away and comes back: pages, the
    start action, in threads. Each answer is kept with the time it came."""

    base: str
    browsers: list[Browser]
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, browser: Browser) -> None:
        paths = ["/", "/2fa/", "/accounts/login/"]
        turn = 0
        while not self.stop.is_set():
            turn += 1
            try:
                if turn % 4 == 0:
                    answer = browser.post("/2fa/", {})
                    path = "POST /2fa/"
                else:
                    path = paths[turn % len(paths)]
                    answer = browser.get(path)
                self.answers.append((time.monotonic(), path, answer.status_code))
            except requests.RequestException as error:
                self.answers.append((time.monotonic(), f"{type(error).__name__}", 0))
            time.sleep(0.05)

    def __enter__(self) -> Load:
        self.threads = [
            threading.Thread(target=self.run, args=(browser,), daemon=True)
            for browser in self.browsers
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def loaded_voter(base: str, username: str) -> Browser:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    give_phone(user, unique_number(user))
    client = Client()
    client.force_login(user)
    browser = Browser(base, client.cookies[django_settings.SESSION_COOKIE_NAME].value)
    assert browser.get("/2fa/").status_code == 200  # the CSRF cookie
    return browser


@pytest.mark.timeout(180)
def test_a_redis_restart_under_load_refuses_sockets_cleanly_keeps_sign_in_and_says_503(
    redis_up: PrivateRedis,
    voter: tuple[Browser, Verification],
    server: stack.WebServer,
    chromium: str,
) -> None:
    """Issue #18's three promises in one outage: a websocket is refused cleanly and the
    open page falls back to polling and says so; sign-in keeps working; actions that
    need the broker answer 503 with a sentence. Nothing answers 500, and all recovers."""
    from playwright.sync_api import sync_playwright

    person, verification = voter
    get_user_model().objects.create_user(username="outage-load-signin", password=PASSWORD)
    sign_in = SignInPage(server.url)
    token = sign_in.token()
    load_voters = [loaded_voter(server.url, f"load-{i}") for i in range(3)]

    with sync_playwright() as playwright, Load(server.url, load_voters) as load:
        chrome = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = chrome.new_context()
        context.add_cookies(
            [
                {
                    "name": django_settings.SESSION_COOKIE_NAME,
                    "value": person.http.cookies.get(django_settings.SESSION_COOKIE_NAME),
                    "url": server.url,
                }
            ]
        )
        page = context.new_page()
        page.goto(f"{server.url}/2fa/v/{verification.pk}/")
        page.wait_for_function("document.body.classList.contains('ws-open')", timeout=15_000)
        assert page.locator("#live-notice").inner_text() == ""
        time.sleep(1.0)  # some load with Redis up

        down_at = time.monotonic()
        redis_up.stop()
        try:
            # 1. The page's socket is gone: it polls, and says so.

            page.wait_for_function(
                f"document.getElementById('live-notice').textContent.includes({LIVE_LOST!r})",
                timeout=15_000,
            )
            assert page.locator("#status-heading").inner_text()  # still the code page
            # A new handshake is refused cleanly.
            status, code = websocket_handshake(server, verification, person)
            assert status == 403 or code == 4013, (status, code)
            # 2. Sign-in works, with its throttle counted in-process.
            signed_in = sign_in.post("outage-load-signin", PASSWORD, token)
            assert signed_in.status_code == 302, (signed_in.status_code, signed_in.text[:300])
            # 3. An action that needs the broker answers 503 with the sentence.
            assert_try_again(person.post("/2fa/", {}), within=REFUSED_BOUND)
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        finally:
            redis_up.start()
        up_at = time.monotonic()

        # Back: the page is live again and says nothing; actions work.
        page.wait_for_function(
            "document.body.classList.contains('ws-open') && "
            "document.getElementById('live-notice').textContent === ''",
            timeout=20_000,
        )
        live_again = time.monotonic() - up_at
        started = person.post("/2fa/", {})
        assert started.status_code == 302, (started.status_code, started.text[:300])
        time.sleep(1.0)
        chrome.close()

    statuses = [status for _, _, status in load.answers]
    assert 500 not in statuses, load.answers
    assert 0 not in statuses, [a for a in load.answers if a[2] == 0]
    during = [(path, status) for at, path, status in load.answers if down_at < at < up_at]
    # Pages answered during the outage; the start action was refused with 503 (or by its
    # own rate limit, 429), never with an error.
    assert any(path == "/" and status == 200 for path, status in during), during
    assert ("POST /2fa/", 503) in during, during
    assert {status for _, status in during} <= {200, 302, 429, 503}, during
    after = [status for at, _, status in load.answers if at > up_at + 1.0]
    assert after, "no load after the restart"
    assert 503 not in after, load.answers
    assert live_again < 20
    log = server.log_text()
    assert "Internal Server Error" not in log
    assert "Traceback" not in log


def websocket_handshake(
    server: stack.WebServer, verification: Verification, person: Browser
) -> tuple[int | None, int | None]:
    """(HTTP status of a refused handshake, close code of an accepted then closed socket)."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    url = server.url.replace("http://", "ws://") + f"/ws/2fa/{verification.pk}/"
    cookie = f"sessionid={person.http.cookies.get(django_settings.SESSION_COOKIE_NAME)}"
    try:
        with connect(
            url,
            origin=server.url,
            additional_headers={"Cookie": cookie},
            proxy=None,
            open_timeout=10,
        ) as socket:
            try:
                socket.recv(timeout=10)
                return None, None
            except ConnectionClosed as closed:
                return None, closed.rcvd.code if closed.rcvd else None
    except InvalidStatus as refused:
        return refused.response.status_code, None


@pytest.fixture(scope="module")
def chromium() -> str:
    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.fail("/usr/bin/chromium is missing: run `make services` (apt-get install chromium)")
    return "/usr/bin/chromium"
