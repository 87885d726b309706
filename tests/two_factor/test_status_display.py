"""What the code page shows for a verification (two_factor.status and the status
partial): computed from the row and the clock, for the full page, polling and pushes."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.two_factor.verifications import client_session_key
from two_factor.models import Status, Verification, VerificationEvent
from two_factor.services import CHECK_AGAIN
from two_factor.services.transitions import transition
from two_factor.status import SLOW_AFTER, STATUS_TEMPLATE, status_context

pytestmark = pytest.mark.usefixtures("two_factor_settings")


def _render(verification: Verification) -> str:
    return html.unescape(render_to_string(STATUS_TEMPLATE, status_context(verification)))


def _event(verification: Verification, from_status: str, to_status: str) -> None:
    VerificationEvent.objects.create(
        verification=verification, from_status=from_status, to_status=to_status
    )


@pytest.mark.parametrize(
    ("status", "heading"),
    [
        (Status.QUEUED, "Sending your code"),
        (Status.SENT, "Enter your code"),
        (Status.VERIFIED, "Verified"),
        (Status.FAILED, "Code request failed"),
        (Status.EXPIRED, "This code expired"),
        (Status.CANCELLED, "Cancelled"),
    ],
)
def test_each_state_has_its_heading_inside_the_swapped_partial(make_verification, status, heading):
    fragment = _render(make_verification(status))

    assert (
        f'<h1 id="status-heading" tabindex="-1" hx-swap-oob="innerHTML">{heading}</h1>' in fragment
    )


def test_the_partial_swaps_the_live_region_contents_and_the_body_whole(make_verification):
    fragment = _render(make_verification(Status.SENT))

    assert 'id="status-line" role="status"' in fragment
    assert 'aria-live="polite" aria-atomic="true" hx-swap-oob="innerHTML"' in fragment
    assert '<section id="verification-status" hx-swap-oob="true"' in fragment


@pytest.mark.parametrize(
    ("waited", "slow_hidden", "stuck_hidden"),
    [(1, True, True), (SLOW_AFTER + 1, False, True), (120, False, False)],
)
def test_a_code_not_yet_sent_says_it_is_slow_then_offers_a_new_one(
    settings, make_verification, waited, slow_hidden, stuck_hidden
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30
    verification = make_verification(
        Status.SENDING, created_at=timezone.now() - timedelta(seconds=waited)
    )

    context = status_context(verification)
    fragment = _render(verification)

    assert (context["slow_in"] > 0) is slow_hidden
    assert (context["stuck_in"] > 0) is stuck_hidden
    slow = f'data-show-in="{context["slow_in"]}"{" hidden" if slow_hidden else ""}>This is taking'
    assert slow in fragment
    stuck = (
        f'data-show-in="{context["stuck_in"]}"{" hidden" if stuck_hidden else ""}>Still nothing?'
    )
    assert stuck in fragment


def test_the_new_code_offer_never_comes_before_the_resend_cooldown(settings, make_verification):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 90
    verification = make_verification(
        Status.QUEUED, created_at=timezone.now() - timedelta(seconds=60)
    )

    assert 29 <= status_context(verification)["stuck_in"] <= 30


def test_a_wrong_code_is_an_error_on_the_field_right_after_it_was_rejected(make_verification):
    verification = make_verification(Status.SENT, wrong_codes=1)
    _event(verification, Status.SENT, Status.CHECKING)
    _event(verification, Status.CHECKING, Status.SENT)

    fragment = _render(verification)

    assert "That code didn't match: 2 attempts left." in fragment
    assert 'aria-invalid="true"' in fragment
    assert 'aria-describedby="id_code_helptext id_code_error"' in fragment
    assert 'id="id_code_error"' in fragment
    assert "data-wrong-code=" in fragment


def test_the_wrong_code_sentence_does_not_carry_into_the_call(make_verification):
    verification = make_verification(Status.SENT, wrong_codes=1, channel="voice")
    _event(verification, Status.SENT, Status.CHECKING)
    _event(verification, Status.CHECKING, Status.SENT)
    _event(verification, Status.SENT, Status.SENT)  # the voice step started

    fragment = _render(verification)

    assert "didn't match" not in fragment
    assert f"We're calling {verification.masked_number} to read out the code." in fragment
    assert "aria-invalid" not in fragment


def test_a_check_that_could_not_run_asks_again_without_calling_the_code_wrong(
    make_verification,
):
    verification = make_verification(Status.SENT, wrong_codes=1, notice=CHECK_AGAIN)
    _event(verification, Status.SENT, Status.CHECKING)
    _event(verification, Status.CHECKING, Status.SENT)

    fragment = _render(verification)

    assert CHECK_AGAIN in fragment
    assert "didn't match" not in fragment


def test_after_a_resend_the_page_says_older_codes_no_longer_work(make_verification):
    fragment = _render(make_verification(Status.SENT, is_resend=True))

    assert "codes we sent you before no longer work" in fragment


def test_the_new_code_button_waits_behind_the_countdown(settings, make_verification):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30
    fragment = _render(make_verification(Status.SENT, sent_at=timezone.now()))

    assert 'class="resend-wait" data-hide-in="30"' in fragment
    assert 'class="until-countdown" data-show-in="30"' in fragment


def test_the_code_form_is_preserved_whole_not_its_input(make_verification):
    fragment = _render(make_verification(Status.SENT, channel="sms"))

    assert fragment.count("hx-preserve") == 2  # the code form and the one switch form
    assert 'id="code-form"' in fragment


@pytest.mark.parametrize(
    ("status", "refreshes"),
    [
        (Status.QUEUED, True),
        (Status.SENDING, True),
        (Status.CHECKING, True),
        (Status.SENT, False),
        (Status.VERIFIED, False),
        (Status.FAILED, False),
    ],
)
def test_without_javascript_the_page_refreshes_itself_only_while_it_waits(
    logged_in_client: Client, make_verification, status, refreshes
):
    verification = make_verification(status, session_key=client_session_key(logged_in_client))

    page = logged_in_client.get(reverse("two_factor:verify", args=[verification.pk]))

    assert page.status_code == 200
    verify = reverse("two_factor:verify", args=[verification.pk])
    meta = f'<noscript><meta http-equiv="refresh" content="2;url={verify}"></noscript>'
    assert (meta.encode() in page.content) is refreshes


def test_a_verified_page_links_onwards_without_javascript(logged_in_client, make_verification):
    verification = make_verification(
        Status.VERIFIED, session_key=client_session_key(logged_in_client)
    )

    page = logged_in_client.get(reverse("two_factor:verify", args=[verification.pk]))

    complete = reverse("two_factor:complete", args=[verification.pk])
    assert f'<a id="continue-link" role="button" href="{complete}"'.encode() in page.content
    assert b"Wrong number?" not in page.content


def test_before_verification_the_page_offers_to_change_a_wrong_number(make_verification):
    verification = make_verification(Status.SENT)

    fragment = _render(verification)

    wrong_number = reverse("two_factor:wrong_number", args=[verification.pk])
    assert f'<form method="post" action="{wrong_number}"' in fragment
    assert "Wrong number? Change it" in fragment


def test_the_code_form_rendered_once_per_language_and_settings_matches_djangos(
    make_verification, settings
):
    """The code form's fields are rendered from CodeForm once per language, verdict
    and code length (a third of every push's rendering, otherwise): what the page
    shows is exactly what Django renders for the form, and nothing is stale."""
    from django.utils import translation

    from two_factor.forms import CodeForm
    from two_factor.status import _code_form

    verification = make_verification(Status.SENT)
    with translation.override("fr"):
        french = _render(verification)
        assert str(CodeForm()["code"]) == str(_code_form(invalid=False, typed="").code)
    english = _render(verification)
    assert f">{CodeForm()['code'].label} <input" in english
    with translation.override("fr"):
        assert f">{CodeForm()['code'].label} <input" in french
    assert french != english

    settings.TWO_FACTOR_CODE_LENGTH = 8
    assert 'data-code-length="8"' in _render(verification)
    # What a voter typed is shown back, never kept for anyone else.
    assert 'value="12ab"' in str(_code_form(invalid=True, typed="12ab").code)
    assert 'value="12ab"' not in str(_code_form(invalid=True, typed="").code)


def test_the_pages_urls_are_what_reverse_says(make_verification):
    from two_factor.status import VERIFICATION_URLS, verification_urls

    verification = make_verification(Status.SENT)
    assert verification_urls(verification.pk) == {
        name: reverse(f"two_factor:{name}", args=[verification.pk]) for name in VERIFICATION_URLS
    }


def test_the_version_never_claims_more_than_the_row_shows(make_verification):
    """A worker may move the row on between a request's read of it and its rendering: the
    page is then shown the row as stored, at the version of that state, never the older
    state under the newer version (the page would take it for as new as the push of the
    newer state, and put it back: static/pollstr/live.js)."""
    verification = make_verification(Status.SENT)
    read_by_the_request = Verification.objects.get(pk=verification.pk)
    transition(verification, Status.CHECKING, reason="code submitted")  # the worker's write
    newest = VerificationEvent.objects.filter(verification=verification).latest("pk")

    context = status_context(read_by_the_request)

    assert context["verification"].status == Status.CHECKING
    assert context["version"] == newest.pk
    assert f'data-version="{newest.pk}"' in _render(read_by_the_request)


def test_the_timeline_says_each_step_and_its_time_as_djangos_filters_would(
    make_verification, settings
):
    """The timeline's labels and times are formatted when the status is computed (through
    the template's filters, they were a third of every push's rendering): the same text
    as ``|date:"c"`` and ``|time:"H:i:s"``, in the active time zone and language."""
    from django.template import Context, Template
    from django.utils import translation

    settings.TIME_ZONE = "Asia/Kolkata"  # +05:30: a local time no UTC clock would show
    verification = make_verification(Status.SENT, channel="sms")
    _event(verification, "", Status.QUEUED)
    _event(verification, Status.QUEUED, Status.SENDING)
    VerificationEvent.objects.create(
        verification=verification,
        from_status=Status.SENDING,
        to_status=Status.SENT,
        channel=verification.channel,
    )
    filters = Template('{{ at|date:"c" }} {{ at|time:"H:i:s" }}')

    with translation.override("fr"):
        fragment = _render(verification)
        steps = status_context(verification)["timeline"]
    reached = [step for step in steps if step.at is not None]
    assert [step.status for step in reached] == [Status.QUEUED, Status.SENDING, Status.SENT]
    for step in reached:
        iso, clock = filters.render(Context({"at": step.at})).split()
        assert iso.endswith("+05:30")
        assert f'<time datetime="{iso}">{clock}</time>' in fragment
    assert ">Demande reçue<time" in fragment  # "Request received", in the page's language
