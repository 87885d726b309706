"""A local Vonage Verify v2 server over real HTTPS, for driving the official SDK in tests.

Verify's rules come from :mod:`two_factor.gateways.sandbox.emulator` (the same emulator
the sandbox gateway runs on); this module only adds HTTP, TLS (a throwaway CA from
``trustme``), authentication, and scripting of failures the real API can produce.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import jwt
import pytest
import trustme

from two_factor.gateways.sandbox.emulator import RuleViolation, VerifyEmulator
from two_factor.gateways.sandbox.store import MemoryStore
from two_factor.gateways.vonage.callbacks import callback_post

FAKE_API_KEY = "fake-key"
FAKE_API_SECRET = "fake-secret"

Operation = Literal["start", "check", "next_workflow", "cancel", "silent_auth"]
OPERATIONS: tuple[Operation, ...] = ("start", "check", "next_workflow", "cancel", "silent_auth")

_CHECK_PATH = re.compile(r"^/v2/verify/([^/]+)$")
_NEXT_PATH = re.compile(r"^/v2/verify/([^/]+)/next_workflow$")
# The check URL a silent-auth start answers with; the handset opens it (no credentials).
_SILENT_PATH = re.compile(r"^/v2/verify/([^/]+)/silent-auth/redirect$")

# What Verify answers for a status when a test scripts one without a body.
_DEFAULT_PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("Invalid Code", "The code you provided does not match the expected value."),
    401: ("Unauthorized", "You did not provide correct credentials."),
    402: ("Low balance", "This request could not be performed due to your account balance."),
    403: ("Forbidden", "Your account does not have permission to perform this action."),
    404: ("Not Found", "Request was not found or it has been verified already."),
    409: ("Conflict", "Concurrent verifications to the same number are not allowed."),
    410: (
        "Invalid Code",
        "An incorrect code has been provided too many times. Workflow terminated.",
    ),
    422: ("Invalid params", "The value of one or more parameters is invalid."),
    429: ("Rate Limit Hit", "Please wait, then retry your request"),
    500: ("Internal Error", "Something went wrong."),
    502: ("Bad Gateway", "The upstream service did not answer."),
    503: ("Service Unavailable", "The service is temporarily unavailable."),
    504: ("Gateway Timeout", "The upstream service timed out."),
}


def problem_body(status: int) -> dict[str, Any]:
    title, detail = _DEFAULT_PROBLEMS.get(status, (HTTPStatus(status).phrase, ""))
    return {
        "type": f"https://developer.vonage.com/api-errors#{status}",
        "title": title,
        "detail": detail,
        "instance": "00000000-0000-0000-0000-000000000000",
    }


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    operation: Operation | None


@dataclass(frozen=True)
class _Outcome:
    kind: Literal["fail", "drop"]
    status: int = 500
    body: Any = None
    process: bool = True


class FakeVerifyServer:
    """``with FakeVerifyServer() as fake:`` then point the gateway at ``fake.host`` with
    ``REQUESTS_CA_BUNDLE=fake.ca_bundle_path`` (the ``fake_verify`` fixture does both).

    - ``messages``: every code "sent" (dicts with request_id, to, channel, from, code, at;
      a silent-auth step sends none).
    - ``callbacks``: the event/summary bodies Verify would post; with ``callback_url``
      and ``signature_secret`` they are also POSTed there, signed as Vonage signs them.
    - ``requests_log``: every request received, scripted ones included.
    - ``advance(seconds)``: move the server's clock, e.g. past a channel timeout.
    - ``latency``: seconds every API call waits before it is handled (default none).
    - ``silent_auth``: what the mobile network says when a handset opens a silent-auth
      check URL: "complete" (redirect to the request's redirect_url with request_id and
      code; in the fragment with ``silent_auth_in_fragment``) or "fail" (the step fails,
      the next one starts).
    """

    def __init__(
        self,
        *,
        api_key: str = FAKE_API_KEY,
        api_secret: str = FAKE_API_SECRET,
        jwt_public_key: str | bytes | None = None,
        max_wrong_codes: int = 3,
        invalid_numbers: Iterable[str] = (),
        callback_url: str | None = None,
        signature_secret: str | None = None,
        latency: float = 0.0,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be zero or more seconds, got {latency!r}")
        self.api_key = api_key
        self.api_secret = api_secret
        # Without a public key any well-formed JWT is accepted.
        self.jwt_public_key = jwt_public_key
        self.max_wrong_codes = max_wrong_codes
        self.invalid_numbers = set(invalid_numbers)
        self.callback_url = callback_url
        self.signature_secret = signature_secret
        # Seconds every API call waits before it is handled, like a distant provider
        # (the benchmarks run with 0.3); scripted delays add to it.
        self.latency = latency
        self.handshakes = 0
        # The account's SMS templates by template_id (text with ${code}, ${brand}).
        self.templates: dict[str, str] = {}
        self.silent_auth: Literal["complete", "fail"] = "complete"
        self.silent_auth_in_fragment = False
        self._offset = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ca = trustme.CA()
        self._tmpdir: Path | None = None
        self._httpd: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeVerifyServer:
        self._tmpdir = Path(tempfile.mkdtemp(prefix="fake-verify-"))
        self._ca.cert_pem.write_to_path(str(self._tmpdir / "ca.pem"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        self._httpd = _TLSServer(("127.0.0.1", 0), context, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> FakeVerifyServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every request, message, log entry and script."""
        with self._lock:
            self.messages: list[dict[str, Any]] = []
            self.callbacks: list[dict[str, Any]] = []
            self.requests_log: list[LoggedRequest] = []
            self._outcomes: dict[str, list[_Outcome]] = {op: [] for op in OPERATIONS}
            self._delays: dict[str, list[float]] = {op: [] for op in OPERATIONS}
            self.emulator = VerifyEmulator(
                MemoryStore(),
                clock=self.now,
                max_wrong_codes=self.max_wrong_codes,
                number_is_valid=lambda to: to not in self.invalid_numbers,
                on_message=self.messages.append,
                on_callback=self._callback,
                templates=self.templates,
                check_url_for=lambda rid: (
                    f"https://{self.host}/v2/verify/{rid}/silent-auth/redirect"
                ),
            )

    @property
    def host(self) -> str:
        """What to pass as the SDK's ``api_host``."""
        assert self._httpd is not None, "start the server first"
        return f"localhost:{self._httpd.server_address[1]}"

    @property
    def ca_bundle_path(self) -> str:
        assert self._tmpdir is not None, "start the server first"
        return str(self._tmpdir / "ca.pem")

    # --- time and inspection ----------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def code_for(self, request_id: str) -> str:
        """The code most recently sent for ``request_id``."""
        codes = [m["code"] for m in self.messages if m["request_id"] == request_id]
        assert codes, f"no message was sent for {request_id}"
        return codes[-1]

    def requests_for(self, operation: Operation) -> list[LoggedRequest]:
        return [r for r in self.requests_log if r.operation == operation]

    def _callback(self, payload: dict[str, Any]) -> None:
        self.callbacks.append(payload)
        if self.callback_url and self.signature_secret:
            callback_post(self.callback_url, payload, self.signature_secret)

    # --- scripting --------------------------------------------------------------------

    def fail_next(
        self, operation: Operation, status: int = 500, times: int = 1, body: Any = None
    ) -> None:
        """Answer the next ``times`` calls with ``status`` (and Verify's usual body for
        it unless ``body`` is given) without processing them."""
        self._script(operation, _Outcome("fail", status=status, body=body), times)

    def drop_next(self, operation: Operation, times: int = 1, *, process: bool = True) -> None:
        """Close the connection without a response. With ``process`` the request takes
        effect first, like a response lost on the way back."""
        self._script(operation, _Outcome("drop", process=process), times)

    def delay_next(self, operation: Operation, seconds: float, times: int = 1) -> None:
        """Sleep before handling the next ``times`` calls (the request still takes
        effect afterwards, as a slow provider's would)."""
        _check_operation(operation)
        with self._lock:
            self._delays[operation].extend([seconds] * times)

    def _script(self, operation: Operation, outcome: _Outcome, times: int) -> None:
        _check_operation(operation)
        with self._lock:
            self._outcomes[operation].extend([outcome] * times)

    def _take_delay(self, operation: Operation) -> float:
        with self._lock:
            queue = self._delays[operation]
            return queue.pop(0) if queue else 0.0

    def _take_outcome(self, operation: Operation) -> _Outcome | None:
        with self._lock:
            queue = self._outcomes[operation]
            return queue.pop(0) if queue else None

    # --- the API ----------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        scheme, _, credentials = (header or "").partition(" ")
        if scheme == "Basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            return decoded == f"{self.api_key}:{self.api_secret}"
        if scheme == "Bearer":
            try:
                if self.jwt_public_key is None:
                    jwt.decode(credentials, options={"verify_signature": False})
                else:
                    claims = jwt.decode(credentials, self.jwt_public_key, algorithms=["RS256"])
                    return "application_id" in claims
            except jwt.PyJWTError:
                return False
            return True
        return False

    def dispatch(self, operation: Operation, request_id: str | None, body: Any) -> tuple[int, Any]:
        """Apply one API call to the emulator: (status, JSON body or None)."""
        try:
            if operation == "start":
                if not isinstance(body, dict):
                    return 400, problem_body(400) | {
                        "title": "Bad Request",
                        "detail": "The request body is not a JSON object.",
                    }
                request_id = self.emulator.start_request(body)
                check_url = self.emulator.check_url(request_id)
                started = {"request_id": request_id}
                return 202, started | ({"check_url": check_url} if check_url else {})
            assert request_id is not None
            if operation == "silent_auth":
                if self.silent_auth == "fail":
                    self.emulator.silent_auth_fail(request_id)
                    return 403, problem_body(403) | {"detail": "The network could not verify."}
                self.emulator.silent_auth_in_fragment = self.silent_auth_in_fragment
                return 302, {"location": self.emulator.silent_auth_complete(request_id)}
            if operation == "check":
                code = body.get("code") if isinstance(body, dict) else None
                if not isinstance(code, str) or not code:
                    return 422, problem_body(422) | {
                        "invalid_parameters": [{"name": "code", "reason": "is required"}]
                    }
                self.emulator.check(request_id, code)
                return 200, {"request_id": request_id, "status": "completed"}
            if operation == "next_workflow":
                self.emulator.next_workflow(request_id)
                return 200, None
            self.emulator.cancel(request_id)
            return 204, None
        except RuleViolation as violation:
            return violation.status, violation.problem()


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], context: ssl.SSLContext, fake: FakeVerifyServer
    ) -> None:
        self.context = context
        self.fake = fake
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        # The handshake runs in the handler's thread, so a bad client can't stall accept().
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (wrong-CA tests) and clients that gave up (timeout tests).
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TLSServer

    def setup(self) -> None:
        self.request.settimeout(10)
        self.request.do_handshake()
        with self.server.fake._lock:
            self.server.fake.handshakes += 1  # one per TCP+TLS connection: keep-alive shows
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_GET(self) -> None:
        self._handle("GET")

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        operation, request_id = _route(method, self.path)
        with fake._lock:
            fake.requests_log.append(
                LoggedRequest(method, self.path, dict(self.headers.items()), body, operation)
            )
        if operation is None:
            return self._send(404, problem_body(404))
        if operation != "silent_auth" and not fake.authorized(self.headers.get("Authorization")):
            return self._send(401, problem_body(401))
        delay = fake.latency + fake._take_delay(operation)
        if delay and fake._stopping.wait(delay):
            return  # the server is stopping
        outcome = fake._take_outcome(operation)
        if outcome is not None and outcome.kind == "fail":
            status = outcome.status
            return self._send(
                status, outcome.body if outcome.body is not None else problem_body(status)
            )
        if outcome is not None and not outcome.process:
            self.close_connection = True
            return
        status, payload = fake.dispatch(operation, request_id, body)
        if outcome is not None:  # dropped after taking effect
            self.close_connection = True
            return
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        if status == 302:
            self.send_response(302)
            self.send_header("Location", payload["location"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if data:
                kind = "application/problem+json" if status >= 400 else "application/json"
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up waiting


def _route(method: str, path: str) -> tuple[Operation | None, str | None]:
    path = path.split("?", 1)[0]
    if method == "POST" and path == "/v2/verify":
        return "start", None
    if method == "POST" and (match := _NEXT_PATH.match(path)):
        return "next_workflow", match.group(1)
    if method == "GET" and (match := _SILENT_PATH.match(path)):
        return "silent_auth", match.group(1)
    if match := _CHECK_PATH.match(path):
        if method == "POST":
            return "check", match.group(1)
        if method == "DELETE":
            return "cancel", match.group(1)
    return None, None


def _check_operation(operation: str) -> None:
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")


@pytest.fixture
def fake_verify(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVerifyServer]:
    """A running FakeVerifyServer the SDK trusts (REQUESTS_CA_BUNDLE) and reaches
    directly (loopback kept out of any proxy)."""
    with FakeVerifyServer() as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle_path)
        for name in ("NO_PROXY", "no_proxy"):
            existing = os.environ.get(name, "")
            monkeypatch.setenv(name, ",".join(filter(None, [existing, "localhost,127.0.0.1"])))
        yield server
