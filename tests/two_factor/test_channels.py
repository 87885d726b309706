"""A channel is a row (two_factor/channels.py): the workflow each verification runs, the
channels a voter may switch to, WhatsApp, and a channel declared only in the table
going through the whole flow."""

from __future__ import annotations

import html

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from tests.phone_numbers import NUMBER, give_phone
from two_factor import channels
from two_factor.channels import Channel, workflow_for, workflow_parse, workflow_steps
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.models import Status, Verification

pytestmark = pytest.mark.usefixtures("eager_tasks")

FRENCH = "+33612345678"


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _url(name: str, verification: Verification) -> str:
    return reverse(f"two_factor:{name}", args=[verification.pk])


def _started(client: Client, post) -> Verification:
    response = post(client, "/2fa/")
    assert response.status_code == 302, response.content[:300]
    return Verification.objects.get(pk=response["Location"].rstrip("/").rsplit("/", 1)[-1])


# --- the workflow: chosen per region at the start, kept on the row -------------------------


def test_the_default_workflow_is_sms_then_voice_as_before():
    from django.conf import settings

    assert settings.TWO_FACTOR_WORKFLOW == ("sms", "voice")
    assert workflow_for(country="GB") == ("sms", "voice")


def test_a_region_gets_its_own_workflow_and_others_the_default(settings):
    settings.TWO_FACTOR_WORKFLOW_BY_REGION = {"FR": ("whatsapp", "sms")}

    assert workflow_for(country="FR") == ("whatsapp", "sms")
    assert workflow_for(country="GB") == settings.TWO_FACTOR_WORKFLOW


def test_a_verification_keeps_the_workflow_of_its_numbers_region_from_the_start(
    settings, user, logged_in_client, post
):
    settings.TWO_FACTOR_WORKFLOW_BY_REGION = {"FR": ("whatsapp", "voice")}
    give_phone(user, FRENCH, verified=True)

    page = logged_in_client.get("/2fa/")
    assert "we'll send a one-time code by WhatsApp to" in _text(page)
    assert "If it doesn't arrive, we'll call you instead." in _text(page)
    assert "Send me a code by WhatsApp" in _text(page)
    verification = _started(logged_in_client, post)
    settings.TWO_FACTOR_WORKFLOW_BY_REGION = {}  # changed later: this one keeps its own

    verification.refresh_from_db()
    assert verification.workflow == ["whatsapp", "voice"]
    assert (verification.status, verification.channel, verification.step) == (
        Status.SENT,
        "whatsapp",
        0,
    )
    [message] = sandbox_messages_for(FRENCH)
    assert message["channel"] == "whatsapp"
    page = logged_in_client.get(_url("verify", verification))
    assert f"We sent a code by WhatsApp to {verification.masked_number}." in _text(page)
    assert "Call me instead" in _text(page)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("", "is empty"),
        ("sms,pigeon", "unknown channel 'pigeon'"),
        ("sms,,voice", "an empty step"),
        ("sms,voice,sms", "'sms' appears twice"),
        ("sms,whatsapp,voice,sms", "appears twice"),
    ],
)
def test_a_bad_workflow_is_refused_naming_the_value(value, said):
    with pytest.raises(ImproperlyConfigured, match=said) as refused:
        workflow_parse(value, setting="TWO_FACTOR_WORKFLOW")

    assert "TWO_FACTOR_WORKFLOW" in str(refused.value)


def test_more_steps_than_verify_takes_are_refused(monkeypatch):
    monkeypatch.setitem(channels.CHANNELS, "rcs", _rcs())

    with pytest.raises(ImproperlyConfigured, match="has 4 steps; Verify takes at most 3"):
        workflow_parse("sms,whatsapp,voice,rcs", setting="TWO_FACTOR_WORKFLOW")


def test_whatsapp_steps_carry_the_configured_business_number(settings):
    settings.VONAGE_WHATSAPP_FROM = "447700900001"

    [sms, whatsapp] = workflow_steps(["sms", "whatsapp"])

    assert (sms.channel, dict(sms.params)) == ("sms", {})
    assert (whatsapp.channel, dict(whatsapp.params)) == ("whatsapp", {"from": "447700900001"})


def test_every_sentence_of_the_table_is_translatable():
    from django.utils.functional import Promise

    for row in channels.CHANNELS.values():
        for name in ("promise", "ask", "fallback", "running", "step_label", "offer", "coming"):
            assert isinstance(getattr(row, name), Promise), (row.name, name)


# --- the voter switches, live or without JavaScript -----------------------------------------


def test_the_code_page_offers_every_later_channel_and_a_switch_skips_to_it(
    three_step_workflow, user, logged_in_client, post
):
    give_phone(user, NUMBER, verified=True)
    verification = _started(logged_in_client, post)

    page = _text(logged_in_client.get(_url("verify", verification)))
    assert "Send it by WhatsApp instead" in page
    assert "Call me instead" in page
    assert "No code yet? We'll send it by WhatsApp in" in page

    post(logged_in_client, _url("switch_channel", verification), {"channel": "voice"})

    verification.refresh_from_db()
    assert (verification.channel, verification.step) == ("voice", 2)
    # Verify moves one step at a time: the WhatsApp step between was sent on the way.
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["voice", "whatsapp", "sms"]
    page = _text(logged_in_client.get(_url("verify", verification)))
    assert "Send it by WhatsApp instead" not in page
    assert "Call me instead" not in page
    timeline = [
        (step.channel, step.state)
        for step in logged_in_client.get(_url("verify", verification)).context["timeline"]
        if step.channel
    ]
    assert timeline == [("sms", "done"), ("whatsapp", "done"), ("voice", "current")]


# --- a new channel is a row of the table ------------------------------------------------------


def _rcs() -> Channel:
    return Channel(
        name="rcs",
        promise=_("To vote, confirm it's you: we'll send a one-time code by RCS to"),
        ask=_("Send me a code by RCS"),
        fallback=_("If it doesn't arrive, we'll send it by RCS instead."),
        running=_("We sent a code by RCS to %(number)s."),
        step_label=_("Sent by RCS"),
        offer=_("Send it by RCS instead"),
        switching=_("Sending your code by RCS…"),
        coming=_("No code yet? We'll send it by RCS in"),
        coming_now=_("No code yet? We're sending it by RCS now."),
        params=lambda: {"from": "Pollstr"},
    )


def test_a_channel_declared_only_in_the_table_runs_the_whole_flow(
    monkeypatch, settings, user, logged_in_client, post
):
    monkeypatch.setitem(channels.CHANNELS, "rcs", _rcs())
    settings.TWO_FACTOR_WORKFLOW = ("sms", "rcs")
    give_phone(user, NUMBER, verified=True)
    verification = _started(logged_in_client, post)

    page = _text(logged_in_client.get(_url("verify", verification)))
    assert "Send it by RCS instead" in page
    response = post(logged_in_client, _url("switch_channel", verification), {"channel": "rcs"})
    assert response.status_code == 302

    page = _text(logged_in_client.get(_url("verify", verification)))
    assert f"We sent a code by RCS to {verification.masked_number}." in page
    assert "Sent by RCS" in page
    [rcs, sms] = sandbox_messages_for(NUMBER)
    assert (rcs["channel"], rcs["from"], sms["channel"]) == ("rcs", "Pollstr", "sms")
    assert rcs["code"] == sms["code"]

    post(logged_in_client, _url("submit_code", verification), {"code": rcs["code"]})
    verification.refresh_from_db()
    assert (verification.status, verification.channel) == (Status.VERIFIED, "rcs")
    response = logged_in_client.get(_url("complete", verification))
    assert response.status_code == 302
    verification.refresh_from_db()
    assert verification.status == Status.CONSUMED


def test_between_the_click_and_the_step_the_page_says_so_and_reloads_itself_without_js(
    logged_in_client, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):  # the task has not run yet
        response = logged_in_client.post(_url("switch_channel", sent), {"channel": "voice"})
    assert response.status_code == 302, response.status_code
    page = logged_in_client.get(response["Location"])

    assert "Calling you with your code…" in _text(page)
    assert "Call me instead" not in _text(page)
    verify = _url("verify", sent)
    assert f'<meta http-equiv="refresh" content="2;url={verify}">' in _text(page)

    from two_factor import services

    services.verification_next_channel(verification_id=sent.pk, reason="test", channel="voice")
    page = logged_in_client.get(verify)

    assert f"We're calling {sent.masked_number} to read out the code." in _text(page)
    assert 'content="2;url=' not in _text(page)
    sent.refresh_from_db()
    assert sent.switching_to == ""
