"""Property-based fuzz of every input the site accepts: whatever arrives, never a 5xx.

Hypothesis draws hostile values (control characters, NUL, huge strings, non-ASCII
digits, invalid UTF-8, repeated keys, garbage bodies and content types, hostile `next`
URLs, out-of-range ids) and sends them through Django's test client with
``raise_request_exception=False``, so a crash is observed as the 500 a browser would
get; the assertion prints the server's traceback. Websocket frames go through
channels' communicator against the real ASGI application, webhook bodies through the
real signature check.

Each test is sized so the file runs in about a minute; ``FUZZ_SCALE=10`` multiplies the
examples for a longer hunt. Inputs that once broke something stay as ``@example``s.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import hypothesis
import jwt
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpResponse
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RoutePattern
from django.utils import timezone
from hypothesis import HealthCheck, Phase, assume, example, given
from hypothesis import strategies as st

from polls.models import Question
from tests.conftest import PASSWORD
from tests.phone_numbers import give_phone, unique_number
from tests.two_factor.verifications import create_verification, mark_session_verified
from two_factor import services
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.gateways.vonage.callbacks import callback_sign
from two_factor.models import PhoneNumber, Status, Verification, session_key_hash

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
SECRET = "fuzz-signature-secret-of-a-decent-length"
FORM = "application/x-www-form-urlencoded"


def fuzz(examples: int) -> hypothesis.settings:
    """Bounded runs: no per-example deadline (the database is shared and slow at times),
    no example database on disk, health checks that don't apply to a web fuzz off."""
    return hypothesis.settings(
        max_examples=max(1, round(examples * SCALE)),
        deadline=None,
        database=None,
        print_blob=True,
        # No "explain" phase: re-running a failure to annotate lines costs more than it says.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# --- what a hostile client sends ----------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\r\n",
    "\ufeff",
    "\u202e",
    "١٢٣٤٥٦",  # Arabic-Indic digits
    "１２３４５６",  # full-width digits
    "𝟏𝟐𝟑𝟒𝟓𝟔",
    "+447911123456",
    "+44 7911 123456",
    "+٤٤٧٩١١١٢٣٤٥٦",
    "+447911123456\x00",
    "-1",
    "1e999",
    "NaN",
    "0x10",
    "1_000",
    "[]",
    "null",
    "<script>alert(1)</script>",
    "'; DROP TABLE polls_vote; --",
    "%00",
    "%s%n",
    "{{ request }}",
]
HOSTILE_NEXT = [
    "foo",
    "polls:index",
    "two_factor:start",
    "//evil.example",
    "///evil.example",
    "http://evil.example",
    "https://evil.example/",
    "http:evil.example",
    "https:/evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "\\\\evil.example",
    "/\\evil.example",
    "\\/evil.example",
    " //evil.example",
    "\t//evil.example",
    "https://testserver@evil.example/",
    "http://[",
    "//[::1",
    "/%2F/evil.example",
    "/\r\nLocation: http://evil.example",
    "/polls/\x00",
    "/ünïcödé/",
    "http://évil.example/",
    "/" + "a" * 10_000,
    "?next=//evil.example",
    "#",
    ".",
    "",
]
HOSTILE_REFERERS = [*HOSTILE_NEXT, "http://testserver/polls/1/", "http://[::1", "http://[abc"]
RAW_QUERY_PIECES = ["%", "%zz", "%00", "%0d%0a", "%ED%A0%80", "%FF%FE", "&&", ";", "=", "==", "+"]
CONTENT_TYPES = [
    FORM,
    f"{FORM}; charset=utf-16",
    f"{FORM}; charset=bogus",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    f"multipart/form-data; boundary={BOUNDARY}",
    "multipart/form-data; boundary=" + "b" * 2000,
    "application/json",
    "text/plain",
    "",
]

CONTROL_CHARS = st.characters(max_codepoint=0x1F) | st.sampled_from(
    ["\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\u200b", "\u202e"]
)
NON_ASCII_DIGITS = st.characters(categories=["Nd"], exclude_characters="0123456789")
HUGE_TEXT = st.builds(
    lambda piece, times: (piece * times)[:10_000],
    st.text(min_size=1, max_size=5),
    st.integers(1_000, 10_000),
)
TEXT = st.one_of(
    st.text(),
    st.text(CONTROL_CHARS),
    st.text(NON_ASCII_DIGITS | st.sampled_from("+ -")),
    st.from_regex(r"\+?[0-9 ()./-]{0,20}", fullmatch=True),
    HUGE_TEXT,
    st.sampled_from(HOSTILE_TEXT),
)
# A list sends its key repeated (or, empty, not at all): the wrong type for a one-value field.
VALUE = TEXT | st.lists(TEXT, max_size=3)
NEXT = st.sampled_from(HOSTILE_NEXT) | TEXT
# Any bytes percent-encoded: invalid UTF-8 and encoded surrogates (ED A0 80) included.
RAW_VALUE = st.binary(max_size=40).map(lambda raw: quote(raw, safe=""))


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str


def form_bodies(fields: Sequence[str]) -> st.SearchStrategy[Body]:
    """A form post with `fields` holding anything, in every encoding a client can pick."""
    keys = st.sampled_from(list(fields)) if fields else TEXT
    data = st.dictionaries(keys | TEXT, VALUE, max_size=len(fields) + 2)
    return st.one_of(
        data.map(lambda d: Body(encode_multipart(BOUNDARY, d), MULTIPART_CONTENT)),
        data.map(lambda d: Body(urlencode(d, doseq=True).encode(), FORM)),
        st.lists(st.tuples(keys, RAW_VALUE), max_size=4).map(
            lambda pairs: Body("&".join(f"{k}={v}" for k, v in pairs).encode(), FORM)
        ),
        st.builds(Body, st.binary(max_size=2_000), st.sampled_from(CONTENT_TYPES) | st.text()),
        # More fields than DATA_UPLOAD_MAX_NUMBER_FIELDS.
        st.integers(1_001, 1_200).map(
            lambda n: Body("&".join(f"k{i}=v" for i in range(n)).encode(), FORM)
        ),
    )


def queries(fields: Sequence[str] = ("next",)) -> st.SearchStrategy[str]:
    keys = st.sampled_from(list(fields)) | TEXT
    values = st.sampled_from(HOSTILE_NEXT) | TEXT
    return st.one_of(
        st.just(""),
        st.lists(st.tuples(keys, values), max_size=4).map(urlencode),
        st.lists(st.sampled_from(RAW_QUERY_PIECES) | RAW_VALUE | TEXT.map(quote), max_size=6).map(
            "".join
        ),
    )


def as_header(text: str) -> str:
    # What a WSGI server hands Django for a header sent as UTF-8: its bytes as latin-1.
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


HEADER = (st.sampled_from(HOSTILE_REFERERS) | TEXT).map(as_header)
HTMX_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "HTTP_HX_REQUEST": st.sampled_from(["true", "false", ""]) | HEADER,
        "HTTP_HX_CURRENT_URL": HEADER,
        "HTTP_REFERER": HEADER,
    },
)


# --- sending and judging ------------------------------------------------------------------


def send(
    client: Client,
    method: str,
    path: str,
    *,
    query: str = "",
    body: Body | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    url = f"{path}?{query}" if query else path
    data, content_type = (body.data, body.content_type) if body else (b"", FORM)
    return client.generic(method, url, data=data, content_type=content_type, **(headers or {}))


def assert_no_server_error(response: HttpResponse, allowed: Sequence[int] = ()) -> None:
    """A 5xx fails with the server's traceback (its last frames), so the report names the line."""
    if response.status_code < 500 or response.status_code in allowed:
        return
    exc_info = getattr(response, "exc_info", None)
    where = (
        "".join(traceback.format_exception(*exc_info, limit=-6))
        if exc_info
        else response.content[:500].decode(errors="replace")
    )
    request = response.wsgi_request
    raise AssertionError(
        f"{request.method} {request.get_full_path()[:300]!r} answered "
        f"{response.status_code}:\n{where}"
    )


def assert_stays_on_site(response: HttpResponse) -> None:
    """A redirect (or an htmx client redirect) never leaves the site."""
    target = response.get("HX-Redirect") or (
        response.get("Location") if 300 <= response.status_code < 400 else None
    )
    if target is None:
        return
    # Browsers read a backslash as a slash and drop tabs and newlines from URLs.
    normalised = re.sub(r"[\t\r\n]", "", target).replace("\\", "/").strip()
    parts = urlsplit(normalised)
    assert parts.scheme in ("", "http", "https"), f"redirect to {target!r}"
    assert parts.netloc in ("", "testserver"), f"redirect to {target!r}"


def assert_ok(response: HttpResponse) -> None:
    assert_no_server_error(response)
    assert_stays_on_site(response)


# --- who sends it ---------------------------------------------------------------------------

_usernames = itertools.count()
KINDS = ("anonymous", "logged_in", "verified", "staff")


@dataclass
class Browsers:
    """Fresh clients per example: one example's logout or rotated session can't leak."""

    make_user: Callable[..., AbstractBaseUser]

    def user(self, **flags: Any) -> AbstractBaseUser:
        user = self.make_user(username=f"fuzz-{os.getpid()}-{next(_usernames)}")
        if flags:
            get_user_model().objects.filter(pk=user.pk).update(**flags)
            user.refresh_from_db()
        return user

    def client(self, kind: str = "anonymous") -> tuple[Client, AbstractBaseUser | None]:
        _forget_rate_limits()
        client = Client(raise_request_exception=False)
        if kind == "anonymous":
            return client, None
        user = self.user(**({"is_staff": True, "is_superuser": True} if kind == "staff" else {}))
        client.force_login(user)
        if kind in ("verified", "staff"):
            mark_session_verified(client, user)
        return client, user


def _forget_rate_limits() -> None:
    """Each example starts with no rate limit used, so the fuzz reaches the code behind
    the limits instead of "too many attempts" every time. The counters live in the cache:
    cleared only when it is this process's memory, never a shared Redis."""
    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()


@pytest.fixture
def browsers(make_user: Callable[..., AbstractBaseUser], two_factor_settings: Any) -> Browsers:
    return Browsers(make_user)


def session_key(client: Client) -> str:
    return client.session.session_key


def own_verification(
    client: Client, user: AbstractBaseUser, status: str = Status.SENT, **fields: Any
) -> Verification:
    """A verification of this client's session, in `status`, as the pages expect it.

    The user keeps the number (and its verified mark) they have; one is given if none."""
    verified = status in (Status.VERIFIED, Status.CONSUMED)
    phone = PhoneNumber.objects.filter(user=user).first() or give_phone(
        user, unique_number(user), verified=verified
    )
    now = timezone.now()
    defaults: dict[str, Any] = {"request_id": f"req-{uuid.uuid4()}", "channel": "sms"}
    if status in (Status.SENT, Status.CHECKING):
        defaults |= {"sent_at": now, "channel_deadline": now + timedelta(seconds=180)}
    if status in (Status.QUEUED, Status.SENDING):
        defaults["request_id"] = ""
    return create_verification(
        user=user,
        session_key=session_key(client),
        number=phone.number,
        status=status,
        **(defaults | fields),
    )


# --- every route in the URLconf, every parameter shape --------------------------------------

# Ids that are not what a converter expects, or are but point nowhere.
GARBAGE_IDS = [
    "0",
    "-1",
    "9223372036854775807",
    "9223372036854775808",  # one past a signed 64-bit integer
    "18446744073709551616",
    "9" * 400,
    "0" * 40 + "1",
    "00000000-0000-0000-0000-000000000000",
    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    "{12345678-1234-5678-1234-567812345678}",
    "12345678123456781234567812345678",
    "urn:uuid:12345678-1234-5678-1234-567812345678",
    "١٢٣",
    "\x00",
    "..",
]
# Form fields and query keys of every view (admin's included), so a walk reaches their code.
FIELDS = (
    "next",
    "number",
    "code",
    "choice",
    "username",
    "password",
    "password1",
    "password2",
    "old_password",
    "new_password1",
    "new_password2",
    "action",
    "_selected_action",
    "post",
    "_save",
    "text",
    "pub_date",
)
QUERY_KEYS = ("next", "q", "o", "p", "e", "all", "_to_field", "_popup", "_changelist_filters")
METHODS = ("GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")


# Routes whose view answers a 5xx on purpose, by configuration: readiness names what isn't
# ready (no worker heartbeat here) with a 503 a probe understands; the webhook refuses
# every callback with a 503 while no signature secret is set (the webhook tests set one).
DELIBERATE_5XX = {"readyz": (503,), "vonage_verify_webhook": (503,)}


@dataclass(frozen=True)
class Route:
    pieces: tuple[Any, ...]
    name: str | None

    def __str__(self) -> str:
        return "/" + "".join(str(piece) for piece in self.pieces)


def _walk(patterns: Sequence[Any], prefix: tuple[Any, ...] = ()) -> Iterator[Route]:
    for entry in patterns:
        pieces = (*prefix, entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, pieces)
        elif isinstance(entry, URLPattern):
            yield Route(pieces, entry.name)


# Walked at import: a route added tomorrow is fuzzed without anyone editing this file.
ROUTES = list(_walk(get_resolver().url_patterns))


def _parameter(converter: Any, existing: Sequence[str]) -> st.SearchStrategy[str]:
    values = st.one_of(
        st.from_regex(converter.regex, fullmatch=True),
        st.sampled_from(GARBAGE_IDS),
        st.integers(0, 2**80).map(str),
        st.uuids().map(str),
        TEXT.filter(bool),
        *([st.sampled_from(existing)] if existing else []),
    )
    return values.map(lambda value: quote(value, safe=""))


def _piece_paths(pattern: Any, existing: Sequence[str]) -> st.SearchStrategy[str]:
    if isinstance(pattern, RoutePattern):
        # "v/<uuid:verification_id>/code/" → literals and converters, alternately.
        parts = re.split(r"<(?:\w+:)?(\w+)>", str(pattern))
        strategies = [
            st.just(part) if i % 2 == 0 else _parameter(pattern.converters[part], existing)
            for i, part in enumerate(parts)
        ]
        return st.tuples(*strategies).map("".join)
    # A regex pattern (admin's): anything it matches, anchors dropped.
    regex = pattern.regex.pattern.removeprefix("^").removesuffix("$").removesuffix(r"\Z")
    return st.from_regex(regex, fullmatch=True).map(lambda value: quote(value, safe="/"))


def route_paths(route: Route, existing: Sequence[str]) -> st.SearchStrategy[str]:
    return st.tuples(*(_piece_paths(piece, existing) for piece in route.pieces)).map(
        lambda parts: "/" + "".join(parts)
    )


@pytest.mark.parametrize("route", ROUTES, ids=str)
@fuzz(3)
@given(data=st.data())
def test_every_route_answers_any_parameters_without_a_server_error(
    route: Route, data: st.DataObject, browsers: Browsers, question: Question
) -> None:
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    client, user = browsers.client(kind)
    existing = [str(question.pk)]
    if user is not None:
        existing.append(str(own_verification(client, user).pk))
    response = send(
        client,
        data.draw(st.sampled_from(METHODS), label="method"),
        data.draw(route_paths(route, existing), label="path"),
        query=data.draw(queries(QUERY_KEYS), label="query"),
        body=data.draw(st.none() | form_bodies(FIELDS), label="body"),
        headers=data.draw(HTMX_HEADERS, label="headers"),
    )
    assert_no_server_error(response, allowed=DELIBERATE_5XX.get(route.name or "", ()))


@fuzz(25)
@given(
    path=st.sampled_from(["/", "/2fa/", "/accounts/login/", "/polls/1/", "/admin/"]),
    method=st.sampled_from(["GET", "POST"]),
    cookie=st.lists(
        st.tuples(
            st.sampled_from(["sessionid", "csrftoken", "messages"]) | TEXT,
            st.sampled_from(['"abcdefgh\\000"', '"\\377\\376abcdefgh"', "a" * 5000]) | TEXT,
        ),
        max_size=4,
    ).map(lambda pairs: "; ".join(f"{name}={value}" for name, value in pairs)),
    csrf=st.none() | TEXT,
)
@example(path="/", method="GET", cookie='sessionid="abcdefgh\\000"', csrf=None)
def test_any_cookie_is_refused_or_ignored_without_a_server_error(
    db: None, path: str, method: str, cookie: str, csrf: str | None
) -> None:
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    body = Body(urlencode({"csrfmiddlewaretoken": csrf}).encode(), FORM) if csrf else None
    response = send(client, method, path, body=body, headers={"HTTP_COOKIE": as_header(cookie)})
    assert_no_server_error(response)


# --- forms ----------------------------------------------------------------------------------

# Shapes that pass the forms, so the fuzz also reaches the code behind a valid submission.
VALID_SIGNUP = st.fixed_dictionaries(
    {
        "username": st.from_regex(r"[a-z][a-z0-9_.@+-]{2,20}", fullmatch=True),
        "password1": st.just("a-long-passphrase-1"),
        "password2": st.just("a-long-passphrase-1"),
        "next": NEXT,
    }
).map(lambda fields: Body(urlencode(fields).encode(), FORM))


@fuzz(30)
@given(
    logged_in=st.booleans(),
    method=st.sampled_from(["GET", "POST"]),
    body=form_bodies(("username", "password1", "password2", "next")) | VALID_SIGNUP,
    query=queries(),
    headers=HTMX_HEADERS,
)
def test_sign_up_form_takes_anything(
    browsers: Browsers, logged_in: bool, method: str, body: Body, query: str, headers: dict
) -> None:
    client, _ = browsers.client("logged_in" if logged_in else "anonymous")
    assert_ok(send(client, method, "/accounts/signup/", query=query, body=body, headers=headers))


@fuzz(30)
@given(
    logged_in=st.booleans(),
    method=st.sampled_from(["GET", "POST"]),
    body=form_bodies(("username", "password", "next")),
    right_password_next=st.none() | NEXT,
    query=queries(),
    headers=HTMX_HEADERS,
)
def test_login_form_takes_anything(
    browsers: Browsers,
    logged_in: bool,
    method: str,
    body: Body,
    right_password_next: str | None,
    query: str,
    headers: dict,
) -> None:
    client, _ = browsers.client("logged_in" if logged_in else "anonymous")
    if right_password_next is not None:
        # The right credentials with a hostile `next`: the redirect after a login.
        user = browsers.user()
        fields = {"username": user.get_username(), "password": PASSWORD}
        body = Body(urlencode({**fields, "next": right_password_next}).encode(), FORM)
    assert_ok(send(client, method, "/accounts/login/", query=query, body=body, headers=headers))


@fuzz(30)
@given(
    has_phone=st.booleans(),
    method=st.sampled_from(["GET", "POST"]),
    body=form_bodies(("number", "next")),
    query=queries(),
    headers=HTMX_HEADERS,
)
def test_phone_number_form_on_the_start_page_takes_anything(
    browsers: Browsers, has_phone: bool, method: str, body: Body, query: str, headers: dict
) -> None:
    client, user = browsers.client("logged_in")
    if has_phone:
        give_phone(user, unique_number(user), verified=False)
    assert_ok(send(client, method, "/2fa/", query=query, body=body, headers=headers))


@fuzz(20)
@given(
    kind=st.sampled_from(["logged_in", "verified"]),
    body=form_bodies(("number",)),
    query=queries(),
    headers=HTMX_HEADERS,
)
def test_change_number_form_takes_anything(
    browsers: Browsers, kind: str, body: Body, query: str, headers: dict
) -> None:
    client, _ = browsers.client(kind)
    assert_ok(send(client, "POST", "/2fa/number/", query=query, body=body, headers=headers))


RIGHT_CODE = "the code the sandbox sent"  # known only once the verification started
# Codes as people type them: the right length or not, spaces and dashes, any digits.
CODE_SHAPED = st.from_regex(r"[0-9][0-9 \-]{2,14}[0-9]", fullmatch=True) | st.text(
    NON_ASCII_DIGITS, min_size=6, max_size=6
)


@fuzz(25)
@given(
    code=st.none() | st.just(RIGHT_CODE) | CODE_SHAPED,
    body=form_bodies(("code",)),
    headers=HTMX_HEADERS,
)
@example(code="１２３４５６", body=Body(b"", FORM), headers={})
def test_code_form_takes_anything(
    browsers: Browsers,
    eager_tasks: None,
    django_capture_on_commit_callbacks: Callable[..., Any],
    code: str | None,
    body: Body,
    headers: dict,
) -> None:
    """A real verification (the sandbox sent its code); whatever is typed, the check
    task runs on it too, eagerly, as a worker would."""
    client, user = browsers.client("logged_in")
    phone = give_phone(user, unique_number(user), verified=False)
    with django_capture_on_commit_callbacks(execute=True):
        verification = services.verification_start(
            user=user, session_key=session_key(client), ip="127.0.0.1"
        )
    if code is not None:
        if code == RIGHT_CODE:
            code = sandbox_messages_for(str(phone.number))[0]["code"]
        body = Body(urlencode({"code": code}).encode(), FORM)
    url = reverse("two_factor:submit_code", args=[verification.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, "POST", url, body=body, headers=headers)
    assert_ok(response)
    verification.refresh_from_db()
    hypothesis.event(f"verification {verification.status}")  # --hypothesis-show-statistics


ACTIONS = ("verify", "submit_code", "resend", "switch_channel", "cancel", "complete")


@fuzz(40)
@given(
    action=st.sampled_from(ACTIONS),
    method=st.sampled_from(["GET", "POST"]),
    status=st.sampled_from(list(Status)),
    whose=st.sampled_from(["this session", "another session", "another user"]),
    deadline_passed=st.booleans(),
    body=form_bodies(("code", "next", "channel")),
    query=queries(),
    headers=HTMX_HEADERS,
)
def test_verification_actions_take_anything_in_any_state(
    browsers: Browsers,
    eager_tasks: None,
    django_capture_on_commit_callbacks: Callable[..., Any],
    action: str,
    method: str,
    status: Status,
    whose: str,
    deadline_passed: bool,
    body: Body,
    query: str,
    headers: dict,
) -> None:
    client, user = browsers.client("logged_in")
    owner = browsers.user() if whose == "another user" else user
    verification = own_verification(client, owner, status)
    if whose == "another session":
        verification.session_key_hash = session_key_hash("another session")
    if deadline_passed:
        verification.channel_deadline = timezone.now() - timedelta(hours=1)
    verification.save()
    url = reverse(f"two_factor:{action}", args=[verification.pk])
    # The tasks an action queues run too, eagerly, against the sandbox.
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, method, url, query=query, body=body, headers=headers)
    assert_ok(response)


# --- `next`, wherever it is read --------------------------------------------------------------

ENTRY_POINTS = ("login", "signup", "start", "complete")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@fuzz(15)
@given(
    next_url=NEXT,
    logged_in=st.booleans(),
    method=st.sampled_from(["GET", "POST"]),
    headers=HTMX_HEADERS,
)
@example(next_url="foo", logged_in=True, method="GET", headers={})
@example(next_url="polls:index", logged_in=True, method="GET", headers={})
@example(next_url="\\\\evil.example", logged_in=True, method="GET", headers={})
@example(next_url="http://[", logged_in=True, method="GET", headers={})
def test_next_is_followed_only_within_the_site(
    browsers: Browsers, entry: str, next_url: str, logged_in: bool, method: str, headers: dict
) -> None:
    """Every place a `next` is read: a hostile one is never a 5xx nor an off-site redirect."""
    query = urlencode({"next": next_url})
    if entry == "complete":
        client, user = browsers.client("logged_in")
        verification = own_verification(client, user, Status.VERIFIED)
        assert_ok(send(client, method, "/2fa/", query=query, headers=headers))
        url = reverse("two_factor:complete", args=[verification.pk])
        assert_ok(send(client, "GET", url, headers=headers))
        # A second click finds it consumed and the session verified: the `next` again.
        assert_ok(send(client, "GET", f"/2fa/?{query}", headers=headers))
        assert_ok(send(client, "GET", url, headers=headers))
        return
    client, _ = browsers.client("logged_in" if logged_in else "anonymous")
    path = {"login": "/accounts/login/", "signup": "/accounts/signup/", "start": "/2fa/"}[entry]
    assert_ok(send(client, method, path, query=query, headers=headers))


# --- voting ---------------------------------------------------------------------------------

CHOICE_VALUES = VALUE | st.integers(-(2**70), 2**70).map(str) | st.sampled_from(GARBAGE_IDS)
REAL_CHOICE = "a real choice"  # stands for a choice of the question, known only in the test


@fuzz(30)
@given(
    which=st.sampled_from(["open", "closed", "unpublished", "missing"]),
    kind=st.sampled_from(KINDS),
    choice=st.just(REAL_CHOICE) | CHOICE_VALUES,
    body=st.none() | form_bodies(("choice",)),
    headers=HTMX_HEADERS,
)
@example(which="open", kind="verified", choice="١", body=None, headers={})
@example(which="open", kind="verified", choice="9" * 5000, body=None, headers={})
@example(which="open", kind="anonymous", choice="", body=None, headers={"HTTP_REFERER": "http://["})
@example(
    which="open", kind="logged_in", choice="", body=None, headers={"HTTP_HX_CURRENT_URL": "//["}
)
def test_vote_form_takes_anything(
    browsers: Browsers,
    make_question: Callable[..., Question],
    which: str,
    kind: str,
    choice: str | list[str],
    body: Body | None,
    headers: dict,
) -> None:
    question = {
        "open": lambda: make_question(),
        "closed": lambda: make_question(closes_in=-timedelta(minutes=1)),
        "unpublished": lambda: make_question(published_ago=-timedelta(days=1)),
        "missing": lambda: None,
    }[which]()
    path = f"/polls/{question.pk if question else 10**20}/vote/"
    if choice == REAL_CHOICE:
        choice = str(question.choices.first().pk) if question else "1"
    if body is None:
        body = Body(urlencode({"choice": choice}, doseq=True).encode(), FORM)
    client, _ = browsers.client(kind)
    assert_ok(send(client, "POST", path, body=body, headers=headers))


# --- websocket frames -------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FRAMES = st.lists(
    st.one_of(
        TEXT.map(lambda text: ("text", text)),
        JSON_VALUES.map(lambda value: ("text", json.dumps(value))),
        st.sampled_from(
            ['{"HEADERS": {"HX-Request": "true"}}', "{", '{"type": "websocket.close"}']
        ).map(lambda text: ("text", text)),
        st.binary(max_size=2_000).map(lambda raw: ("bytes", raw)),
        st.integers(100_000, 1_000_000).map(lambda size: ("bytes", b"\xff" * size)),
    ),
    max_size=5,
)
SOCKETS = ("own verification", "another's verification", "garbage id", "results", "results garbage")


def _socket_path(socket: str, garbage: str, verification: Verification, question: Question) -> str:
    return {
        "own verification": f"/ws/2fa/{verification.pk}/",
        "another's verification": f"/ws/2fa/{uuid.uuid4()}/",
        "garbage id": f"/ws/2fa/{quote(garbage, safe='')}/",
        "results": f"/ws/polls/{question.pk}/results/",
        "results garbage": f"/ws/polls/{garbage if garbage.isdigit() else 10**30}/results/",
    }[socket]


async def _exchange(path: str, headers: list[tuple[bytes, bytes]], frames: list) -> bool:
    """Connect, send the frames, read what comes back; raises what escaped the consumer.
    Returns whether the socket was accepted."""
    from pollstr.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers)
    try:
        connected, _ = await communicator.connect(timeout=5)
        if not connected:
            return False
        for kind, payload in frames:
            # The raw ASGI message: send_to() refuses an empty frame, a browser doesn't.
            await communicator.send_input({"type": "websocket.receive", kind: payload})
        # Still open (sends, or nothing) or closed with a code: never a crash.
        while not await communicator.receive_nothing(timeout=0.05):
            message = await communicator.receive_output(timeout=1)
            assert message["type"] in ("websocket.send", "websocket.close"), message
            if message["type"] == "websocket.close":
                assert isinstance(message.get("code", 1000), int), message
                break
    finally:
        await communicator.disconnect(timeout=5)
    return True


def _socket_headers(
    client: Client, origin: str | None, cookie: str | None
) -> list[tuple[bytes, bytes]]:
    if cookie is None and "sessionid" in client.cookies:
        cookie = f"sessionid={client.cookies['sessionid'].value}"
    headers = [(b"host", b"localhost"), (b"cookie", as_header(cookie or "").encode("latin-1"))]
    if origin is not None:
        headers.append((b"origin", as_header(origin).encode("latin-1")))
    return headers


def _mostly(value: Any, otherwise: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Three draws in four are `value` (one_of would merge equal branches).
    return st.integers(0, 3).flatmap(lambda i: st.just(value) if i else otherwise)


@pytest.mark.django_db(transaction=True)
@fuzz(40)
@given(
    # Mostly an honest page (its own socket, origin and cookie), so most sockets open and
    # the frames reach a consumer; the rest is hostile.
    socket=st.sampled_from(["own verification", "results", *SOCKETS]),
    kind=st.sampled_from(["verified", "verified", *KINDS]),
    garbage=st.sampled_from(GARBAGE_IDS) | TEXT.filter(lambda text: "/" not in text),
    origin=_mostly("http://localhost", st.none() | HEADER),
    cookie=_mostly(None, st.just('sessionid="abcdefgh\\000"') | HEADER),
    frames=FRAMES,
)
@example(
    socket="own verification",
    kind="verified",
    garbage="0",
    origin="http://[::1",
    cookie=None,
    frames=[],
)
@example(
    socket="results",
    kind="verified",
    garbage="0",
    origin="http://localhost",
    cookie='sessionid="abcdefgh\\000"',
    frames=[("bytes", b"\x00")],
)
def test_websocket_frames_never_crash_a_consumer(
    browsers: Browsers,
    question: Question,
    socket: str,
    kind: str,
    garbage: str,
    origin: str | None,
    cookie: str | None,
    frames: list,
) -> None:
    client, user = browsers.client(kind)
    verification = own_verification(client, user or browsers.user())
    path = _socket_path(socket, garbage, verification, question)
    accepted = async_to_sync(_exchange)(path, _socket_headers(client, origin, cookie), frames)
    hypothesis.event("accepted" if accepted else "refused")


# --- the provider's webhook ---------------------------------------------------------------------

WEBHOOK = "/2fa/webhooks/vonage/verify/"
REQUEST_ID = "c11236f4-00bf-4b89-84ba-88b25df97315"


def _nested_header_token() -> str:
    # A JOSE header nested deeper than the JSON parser's recursion limit; unsigned.
    header = b'{"alg":"HS256","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    return ".".join(jwt.utils.base64url_encode(part).decode() for part in (header, b"{}", b"x"))


TOKENS = st.one_of(
    st.sampled_from(["", "a.b.c", "a.b", "....", "Bearer", _nested_header_token()]),
    st.builds(
        lambda claims: jwt.encode(
            claims, "a-wrong-secret-of-a-decent-length-too", algorithm="HS256"
        ),
        JSON_VALUES.filter(lambda v: isinstance(v, dict)) | st.just({}),
    ),
    st.builds(lambda claims: jwt.encode(claims, None, algorithm="none"), st.just({"iat": 1})),
    TEXT,
)
AUTHORIZATION = st.one_of(
    st.none(),
    TOKENS.map(lambda token: f"Bearer {token}"),
    TOKENS.map(lambda token: f"bearer  {token} "),
    HEADER,
)
PAYLOADS = st.fixed_dictionaries(
    {
        "request_id": st.sampled_from([REQUEST_ID, "unknown"]) | JSON_VALUES,
        "type": st.sampled_from(["event", "summary"]) | JSON_VALUES,
        "status": st.sampled_from(
            ["completed", "failed", "user_rejected", "rejected", "blocked", "expired"]
        )
        | JSON_VALUES,
    },
    optional={
        "channel": st.sampled_from(["sms", "voice"]) | JSON_VALUES,
        "client_ref": st.sampled_from(["CLIENT_REF", "0123456789abcdef\n"]) | JSON_VALUES,
        "workflow": st.lists(
            st.fixed_dictionaries(
                {},
                optional={"channel": st.just("voice") | JSON_VALUES, "initiated_at": JSON_VALUES},
            )
        )
        | JSON_VALUES,
        "text": st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=5),
    },
)
CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "iat": st.just("now")
        | JSON_VALUES
        | st.sampled_from([float("inf"), float("nan"), 10**400]),
        "exp": JSON_VALUES | st.sampled_from([float("inf"), -(10**400)]),
        "nbf": JSON_VALUES,
        "jti": st.uuids().map(str) | JSON_VALUES | st.just("j" * 129),
        "payload_hash": st.just("BODY") | JSON_VALUES,
    },
)


@pytest.fixture
def webhook_secret(settings: Any) -> Any:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.TWO_FACTOR_WEBHOOK_MAX_AGE = 300
    settings.TWO_FACTOR_WEBHOOK_BASE_URL = ""
    return settings


@fuzz(50)
@given(
    method=st.sampled_from(["POST", "POST", "GET", "PUT"]),
    body=st.binary(max_size=2_000)
    | JSON_VALUES.map(lambda value: json.dumps(value).encode())
    | st.integers(64 * 1024, 70 * 1024).map(lambda size: b"{" * size),
    content_type=st.sampled_from(["application/json", FORM, "text/plain", ""]) | HEADER,
    authorization=AUTHORIZATION,
    content_length=st.none() | st.sampled_from(["abc", "-1", "", " 1", "1e3", "٣"]),
)
@example(
    method="POST",
    body=b"{}",
    content_type="application/json",
    authorization=f"Bearer {_nested_header_token()}",
    content_length=None,
)
def test_unsigned_webhook_bodies_are_refused_without_a_server_error(
    db: None,
    webhook_secret: Any,
    method: str,
    body: bytes,
    content_type: str,
    authorization: str | None,
    content_length: str | None,
) -> None:
    headers = {"HTTP_AUTHORIZATION": as_header(authorization)} if authorization is not None else {}
    if content_length is not None:
        # A length beyond the body never reaches Django from a server (it waits for the
        # rest); only the test client's payload, which asserts, would pass it on.
        assume(not (content_length.strip().isdigit() and int(content_length) > len(body)))
        headers["CONTENT_LENGTH"] = as_header(content_length)
    client = Client(raise_request_exception=False)
    response = send(client, method, WEBHOOK, body=Body(body, content_type), headers=headers)
    assert_no_server_error(response)
    assert response.status_code != 200, "an unsigned callback was accepted"


@fuzz(40)
@given(
    payload=PAYLOADS | JSON_VALUES,
    claims=st.none() | CLAIMS,
    replay=st.booleans(),
    status=st.sampled_from(list(Status)),
)
@example(
    payload={"request_id": "r", "type": "event", "status": "\udc80", "text": "\ud800"},
    claims=None,
    replay=False,
    status=Status.SENT,
)
@example(
    payload={
        "request_id": "r",
        "type": "event",
        "status": "failed",
        "client_ref": "0123456789abcdef\n",
    },
    claims=None,
    replay=False,
    status=Status.SENT,
)
def test_signed_webhook_bodies_never_get_a_server_error(
    browsers: Browsers,
    webhook_secret: Any,
    payload: Any,
    claims: dict | None,
    replay: bool,
    status: Status,
) -> None:
    """Whatever a holder of the secret signs (Vonage, or whoever leaked it), no 5xx."""
    client, user = browsers.client("logged_in")
    verification = own_verification(client, user, status, request_id="")
    Verification.objects.filter(pk=verification.pk).update(request_id=REQUEST_ID)
    if isinstance(payload, dict) and payload.get("client_ref") == "CLIENT_REF":
        payload["client_ref"] = verification.pk.hex[:16]
    body = json.dumps(payload).encode()
    token = callback_sign(body, SECRET) if claims is None else _token(body, claims)
    for _ in range(2 if replay else 1):
        response = send(
            client,
            "POST",
            WEBHOOK,
            body=Body(body, "application/json"),
            headers={"HTTP_AUTHORIZATION": f"Bearer {token}"},
        )
        assert_no_server_error(response)


@pytest.mark.parametrize("depth", [33, 500, 850, 900, 950])
def test_a_signed_body_nested_too_deep_is_refused(
    client: Client, db: None, webhook_secret: Any, depth: int
) -> None:
    """Parsed, a body nested ~900 deep used to overflow the stack when its row was saved
    (RecursionError in the JSON encoder, a 500); anything past Verify's few levels is 400."""
    body = b'{"request_id":"r","type":"event","status":"x","deep":%s1%s}' % (
        b"[" * depth,
        b"]" * depth,
    )
    headers = {"HTTP_AUTHORIZATION": f"Bearer {callback_sign(body, SECRET)}"}
    response = send(client, "POST", WEBHOOK, body=Body(body, "application/json"), headers=headers)
    assert response.status_code == 400, response.content[:200]


def _token(body: bytes, claims: dict) -> str:
    real = {"now": int(time.time()), "BODY": hashlib.sha256(body).hexdigest()}
    resolved = {
        name: real.get(value, value) if isinstance(value, str) else value
        for name, value in claims.items()
    }
    return jwt.encode(resolved, SECRET, algorithm="HS256")


@fuzz(10)
@given(
    method=st.sampled_from(["POST", "GET"]),
    body=st.binary(max_size=200),
    authorization=AUTHORIZATION,
)
def test_without_a_signature_secret_the_webhook_refuses_with_503(
    db: None, settings: Any, method: str, body: bytes, authorization: str | None
) -> None:
    """No secret configured: callbacks can't be trusted, so none is taken. A 503 (the
    provider retries later, none is lost while an operator sets the secret) is the one
    5xx this endpoint may answer, and only then."""
    settings.VONAGE_SIGNATURE_SECRET = ""
    headers = {"HTTP_AUTHORIZATION": as_header(authorization)} if authorization is not None else {}
    client = Client(raise_request_exception=False)
    response = send(client, method, WEBHOOK, body=Body(body, "application/json"), headers=headers)
    assert_no_server_error(response, allowed=(503,))
    assert response.status_code == (503 if method == "POST" else 405)
