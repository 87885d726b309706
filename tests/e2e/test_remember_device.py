"""Remember this device (issue 17, part 1) in Chromium on the real stack: a voter ticks
"Remember this device", signs out and in again and votes in another poll without a
code; once they forget the device on the account page, the next sign-in asks for a code
again. The code page with its box and the account page with a device pass axe-core,
light and dark, at 390 px."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from playwright.sync_api import Browser, Page, expect

from polls.models import Question, Vote
from tests.e2e.axe import PHONE, Checks
from tests.e2e.voter import TIMEOUT_MS, Voter
from two_factor.models import TrustedDevice


def _polls() -> list[Question]:
    return list(Question.objects.published().order_by("pk")[:3])


def _vote(page: Page) -> None:
    page.locator("input[name=choice]").first.check()
    page.click("main button[type=submit]")
    expect(page).to_have_url(re.compile(r"/results/$"))


def _device_cookie(page: Page) -> dict[str, Any] | None:
    cookies = page.context.cookies()
    return next((c for c in cookies if c["name"] == settings.TWO_FACTOR_DEVICE_COOKIE_NAME), None)


def test_a_remembered_device_votes_without_a_code_until_it_is_forgotten(
    e2e_stack: dict[str, Any], browser: Browser
):
    base, check = e2e_stack["url"], Checks()
    first, second, third = _polls()
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context(viewport=PHONE, is_mobile=True).new_page(), base)
    page = voter.page
    voter.sign_up()

    # The code page offers the box; ticked, the code verifies and the device is kept.
    voter.open_poll(first.pk)
    voter.give_number()
    voter.wait_for_status("sent")
    remember = page.get_by_label("Remember this device for 30 days")
    expect(remember).not_to_be_checked()
    check(page, "code page with the remember box")
    remember.check()
    check(page, "code page with the remember box ticked")
    voter.enter_code(voter.code_from_inbox(inbox))
    expect(page).to_have_url(re.compile(rf"/polls/{first.pk}/$"), timeout=TIMEOUT_MS)
    cookie = _device_cookie(page)
    assert cookie is not None
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    _vote(page)

    # Signed out and in again: another poll takes the vote with no code asked.
    voter.log_out()
    voter.log_in()
    voter.open_poll(second.pk)
    expect(page).to_have_url(re.compile(rf"/polls/{second.pk}/$"))
    _vote(page)
    assert Vote.objects.filter(user__username=voter.username).count() == 2
    assert _device_cookie(page)["value"] != cookie["value"]  # the token rotated

    # The account page lists it as this device; "Forget" ends it.
    page.click("header >> text=Account")
    devices = page.locator("section[aria-labelledby=remembered-devices]")
    expect(devices.locator("li")).to_have_count(1)
    expect(devices.locator("li")).to_contain_text("Chrome on Linux")
    expect(devices.locator("li .badge")).to_have_text("This device")
    check(page, "account with a remembered device")
    devices.get_by_role("button", name="Forget Chrome on Linux (this device)").click()
    expect(page.locator(".messages")).to_contain_text("Forgotten")
    expect(devices).to_contain_text("None.")
    check(page, "account after forgetting the device")
    assert _device_cookie(page) is None
    assert TrustedDevice.objects.get(user__username=voter.username).revoked_reason == "forgotten"

    # Signed out and in again: the next poll asks for a code.
    voter.log_out()
    voter.log_in()
    voter.open_poll(third.pk)
    expect(page).to_have_url(re.compile(r"/2fa/\?next="))
    check(page, "asked for a code again")

    check.assert_clean(expected=5)


def test_without_javascript_the_box_remembers_the_device_too(
    e2e_stack: dict[str, Any], browser: Browser
):
    first, second, _ = _polls()
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context(java_script_enabled=False).new_page(), e2e_stack["url"])
    page = voter.page
    voter.sign_up()
    voter.open_poll(first.pk)
    voter.give_number()
    voter.wait_for_status("sent")

    page.get_by_label("Remember this device for 30 days").check()
    voter.enter_code(voter.code_from_inbox(inbox))
    # Without JavaScript the verified page moves on by itself (its refresh completes).
    expect(page).to_have_url(re.compile(rf"/polls/{first.pk}/$"), timeout=20_000)
    assert _device_cookie(page) is not None

    voter.log_out()
    voter.log_in()
    voter.open_poll(second.pk)
    expect(page).to_have_url(re.compile(rf"/polls/{second.pk}/$"))
    expect(page.locator("input[name=choice]").first).to_be_visible()
