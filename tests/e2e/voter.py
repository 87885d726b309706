"""What a voter does in the browser, step by step, for the end-to-end tests."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Page, expect

PASSWORD = "a-long-passphrase-42"
TIMEOUT_MS = 20_000


def fresh_number() -> str:
    """A valid mobile number no other test account holds (every +33 61 number is a
    valid French mobile in phonenumbers' metadata; not every +44 7911 one is)."""
    return f"+3361{secrets.randbelow(10**7):07d}"


@dataclass
class Voter:
    page: Page
    base_url: str
    username: str = field(default_factory=lambda: f"voter{secrets.token_hex(4)}")
    number: str = field(default_factory=fresh_number)

    def sign_up(self) -> None:
        self.page.goto(f"{self.base_url}/accounts/signup/")
        self.page.fill("#id_username", self.username)
        self.page.fill("#id_password1", PASSWORD)
        self.page.fill("#id_password2", PASSWORD)
        self.page.click("main button[type=submit]")
        expect(self.page.locator("nav")).to_contain_text(self.username)

    def log_out(self) -> None:
        self.page.click("header nav button:has-text('Log out')")
        expect(self.page.locator("header")).to_contain_text("Log in")

    def log_in(self) -> None:
        self.page.goto(f"{self.base_url}/accounts/login/")
        self.page.fill("#id_username", self.username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("main button[type=submit]")
        expect(self.page.locator("nav")).to_contain_text(self.username)

    def open_poll(self, question_id: int) -> None:
        self.page.goto(f"{self.base_url}/polls/{question_id}/")

    def give_number(self) -> None:
        expect(self.page).to_have_url(re.compile(r"/2fa/\?next="))
        self.page.fill("#id_number", self.number)
        self.page.click("main button[type=submit]")
        expect(self.page).to_have_url(re.compile(r"/2fa/v/[0-9a-f-]+/$"))

    def status(self) -> Any:
        return self.page.locator("#verification-status")

    def wait_for_status(self, status: str) -> None:
        expect(self.status()).to_have_attribute("data-status", status, timeout=TIMEOUT_MS)

    def wait_for_channel(self, channel: str) -> None:
        """The code is out on ``channel`` (a row of two_factor/channels.py)."""
        self.wait_for_status("sent")
        expect(self.status()).to_have_attribute("data-channel", channel, timeout=TIMEOUT_MS)

    def enter_code(self, code: str) -> None:
        """Type the code and press Verify, unless the page submits it by itself (with
        JavaScript, once every digit of the code is typed)."""
        submits_itself = self.page.evaluate(_SUBMITS_ITSELF, code)
        self.page.fill("#id_code", code)
        if not submits_itself:
            self.page.click("#code-form button[type=submit]")

    def code_from_inbox(self, inbox_page: Page) -> str:
        """Read the newest code sent to this voter's number from the sandbox inbox."""
        row = inbox_page.locator(f'#sandbox-inbox tr[data-to="{self.number[1:]}"]').first
        for _ in range(50):
            inbox_page.goto(f"{self.base_url}/2fa/sandbox/")
            if row.count():
                return row.locator(".sandbox-code").inner_text().strip()
            inbox_page.wait_for_timeout(200)
        raise AssertionError(f"no code for {self.number} in the sandbox inbox")


# live.js (with JavaScript only: htmx is then defined) submits a code of only digits,
# spaces and dashes once it holds as many digits as the field's data-code-length.
_SUBMITS_ITSELF = """code => {
  const field = document.getElementById("id_code");
  return typeof htmx !== "undefined" && !!field && /^[0-9\\s-]*$/.test(code)
    && code.replace(/[^0-9]/g, "").length === Number(field.dataset.codeLength);
}"""


def wrong_code_for(code: str) -> str:
    return "".join(str((int(digit) + 1) % 10) for digit in code)
