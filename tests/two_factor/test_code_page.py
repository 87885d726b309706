"""What the code page says and offers in each moment (#17), as the server renders it: the
page without JavaScript, and the fragment htmx, the poller and the websocket receive."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import resolve, reverse
from django.utils import timezone

from tests.phone_numbers import NUMBER
from tests.two_factor.verifications import latest_code, wrong_code_for
from two_factor.models import Status, Verification

pytestmark = pytest.mark.usefixtures("eager_tasks")

HTMX = {"HTTP_HX_REQUEST": "true"}
START = "/2fa/"
MALFORMED = "Enter the 6-digit code we sent you."


def _url(name: str, verification: Verification) -> str:
    return reverse(f"two_factor:{name}", args=[verification.pk])


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _code_input(response) -> str:
    match = re.search(r'<input[^>]*name="code"[^>]*>', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(0)


def _found(pattern: str, text: str) -> str:
    """The first match of ``pattern`` in ``text`` (across lines); fails if none."""
    match = re.search(pattern, text, re.S)
    assert match, f"{pattern!r} not in the page"
    return match.group(0)


def _status_line(response) -> str:
    return _found(r'<p id="status-line".*?</p>', _text(response))


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["the page", "the poller's fragment"])
def test_the_code_page_reads_the_trail_then_the_row_once_each(client, sent, headers):
    """The trail before the row, as a push reads them (its version never claims more
    than the row it shows), and each once: the view's own read of the row is the one
    rendered."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(_url("verify", sent), **headers)

    assert response.status_code == 200
    reads = [
        "row" if sql.startswith('SELECT "two_factor_verification"."id"') else "trail"
        for sql in (query["sql"] for query in queries.captured_queries)
        if sql.startswith(
            ('SELECT "two_factor_verification"."id"', 'SELECT "two_factor_verificationevent"')
        )
    ]
    assert reads == ["trail", "row"]
    newest = sent.events.latest("pk").pk
    assert f'data-version="{newest}"' in response.content.decode()


def _resend_button(response) -> str:
    return _found(r'<form[^>]*id="resend-form".*?<button[^>]*>', response.content.decode())


def _noscript_refresh(response) -> str | None:
    match = re.search(
        r'<noscript><meta http-equiv="refresh" content="([^"]*)"></noscript>',
        response.content.decode(),
    )
    return html.unescape(match.group(1)) if match else None


def _reload_in(response, verification: Verification) -> int:
    """Seconds until the page reloads itself without JavaScript (always the code page)."""
    refresh = _noscript_refresh(response)
    assert refresh, "no <noscript> refresh"
    seconds, _, url = refresh.partition(";url=")
    assert url == _url("verify", verification)
    return int(seconds)


@pytest.fixture
def sent(logged_in_client, user, post) -> Verification:
    """The logged-in client typed NUMBER (its first number); the sandbox sent the code."""
    response = post(logged_in_client, START, {"number": NUMBER})
    assert response.status_code == 302
    match = resolve(response["Location"])
    verification = Verification.objects.get(pk=match.kwargs["verification_id"])
    assert verification.status == Status.SENT
    return verification


# --- 2. a malformed code ----------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["12", "abcdef"])
def test_a_malformed_code_comes_back_in_the_box_with_its_error(logged_in_client, sent, post, typed):
    response = post(logged_in_client, _url("submit_code", sent), {"code": typed})

    assert response.status_code == 400
    field = _code_input(response)
    assert f'value="{typed}"' in field
    assert 'aria-invalid="true"' in field
    assert 'aria-describedby="id_code_helptext id_code_error"' in field
    assert "autofocus" in field
    assert re.search(rf'id="id_code_error"[^>]*>{re.escape(MALFORMED)}<', _text(response))
    sent.refresh_from_db()
    assert (sent.status, sent.wrong_codes) == (Status.SENT, 0)


def test_a_malformed_code_over_htmx_is_the_fields_error_in_the_fragment(
    logged_in_client, sent, post
):
    response = post(logged_in_client, _url("submit_code", sent), {"code": "12"}, **HTMX)

    assert response.status_code == 200
    content = _text(response)
    assert 'data-code-error="malformed"' in content
    assert re.search(rf'id="id_code_error"[^>]*>{re.escape(MALFORMED)}<', content)


# --- 3. a wrong code, said once -------------------------------------------------------------------


def test_a_wrong_code_is_one_sentence_in_the_live_region(logged_in_client, sent, post):
    post(logged_in_client, _url("submit_code", sent), {"code": wrong_code_for(latest_code())})

    page = logged_in_client.get(_url("verify", sent))

    assert _text(page).count("didn't match") == 1
    line = _status_line(page)
    assert 'id="id_code_error"' in line
    assert "That code didn't match: 2 attempts left." in line


# --- 4. without JavaScript ----------------------------------------------------------------------


def test_without_javascript_a_verified_page_moves_on_by_itself(logged_in_client, sent, post):
    post(logged_in_client, _url("submit_code", sent), {"code": latest_code()})

    page = logged_in_client.get(_url("verify", sent))

    assert _noscript_refresh(page) == f"0;url={_url('complete', sent)}"


def test_without_javascript_the_new_code_button_waits_disabled_and_the_page_reloads_then(
    logged_in_client, sent, settings
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30

    page = logged_in_client.get(_url("verify", sent))

    assert "disabled" in _resend_button(page)
    assert b"You can ask for a new code in" in page.content
    assert _reload_in(page, sent) in range(25, 31)


def test_without_javascript_the_page_reloads_when_the_call_is_due(logged_in_client, sent, settings):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0
    Verification.objects.filter(pk=sent.pk).update(
        channel_deadline=timezone.now() + timedelta(seconds=12)
    )

    page = logged_in_client.get(_url("verify", sent))

    assert _reload_in(page, sent) in range(10, 13)


def test_the_new_code_button_is_live_once_the_wait_is_over(logged_in_client, sent, settings):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0

    page = logged_in_client.get(_url("verify", sent))

    assert "disabled" not in _resend_button(page)
    assert b"You can ask for a new code in" not in page.content


# --- 5. cancel -----------------------------------------------------------------------------------


def test_cancel_brings_back_the_number_form_with_the_number_typed(logged_in_client, sent, post):
    response = post(logged_in_client, _url("cancel", sent))

    assert response["Location"] == START
    form = logged_in_client.get(START).context["form"]
    assert form["number"].value() == NUMBER


# --- 6. the page shows the state it is in ---------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "said"),
    [("resend", "We sent a code by SMS to"), ("switch_channel", "We're calling")],
)
def test_a_new_code_or_a_call_is_told_by_the_status_not_a_banner_that_stays(
    logged_in_client, sent, post, settings, action, said
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0

    response = post(logged_in_client, _url(action, sent), {"channel": "voice"})
    page = logged_in_client.get(response["Location"])

    assert b'class="messages"' not in page.content
    assert said in _status_line(page)


def test_a_refusal_on_the_code_page_is_said_in_the_status_line(logged_in_client, sent, post):
    post(logged_in_client, _url("switch_channel", sent), {"channel": "voice"})
    response = post(logged_in_client, _url("switch_channel", sent), {"channel": "sms"})

    page = logged_in_client.get(response["Location"])

    assert b'class="messages"' not in page.content
    assert "That way of sending the code isn't available now." in _status_line(page)


def test_a_failed_request_does_not_say_the_code_goes_to_the_number(logged_in_client, sent, post):
    wrong = wrong_code_for(latest_code())
    for _ in range(3):
        post(logged_in_client, _url("submit_code", sent), {"code": wrong})

    content = _text(logged_in_client.get(_url("verify", sent)))

    assert "goes to" not in _found(r'<div class="number-line">.*?</div>', content)
    assert "status-failed" not in _found(r'<section id="verification-status"[^>]*>', content)


# --- 7. auto-submit and WebOTP need the code's length -------------------------------------------


def test_the_code_field_tells_the_page_how_many_digits_complete_it(logged_in_client, sent):
    field = _code_input(logged_in_client.get(_url("verify", sent)))

    assert 'data-code-length="6"' in field
    assert 'autocomplete="one-time-code"' in field
    assert 'inputmode="numeric"' in field
