"""Silent authentication in Chromium on the real stack, offline through the sandbox's
mobile-network page: it completes (the phone comes back with the code and the session is
verified), or it fails and the open code page falls back to SMS live."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from polls.models import Question
from tests.e2e.voter import TIMEOUT_MS, Voter

pytestmark = pytest.mark.parametrize(
    "stack_settings",
    [{"TWO_FACTOR_WORKFLOW": "silent_auth,sms"}],
    indirect=True,
    ids=["silent_auth-sms"],
)


def _on_the_code_page(e2e_stack: dict[str, Any], browser: Browser) -> tuple[Voter, Question]:
    question = Question.objects.published().order_by("pk").first()
    voter = Voter(browser.new_context().new_page(), e2e_stack["url"])
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    voter.wait_for_channel("silent_auth")
    return voter, question


def test_silent_authentication_completes_in_the_sandbox(
    e2e_stack: dict[str, Any], browser: Browser
) -> None:
    voter, question = _on_the_code_page(e2e_stack, browser)
    page = voter.page
    expect(page.locator("#status-line")).to_contain_text("Continue on your phone")
    expect(page.locator("#code-form")).to_have_count(0)

    page.get_by_role("button", name="Continue on your phone").click()
    expect(page.locator("h1")).to_have_text("Sandbox mobile network")
    page.get_by_role("button", name="Confirm the number (mobile data)").click()

    # Back on our return page, which sends the code on by itself, then verified.
    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    expect(page.locator(".messages")).to_contain_text("Your phone is verified")


def test_silent_authentication_fails_and_the_open_page_falls_back_to_sms_live(
    e2e_stack: dict[str, Any], browser: Browser
) -> None:
    voter, question = _on_the_code_page(e2e_stack, browser)
    page = voter.page
    expect(page.locator("body")).to_have_class(re.compile("ws-open"), timeout=TIMEOUT_MS)
    page.evaluate("window.__samePage = true")
    check_url = page.locator("#check-link").get_attribute("href")
    assert check_url

    # The phone (here another tab of the same browser, on Wi-Fi) opens the link.
    phone = page.context.new_page()
    phone.goto(f"{e2e_stack['url']}{check_url}")
    phone.get_by_role("button", name="Can't confirm (Wi-Fi or a computer)").click()
    expect(phone.locator("h1")).to_have_text("Your network couldn't confirm it")

    voter.wait_for_channel("sms")
    expect(page.locator("#status-line")).to_contain_text(
        "Your mobile network couldn't confirm your number", timeout=TIMEOUT_MS
    )
    expect(page.locator("#status-line")).to_contain_text("We sent a code by SMS to")
    expect(page.locator('.timeline li[data-channel="silent_auth"]')).to_have_class("done")
    expect(page.locator('.timeline li[data-channel="sms"]')).to_have_class("current")
    assert page.evaluate("window.__samePage === true"), "the page reloaded"

    inbox = browser.new_context().new_page()
    voter.enter_code(voter.code_from_inbox(inbox))
    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
