"""The code page where voters met its rough edges (#17), in Chromium on the real stack:
desktop and phone, with and without JavaScript."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from polls.models import Question
from tests.e2e.voter import TIMEOUT_MS, Voter, wrong_code_for

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
MALFORMED = "Enter the 6-digit code we sent you."

# WebOTP as Chrome on Android offers it: navigator.credentials.get({otp}) answers with the
# code once the SMS arrives. The test plays the SMS (window.__otp.deliver) or the browser
# giving up (window.__otp.fail).
FAKE_WEBOTP = """
window.OTPCredential = function OTPCredential() {};
window.__otp = { calls: [] };
navigator.credentials.get = function (options) {
  return new Promise(function (resolve, reject) {
    window.__otp.calls.push(options);
    window.__otp.deliver = function (code) { resolve({ type: "otp", code: code }); };
    window.__otp.fail = function () { reject(new DOMException("gave up", "AbortError")); };
  });
};
"""


def _first_poll() -> Question:
    return Question.objects.published().order_by("pk").first()


def _on_the_code_page(
    e2e_stack: dict[str, Any], browser: Browser, **context_options: Any
) -> tuple[Voter, Page, Question]:
    """A voter who signed up, opened a poll and typed a number; the code is out. Returns
    the voter, a page for the sandbox inbox and the poll."""
    question = _first_poll()
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context(**context_options).new_page(), e2e_stack["url"])
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    voter.wait_for_status("sent")
    return voter, inbox, question


def _focused_is_not_body(page: Page) -> bool:
    return page.evaluate(
        "document.activeElement !== null && document.activeElement !== document.body"
    )


# --- 2. a malformed code stays in the box, to fix ---------------------------------------------


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_a_malformed_code_stays_in_the_box_marked_as_the_fields_error(
    e2e_stack: dict[str, Any], browser: Browser, javascript: bool
):
    voter, _, _ = _on_the_code_page(e2e_stack, browser, java_script_enabled=javascript)
    page, field = voter.page, voter.page.locator("#id_code")

    for typed in ("12", "abcdef"):
        voter.enter_code(typed)
        expect(page.locator("#id_code_error")).to_contain_text(MALFORMED, timeout=TIMEOUT_MS)
        expect(field).to_have_value(typed)
        expect(field).to_have_attribute("aria-invalid", "true")
        assert "id_code_error" in (field.get_attribute("aria-describedby") or "")
        if javascript:
            expect(field).to_be_focused()
        else:
            assert field.get_attribute("autofocus") is not None
        expect(voter.status()).to_have_attribute("data-status", "sent")


# --- 3. a wrong code is said once ------------------------------------------------------------


def test_a_wrong_code_is_announced_once_in_one_wording(e2e_stack: dict[str, Any], browser: Browser):
    voter, inbox, _ = _on_the_code_page(e2e_stack, browser)
    page = voter.page

    voter.enter_code(wrong_code_for(voter.code_from_inbox(inbox)))

    expect(page.locator("#status-line")).to_contain_text("2 attempts left", timeout=TIMEOUT_MS)
    said = page.locator("main").inner_text()
    assert said.count("didn't match") == 1, said
    # What the field's description points at is that one sentence, in the live region.
    described_by = page.locator("#id_code").get_attribute("aria-describedby") or ""
    error = page.locator("#id_code_error")
    assert "id_code_error" in described_by.split()
    expect(error).to_have_text("That code didn't match: 2 attempts left.")
    assert page.evaluate(
        "document.getElementById('status-line').contains(document.getElementById('id_code_error'))"
    )


@pytest.mark.parametrize(
    "stack_settings", [{"TWO_FACTOR_SANDBOX_LATENCY": "0.5"}], indirect=True, ids=["slow-check"]
)
def test_an_answer_overtaken_by_the_push_of_the_next_state_never_puts_the_older_back(
    e2e_stack: dict[str, Any], browser: Browser
):
    """The verdict on a code comes from the worker over the websocket; the answer to the
    code's submission ("Checking your code…") comes over HTTP, and can arrive after it
    (a busy server, a slow network). The page keeps the newer state."""
    voter, inbox, _ = _on_the_code_page(e2e_stack, browser)
    page = voter.page
    held: list[tuple[Any, Any]] = []
    # The submission reaches the server at once; its answer reaches the page when the
    # test lets it (the provider's half-second latency makes it the older state).
    page.route(
        re.compile(r"/v/[0-9a-f-]+/code/$"), lambda route: held.append((route, route.fetch()))
    )

    voter.enter_code(wrong_code_for(voter.code_from_inbox(inbox)))
    expect(page.locator("#status-line")).to_contain_text("2 attempts left", timeout=TIMEOUT_MS)
    assert len(held) == 1
    route, answer = held[0]
    assert "Checking your code" in answer.text()

    page.evaluate(
        "window.__answered = false; document.addEventListener('htmx:afterRequest',"
        " function () { window.__answered = true; }, {once: true})"
    )
    route.fulfill(response=answer)
    page.wait_for_function("window.__answered", timeout=TIMEOUT_MS)

    expect(page.locator("#status-line")).to_contain_text("2 attempts left")
    expect(voter.status()).to_have_attribute("data-status", "sent")
    expect(page.locator("#id_code")).to_be_editable()


# --- 4. without JavaScript nothing waits for a click or a clock that never moves --------------


def test_without_javascript_a_verified_code_goes_on_by_itself(
    e2e_stack: dict[str, Any], browser: Browser
):
    voter, inbox, question = _on_the_code_page(e2e_stack, browser, java_script_enabled=False)

    voter.enter_code(voter.code_from_inbox(inbox))

    # Nobody clicks "Continue".
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    expect(voter.page.locator(".messages")).to_contain_text("Your phone is verified")


@pytest.mark.parametrize(
    "stack_settings", [{"TWO_FACTOR_RESEND_COOLDOWN": "6"}], indirect=True, ids=["cooldown-6s"]
)
def test_without_javascript_the_new_code_button_waits_disabled_until_the_page_offers_it(
    e2e_stack: dict[str, Any], browser: Browser
):
    voter, _, _ = _on_the_code_page(e2e_stack, browser, java_script_enabled=False)
    resend = voter.page.get_by_role("button", name="Send a new code")
    wait = voter.page.locator(".resend-wait")

    expect(wait).to_contain_text("You can ask for a new code in")
    expect(resend).to_be_disabled()

    # The page reloads itself when the wait ends: the button works, the wait is gone.
    expect(resend).to_be_enabled(timeout=10_000)
    expect(wait).to_have_count(0)


# --- 5. cancel keeps the number ----------------------------------------------------------------


def test_cancel_keeps_the_number_just_typed(e2e_stack: dict[str, Any], browser: Browser):
    voter, _, _ = _on_the_code_page(e2e_stack, browser)

    voter.page.get_by_role("button", name="Cancel").click()

    expect(voter.page).to_have_url(re.compile(r"/2fa/$"))
    expect(voter.page.locator("#id_number")).to_have_value(voter.number)


# --- 6. what the page shows is the state it is in -----------------------------------------------


@pytest.mark.parametrize(
    "stack_settings", [{"TWO_FACTOR_RESEND_COOLDOWN": "0"}], indirect=True, ids=["no-cooldown"]
)
def test_the_new_code_sentence_leaves_when_the_call_starts(
    e2e_stack: dict[str, Any], browser: Browser
):
    voter, _, _ = _on_the_code_page(e2e_stack, browser)
    page = voter.page

    page.get_by_role("button", name="Send a new code").click()
    voter.wait_for_status("sent")
    page.get_by_role("button", name="Call me instead").click()
    voter.wait_for_channel("voice")

    expect(page.locator("#status-line")).to_have_text(
        re.compile(r"We.re calling \+33 [^.]* to read out the code\.")
    )
    expect(page.locator("main")).not_to_contain_text("sending you a new code")


def test_after_the_third_wrong_code_focus_stays_on_the_page_and_only_the_reason_is_red(
    e2e_stack: dict[str, Any], browser: Browser
):
    voter, inbox, _ = _on_the_code_page(e2e_stack, browser)
    page, line = voter.page, voter.page.locator("#status-line")
    wrong = wrong_code_for(voter.code_from_inbox(inbox))

    for left in ("2 attempts left", "1 attempt left"):
        voter.enter_code(wrong)
        expect(line).to_contain_text(left, timeout=TIMEOUT_MS)
    voter.enter_code(wrong)
    voter.wait_for_status("failed")

    expect(page.locator("#id_code")).to_have_count(0)
    page.wait_for_function("document.activeElement !== document.body", timeout=5_000)
    assert _focused_is_not_body(page)
    number_line = page.locator(".number-line")
    expect(number_line).not_to_contain_text("goes to")
    colour = "el => getComputedStyle(el).color"
    error_colour = line.locator(".status-failed").evaluate(colour)
    assert number_line.evaluate(colour) != error_colour


def test_the_masked_number_never_wraps(e2e_stack: dict[str, Any], browser: Browser):
    voter, _, _ = _on_the_code_page(e2e_stack, browser, viewport={"width": 320, "height": 640})

    number = voter.page.locator(".number-line strong")
    # `white-space` is a shorthand in newer Chromium (its computed value reads ""): the
    # longhand that says "do not wrap" is text-wrap-mode where the browser has it.
    wrap = "el => { const s = getComputedStyle(el); return s.textWrapMode || s.whiteSpace; }"
    assert number.evaluate(wrap) == "nowrap"
    assert number.evaluate("el => el.getClientRects().length") == 1


def test_on_a_desktop_the_verify_button_sits_beside_a_wide_code_box(
    e2e_stack: dict[str, Any], browser: Browser
):
    voter, _, _ = _on_the_code_page(e2e_stack, browser, viewport=DESKTOP)

    field = voter.page.locator("#id_code").bounding_box()
    button = voter.page.locator("#code-form button[type=submit]").bounding_box()
    assert field
    assert button
    assert field["width"] >= 200, field
    gap = button["x"] - (field["x"] + field["width"])
    assert 0 <= gap <= 24, (field, button)
    # On the same line: the button's middle is within the field's height.
    middle = button["y"] + button["height"] / 2
    assert field["y"] <= middle <= field["y"] + field["height"], (field, button)


# --- 7. the last digit submits; the browser may read the SMS itself ----------------------------


def test_the_last_digit_typed_submits_the_code_once(e2e_stack: dict[str, Any], browser: Browser):
    voter, inbox, question = _on_the_code_page(e2e_stack, browser, viewport=PHONE)
    page = voter.page
    posts: list[str] = []
    page.on(
        "request", lambda r: r.method == "POST" and r.url.endswith("/code/") and posts.append(r.url)
    )

    page.locator("#id_code").press_sequentially(voter.code_from_inbox(inbox), delay=30)

    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    assert len(posts) == 1, posts


def test_the_browser_reads_the_code_from_the_sms_where_it_can(
    e2e_stack: dict[str, Any], browser: Browser
):
    question = _first_poll()
    inbox = browser.new_context().new_page()
    context = browser.new_context()
    context.add_init_script(FAKE_WEBOTP)
    voter = Voter(context.new_page(), e2e_stack["url"])
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    voter.wait_for_status("sent")
    page = voter.page

    page.wait_for_function("window.__otp.calls.length > 0", timeout=TIMEOUT_MS)
    assert page.evaluate("window.__otp.calls[0].otp.transport") == ["sms"]
    page.evaluate("code => window.__otp.deliver(code)", voter.code_from_inbox(inbox))

    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)


def test_a_code_typed_by_hand_stops_webotp_and_its_giving_up_goes_unsaid(
    e2e_stack: dict[str, Any], browser: Browser
):
    question = _first_poll()
    inbox = browser.new_context().new_page()
    context = browser.new_context()
    context.add_init_script(FAKE_WEBOTP)
    voter = Voter(context.new_page(), e2e_stack["url"])
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    voter.wait_for_status("sent")
    page = voter.page
    page.wait_for_function("window.__otp.calls.length > 0", timeout=TIMEOUT_MS)
    code = voter.code_from_inbox(inbox)

    voter.enter_code(wrong_code_for(code))
    expect(page.locator("#status-line")).to_contain_text("2 attempts left", timeout=TIMEOUT_MS)
    assert page.evaluate("window.__otp.calls[0].signal.aborted")
    page.evaluate("window.__otp.fail()")  # the browser stops waiting: nothing to say

    expect(page.locator("#connection-notice")).to_have_text("")
    voter.enter_code(code)
    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
