"""The whole product in a real browser: daphne, a separate Celery worker, Redis,
PostgreSQL and Chromium, all started by the test (see conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError

from polls.models import Question, Vote
from tests.e2e.voter import TIMEOUT_MS, Voter, wrong_code_for

NO_RELOAD_MARK = "window.__pollstrNoReload"


def _first_poll() -> Question:
    return Question.objects.published().order_by("pk").first()


def _mark_page(page: Page) -> None:
    """Set a flag that only survives as long as the page is not reloaded."""
    page.evaluate(f"{NO_RELOAD_MARK} = true")


def _still_same_page(page: Page) -> bool:
    return page.evaluate(f"{NO_RELOAD_MARK} === true")


def _verify(voter: Voter, inbox: Page, question: Question) -> None:
    """The short way through verification, for a second browser that just needs it done."""
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    voter.wait_for_status("sent")
    voter.enter_code(voter.code_from_inbox(inbox))
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)


def test_a_new_voter_sees_live_status_and_a_watcher_sees_the_vote_arrive_live(
    e2e_stack: dict[str, Any], browser: Browser, screenshots: Path
):
    base = e2e_stack["url"]
    question = _first_poll()
    inbox = browser.new_context().new_page()

    watcher = Voter(browser.new_context().new_page(), base)
    _verify(watcher, inbox, question)
    watcher.page.goto(f"{base}/polls/{question.pk}/results/")
    expect(watcher.page.locator("body")).to_have_class(re.compile("ws-open"), timeout=TIMEOUT_MS)
    expect(watcher.page.locator("#total-votes")).to_have_text("0")
    _mark_page(watcher.page)

    voter = Voter(browser.new_context().new_page(), base)
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    _mark_page(voter.page)
    expect(voter.page.locator("body")).to_have_class(re.compile("ws-open"), timeout=TIMEOUT_MS)

    # "sent" arrives over the websocket: the page is never reloaded and polling is off.
    voter.wait_for_status("sent")
    expect(voter.page.locator('.timeline li[data-step="sent"]')).to_contain_text("Sent by SMS")
    expect(voter.page.locator(".countdown")).to_contain_text("call you in")
    assert _still_same_page(voter.page)
    voter.page.screenshot(path=screenshots / "verify-sent.png", full_page=True)

    code = voter.code_from_inbox(inbox)
    voter.enter_code(wrong_code_for(code))
    expect(voter.page.locator("#status-line")).to_contain_text(
        "2 attempts left", timeout=TIMEOUT_MS
    )
    assert _still_same_page(voter.page)
    voter.page.screenshot(path=screenshots / "verify-wrong-code.png", full_page=True)

    voter.enter_code(code)
    # Verified: the browser continues to the completion view, then to the poll, by itself.
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    expect(voter.page.locator(".messages")).to_contain_text("Your phone is verified")

    voter.page.locator("input[name=choice]").first.check()
    voter.page.click("main button[type=submit]")
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/results/$"))
    assert Vote.objects.filter(question=question).count() == 1

    # The watcher's results page changes without a reload.
    expect(watcher.page.locator("#total-votes")).to_have_text("1", timeout=TIMEOUT_MS)
    assert _still_same_page(watcher.page)
    watcher.page.screenshot(path=screenshots / "results-live.png", full_page=True)


def test_with_websockets_blocked_the_page_polls_and_a_failed_code_can_be_replaced(
    e2e_stack: dict[str, Any], browser: Browser, screenshots: Path
):
    base = e2e_stack["url"]
    question = _first_poll()
    inbox = browser.new_context().new_page()
    context = browser.new_context()
    # Every websocket is refused, as behind a proxy that doesn't pass them.
    context.route_web_socket(re.compile(r".*/ws/.*"), lambda ws: ws.close(code=1011))
    voter = Voter(context.new_page(), base)
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()
    _mark_page(voter.page)

    voter.wait_for_status("sent")
    assert "ws-open" not in (voter.page.locator("body").get_attribute("class") or "")
    assert _still_same_page(voter.page)
    code = voter.code_from_inbox(inbox)

    # "Call me instead": the provider moves to the voice step and reads the same code.
    voter.page.click("text=Call me instead")
    voter.wait_for_channel("voice")
    expect(voter.page.locator('.timeline li[data-channel="voice"]')).to_contain_text("Calling")
    voter.page.screenshot(path=screenshots / "verify-calling.png", full_page=True)
    inbox.goto(f"{base}/2fa/sandbox/")
    voice = inbox.locator(f'#sandbox-inbox tr[data-to="{voter.number[1:]}"]').first
    expect(voice).to_contain_text("voice")
    expect(voice.locator(".sandbox-code")).to_have_text(code)

    for left in ("2 attempts left", "1 attempt left"):
        voter.enter_code(wrong_code_for(code))
        expect(voter.page.locator("#status-line")).to_contain_text(left, timeout=TIMEOUT_MS)
    voter.enter_code(wrong_code_for(code))
    voter.wait_for_status("failed")
    expect(voter.page.locator("#status-line")).to_contain_text("wrong too many times")
    voter.page.screenshot(path=screenshots / "verify-failed.png", full_page=True)

    voter.page.click("text=Get a new code")
    expect(voter.page).to_have_url(re.compile(r"/2fa/v/[0-9a-f-]+/$"))
    voter.wait_for_status("sent")
    voter.enter_code(voter.code_from_inbox(inbox))
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)


def _without_refresh(route: Route) -> None:
    # Fetched here, redirects and all: the browser follows a redirect past any route, so
    # the code form's POST, answered with a redirect to the code page, is routed too.
    response = route.fetch()
    body = re.sub(r'<noscript><meta http-equiv="refresh"[^>]*></noscript>', "", response.text())
    route.fulfill(response=response, body=body)


def test_without_javascript_plain_forms_and_refresh_complete_the_flow(
    e2e_stack: dict[str, Any], browser: Browser, screenshots: Path
):
    base = e2e_stack["url"]
    question = _first_poll()
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context(java_script_enabled=False).new_page(), base)
    voter.sign_up()
    voter.open_poll(question.pk)
    voter.give_number()

    def refresh_until(status: str) -> None:
        seen = ""
        for _ in range(100):
            try:
                seen = voter.status().get_attribute("data-status", timeout=TIMEOUT_MS) or ""
                if seen == status:
                    return
                voter.page.wait_for_timeout(200)
                voter.page.click("text=Refresh status", timeout=TIMEOUT_MS)
            except PlaywrightError:
                # The page's own refresh (queued, sending, checking) may navigate while
                # the button is clicked: look again at whatever page came.
                continue
        raise AssertionError(f"never reached {status}; last seen {seen!r}")

    refresh_until("sent")
    # The code page without its own refresh, so the verified state holds still for the
    # screenshot; given back, the page goes on by itself: nobody clicks "Continue".
    code_page = re.compile(r"/2fa/v/[0-9a-f-]+/(code/)?$")
    voter.page.route(code_page, _without_refresh)
    voter.enter_code(voter.code_from_inbox(inbox))
    refresh_until("verified")
    voter.page.screenshot(path=screenshots / "verify-verified.png", full_page=True)
    voter.page.unroute(code_page)
    # The POST's answer may be the verified page itself: reloading that would post again.
    voter.page.goto(voter.page.url.removesuffix("code/"))
    expect(voter.page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    voter.page.locator("input[name=choice]").first.check()
    voter.page.click("main button[type=submit]")
    expect(voter.page.locator(".messages")).to_contain_text("your vote is counted")
    expect(voter.page.locator("#total-votes")).to_have_text("1")
