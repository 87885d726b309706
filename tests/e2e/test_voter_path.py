"""The voter's path where it used to break, in a real browser on the real stack: numbers
nobody can squat, a typo fixed from the code page, waits that never freeze, a server
that drops out while a code is on its way."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from polls.models import Question
from tests.e2e.voter import TIMEOUT_MS, Voter, fresh_number, wrong_code_for
from two_factor.models import PhoneNumber, Status, Verification

# Sentences that would tell a stranger a number is someone's: none may appear before the
# code proved who holds the phone.
REVEALING = re.compile(r"another account|already (registered|in use|taken)|can't use", re.I)


def _new_voter_with_a_code_on_its_way(
    e2e_stack: dict[str, Any], browser: Browser
) -> tuple[Voter, Page, Question]:
    """A voter who signed up, opened a poll and typed a number: the code page says "sent".
    Returns the voter, a page for the sandbox inbox and the poll."""
    question = _first_poll()
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context().new_page(), e2e_stack["url"])
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    voter.wait_for_status("sent")
    return voter, inbox, question


def _first_poll() -> Question:
    return Question.objects.published().order_by("pk").first()


def _verification_on(page: Page) -> Verification:
    match = re.search(r"/2fa/v/([0-9a-f-]+)/", page.url)
    assert match, page.url
    return Verification.objects.get(pk=match.group(1))


def _mark_page(page: Page) -> None:
    page.evaluate("window.__pollstrNoReload = true")


def _still_same_page(page: Page) -> bool:
    return page.evaluate("window.__pollstrNoReload === true")


def _says_nothing_about_owners(page: Page) -> None:
    text = page.locator("main").inner_text()
    assert not REVEALING.search(text), text


def test_a_number_typed_by_another_account_is_won_by_whoever_verifies_it(
    e2e_stack: dict[str, Any], browser: Browser
):
    base, question = e2e_stack["url"], _first_poll()
    inbox = browser.new_context().new_page()
    owners_number = fresh_number()

    squatter = Voter(browser.new_context().new_page(), base, number=owners_number)
    squatter.sign_up()
    squatter.open_poll(question.pk)
    squatter.give_number()
    squatter.wait_for_status("sent")
    _says_nothing_about_owners(squatter.page)
    # The squatter never enters a code.

    owner = Voter(browser.new_context().new_page(), base, number=owners_number)
    owner.sign_up()
    owner.open_poll(question.pk)
    owner.give_number()  # the same answer as for any number: a code is on its way
    owner.wait_for_status("sent")
    _says_nothing_about_owners(owner.page)
    owner.enter_code(owner.code_from_inbox(inbox))
    expect(owner.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    _says_nothing_about_owners(owner.page)

    holder = PhoneNumber.objects.get(number=owners_number)
    assert holder.user.get_username() == owner.username
    assert holder.verified_at is not None
    assert not PhoneNumber.objects.filter(user__username=squatter.username).exists()


def test_a_mistyped_number_is_corrected_from_the_code_page(
    e2e_stack: dict[str, Any], browser: Browser
):
    base, question = e2e_stack["url"], _first_poll()
    inbox = browser.new_context().new_page()
    right_number = fresh_number()
    voter = Voter(browser.new_context().new_page(), base, number=fresh_number())
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()  # the typo
    voter.wait_for_status("sent")
    mistyped = _verification_on(voter.page)

    voter.page.click("text=Wrong number? Change it")
    expect(voter.page).to_have_url(re.compile(r"/2fa/number/$"))
    expect(voter.page.locator("#id_number")).to_have_value(voter.number)
    expect(voter.page.locator("#id_number")).to_be_focused()
    mistyped.refresh_from_db()
    assert mistyped.status == Status.CANCELLED

    voter.number = right_number
    voter.page.fill("#id_number", right_number)
    voter.page.click("main button[type=submit]")
    expect(voter.page).to_have_url(re.compile(r"/2fa/v/[0-9a-f-]+/$"))
    voter.wait_for_status("sent")
    expect(voter.page.locator(".number-line")).to_contain_text(right_number[-2:])
    voter.enter_code(voter.code_from_inbox(inbox))
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    assert PhoneNumber.objects.get(user__username=voter.username).number == right_number


@pytest.mark.parametrize(
    "stack_settings", [{"TWO_FACTOR_RESEND_COOLDOWN": "6"}], indirect=True, ids=["cooldown-6s"]
)
def test_the_new_code_button_appears_when_the_countdown_reaches_zero(
    e2e_stack: dict[str, Any], browser: Browser
):
    voter, inbox, question = _new_voter_with_a_code_on_its_way(e2e_stack, browser)
    _mark_page(voter.page)
    first_code = voter.code_from_inbox(inbox)
    resend = voter.page.get_by_role("button", name="Send a new code")
    wait = voter.page.locator(".resend-wait")

    expect(resend).to_be_hidden()
    expect(wait).to_contain_text(re.compile(r"0:0[1-6]"))
    expect(resend).to_be_visible(timeout=10_000)
    expect(wait).to_be_hidden()
    assert _still_same_page(voter.page)

    resend.click()
    expect(voter.page).to_have_url(re.compile(r"/2fa/v/[0-9a-f-]+/$"))
    voter.wait_for_status("sent")
    expect(voter.page.locator(".resend-note")).to_contain_text(
        "codes we sent you before no longer work"
    )
    assert _verification_on(voter.page).is_resend
    new_code = voter.code_from_inbox(inbox)
    voter.enter_code(new_code)
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    assert first_code  # read before the resend: the inbox held the first code then


@pytest.mark.parametrize(
    "stack_settings", [{"TWO_FACTOR_SANDBOX_LATENCY": "7"}], indirect=True, ids=["slow-sms"]
)
def test_a_slow_send_says_so_without_a_reload(e2e_stack: dict[str, Any], browser: Browser):
    voter = Voter(browser.new_context().new_page(), e2e_stack["url"])
    voter.sign_up()
    voter.open_poll(_first_poll().pk)
    voter.give_number()
    _mark_page(voter.page)
    line = voter.page.locator("#status-line")
    expect(voter.page.locator("#status-heading")).to_have_text("Sending your code")
    slow = line.get_by_text("This is taking longer than usual.")
    expect(slow).to_be_hidden()

    expect(slow).to_be_visible(timeout=6_000)
    assert voter.status().get_attribute("data-status") in {"queued", "sending"}
    assert _still_same_page(voter.page)
    voter.wait_for_status("sent")
    expect(line).to_have_text(re.compile(r"We sent a code by SMS to \+33 [^.]*\."))
    expect(voter.page.locator("#status-heading")).to_have_text("Enter your code")


def test_a_code_sent_while_the_server_is_unreachable_is_sent_again(
    e2e_stack: dict[str, Any], browser: Browser
):
    voter, inbox, question = _new_voter_with_a_code_on_its_way(e2e_stack, browser)
    code = voter.code_from_inbox(inbox)
    verification = _verification_on(voter.page)
    dropped: list[str] = []

    def unreachable(route: Route) -> None:
        dropped.append(route.request.url)
        route.abort("internetdisconnected")

    voter.page.route("**/code/", unreachable)
    voter.enter_code(code)
    notice = voter.page.locator("#connection-notice")
    expect(notice).to_contain_text("couldn't reach the server", timeout=TIMEOUT_MS)
    expect(voter.page.locator("#id_code")).to_have_value(code)  # kept for the retry
    verification.refresh_from_db()
    assert verification.status == Status.SENT  # the server never saw it

    voter.page.unroute("**/code/")
    # Nobody presses anything: the page sends the code again by itself.
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    assert dropped
    verification.refresh_from_db()
    assert verification.status == Status.CONSUMED


def test_without_javascript_the_code_page_refreshes_itself_and_links_onwards(
    e2e_stack: dict[str, Any], browser: Browser
):
    base, question = e2e_stack["url"], _first_poll()
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context(java_script_enabled=False).new_page(), base)
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()

    # Nobody clicks "Refresh status": the page reloads itself until the code is out.
    voter.wait_for_status("sent")
    expect(voter.page.locator("#id_code")).to_be_visible()
    # Without JavaScript the new-code button shows at once, disabled while it waits.
    expect(voter.page.get_by_role("button", name="Send a new code")).to_be_disabled()
    voter.enter_code(voter.code_from_inbox(inbox))
    # Verified: on to the poll by itself (tests/e2e/test_code_page.py holds the details).
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)


def test_a_wrong_code_marks_the_field_and_the_sentence_leaves_with_its_moment(
    e2e_stack: dict[str, Any], browser: Browser
):
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context().new_page(), e2e_stack["url"])
    voter.sign_up()
    voter.open_poll(_first_poll().pk)
    voter.give_number()
    page = voter.page
    # The live region is one element for the page's whole life: updates change its text.
    page.evaluate("window.__statusLine = document.getElementById('status-line')")
    same_region = "window.__statusLine === document.getElementById('status-line')"
    voter.wait_for_status("sent")
    code_input, line = page.locator("#id_code"), page.locator("#status-line")

    voter.enter_code(wrong_code_for(voter.code_from_inbox(inbox)))
    expect(line).to_contain_text("That code didn't match: 2 attempts left.", timeout=TIMEOUT_MS)
    expect(code_input).to_have_attribute("aria-invalid", "true")
    expect(code_input).to_have_value("")
    expect(code_input).to_be_focused()
    expect(page.locator("#id_code_error")).to_be_visible()
    assert "id_code_error" in (code_input.get_attribute("aria-describedby") or "")
    assert page.evaluate(same_region)

    page.click("text=Call me instead")
    voter.wait_for_channel("voice")
    expect(line).to_have_text(re.compile(r"We.re calling \+33 [^.]* to read out the code\."))
    expect(code_input).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_code_error")).to_have_count(0)
    expect(page.locator("#status-heading")).to_have_text("Enter your code")
    assert page.evaluate(same_region)
