"""Web ×2 behind nginx, two workers and beat: docker-compose.yml's topology on one machine.

nginx (Debian's, `make services` installs it) runs deploy/nginx/'s configuration: the
same nginx.conf, http.conf, site.conf, locations.conf and proxy_headers.conf, with two
changes made here and checked to apply exactly once: the upstream lists two local web
processes (with upstream.conf's own server parameters) instead of Docker DNS, and the
server listens on a free loopback port instead of 80. Behind it run two web processes
(tests/stack.py's web command, as compose's `web` replicas), two Celery workers and beat.

- A number posted through web #1 shows "sent" on a socket held by web #2, and a vote on
  #1 updates the results on #2: the replicas share nothing but Redis and PostgreSQL.
- A rolling restart of the web processes (SIGTERM to each gunicorn in turn, as `docker
  compose` stops a container) under steady load through nginx answers no request with an
  error (nginx passes a refused connection to the other replica) and the sockets it
  closes are back within 5 s.
- A rolling restart of the workers under new verifications loses none and sends no code
  twice (warm shutdown, acks_late, and the reconciler behind them).
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from polls.models import Question
from tests import stack
from tests.conftest import PASSWORD
from tests.integration.conftest import requires_postgres
from tests.two_factor.verifications import mark_session_verified
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.models import Status, Verification, VerificationEvent

pytestmark = [pytest.mark.integration, requires_postgres, pytest.mark.timeout(300)]

DEPLOY = stack.BASE_DIR / "deploy" / "nginx"
PREFIX = f"{stack.SESSION_PREFIX}-proxy"
CHILD_SETTINGS = {
    # One proxy in front, as compose's web has it.
    "TRUSTED_PROXY_COUNT": "1",
    # One uvicorn worker per web process: two processes, as `--scale web=2`.
    "WEB_CONCURRENCY": "1",
    # A code takes 2 s to "send": a socket opened right after the number is posted sees
    # the change arrive, and a worker told to stop has sends in flight.
    "TWO_FACTOR_SANDBOX_LATENCY": "2",
    "TWO_FACTOR_RESEND_COOLDOWN": "0",
    "TWO_FACTOR_RECONCILE_INTERVAL": "2",
    "CELERY_WORKER_CONCURRENCY": "8",
}
SOCKETS_BACK_WITHIN = 5.0
# How long nginx skips a replica that failed (upstream.conf): a rolling restart stops the
# next replica only once nginx takes the previous one again, as the runbook's loop does
# (it waits for Docker's health check, which comes later than that).
FAIL_TIMEOUT = float(
    re.search(r"fail_timeout=(\d+)s", (DEPLOY / "upstream.conf").read_text()).group(1)  # type: ignore[union-attr]
)


# --- nginx with deploy/nginx's configuration -----------------------------------------------


def nginx_config(
    directory: Path, *, port: int, web_ports: list[int], tls_port: int | None = None
) -> Path:
    """deploy/nginx's configuration for local processes; returns the main file. With
    ``tls_port``, tls.conf replaces site.conf (certificates in ``directory/certs``)."""
    (directory / "pollstr").symlink_to(DEPLOY)

    upstream = (DEPLOY / "upstream.conf").read_text()
    docker_server = re.search(r"^(\s*)server web:8000 resolve (.*);$", upstream, re.MULTILINE)
    assert docker_server, "deploy/nginx/upstream.conf no longer lists web:8000"
    indent, parameters = docker_server.groups()
    local = "\n".join(f"{indent}server 127.0.0.1:{p} {parameters};" for p in web_ports)
    upstream = upstream.replace(docker_server.group(0), local)
    # Docker's DNS server is for `web:8000` only; the local upstream has addresses.
    upstream, resolvers = re.subn(r"^resolver.*\n", "", upstream, flags=re.MULTILINE)
    assert resolvers == 2
    (directory / "upstream.conf").write_text(upstream)

    site = (DEPLOY / ("site.conf" if tls_port is None else "tls.conf")).read_text()
    local_site = {"listen 80 default_server;": f"listen 127.0.0.1:{port} default_server;"}
    if tls_port is not None:
        local_site["listen 443 ssl default_server;"] = (
            f"listen 127.0.0.1:{tls_port} ssl default_server;"
        )
        local_site["/etc/nginx/certs/fullchain.pem"] = str(directory / "certs/fullchain.pem")
        local_site["/etc/nginx/certs/privkey.pem"] = str(directory / "certs/privkey.pem")
    for old, new in local_site.items():
        assert site.count(old) == 1, old
        site = site.replace(old, new)
    (directory / "site.conf").write_text(site)

    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = (DEPLOY / "nginx.conf").read_text()
    for old, new in {
        "pid /tmp/nginx.pid;": f"pid {directory / 'nginx.pid'};",
        "worker_processes auto;": "worker_processes 1;",
        "include pollstr/upstream.conf;": "include upstream.conf;",
        "include pollstr/site.conf;": "include site.conf;",
        "http {\n": f"http {{\n{temp}\n",
    }.items():
        assert main.count(old) == 1, old
        main = main.replace(old, new)
    (directory / "nginx.conf").write_text(main)
    return directory / "nginx.conf"


@dataclass
class ProxiedStack:
    env: dict[str, str]
    directory: Path
    web_ports: list[int]
    proxy_url: str = ""
    nginx: stack.ChildProcess | None = None
    webs: list[stack.WebServer] = field(default_factory=list)
    workers: list[stack.Worker] = field(default_factory=list)
    _running: dict[str, ExitStack] = field(default_factory=dict)

    def start_web(self, index: int) -> None:
        running = ExitStack()
        server = running.enter_context(stack.web_server(self.env, port=self.web_ports[index]))
        self._running[f"web{index}"] = running
        if index < len(self.webs):
            self.webs[index] = server
        else:
            self.webs.append(server)

    def start_worker(self, index: int) -> None:
        running = ExitStack()
        worker = running.enter_context(stack.celery_worker(self.env, name=f"proxy{index}"))
        self._running[f"worker{index}"] = running
        if index < len(self.workers):
            self.workers[index] = worker
        else:
            self.workers.append(worker)

    def stop_gracefully(self, key: str, process: stack.ChildProcess, *, within: float) -> None:
        """SIGTERM to the main process only (what `docker compose stop` sends to PID 1),
        then wait for it to finish what it was doing."""
        process.popen.send_signal(signal.SIGTERM)
        try:
            process.popen.wait(within)
        except subprocess.TimeoutExpired:
            raise process.fail(f"still running {within:.0f} s after SIGTERM") from None
        self._running.pop(key).close()

    def restart_web(self, index: int) -> None:
        self.stop_gracefully(f"web{index}", self.webs[index].process, within=30)
        self.start_web(index)

    def restart_worker(self, index: int) -> None:
        self.stop_gracefully(f"worker{index}", self.workers[index].process, within=60)
        self.start_worker(index)

    def close(self) -> None:
        for running in reversed(list(self._running.values())):
            running.close()
        self._running.clear()


@pytest.fixture(scope="module")
def proxied(child_env: Callable[..., dict[str, str]]) -> Iterator[ProxiedStack]:
    if shutil.which("nginx") is None:
        pytest.skip("Debian's nginx is not installed: run `make services` (apt-get install nginx)")
    env = child_env(PREFIX, **CHILD_SETTINGS)
    with ExitStack() as cleanup:
        directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="nginx-")))
        directory.chmod(0o755)  # nginx's workers (nobody, under root) reach their temp paths
        proxied = ProxiedStack(env, directory, [stack.free_port(), stack.free_port()])
        cleanup.callback(proxied.close)
        for index in range(2):
            proxied.start_web(index)
            proxied.start_worker(index)
        cleanup.enter_context(stack.celery_beat(env))

        port = stack.free_port()
        main = nginx_config(directory, port=port, web_ports=proxied.web_ports)
        argv = ["nginx", "-p", f"{directory}/", "-c", str(main), "-e", "stderr"]
        checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        nginx = stack.ChildProcess("nginx", [*argv, "-g", "daemon off;"], env)
        cleanup.enter_context(stack._running(nginx))
        proxied.proxy_url = f"http://127.0.0.1:{port}"
        nginx.wait_until(lambda: stack.http_answers(proxied.proxy_url, "/healthz"), what="nginx")
        proxied.nginx = nginx
        yield proxied


@pytest.fixture
def same_namespace(
    proxied: ProxiedStack, use_redis_namespace: Callable[[str], None], transactional_db: None
) -> None:
    """This process reads the sandbox's inbox and the rows the children write."""
    use_redis_namespace(PREFIX)


# --- people -------------------------------------------------------------------------------------


class Browser:
    """A logged-in person: session and CSRF cookies, no redirects followed, no proxy."""

    def __init__(self, session_key: str) -> None:
        self.session_key = session_key
        self.csrf = secrets.token_hex(16)  # a 32-character CSRF secret, as Django's cookie
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.cookies.set(django_settings.SESSION_COOKIE_NAME, session_key)
        self.http.cookies.set(django_settings.CSRF_COOKIE_NAME, self.csrf)

    def get(self, url: str) -> requests.Response:
        return self.http.get(url, allow_redirects=False, timeout=30)

    def post(self, url: str, data: dict[str, Any]) -> requests.Response:
        headers = {"X-CSRFToken": self.csrf}
        return self.http.post(url, data=data, headers=headers, allow_redirects=False, timeout=30)

    def socket(self, base_url: str, path: str) -> ClientConnection:
        return connect(
            base_url.replace("http://", "ws://") + path,
            origin=base_url,
            additional_headers={"Cookie": f"sessionid={self.session_key}"},
            proxy=None,
            open_timeout=5,
        )


def person(username: str, *, verified: bool = False) -> Browser:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    client = Client()
    client.force_login(user)
    if verified:
        mark_session_verified(client, user)
    return Browser(client.cookies[django_settings.SESSION_COOKIE_NAME].value)


def number_posted(browser: Browser, base_url: str, number: str) -> str:
    """POST the number as the /2fa/ form does; the new verification's id."""
    answer = browser.post(base_url + "/2fa/", {"number": number})
    assert answer.status_code == 302, (answer.status_code, answer.text[:300])
    match = re.fullmatch(r"/2fa/v/([0-9a-f-]+)/", answer.headers["Location"])
    assert match, answer.headers["Location"]
    return match.group(1)


def frame_with(socket: ClientConnection, text: str, *, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        frame = str(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if text in frame:
            return frame


# --- one site over two processes ----------------------------------------------------------------


@pytest.mark.usefixtures("same_namespace")
def test_a_number_posted_through_one_web_process_shows_sent_on_a_socket_of_the_other(
    proxied: ProxiedStack,
) -> None:
    web1, web2 = proxied.webs
    voter = person("crossing")

    verification = number_posted(voter, web1.url, "+447911290001")
    with voter.socket(web2.url, f"/ws/2fa/{verification}/") as socket:
        first = str(socket.recv(timeout=5))
        assert 'data-status="sent"' not in first, "sent before the socket opened: too fast to tell"
        frame_with(socket, 'data-status="sent"', within=20)

    assert Verification.objects.get(pk=verification).status == Status.SENT


@pytest.mark.usefixtures("same_namespace")
def test_a_vote_through_one_web_process_updates_results_on_a_socket_of_the_other(
    proxied: ProxiedStack, question: Question
) -> None:
    web1, web2 = proxied.webs
    watcher, voter = person("watcher", verified=True), person("voter", verified=True)

    with watcher.socket(web2.url, f"/ws/polls/{question.pk}/results/") as socket:
        assert 'id="total-votes">0<' in str(socket.recv(timeout=5))
        voted = voter.post(
            f"{web1.url}/polls/{question.pk}/vote/", {"choice": question.choices.first().pk}
        )
        assert voted.status_code == 302, (voted.status_code, voted.text[:300])
        frame_with(socket, 'id="total-votes">1<', within=10)


# --- rolling restarts ---------------------------------------------------------------------------


@dataclass
class Answer:
    method: str
    path: str
    status: int | None
    error: str = ""


def steady_load(
    browser: Browser, base_url: str, question: Question, stop: threading.Event
) -> list[Answer]:
    """Pages, results and a (repeated) vote through the proxy, about 20 a second."""
    choice = question.choices.first()
    assert choice is not None
    requests_made: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/", None),
        ("GET", f"/polls/{question.pk}/results/", None),
        ("POST", f"/polls/{question.pk}/vote/", {"choice": choice.pk}),
    ]
    answers: list[Answer] = []
    while not stop.is_set():
        for method, path, data in requests_made:
            try:
                if method == "GET":
                    response = browser.get(base_url + path)
                else:
                    response = browser.post(base_url + path, data or {})
                answers.append(Answer(method, path, response.status_code))
            except requests.RequestException as error:
                answers.append(Answer(method, path, None, type(error).__name__))
            time.sleep(0.05)
    return answers


@dataclass
class HeldSocket:
    """A results page's socket through the proxy, reconnected as the page does."""

    browser: Browser
    url: str
    path: str
    closes: int = 0
    gaps: list[float] = field(default_factory=list)
    failure: str = ""

    def hold(self, stop: threading.Event) -> None:
        closed_at: float | None = None
        while not stop.is_set():
            try:
                with self.browser.socket(self.url, self.path) as socket:
                    socket.recv(timeout=5)  # the page's state, sent on connect
                    if closed_at is not None:
                        self.gaps.append(time.monotonic() - closed_at)
                        closed_at = None
                    while not stop.is_set():
                        with suppress(TimeoutError):
                            socket.recv(timeout=0.5)
            except (ConnectionClosed, InvalidStatus, OSError, TimeoutError) as error:
                if closed_at is None:
                    self.closes += 1
                    closed_at = time.monotonic()
                elif time.monotonic() - closed_at > 30:
                    self.failure = f"not back after 30 s: {error!r}"
                    return
                time.sleep(0.1)


@pytest.mark.usefixtures("same_namespace")
def test_a_rolling_restart_of_the_web_answers_every_request_and_sockets_return(
    proxied: ProxiedStack, question: Question
) -> None:
    voter = person("steady", verified=True)
    first = voter.post(
        f"{proxied.proxy_url}/polls/{question.pk}/vote/", {"choice": question.choices.first().pk}
    )
    assert first.status_code == 302
    watchers = [person(f"watcher{n}", verified=True) for n in range(4)]
    sockets = [
        HeldSocket(watcher, proxied.proxy_url, f"/ws/polls/{question.pk}/results/")
        for watcher in watchers
    ]
    stop = threading.Event()
    answers: list[Answer] = []
    threads = [threading.Thread(target=held.hold, args=(stop,)) for held in sockets]
    threads.append(
        threading.Thread(
            target=lambda: answers.extend(steady_load(voter, proxied.proxy_url, question, stop))
        )
    )
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        for index in range(2):
            proxied.restart_web(index)
            time.sleep(FAIL_TIMEOUT + 1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(40)

    failed = [answer for answer in answers if answer.status is None or answer.status >= 500]
    assert not failed, f"{len(failed)} of {len(answers)} failed: {failed[:5]}\n" + (
        proxied.nginx.log_tail() if proxied.nginx else ""
    )
    assert len(answers) > 60, "the load was not steady"
    refused = [answer for answer in answers if answer.status is not None and answer.status >= 400]
    assert not refused, refused[:5]
    # Both replicas were restarted, so every socket lost its replica at least once.
    for held in sockets:
        assert not held.failure, held.failure
        assert held.closes >= 1
        assert len(held.gaps) == held.closes, held
        assert max(held.gaps) < SOCKETS_BACK_WITHIN, held.gaps
    assert proxied.nginx is not None
    retried = [line for line in proxied.nginx.log_text().splitlines() if ", 127.0.0.1:" in line]
    assert retried, "nginx never passed a request on to the other replica"


@pytest.mark.usefixtures("same_namespace")
def test_a_rolling_restart_of_the_workers_loses_no_verification_and_sends_no_duplicate(
    proxied: ProxiedStack,
) -> None:
    numbers = iter(f"+44791120{n:04d}" for n in range(1000))
    started: dict[str, str] = {}

    def start_some(count: int) -> None:
        for _ in range(count):
            number = next(numbers)
            browser = person(f"voter-{number[-4:]}")
            started[number_posted(browser, proxied.proxy_url, number)] = number

    for index in range(2):
        start_some(6)
        # Sends are in flight (2 s each): the warm shutdown finishes or hands them back.
        proxied.restart_worker(index)
    start_some(4)

    def all_sent() -> bool:
        statuses = set(Verification.objects.filter(pk__in=started).values_list("status", flat=True))
        return statuses == {Status.SENT}

    stack.wait_for(all_sent, what="every verification to be sent", timeout=90)
    for verification, number in started.items():
        assert len(sandbox_messages_for(number)) == 1, (number, trail(verification))
        sends = VerificationEvent.objects.filter(verification_id=verification, to_status="sent")
        assert sends.count() == 1, trail(verification)


def trail(verification: str) -> list[tuple[str, str, str]]:
    events = VerificationEvent.objects.filter(verification_id=verification)
    return [(event.from_status, event.to_status, event.reason) for event in events]


def test_the_tls_configuration_serves_https_and_sends_plain_http_there(tmp_path: Path) -> None:
    if shutil.which("nginx") is None:
        pytest.skip("Debian's nginx is not installed: run `make services` (apt-get install nginx)")
    trustme = pytest.importorskip("trustme", reason="trustme is in requirements-dev")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    (tmp_path / "certs").mkdir()
    certificate.private_key_pem.write_to_path(str(tmp_path / "certs/privkey.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "certs/fullchain.pem"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tmp_path.chmod(0o755)
    port, tls_port = stack.free_port(), stack.free_port()
    # No web process behind it: the proxy itself is what is checked.
    main = nginx_config(tmp_path, port=port, web_ports=[stack.free_port()], tls_port=tls_port)
    argv = ["nginx", "-p", f"{tmp_path}/", "-c", str(main), "-e", "stderr", "-g", "daemon off;"]
    nginx = stack.ChildProcess("nginx-tls", argv, dict(stack.os.environ))
    http = requests.Session()
    http.trust_env = False  # loopback only: no proxy from the environment
    with stack._running(nginx):
        nginx.wait_until(lambda: _listening(port), what="nginx")
        plain = http.get(f"http://127.0.0.1:{port}/polls/", allow_redirects=False, timeout=5)
        secure = http.get(f"https://127.0.0.1:{tls_port}/", verify=str(tmp_path / "ca.pem"))

    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://127.0.0.1/polls/"
    assert secure.status_code == 502  # TLS done; no replica to pass the request to
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"


def _listening(port: int) -> bool:
    with stack.socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
