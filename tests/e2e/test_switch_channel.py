"""A voter switches from SMS to WhatsApp on the code page and verifies, in Chromium on
the real stack (daphne, a Celery worker, Redis, PostgreSQL): with JavaScript the
timeline moves live over the websocket; without it, plain forms and the page's own
refresh do the same."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from polls.models import Question
from tests.e2e.voter import TIMEOUT_MS, Voter

pytestmark = pytest.mark.parametrize(
    "stack_settings",
    [{"TWO_FACTOR_WORKFLOW": "sms,whatsapp,voice"}],
    indirect=True,
    ids=["sms-whatsapp-voice"],
)


def _first_poll() -> Question:
    return Question.objects.published().order_by("pk").first()


@pytest.mark.parametrize("javascript", [True, False], ids=["with-js", "without-js"])
def test_a_voter_switches_from_sms_to_whatsapp_and_verifies(
    e2e_stack: dict[str, Any], browser: Browser, javascript: bool
) -> None:
    question = _first_poll()
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context(java_script_enabled=javascript).new_page(), e2e_stack["url"])
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    page = voter.page
    if javascript:
        expect(page.locator("body")).to_have_class(re.compile("ws-open"), timeout=TIMEOUT_MS)
        page.evaluate("window.__samePage = true")
    else:
        _refresh_until(voter, lambda: voter.status().get_attribute("data-channel") == "sms")
    voter.wait_for_channel("sms")
    sms_code = voter.code_from_inbox(inbox)
    expect(page.locator('.timeline li[data-channel="sms"]')).to_have_class("current")
    expect(page.get_by_role("button", name="Call me instead")).to_be_visible()

    page.get_by_role("button", name="Send it by WhatsApp instead").click()

    if not javascript:
        # The form posted and came back; the page reloads itself until the step starts.
        _refresh_until(voter, lambda: voter.status().get_attribute("data-channel") == "whatsapp")
    voter.wait_for_channel("whatsapp")
    expect(page.locator("#status-line")).to_have_text(
        re.compile(r"We sent a code by WhatsApp to \+33 [^.]*\."), timeout=TIMEOUT_MS
    )
    expect(page.locator('.timeline li[data-channel="sms"]')).to_have_class("done")
    expect(page.locator('.timeline li[data-channel="whatsapp"]')).to_have_class("current")
    expect(page.locator('.timeline li[data-channel="whatsapp"]')).to_contain_text(
        "Sent by WhatsApp"
    )
    expect(page.get_by_role("button", name="Send it by WhatsApp instead")).to_have_count(0)
    expect(page.get_by_role("button", name="Call me instead")).to_be_visible()
    if javascript:
        assert page.evaluate("window.__samePage === true"), "the page reloaded"

    inbox.goto(f"{e2e_stack['url']}/2fa/sandbox/")
    whatsapp = inbox.locator(f'#sandbox-inbox tr[data-to="{voter.number[1:]}"]').first
    expect(whatsapp).to_contain_text("whatsapp")
    expect(whatsapp.locator(".sandbox-code")).to_have_text(sms_code)  # the same code

    voter.enter_code(sms_code)
    if not javascript:
        _refresh_until(voter, lambda: "/polls/" in page.url)
    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)


def _refresh_until(voter: Voter, reached: Any) -> None:
    """Without JavaScript the page reloads itself; a click on "Refresh status" stands in
    for a voter who does not want to wait for it."""
    from playwright.sync_api import Error as PlaywrightError

    for _ in range(50):
        try:
            if reached():
                return
            voter.page.wait_for_timeout(200)
            if "/2fa/v/" in voter.page.url:
                voter.page.click("text=Refresh status", timeout=TIMEOUT_MS)
        except PlaywrightError:
            continue  # the page's own refresh navigated meanwhile: look again
    raise AssertionError("the page never got there")
