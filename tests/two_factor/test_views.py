"""The verification pages through the Django test client, with tasks run eagerly."""

from __future__ import annotations

import html
import uuid
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import resolve, reverse

from tests.accounts.test_accounts import HOSTILE_NEXT
from tests.conftest import PASSWORD
from tests.phone_numbers import NUMBER, OTHER_NUMBER, give_phone
from tests.two_factor.verifications import (
    client_session_key,
    create_verification,
    latest_code,
    start_verification,
    wrong_code_for,
)
from two_factor.gateways.sandbox import sandbox_inbox, sandbox_messages_for
from two_factor.models import PhoneNumber, Status, Verification
from two_factor.session import SESSION_KEY

pytestmark = pytest.mark.usefixtures("eager_tasks")

HTMX = {"HTTP_HX_REQUEST": "true"}
START = "/2fa/"


def _url(name: str, verification: Verification) -> str:
    return reverse(f"two_factor:{name}", args=[verification.pk])


def _verification_from(response) -> Verification:
    assert response.status_code == 302, response.content[:500]
    match = resolve(response["Location"].split("?")[0])
    assert match.view_name == "two_factor:verify"
    return Verification.objects.get(pk=match.kwargs["verification_id"])


def _text(response) -> str:
    """The response as a person reads it: entities decoded."""
    return html.unescape(response.content.decode())


@pytest.fixture
def sent(logged_in_client, user, post) -> Verification:
    """The logged-in client asked for a code to NUMBER; the sandbox sent it."""
    response = post(logged_in_client, START, {"number": NUMBER})
    verification = _verification_from(response)
    assert verification.status == Status.SENT
    return verification


@pytest.fixture
def verified(logged_in_client, sent, post) -> Verification:
    post(logged_in_client, _url("submit_code", sent), {"code": latest_code()})
    sent.refresh_from_db()
    assert sent.status == Status.VERIFIED
    return sent


# --- the whole flow ----------------------------------------------------------------------------


def test_a_voter_verifies_their_phone_and_comes_back_to_the_poll(client, user, question, post):
    client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    detail = reverse("polls:detail", args=[question.pk])

    response = client.get(detail)
    assert response["Location"] == f"{START}?{urlencode({'next': detail})}"

    response = client.get(response["Location"])
    assert response.status_code == 200
    assert b'name="number"' in response.content

    verification = _verification_from(post(client, START, {"number": "+44 7911 123456"}))
    # Pending: the number is the account's only once its code is verified.
    assert not PhoneNumber.objects.filter(user=user).exists()

    response = client.get(_url("verify", verification))
    assert response.status_code == 200
    assert b"Sent by SMS" in response.content
    assert 'data-status="sent"' in _text(response)
    assert "We sent a code by SMS to +44 " in _text(response)
    assert b"+44 \xe2\x80\xa2" in response.content  # the number is shown masked
    assert NUMBER.encode() not in response.content

    code = sandbox_inbox()[0]["code"]
    response = post(client, _url("submit_code", verification), {"code": wrong_code_for(code)})
    assert response["Location"] == _url("verify", verification)
    response = client.get(response["Location"])
    assert "That code didn't match: 2 attempts left." in _text(response)

    post(client, _url("submit_code", verification), {"code": code})
    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED
    response = client.get(_url("verify", verification))
    assert b"Verified!" in response.content
    assert _url("complete", verification).encode() in response.content

    key_before = client.session.session_key
    response = client.get(_url("complete", verification))

    assert response.status_code == 302
    assert response["Location"] == detail
    assert client.session.session_key != key_before
    verification.refresh_from_db()
    assert verification.status == Status.CONSUMED
    assert client.get(detail).status_code == 200


def test_a_voter_with_a_stored_number_only_confirms_sending(logged_in_client, user, post):
    give_phone(user, NUMBER, verified=True)

    page = logged_in_client.get(START)
    assert b'name="number"' not in page.content
    assert b"+44 \xe2\x80\xa2" in page.content

    verification = _verification_from(post(logged_in_client, START))
    assert verification.status == Status.SENT
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_an_invalid_number_is_shown_as_a_form_error(logged_in_client, post):
    response = post(logged_in_client, START, {"number": "+44 20 7946 0958"})

    assert response.status_code == 400
    assert b"landline" in response.content
    assert not Verification.objects.exists()


def test_a_number_another_account_holds_gets_a_code_like_any_other(
    logged_in_client, make_user, post
):
    owner = make_user("bob")
    give_phone(owner, NUMBER, verified=True)

    response = post(logged_in_client, START, {"number": NUMBER})

    # The same answer as for a free number: the page says nothing about who holds it.
    assert _verification_from(response).number.as_e164 == NUMBER
    assert len(sandbox_messages_for(NUMBER)) == 1
    assert PhoneNumber.objects.get(number=NUMBER).user == owner


def test_an_empty_number_is_refused(logged_in_client, post):
    response = post(logged_in_client, START, {"number": ""})

    assert response.status_code == 400
    assert b"Enter your mobile number." in response.content


def test_the_dev_inbox_shows_the_code_sent(logged_in_client, sent):
    response = logged_in_client.get(reverse("two_factor:sandbox_inbox"))

    assert response.status_code == 200
    assert latest_code().encode() in response.content


def test_the_dev_inbox_is_off_when_a_deployment_did_not_ask_for_it(
    logged_in_client, sent, settings
):
    settings.TWO_FACTOR_SANDBOX_INBOX = False

    response = logged_in_client.get(reverse("two_factor:sandbox_inbox"))

    assert response.status_code == 404
    assert latest_code().encode() not in response.content


def test_the_dev_inbox_is_not_found_with_the_vonage_gateway(logged_in_client, settings):
    settings.TWO_FACTOR_GATEWAY = "vonage"

    assert logged_in_client.get(reverse("two_factor:sandbox_inbox")).status_code == 404


# --- completion --------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE_NEXT)
def test_a_hostile_next_is_never_followed_after_completion(logged_in_client, user, post, hostile):
    logged_in_client.get(f"{START}?{urlencode({'next': hostile})}")
    verification = _verification_from(post(logged_in_client, START, {"number": NUMBER}))
    post(logged_in_client, _url("submit_code", verification), {"code": latest_code()})

    response = logged_in_client.get(_url("complete", verification))

    assert response.status_code == 302
    assert response["Location"] == reverse("polls:index")


def test_a_next_given_with_the_number_is_followed(logged_in_client, question, post):
    results = reverse("polls:results", args=[question.pk])
    verification = _verification_from(
        post(logged_in_client, START, {"number": NUMBER, "next": results})
    )
    post(logged_in_client, _url("submit_code", verification), {"code": latest_code()})

    response = logged_in_client.get(_url("complete", verification))

    assert response["Location"] == results


def test_completion_over_htmx_is_a_client_redirect(logged_in_client, verified):
    response = logged_in_client.get(_url("complete", verified), **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("polls:index")
    assert SESSION_KEY in logged_in_client.session


def test_completing_before_the_code_is_verified_explains_why(logged_in_client, sent):
    response = logged_in_client.get(_url("complete", sent), follow=True)

    assert response.redirect_chain[0][0] == _url("verify", sent)
    assert "This verification isn't finished yet." in _text(response)
    assert SESSION_KEY not in logged_in_client.session


def test_a_second_click_on_continue_still_lands_on_the_next_page(logged_in_client, verified):
    logged_in_client.get(_url("complete", verified))

    response = logged_in_client.get(_url("complete", verified))

    assert response.status_code == 302
    assert response["Location"] == reverse("polls:index")


def test_a_repeated_completion_goes_where_the_first_went(logged_in_client, question, post):
    """The page's automatic Continue and a click on it both reach the server: the first
    completes and takes the remembered `next` with it; the second must not fall back to
    the poll list (a browser test once landed there)."""
    results = reverse("polls:results", args=[question.pk])
    verification = _verification_from(
        post(logged_in_client, START, {"number": NUMBER, "next": results})
    )
    post(logged_in_client, _url("submit_code", verification), {"code": latest_code()})
    first = logged_in_client.get(_url("complete", verification))

    again = logged_in_client.get(_url("complete", verification))
    over_htmx = logged_in_client.get(_url("complete", verification), **HTMX)

    assert first["Location"] == again["Location"] == over_htmx["HX-Redirect"] == results


def test_a_late_request_with_the_replaced_key_leaves_the_new_cookie_alone(
    logged_in_client, verified, settings
):
    """The page's automatic Continue and a click on it, in flight at once: the first
    completes and replaces the session key; the second still carries the old key. It is
    anonymous (the old key is no way back in), and its answer must not delete the cookie,
    or the browser would lose the new key and the voter be signed out."""
    cookie = settings.SESSION_COOKIE_NAME
    old_key = logged_in_client.cookies[cookie].value
    logged_in_client.get(_url("complete", verified))
    new_key = logged_in_client.cookies[cookie].value
    assert new_key != old_key
    late = Client()
    late.cookies[cookie] = old_key

    response = late.get(_url("complete", verified))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert cookie not in response.cookies, response.cookies[cookie].output()
    assert "Cookie" in response["Vary"]
    # Where that redirect leads, with the cookie the browser holds: on to the poll list.
    response = logged_in_client.get(response["Location"], follow=True)
    assert response.redirect_chain[-1][0] == reverse("polls:index")
    assert SESSION_KEY in logged_in_client.session


def test_the_replaced_key_is_anonymous_and_signing_in_with_it_draws_a_new_key(
    logged_in_client, verified, user, settings
):
    cookie = settings.SESSION_COOKIE_NAME
    old_key = logged_in_client.cookies[cookie].value
    logged_in_client.get(_url("complete", verified))
    late = Client()
    late.cookies[cookie] = old_key

    assert late.get(_url("verify", verified))["Location"].startswith(reverse("login"))
    # A sign-in from that stale tab is a new session of its own, with its own cookie.
    response = late.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    fresh = response.cookies[cookie].value
    assert fresh not in (old_key, logged_in_client.cookies[cookie].value, "")
    assert SESSION_KEY not in late.session  # signed in, not verified


# --- whose verification ------------------------------------------------------------------------

OWN_ONLY_GETS = ["verify", "complete"]
OWN_ONLY_POSTS = ["submit_code", "resend", "switch_channel", "cancel"]


@pytest.mark.parametrize("stranger", ["another user", "the same user in another session"])
@pytest.mark.parametrize("name", OWN_ONLY_GETS + OWN_ONLY_POSTS)
def test_a_verification_is_not_found_outside_its_own_session(
    sent, user, make_user, name, post, stranger
):
    browser = Client()
    browser.force_login(make_user("mallory") if stranger == "another user" else user)

    if name in OWN_ONLY_GETS:
        response = browser.get(_url(name, sent))
    else:
        response = post(browser, _url(name, sent), {"code": "123456"})

    assert response.status_code == 404
    sent.refresh_from_db()
    assert sent.status == Status.SENT


@pytest.mark.parametrize("name", OWN_ONLY_GETS)
def test_an_unknown_verification_id_is_not_found(logged_in_client, name):
    url = reverse(f"two_factor:{name}", args=[uuid.uuid4()])

    assert logged_in_client.get(url).status_code == 404


@pytest.mark.parametrize("path", ["/2fa/v/not-a-uuid/", "/2fa/v/1/status/", "/2fa/v/%00/"])
def test_a_garbage_verification_id_is_not_found(logged_in_client, path):
    assert logged_in_client.get(path).status_code == 404


@pytest.mark.parametrize("name", OWN_ONLY_GETS)
def test_an_anonymous_visitor_is_sent_to_login(sent, name):
    response = Client().get(_url(name, sent))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- the status fragment -------------------------------------------------------------------------


def test_htmx_gets_only_the_status_fragment_from_the_code_page(logged_in_client, sent):
    response = logged_in_client.get(_url("verify", sent), **HTMX)

    assert response.status_code == 200
    content = response.content.decode()
    # Three out-of-band pieces: the heading and status line swapped in place, the body.
    assert content.lstrip().startswith('<h1 id="status-heading"')
    assert '<section id="verification-status"' in content
    assert "<html" not in content
    assert "<body" not in content
    assert 'data-status="sent"' in content


def test_the_status_fragment_is_the_same_in_the_full_page(logged_in_client, sent):
    fragment = logged_in_client.get(_url("verify", sent), **HTMX).content.decode().strip()
    page = logged_in_client.get(_url("verify", sent)).content.decode()

    assert fragment.splitlines()[0] in page


def test_a_passed_deadline_is_shown_but_showing_writes_nothing(logged_in_client, sent):
    from datetime import timedelta

    from django.utils import timezone

    Verification.objects.filter(pk=sent.pk).update(
        channel_deadline=timezone.now() - timedelta(seconds=1)
    )
    events = sent.events.count()

    polled = logged_in_client.get(_url("verify", sent), **HTMX)
    page = logged_in_client.get(_url("verify", sent))

    # The SMS step's time is up: shown as the voice step it becomes.
    assert 'data-status="sent" data-channel="voice"' in polled.content.decode()
    assert 'data-status="sent" data-channel="voice"' in page.content.decode()
    sent.refresh_from_db()
    # The row moves when the reconciler (or a code, or a callback) applies the deadline.
    assert sent.status == Status.SENT
    assert sent.events.count() == events


# --- the code form -------------------------------------------------------------------------------

GARBAGE_CODES = ["", "abc", "12345678901234567", "<script>", "١٢٣٤٥٦", "１２３４５６", " ", "1" * 5]


@pytest.mark.parametrize("garbage", GARBAGE_CODES)
def test_a_garbage_code_is_shown_as_an_error_on_the_page(logged_in_client, sent, post, garbage):
    page = post(logged_in_client, _url("submit_code", sent), {"code": garbage})

    # The code page again, the typing kept to fix (tests/two_factor/test_code_page.py).
    assert page.status_code == 400
    assert b"Enter the 6-digit code we sent you." in page.content
    assert b"<script>" not in page.content
    sent.refresh_from_db()
    assert (sent.status, sent.wrong_codes) == (Status.SENT, 0)


@pytest.mark.parametrize("garbage", GARBAGE_CODES)
def test_a_garbage_code_over_htmx_is_an_error_in_the_fragment(
    logged_in_client, sent, post, garbage
):
    response = post(logged_in_client, _url("submit_code", sent), {"code": garbage}, **HTMX)

    assert response.status_code == 200
    content = response.content.decode()
    assert "Enter the 6-digit code we sent you." in content
    assert "<script>" not in content
    assert "<html" not in content


def test_a_code_post_without_the_field_is_an_error_not_a_crash(logged_in_client, sent, post):
    response = post(logged_in_client, _url("submit_code", sent), {})

    assert response.status_code == 400
    sent.refresh_from_db()
    assert sent.status == Status.SENT


def test_a_code_over_htmx_answers_checking_then_the_fragment_shows_the_verdict(
    logged_in_client, sent, post
):
    response = post(
        logged_in_client, _url("submit_code", sent), {"code": wrong_code_for(latest_code())}, **HTMX
    )

    # The check runs in a task after the request commits; the page learns the verdict
    # from the websocket or the polled fragment.
    assert response.status_code == 200
    assert 'data-status="checking"' in _text(response)
    status = logged_in_client.get(_url("verify", sent), **HTMX)
    assert "That code didn't match: 2 attempts left." in _text(status)


def test_three_wrong_codes_end_it_with_a_sentence(logged_in_client, sent, post):
    wrong = wrong_code_for(latest_code())
    for _ in range(3):
        post(logged_in_client, _url("submit_code", sent), {"code": wrong})

    page = logged_in_client.get(_url("verify", sent))

    assert b"That code was wrong too many times. Ask for a new code." in page.content
    assert b'id="code-form"' not in page.content
    assert b"Get a new code" in page.content


def test_a_code_with_spaces_is_accepted(logged_in_client, sent, post):
    code = latest_code()

    post(logged_in_client, _url("submit_code", sent), {"code": f"{code[:3]} {code[3:]}"})

    sent.refresh_from_db()
    assert sent.status == Status.VERIFIED


# --- resend, call, cancel ------------------------------------------------------------------------


def test_resend_within_the_cooldown_shows_the_wait(logged_in_client, sent, post, settings):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30

    response = post(logged_in_client, _url("resend", sent))
    page = logged_in_client.get(response["Location"])

    assert response["Location"] == _url("verify", sent)
    assert b"A code is on its way. You can ask for a new one in " in page.content
    assert Verification.objects.count() == 1
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_the_verify_page_shows_when_a_new_code_may_be_asked_for(logged_in_client, sent, settings):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30

    page = logged_in_client.get(_url("verify", sent))

    assert b"You can ask for a new code in" in page.content
    # The button waits hidden behind the countdown (shown at once without JavaScript).
    assert b'class="until-countdown" data-show-in=' in page.content


def test_resend_after_the_cooldown_sends_a_new_code(logged_in_client, sent, post, settings):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0

    new = _verification_from(post(logged_in_client, _url("resend", sent)))

    assert new.pk != sent.pk
    assert new.status == Status.SENT
    sent.refresh_from_db()
    assert sent.status == Status.CANCELLED
    assert len(sandbox_messages_for(NUMBER)) == 2


def test_call_me_instead_moves_to_the_call(logged_in_client, sent, post):
    page = logged_in_client.get(_url("verify", sent))
    assert "Call me instead" in _text(page)

    response = post(logged_in_client, _url("switch_channel", sent), {"channel": "voice"})
    page = logged_in_client.get(response["Location"])

    assert f"We're calling {sent.masked_number} to read out the code." in _text(page)
    assert "Call me instead" not in _text(page)
    assert sandbox_messages_for(NUMBER)[0]["channel"] == "voice"


def test_call_me_instead_twice_over_htmx_says_so_in_the_fragment(logged_in_client, sent, post):
    post(logged_in_client, _url("switch_channel", sent), {"channel": "voice"}, **HTMX)

    response = post(logged_in_client, _url("switch_channel", sent), {"channel": "voice"}, **HTMX)

    assert response.status_code == 200
    assert "We're calling" in _text(response)
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["voice", "sms"]


@pytest.mark.parametrize("channel", ["", "pigeon", "sms", "x" * 5000])
def test_a_switch_to_a_channel_the_workflow_does_not_offer_is_refused_with_a_sentence(
    logged_in_client, sent, post, channel
):
    response = post(logged_in_client, _url("switch_channel", sent), {"channel": channel})

    assert response.status_code == 302
    page = logged_in_client.get(response["Location"])
    assert page.status_code == 200
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["sms"]


def test_switching_is_rate_limited_per_voter(
    three_step_workflow,
    user,
    phone,
    logged_in_client,
    post,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "switch_per_user": (1, 3600),
    }
    sent = start_verification(logged_in_client, user, django_capture_on_commit_callbacks)
    post(logged_in_client, _url("switch_channel", sent), {"channel": "whatsapp"})

    response = post(logged_in_client, _url("switch_channel", sent), {"channel": "voice"}, **HTMX)

    assert "Too many attempts. Try again in" in _text(response)
    sent.refresh_from_db()
    assert sent.channel == "whatsapp"
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["whatsapp", "sms"]


def test_cancel_ends_the_verification_and_goes_back_to_start(logged_in_client, sent, post):
    response = post(logged_in_client, _url("cancel", sent))

    assert response["Location"] == START
    sent.refresh_from_db()
    assert sent.status == Status.CANCELLED


# --- changing the number -------------------------------------------------------------------------


def test_an_unverified_session_may_change_a_mistyped_number(logged_in_client, user, post):
    give_phone(user, NUMBER, verified=True)

    verification = _verification_from(
        post(logged_in_client, reverse("two_factor:change_number"), {"number": OTHER_NUMBER})
    )

    assert verification.number.as_e164 == OTHER_NUMBER
    assert len(sandbox_messages_for(OTHER_NUMBER)) == 1
    assert PhoneNumber.objects.get(user=user).number.as_e164 == NUMBER


def test_a_verified_session_keeps_its_number_and_its_vote_until_the_new_one_is_verified(
    voter_client, user, question, post
):
    detail = reverse("polls:detail", args=[question.pk])
    old = PhoneNumber.objects.get(user=user).number.as_e164
    assert voter_client.get(reverse("two_factor:change_number")).status_code == 200

    verification = _verification_from(
        post(voter_client, reverse("two_factor:change_number"), {"number": OTHER_NUMBER})
    )

    phone = PhoneNumber.objects.get(user=user)
    assert phone.number.as_e164 == old
    assert phone.verified_at is not None
    assert verification.number.as_e164 == OTHER_NUMBER
    assert len(sandbox_messages_for(OTHER_NUMBER)) == 1
    assert voter_client.get(detail).status_code == 200


def test_wrong_number_cancels_the_code_and_prefills_the_number_form(logged_in_client, user, post):
    verification = _verification_from(post(logged_in_client, START, {"number": OTHER_NUMBER}))

    response = post(logged_in_client, _url("wrong_number", verification))

    assert response.status_code == 302
    assert response["Location"] == reverse("two_factor:change_number")
    verification.refresh_from_db()
    assert verification.status == Status.CANCELLED
    form = logged_in_client.get(response["Location"]).context["form"]
    assert form["number"].value() == OTHER_NUMBER
    assert OTHER_NUMBER not in response["Location"]  # kept in the session, not the URL


def test_an_invalid_new_number_is_a_form_error(voter_client, post):
    response = post(voter_client, reverse("two_factor:change_number"), {"number": "nope"})

    assert response.status_code == 400
    assert b"Use only digits, spaces and +." in response.content


# --- CSRF ----------------------------------------------------------------------------------------


@pytest.fixture
def csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


CSRF_POSTS = [
    ("two_factor:start", False),
    ("two_factor:change_number", False),
    *((f"two_factor:{name}", True) for name in OWN_ONLY_POSTS),
    ("logout", False),
]


@pytest.mark.parametrize(("url_name", "takes_id"), CSRF_POSTS, ids=[n for n, _ in CSRF_POSTS])
def test_a_post_without_a_csrf_token_is_forbidden(csrf_client, user, post, url_name, takes_id):
    give_phone(user, NUMBER, verified=True)
    verification = create_verification(user=user, session_key=client_session_key(csrf_client))
    url = reverse(url_name, args=[verification.pk] if takes_id else [])

    response = post(csrf_client, url, {"code": "123456", "number": OTHER_NUMBER})

    assert response.status_code == 403
    verification.refresh_from_db()
    assert verification.status == Status.QUEUED
    assert PhoneNumber.objects.get(user=user).number.as_e164 == NUMBER
    assert int(csrf_client.session["_auth_user_id"]) == user.pk
    assert sandbox_inbox() == []


def test_a_vote_without_a_csrf_token_is_forbidden(csrf_client, user, question):
    from tests.two_factor.verifications import mark_session_verified

    mark_session_verified(csrf_client, user)

    response = csrf_client.post(
        reverse("polls:vote", args=[question.pk]), {"choice": question.choices.first().pk}
    )

    assert response.status_code == 403
    assert not question.votes.exists()


def test_a_post_with_the_csrf_token_is_accepted(csrf_client, post):
    page = csrf_client.get(START)
    token = page.context["csrf_token"]

    response = post(csrf_client, START, {"number": NUMBER, "csrfmiddlewaretoken": str(token)})

    assert response.status_code == 302
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_the_start_page_offers_the_code_already_on_its_way(logged_in_client, sent):
    response = logged_in_client.get(reverse("two_factor:start"))

    assert response.status_code == 200
    assert reverse("two_factor:verify", args=[sent.pk]).encode() in response.content
    assert b"Text me a code" not in response.content
