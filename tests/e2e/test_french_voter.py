"""A French voter sees French status updates live (#16, part 6): the language switch,
then the code page in French, each status the worker reaches pushed over the websocket
in French (the page never reloads), and the SMS sent in Verify's fr-fr locale."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, expect

from polls.models import Question
from tests.e2e.voter import TIMEOUT_MS, Voter, wrong_code_for
from two_factor.models import Verification

NO_RELOAD_MARK = "window.__pollstrNoReload"


def test_a_french_voter_sees_french_status_updates_live(
    e2e_stack: dict[str, Any], browser: Browser, screenshots: Path
):
    base = e2e_stack["url"]
    question = Question.objects.published().order_by("pk").first()
    inbox = browser.new_context().new_page()
    voter = Voter(browser.new_context(locale="en-GB").new_page(), base)
    page = voter.page
    voter.sign_up()

    # The switch in the header, as a voter uses it: the page comes back in French.
    page.select_option("#id_language", "fr")
    page.click("#language-switch button[type=submit]")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator("header nav")).to_contain_text("Se déconnecter")

    voter.open_poll(question.pk)
    voter.give_number()
    page.evaluate(f"{NO_RELOAD_MARK} = true")
    expect(page.locator("body")).to_have_class(re.compile("ws-open"), timeout=TIMEOUT_MS)

    # "sent" is pushed over the websocket by the worker's transition, in French.
    voter.wait_for_status("sent")
    expect(page.locator("#status-heading")).to_have_text("Saisissez votre code")
    expect(page.locator("#status-line")).to_contain_text("Nous avons envoyé un code par SMS au")
    expect(page.locator('.timeline li[data-step="sent"]')).to_contain_text("Envoyé par SMS")
    expect(page.locator(".countdown")).to_contain_text("Nous vous appellerons dans")
    assert page.evaluate(f"{NO_RELOAD_MARK} === true"), "the page was reloaded"
    page.screenshot(path=screenshots / "verify-sent-fr.png", full_page=True)

    # The SMS itself went out in French (Verify's locale), as the sandbox shows.
    verification = Verification.objects.filter(number=voter.number).latest("created_at")
    assert verification.locale == "fr"
    code = voter.code_from_inbox(inbox)
    row = inbox.locator(f'#sandbox-inbox tr[data-to="{voter.number[1:]}"]').first
    expect(row.locator(".sandbox-locale")).to_have_text("fr-fr")

    # A wrong code: the verdict comes back live, in French, still without a reload.
    voter.enter_code(wrong_code_for(code))
    expect(page.locator("#status-line")).to_contain_text(
        "Ce code ne correspond pas : il reste 2 essais.", timeout=TIMEOUT_MS
    )
    assert page.evaluate(f"{NO_RELOAD_MARK} === true"), "the page was reloaded"

    voter.enter_code(code)
    expect(page).to_have_url(re.compile(rf"/polls/{question.pk}/$"), timeout=TIMEOUT_MS)
    expect(page.locator(".messages")).to_contain_text("Votre téléphone est vérifié.")
