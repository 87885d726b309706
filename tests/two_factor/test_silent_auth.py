"""Silent authentication first in the workflow: the code page offers "Continue on your
phone" (the provider's check URL); the network confirms and Verify sends the phone back
with the code, which is checked like a typed one; or it cannot, and the workflow moves
on to its next channel, saying so. Offline, through the sandbox's network page."""

from __future__ import annotations

import html

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from tests.phone_numbers import NUMBER, give_phone
from two_factor.channels import workflow_parse
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.models import Status, Verification

pytestmark = pytest.mark.usefixtures("eager_tasks")

GAVE_UP = "Your mobile network couldn't confirm your number"


@pytest.fixture
def silent(settings, user, logged_in_client, post) -> Verification:
    """A verification whose workflow starts with silent authentication, then SMS."""
    settings.TWO_FACTOR_WORKFLOW = ("silent_auth", "sms")
    give_phone(user, NUMBER, verified=True)
    response = post(logged_in_client, "/2fa/")
    assert response.status_code == 302
    return Verification.objects.get(user=user, status=Status.SENT)


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _verify_url(verification: Verification) -> str:
    return reverse("two_factor:verify", args=[verification.pk])


def test_the_code_page_offers_continue_on_your_phone_and_no_code_box(silent, logged_in_client):
    page = logged_in_client.get(_verify_url(silent))

    assert silent.channel == "silent_auth"
    assert silent.check_url == reverse("two_factor:sandbox_silent_auth", args=[silent.request_id])
    assert f'<a id="check-link" role="button" href="{silent.check_url}"' in _text(page)
    assert "Continue on your phone" in _text(page)
    assert 'id="code-form"' not in _text(page)
    assert "Text it to me instead" in _text(page)  # a computer can skip it
    assert sandbox_messages_for(NUMBER) == []  # nothing was sent


def test_the_network_confirms_and_the_returned_code_verifies_the_session(
    silent, logged_in_client, post
):
    confirmed = logged_in_client.post(silent.check_url, {"outcome": "confirm"})
    assert confirmed.status_code == 302
    back = confirmed["Location"]
    assert back.startswith(reverse("two_factor:silent_return") + "?request_id=")

    page = logged_in_client.get(back)
    assert 'id="silent-return-form"' in _text(page)
    code = page.context["code"]
    response = post(
        logged_in_client,
        reverse("two_factor:silent_return"),
        {"request_id": silent.request_id, "code": code},
    )

    assert response["Location"] == _verify_url(silent)
    silent.refresh_from_db()
    assert silent.status == Status.VERIFIED
    response = logged_in_client.get(reverse("two_factor:complete", args=[silent.pk]))
    assert response.status_code == 302
    silent.refresh_from_db()
    assert silent.status == Status.CONSUMED


def test_the_network_cannot_confirm_and_the_workflow_moves_on_to_sms_saying_so(
    silent, logged_in_client
):
    failed = logged_in_client.post(silent.check_url, {"outcome": "fail"})

    assert failed.status_code == 302
    silent.refresh_from_db()
    assert (silent.status, silent.channel, silent.step) == (Status.SENT, "sms", 1)
    [sms] = sandbox_messages_for(NUMBER)
    assert sms["channel"] == "sms"
    page = _text(logged_in_client.get(_verify_url(silent)))
    assert GAVE_UP in page
    assert f"We sent a code by SMS to {silent.masked_number}." in page
    assert 'id="code-form"' in page
    told = _text(logged_in_client.get(failed["Location"]))
    assert "couldn't confirm your number" in told


def test_the_returned_code_is_refused_in_another_browser_and_nothing_is_checked(
    silent, logged_in_client, user, post
):
    location = logged_in_client.post(silent.check_url, {"outcome": "confirm"})["Location"]
    code = location.rsplit("code=", 1)[1]
    other = Client()
    other.force_login(user)  # signed in, but another session

    response = post(
        other, reverse("two_factor:silent_return"), {"request_id": silent.request_id, "code": code}
    )

    assert response.status_code == 404
    assert "only works in the browser where you asked" in _text(response)
    silent.refresh_from_db()
    assert silent.status == Status.SENT


def test_a_returned_code_that_is_wrong_counts_and_is_said_on_the_code_page(
    silent, logged_in_client, post
):
    logged_in_client.post(silent.check_url, {"outcome": "confirm"})

    response = post(
        logged_in_client,
        reverse("two_factor:silent_return"),
        {"request_id": silent.request_id, "code": "000000"},
    )

    assert response["Location"] == _verify_url(silent)
    silent.refresh_from_db()
    assert (silent.status, silent.wrong_codes) == (Status.SENT, 1)


def test_the_return_page_posts_with_a_csrf_token(silent, user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    response = browser.post(
        reverse("two_factor:silent_return"), {"request_id": silent.request_id, "code": "1"}
    )

    assert response.status_code == 403


def test_a_timed_out_silent_step_moves_on_with_the_same_sentence(silent, clock):
    from two_factor import services

    clock.advance((silent.channel_deadline - clock.datetime()).total_seconds() + 1)
    services.verification_refresh(verification=silent)

    silent.refresh_from_db()
    assert (silent.channel, silent.step) == ("sms", 1)
    assert silent.notice.startswith(GAVE_UP)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("sms,silent_auth", "'silent_auth' can only be the first step"),
        ("silent_auth", "sends no code"),
    ],
)
def test_silent_auth_is_refused_anywhere_but_first_or_alone(value, said):
    with pytest.raises(ImproperlyConfigured, match=said):
        workflow_parse(value, setting="TWO_FACTOR_WORKFLOW")


def test_a_callback_saying_silent_auth_failed_moves_on_and_a_late_one_is_ignored(silent, settings):
    from two_factor.callbacks import callback_apply

    event = {"request_id": silent.request_id, "type": "event", "channel": "silent_auth"}

    assert callback_apply(verification=silent, payload=event | {"status": "failed"}) == (
        "sent (silent_auth) → sent (sms)"
    )
    assert callback_apply(verification=silent, payload=event | {"status": "failed"}) == (
        "ignored: the silent_auth step is over"
    )
    silent.refresh_from_db()
    assert (silent.status, silent.channel) == (Status.SENT, "sms")
    assert silent.notice.startswith(GAVE_UP)
