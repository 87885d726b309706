"""Every page a voter can meet, each in the states that change how it looks, visited in
order by one browser; a check runs on each (no horizontal overflow, axe-core).

The code page's states come from the real flow where a test can reach them in seconds
(sent, a wrong code, verified); the others (queued, sending, the call, checking, failed,
expired, cancelled) are set on the verification's row, and the page is reloaded: what
is checked is how the page renders a state, and the row is put back before the flow
goes on.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from django.test import RequestFactory
from playwright.sync_api import Browser, Page, Route, expect

from polls.models import Question
from pollstr.unavailable import unavailable_response
from tests.e2e.voter import PASSWORD, TIMEOUT_MS, Voter, wrong_code_for
from two_factor.models import Status, Verification

Check = Callable[[Page, str], None]

# The row's fields a state needs to look like itself; the rest stays as the flow left it.
ROW_STATES: dict[str, dict[str, object]] = {
    Status.QUEUED: {"status": Status.QUEUED},
    Status.SENDING: {"status": Status.SENDING},
    "the call": {"status": Status.SENT, "channel": "voice", "step": 1},
    "silent authentication": {
        "status": Status.SENT,
        "channel": "silent_auth",
        "step": 0,
        "check_url": "/2fa/sandbox/silent/not-a-request/",
    },
    Status.CHECKING: {"status": Status.CHECKING},
    Status.FAILED: {
        "status": Status.FAILED,
        "failure_reason": "That code was wrong too many times. Ask for a new code.",
    },
    Status.EXPIRED: {
        "status": Status.EXPIRED,
        "failure_reason": "This code has expired. Ask for a new code.",
    },
    Status.CANCELLED: {"status": Status.CANCELLED, "failure_reason": ""},
}


def walk_every_page(browser: Browser, base: str, check: Check, **context_options: object) -> None:
    _anonymous_pages(browser.new_context(**context_options).new_page(), base, check)
    inbox = browser.new_context(**context_options).new_page()
    # A long username: the signed-in header must still fit a phone.
    voter = Voter(
        browser.new_context(**context_options).new_page(),
        base,
        username=f"a_voter_with_a_long_name_{secrets.token_hex(4)}",
    )
    _signed_in_pages(voter, inbox, check)
    _service_unavailable_page(inbox, base, check)


def _anonymous_pages(page: Page, base: str, check: Check) -> None:
    page.goto(f"{base}/")
    check(page, "polls index (anonymous)")
    page.goto(f"{base}/accounts/login/")
    expect(page.locator("#id_username")).to_be_focused()
    check(page, "login")
    page.fill("#id_username", "nobody")
    page.fill("#id_password", "wrong-password")
    page.click("main button[type=submit]")
    expect(page.locator("article .form-error").first).to_be_visible()
    check(page, "login with an error")
    page.goto(f"{base}/accounts/signup/")
    expect(page.locator("#id_username")).to_be_focused()
    check(page, "signup")
    page.fill("#id_username", "x")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD + "-other")
    page.click("main button[type=submit]")
    expect(page.locator("article .form-error").first).to_be_visible()
    check(page, "signup with an error")


def _signed_in_pages(voter: Voter, inbox: Page, check: Check) -> None:
    page, base = voter.page, voter.base_url
    question = Question.objects.published().order_by("pk").first()
    voter.sign_up()
    check(page, "polls index (signed in)")
    page.goto(f"{base}/accounts/password/")
    check(page, "password change")
    voter.open_poll(question.pk)
    expect(page).to_have_url(re.compile(r"/2fa/\?next="))
    expect(page.locator("#id_number")).to_be_focused()
    check(page, "phone: start (number form)")
    page.fill("#id_number", "12")
    page.click("main button[type=submit]")
    expect(page.locator("article .form-error").first).to_be_visible()
    check(page, "phone: start with an error")
    page.goto(f"{base}/2fa/number/")
    expect(page.locator("#id_number")).to_be_focused()
    check(page, "phone: number form")
    page.goto(f"{base}/2fa/?next=/polls/{question.pk}/")
    voter.give_number()
    verify_url = page.url

    voter.wait_for_status("sent")
    check(page, "code page: sent")
    voter.enter_code("12")
    expect(page.locator("#id_code_error")).to_contain_text("Enter the", timeout=TIMEOUT_MS)
    check(page, "code page: malformed code")
    code = voter.code_from_inbox(inbox)
    voter.enter_code(wrong_code_for(code))
    expect(page.locator("#status-line")).to_contain_text("didn't match", timeout=TIMEOUT_MS)
    check(page, "code page: wrong code")

    page.goto(f"{base}/2fa/sandbox/")
    check(page, "sandbox inbox")

    verification = Verification.objects.get(pk=verify_url.rstrip("/").rsplit("/", 1)[1])
    _row_states(voter, verification, verify_url, check)

    # Verified: hold the browser on the page (its automatic continue cannot get through),
    # then follow the plain link onwards.
    held: list[str] = []

    def hold(route: Route) -> None:
        held.append(route.request.url)
        route.abort()

    page.route("**/complete/", hold)
    voter.enter_code(code)
    voter.wait_for_status("verified")
    check(page, "code page: verified")
    # The automatic continue leaves 300 ms after the fragment shows: the route is lifted
    # once it was stopped, or it would race the click (a race the view settles:
    # tests/two_factor/test_views.py, a repeated completion).
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never tried to continue on its own"
    page.unroute("**/complete/")
    page.click("#continue-link")
    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    check(page, "poll detail")
    page.locator("input[name=choice]").first.check()
    page.click("main button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/results/$"))
    check(page, "results")
    page.goto(f"{base}/")
    expect(page.locator("header .badge")).to_have_text("verified")
    check(page, "polls index (verified)")
    page.goto(f"{base}/2fa/")
    check(page, "phone: start (verified)")


def _row_states(voter: Voter, verification: Verification, url: str, check: Check) -> None:
    fields = ["status", "channel", "step", "check_url", "failure_reason"]
    saved = {name: getattr(verification, name) for name in fields}
    for name, row in ROW_STATES.items():
        Verification.objects.filter(pk=verification.pk).update(**row)
        voter.page.goto(url)
        voter.wait_for_status(str(row["status"]))
        check(voter.page, f"code page: {name}")
    Verification.objects.filter(pk=verification.pk).update(**saved)
    voter.page.goto(url)
    voter.wait_for_status(saved["status"])


def _service_unavailable_page(page: Page, base: str, check: Check) -> None:
    """The 503 page as the middleware answers it (a database that is down cannot be
    arranged here without stopping the shared server), shown at the site's address so
    its stylesheets load."""
    response = unavailable_response(RequestFactory().get("/polls/"))
    assert response.status_code == 503
    page.goto(f"{base}/accounts/login/")
    page.set_content(response.content.decode())
    expect(page.locator(".service-unavailable")).to_be_visible()
    check(page, "503 page")
