"""The SMS budget: sign-ups and codes per network, daily caps per region in codes and
money, and the conversion governor that pauses a destination whose codes are not
entered (two_factor/services/budget.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORD
from tests.two_factor.verifications import latest_code
from two_factor import services
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.models import SendPause, Status, Verification
from two_factor.numbers import number_destination, number_parse
from two_factor.services import VerificationRefused
from two_factor.services.budget import budget_spent

pytestmark = pytest.mark.usefixtures("eager_tasks")

# Valid mobiles: the pumped prefix (+44 791…, which phonenumbers places in Guernsey),
# a GB one in another +44 prefix, France and Germany.
PUMPED = "+4479111{:05d}"
GB_ELSEWHERE = "+447400123456"
FR = "+33612345678"
DE = "+4915112345678"


@pytest.fixture
def start(
    db: None, django_capture_on_commit_callbacks: Callable[..., Any]
) -> Callable[..., Verification]:
    """``start(number, ip=...)``: a fresh account asks for a code to ``number`` and the
    send task runs; returns the verification as it is afterwards."""
    count = 0

    def run(number: str, *, ip: str = "192.0.2.1") -> Verification:
        nonlocal count
        count += 1
        user = get_user_model().objects.create_user(username=f"voter{count}", password=PASSWORD)
        with django_capture_on_commit_callbacks(execute=True):
            verification = services.verification_start(
                user=user,
                session_key=f"key-{count}",
                ip=ip,
                number=number_parse(raw=number),
            )
        verification.refresh_from_db()
        return verification

    return run


def verify(verification: Verification, capture: Callable[..., Any]) -> Verification:
    with capture(execute=True):
        services.verification_submit_code(
            verification=verification, code=latest_code(str(verification.number)), ip=None
        )
    verification.refresh_from_db()
    return verification


# --- where a code goes ------------------------------------------------------------------------


def test_a_verification_records_its_region_and_mobile_prefix(start):
    verification = start(FR)

    assert (verification.country, verification.prefix) == ("FR", "+33612")
    # phonenumbers places +44 7911 in Guernsey: the region is what it says.
    assert number_destination(number_parse(raw=PUMPED.format(1))) == ("GG", "+44791")


# --- sign-up and codes per network ------------------------------------------------------------


def _sign_up(client: Client, username: str, ip: str) -> Any:
    return client.post(
        reverse("signup"),
        {
            "username": username,
            "password1": "a-long-passphrase-1",
            "password2": "a-long-passphrase-1",
        },
        REMOTE_ADDR=ip,
    )


def test_sign_up_is_limited_per_address_and_the_page_says_when_to_come_back(settings, db):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "signup_per_ip": (3, 3600),
    }
    answers = [_sign_up(Client(), f"fresh{i}", "203.0.113.7") for i in range(4)]

    assert [a.status_code for a in answers] == [302, 302, 302, 429]
    refused = answers[-1]
    assert "Too many new accounts from your network. Try again in" in refused.content.decode()
    assert 'value="fresh3"' in refused.content.decode()  # the name typed is kept
    assert int(refused["Retry-After"]) > 0
    assert not get_user_model().objects.filter(username="fresh3").exists()
    # Another address signs up as before.
    assert _sign_up(Client(), "elsewhere", "198.51.100.7").status_code == 302


@pytest.mark.parametrize(
    ("addresses", "outsider"),
    [
        pytest.param([f"203.0.113.{i}" for i in range(1, 5)], "203.0.114.1", id="IPv4 /24"),
        pytest.param(
            [f"2001:db8:1:2::{i:x}" for i in range(1, 5)], "2001:db8:1:3::1", id="IPv6 /64"
        ),
    ],
)
def test_sign_up_is_limited_per_network_whatever_address_in_it(settings, db, addresses, outsider):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "signup_per_network": (3, 3600),
    }
    answers = [_sign_up(Client(), f"hop{i}", ip) for i, ip in enumerate(addresses)]

    assert [a.status_code for a in answers] == [302, 302, 302, 429]
    assert _sign_up(Client(), "next-block", outsider).status_code == 302


def test_a_failed_sign_up_costs_nothing(settings, db):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "signup_per_ip": (1, 3600),
    }
    mismatch = Client().post(
        reverse("signup"),
        {"username": "typo", "password1": "a-long-passphrase-1", "password2": "other-phrase-2"},
        REMOTE_ADDR="203.0.113.9",
    )
    assert mismatch.status_code == 200

    assert _sign_up(Client(), "typo", "203.0.113.9").status_code == 302


def test_codes_for_unproven_accounts_are_limited_per_network(settings, start):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "start_per_network": (2, 3600),
    }
    start(PUMPED.format(1), ip="203.0.113.1")
    start(PUMPED.format(2), ip="203.0.113.2")

    with pytest.raises(VerificationRefused, match="Too many attempts"):
        start(PUMPED.format(3), ip="203.0.113.3")
    assert start(PUMPED.format(4), ip="198.51.100.1").status == Status.SENT


# --- daily caps ---------------------------------------------------------------------------------


def test_a_region_at_its_daily_code_cap_is_refused_with_a_sentence_others_are_not(settings, start):
    settings.TWO_FACTOR_COUNTRY_DAILY_SENDS = {"FR": 2, "*": 100}
    start(FR)
    start("+33612345679")

    with pytest.raises(VerificationRefused) as refused:
        start("+33612345670")

    assert refused.value.message == (
        "We can't send any more codes to numbers in France today. Please try again tomorrow."
    )
    assert 0 < refused.value.retry_after <= 86400
    assert sandbox_messages_for("+33612345670") == []
    assert start(DE).status == Status.SENT


def test_a_region_at_its_daily_spend_cap_is_refused(settings, start):
    settings.TWO_FACTOR_SMS_PRICES = {"DE": 0.40, "*": 0.05}
    settings.TWO_FACTOR_COUNTRY_DAILY_SPEND = {"DE": 1.00, "*": 100.0}
    start(DE)
    start("+4915112345679")  # 0.80 spent

    with pytest.raises(VerificationRefused, match="numbers in Germany today"):
        start("+4915112345670")  # 1.20 > 1.00
    assert start(FR).status == Status.SENT
    spent = budget_spent()
    assert spent["DE"] == (2, pytest.approx(0.80))
    assert spent["FR"] == (1, pytest.approx(0.05))


def test_the_all_regions_spend_cap_stops_every_region(settings, start):
    settings.TWO_FACTOR_SMS_PRICES = {"*": 0.50}
    settings.TWO_FACTOR_DAILY_SPEND = 1.00
    start(FR)
    start(DE)

    with pytest.raises(VerificationRefused, match="We can't send any more codes today"):
        start(GB_ELSEWHERE)


def test_a_code_refused_by_a_rate_limit_costs_nothing_from_the_budget(settings, start):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "start_per_ip": (1, 3600),
    }
    start(FR, ip="203.0.113.1")
    with pytest.raises(VerificationRefused, match="Too many attempts"):
        start("+33612345679", ip="203.0.113.1")

    assert budget_spent()["FR"][0] == 1


@pytest.mark.redis
def test_the_caps_are_counted_in_redis_atomically(settings, redis_cache, start):
    client, prefix = redis_cache
    settings.TWO_FACTOR_COUNTRY_DAILY_SENDS = {"FR": 1, "*": 100}
    start(FR)

    with pytest.raises(VerificationRefused, match="France"):
        start("+33612345679")
    keys = [key.decode() for key in client.scan_iter(match=f"{prefix}:*two_factor:budget:2*")]
    assert len(keys) == 1
    assert client.hget(keys[0], "FR:sends") == b"1"
    assert budget_spent()["FR"] == (1, pytest.approx(0.10))


# --- the conversion governor ------------------------------------------------------------------


@pytest.fixture
def governor(settings) -> dict[str, Any]:
    """Judged at every send, codes judged at once, a floor of 5 per prefix."""
    settings.TWO_FACTOR_GOVERNOR = {
        **settings.TWO_FACTOR_GOVERNOR,
        "grace": 0,
        "prefix_floor": 5,
        "country_floor": 1000,
        "threshold": 0.4,
        "cooldown": 600,
        "evaluate_every": 0,
    }
    return settings.TWO_FACTOR_GOVERNOR


def _pump(start: Callable[..., Verification], first: int, count: int) -> list[Verification]:
    return [start(PUMPED.format(first + i), ip=f"10.{first + i}.0.1") for i in range(count)]


def test_a_prefix_with_codes_nobody_enters_is_paused_others_keep_getting_codes(
    governor, start, django_capture_on_commit_callbacks, caplog
):
    pumped = _pump(start, 0, 5)
    assert [v.status for v in pumped] == [Status.SENT] * 5

    # The sixth send finds 5 codes sent and none verified: the prefix pauses before it goes.
    sixth = start(PUMPED.format(5), ip="10.5.0.1")
    assert sixth.status == Status.FAILED
    assert "paused for a while because of unusual traffic" in sixth.failure_reason
    # Stored as the catalogues' English, so each reader gets it in their language.
    with translation.override("fr"):
        assert gettext(sixth.failure_reason).startswith("Les codes vers des numéros")
    assert sandbox_messages_for(PUMPED.format(5)) == []
    pause = SendPause.objects.get()
    assert (pause.country, pause.prefix, pause.sent, pause.verified) == ("GG", "+44791", 5, 0)
    assert pause.is_active()
    assert "SMS governor: codes to GG +44791 paused until" in caplog.text

    # Later starts to the prefix are refused at once, with the same sentence.
    with pytest.raises(VerificationRefused, match="unusual traffic") as refused:
        start(PUMPED.format(6), ip="10.6.0.1")
    assert 0 < refused.value.retry_after <= 600

    # Ordinary voters elsewhere, under +44 too, get codes and verify.
    for number in (GB_ELSEWHERE, FR):
        voter = start(number)
        assert voter.status == Status.SENT
        assert verify(voter, django_capture_on_commit_callbacks).status == Status.VERIFIED


def test_a_prefix_whose_codes_are_entered_is_never_paused(
    governor, start, django_capture_on_commit_callbacks
):
    for i in range(8):
        voter = start(PUMPED.format(i), ip=f"10.{i}.0.1")
        if i % 2 == 0:
            verify(voter, django_capture_on_commit_callbacks)

    assert not SendPause.objects.exists()


def test_codes_verified_by_the_providers_callbacks_count_as_converted(governor, start):
    for verification in _pump(start, 0, 5):
        # What a summary callback "completed" does (two_factor/callbacks.py).
        services.verification_mark_verified(
            verification=verification, reason="provider callback: summary completed"
        )

    assert start(PUMPED.format(5)).status == Status.SENT
    assert not SendPause.objects.exists()


def test_codes_younger_than_the_grace_are_not_judged(governor, settings, start):
    settings.TWO_FACTOR_GOVERNOR = {**governor, "grace": 300}
    _pump(start, 0, 5)

    assert start(PUMPED.format(5)).status == Status.SENT
    assert not SendPause.objects.exists()


def test_a_whole_country_pauses_over_its_own_floor(governor, settings, start):
    settings.TWO_FACTOR_GOVERNOR = {**governor, "prefix_floor": 1000, "country_floor": 4}
    for i, number in enumerate(["+33612345670", "+33712345678", "+33612345671", "+33712345679"]):
        start(number, ip=f"10.{i}.0.1")

    assert start("+33612345672").status == Status.FAILED
    assert SendPause.objects.get().destination == "FR"
    with pytest.raises(VerificationRefused, match="unusual traffic"):
        start("+33712345670")
    assert start(DE).status == Status.SENT


def test_a_lifted_pause_lets_codes_flow_and_old_evidence_is_not_judged_again(
    governor, start, admin_user
):
    _pump(start, 0, 6)
    pause = SendPause.objects.get()

    assert services.governor_lift(pause=pause, by=admin_user)
    pause.refresh_from_db()
    assert pause.lifted_by == admin_user
    assert not pause.is_active()
    assert start(PUMPED.format(10)).status == Status.SENT
    assert SendPause.objects.count() == 1
    assert not services.governor_lift(pause=pause, by=admin_user)  # already lifted


def test_the_admin_shows_a_pause_and_lifts_it_with_a_button(governor, start, admin_client):
    _pump(start, 0, 6)
    pause = SendPause.objects.get()
    url = reverse("admin:two_factor_sendpause_change", args=[pause.pk])

    listing = admin_client.get(reverse("admin:two_factor_sendpause_changelist"))
    assert "GG +44791" in listing.content.decode()
    assert "paused" in listing.content.decode()
    page = admin_client.get(url).content.decode()
    assert 'name="_lift"' in page
    assert "send codes to GG +44791 again" in page

    answer = admin_client.post(url, {"_lift": "1"}, follow=True)

    pause.refresh_from_db()
    assert pause.lifted_at is not None
    assert "Codes to GG +44791 flow again." in answer.content.decode()
    assert 'name="_lift"' not in answer.content.decode()


def test_metrics_show_the_pause_and_the_share_of_the_cap_used(governor, settings, start, client):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    settings.TWO_FACTOR_COUNTRY_DAILY_SENDS = {"GG": 10, "*": 100}
    _pump(start, 0, 6)
    cache.delete("two_factor:budget:pauses")

    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name.startswith("pollstr_sms_")
    }
    assert (
        samples[("pollstr_sms_governor_paused", (("country", "GG"), ("prefix", "+44791")))] == 1.0
    )
    # 6 codes counted against GG's cap of 10 (the sixth was counted, then not sent).
    assert samples[("pollstr_sms_spend_ratio", (("country", "GG"),))] == pytest.approx(0.6)
    assert ("pollstr_sms_spend_ratio", (("country", "all"),)) in samples


def test_staff_without_the_change_permission_cannot_lift(governor, start, client):
    _pump(start, 0, 6)
    pause = SendPause.objects.get()
    user: AbstractBaseUser = get_user_model().objects.create_user(
        username="staff", password=PASSWORD, is_staff=True
    )
    client.force_login(user)

    answer = client.post(
        reverse("admin:two_factor_sendpause_change", args=[pause.pk]), {"_lift": "1"}
    )

    assert answer.status_code == 403
    pause.refresh_from_db()
    assert pause.lifted_at is None
