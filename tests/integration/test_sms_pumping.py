"""An SMS pumping burst against the real processes: the compose web command and a Celery
worker on PostgreSQL and Redis, the sandbox gateway standing in for Vonage.

Fresh accounts, each from its own network (as a botnet would), ask for codes to one
mobile prefix and never enter them. The conversion governor (two_factor/services/
budget.py), judging in the worker at every send here, pauses that prefix once the floor
of unconverted codes is reached: later requests to it are refused with a sentence and
nothing more is texted there, while ordinary voters elsewhere keep getting their codes
and verify.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests import stack
from tests.integration.conftest import requires_postgres
from tests.integration.test_proxy import Browser, person
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.models import SendPause, Status, Verification

pytestmark = [pytest.mark.integration, requires_postgres, pytest.mark.timeout(240)]

PREFIX = f"{stack.SESSION_PREFIX}-pumping"
FLOOR = 5
SETTINGS = {
    # Every send is judged, and a code is judged as soon as it went out: the burst is
    # seconds long here, minutes in life (SMS_GOVERNOR_GRACE defaults to 180 s).
    "SMS_GOVERNOR_GRACE": "0",
    "SMS_GOVERNOR_EVALUATE_EVERY": "0",
    "SMS_GOVERNOR_PREFIX_FLOOR": str(FLOOR),
    "SMS_GOVERNOR_THRESHOLD": "0.4",
    # The pumpers' addresses come in X-Forwarded-For, as behind the proxy.
    "TRUSTED_PROXY_COUNT": "1",
    "WEB_CONCURRENCY": "1",
}
# +44 7911 … (phonenumbers: Guernsey) is pumped; +44 7400 … (GB) and France are not.
PUMPED = "+4479111{:05d}"
ORDINARY = ["+447400123456", "+33612345678"]
PAUSED = "Codes to numbers like yours are paused for a while because of unusual traffic."


@pytest.fixture(scope="module")
def site(child_env: Callable[..., dict[str, str]]) -> Iterator[stack.WebServer]:
    env = child_env(PREFIX, **SETTINGS)
    with ExitStack() as running:
        web = running.enter_context(stack.web_server(env))
        worker = running.enter_context(stack.celery_worker(env, name="pumping"))
        web.worker = worker  # type: ignore[attr-defined]
        yield web


def ask_for_code(browser: Browser, base: str, number: str) -> tuple[int, str]:
    answer = browser.post(base + "/2fa/", {"number": number})
    return answer.status_code, answer.headers.get("Location", "") or html.unescape(answer.text)


def settled(number: str, *, within: float = 20.0) -> Verification:
    deadline = time.monotonic() + within
    while True:
        verification = Verification.objects.filter(number=number).order_by("-created_at").first()
        if verification is not None and verification.status not in (
            Status.QUEUED,
            Status.SENDING,
        ):
            return verification
        assert time.monotonic() < deadline, f"no send settled for {number}"
        time.sleep(0.1)


def test_a_pumping_burst_to_one_prefix_is_paused_while_voters_elsewhere_get_codes(
    site: stack.WebServer,
    use_redis_namespace: Callable[[str], None],
    transactional_db: None,
) -> None:
    use_redis_namespace(PREFIX)
    answers: list[tuple[int, str]] = []
    for i in range(FLOOR + 5):
        pumper = person(f"pumper{i}")
        pumper.http.headers["X-Forwarded-For"] = f"10.{i}.0.1"
        answers.append(ask_for_code(pumper, site.url, PUMPED.format(i)))
        if answers[-1][0] == 302:
            settled(PUMPED.format(i))
        # Ordinary voters keep coming during the burst, and they enter their codes.
        if i in (2, FLOOR + 2):
            voter = person(f"voter{i}")
            number = ORDINARY[0 if i == 2 else 1]
            status, where = ask_for_code(voter, site.url, number)
            assert status == 302, (status, where[:300])
            assert settled(number).status == Status.SENT
            code = sandbox_messages_for(number)[0]["code"]
            entered = voter.post(f"{site.url}{where}code/", {"code": code})
            assert entered.status_code == 302, (entered.status_code, entered.text[:300])
            deadline = time.monotonic() + 20
            while Verification.objects.get(number=number).status != Status.VERIFIED:
                assert time.monotonic() < deadline, "the ordinary voter was never verified"
                time.sleep(0.1)

    texted = [i for i in range(FLOOR + 5) if sandbox_messages_for(PUMPED.format(i))]
    # The floor's worth went out before the governor could judge; nothing after it.
    assert texted == list(range(FLOOR)), texted
    pause = SendPause.objects.get()
    assert (pause.country, pause.prefix, pause.verified) == ("GG", "+44791", 0)
    assert pause.sent == FLOOR
    # The send that tripped it ended with the sentence; later requests got it at once.
    tripped = Verification.objects.get(number=PUMPED.format(FLOOR))
    assert tripped.status == Status.FAILED
    assert PAUSED in tripped.failure_reason
    refused = answers[FLOOR + 1 :]
    assert all(status == 429 and PAUSED in text for status, text in refused), [
        (status, text[:120]) for status, text in refused
    ]
    assert "SMS governor: codes to GG +44791 paused until" in site.worker.log_text()  # type: ignore[attr-defined]
