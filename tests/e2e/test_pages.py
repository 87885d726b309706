"""Every page on a phone-sized screen and under axe-core, light and dark (pages.py walks
them: anonymous, signed in, each state of the code page, the sandbox inbox, the 503)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.axe import SCHEMES, axe_violations, describe
from tests.e2e.pages import walk_every_page

PHONE = {"width": 390, "height": 844}


def test_no_page_is_wider_than_a_phone_and_each_starts_with_a_skip_link(
    e2e_stack: dict[str, Any], browser: Browser
):
    too_wide: list[str] = []
    missing_skip: list[str] = []
    seen: list[str] = []

    def check(page: Page, label: str) -> None:
        seen.append(label)
        # The first thing the keyboard reaches is the way past the header, and it shows
        # when focused.
        first = "document.querySelector('a[href], button, input, select, textarea')"
        if not page.evaluate(f"{first}.classList.contains('skip-link')"):
            missing_skip.append(label)
        else:
            focused = page.evaluate(
                f"(() => {{ const a = document.activeElement; const s = {first}; s.focus();"
                " const y = s.getBoundingClientRect().top; s.blur(); a && a.focus(); return y; })()"
            )
            if focused < 0:
                missing_skip.append(f"{label} (off screen when focused)")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide.append(f"{label}: {width}px")

    walk_every_page(browser, e2e_stack["url"], check, viewport=PHONE, is_mobile=True)

    assert len(seen) >= 25, seen
    assert not too_wide, f"wider than {PHONE['width']}px: {too_wide}"
    assert not missing_skip, f"no skip link first: {missing_skip}"


@pytest.mark.parametrize(
    "screen",
    [{}, {"viewport": PHONE, "is_mobile": True}],
    ids=["desktop", "phone"],
)
def test_every_page_passes_axe_in_light_and_dark_mode(
    e2e_stack: dict[str, Any], browser: Browser, screen: dict[str, Any]
):
    failures: list[str] = []
    checked = 0

    def check(page: Page, label: str) -> None:
        nonlocal checked
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            violations = axe_violations(page)
            checked += 1
            if violations:
                failures.append(f"{label} ({scheme}):\n{describe(violations)}")
        page.emulate_media(color_scheme="light")

    walk_every_page(browser, e2e_stack["url"], check, **screen)

    assert checked >= 50
    assert not failures, "axe-core violations:\n" + "\n".join(failures)
