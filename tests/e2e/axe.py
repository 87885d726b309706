"""axe-core in the page: the accessibility rules a page must pass, light and dark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

# axe-core from the npm registry, vendored (see vendor/README.md for version and licence).
AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"
SCHEMES = ("light", "dark")

_SETTLED = """() => document.getAnimations().every(a => a.playState !== "running")"""
_RUN = """async () => {
  const results = await axe.run(document, { resultTypes: ["violations"] });
  return results.violations.map(v => ({
    id: v.id,
    help: v.help,
    nodes: v.nodes.map(n => n.target.join(" ") + ": " + (n.failureSummary || "")),
  }));
}"""


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now (after colour transitions have finished:
    Pico animates colours, and a half-way colour is not what a reader sees)."""
    page.wait_for_function(_SETTLED, timeout=5_000)
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(_RUN)


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {v['id']} ({v['help']}):\n" + "\n".join(f"    {node}" for node in v["nodes"])
        for v in violations
    )


# The phone the pages must fit: nothing wider, no sideways scrolling.
PHONE = {"width": 390, "height": 844}


class Checks:
    """axe-core in both schemes and the phone's width, for each labelled page state."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.seen: list[str] = []

    def __call__(self, page: Page, label: str) -> None:
        self.seen.append(label)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            self.failures.append(f"{label}: {width}px wide")
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            violations = axe_violations(page)
            if violations:
                self.failures.append(f"{label} ({scheme}):\n{describe(violations)}")
        page.emulate_media(color_scheme="light")

    def assert_clean(self, expected: int) -> None:
        assert len(self.seen) == expected, self.seen
        assert not self.failures, "\n".join(self.failures)
