"""Remembered devices (issue #17, part 1): "Remember this device" on the code page gives
the browser a signed, rotating token; a later session of the same account on that
browser is verified without a code while the device is remembered and the number it was
remembered with is still the account's. The account page lists and forgets devices."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from accounts.services import account_erase, account_export
from polls.models import Vote
from tests.conftest import PASSWORD
from tests.phone_numbers import NUMBER, OTHER_NUMBER, give_phone
from tests.two_factor.verifications import latest_code
from two_factor import services
from two_factor.device_cookie import device_cookie_set
from two_factor.models import PhoneNumber, TrustedDevice
from two_factor.retention import records_purge
from two_factor.services.devices import DeviceToken, device_label, device_token_hash
from two_factor.session import session_is_verified

pytestmark = pytest.mark.usefixtures("eager_tasks")

COOKIE = settings.TWO_FACTOR_DEVICE_COOKIE_NAME
CHROME_ON_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


# --- helpers -----------------------------------------------------------------------------------


def _remember(user, number: str = NUMBER) -> str:
    """A device remembered for `user` with `number`; its token."""
    device = services.device_remember(user=user, number=number, user_agent=CHROME_ON_LINUX)
    return device.token


def _carry(client: Client, token: str) -> None:
    """Put the device's cookie in the client, signed as the site signs it."""
    response = HttpResponse()
    device = DeviceToken(token=token, expires_at=timezone.now() + timedelta(days=1))
    device_cookie_set(RequestFactory().get("/"), response, device)
    client.cookies[COOKIE] = response.cookies[COOKIE].value


def _signed_in(user) -> Client:
    client = Client()
    client.post(reverse("login"), {"username": user.get_username(), "password": PASSWORD})
    return client


def _codes_saved() -> float:
    return REGISTRY.get_sample_value("pollstr_two_factor_codes_saved_total") or 0.0


def _device(token: str) -> TrustedDevice | None:
    return TrustedDevice.objects.filter(token_hash=device_token_hash(token)).first()


@pytest.fixture
def poll_url(question) -> str:
    return reverse("polls:detail", args=[question.pk])


@pytest.fixture
def remembered(user) -> str:
    """The user's verified NUMBER and a device remembered with it: the token."""
    give_phone(user, NUMBER)
    return _remember(user)


def _asks_for_a_code(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/2fa/?next=")


# --- a remembered device stands in for the code ------------------------------------------------


def test_a_sign_in_with_a_remembered_device_goes_to_the_page_which_the_device_verifies(
    user, remembered, poll_url
):
    """A sign-in for a poll sends an unverified session straight to the number page,
    unless the browser carries a remembered device: the poll is then asked for, and
    there the device verifies the session without a code (and its cookie is renewed)."""
    client = Client()
    _carry(client, remembered)
    form = {"username": user.get_username(), "password": PASSWORD, "next": poll_url}

    response = client.post(reverse("login"), form)

    assert response["Location"] == poll_url
    page = client.get(poll_url)
    assert page.status_code == 200
    assert COOKIE in page.cookies  # the device's next token
    assert session_is_verified(session=client.session, user=user)


def test_a_remembered_device_verifies_a_new_session_without_a_code(user, remembered, poll_url):
    client = _signed_in(user)
    _carry(client, remembered)
    key_before = client.session.session_key
    saved_before = _codes_saved()

    response = client.get(poll_url)

    assert response.status_code == 200
    assert session_is_verified(session=client.session, user=user)
    # The same writer as a code's: the session key is rotated.
    assert client.session.session_key != key_before
    assert _codes_saved() == saved_before + 1


def test_each_use_rotates_the_token_and_the_old_one_no_longer_works(user, remembered, poll_url):
    client = _signed_in(user)
    _carry(client, remembered)
    expires_at = _device(remembered).expires_at
    response = client.get(poll_url)

    new_token_cookie = response.cookies[COOKIE]
    assert _device(remembered) is None  # the old token's hash is gone from the table
    device = TrustedDevice.objects.get(user=user)
    assert device.times_used == 1
    assert device.expires_at == expires_at  # use does not extend it
    # The cookie: HttpOnly, SameSite=Lax, path /, for the remembered days.
    assert new_token_cookie["httponly"]
    assert new_token_cookie["samesite"] == "Lax"
    assert new_token_cookie["path"] == "/"
    # Until the device expires: a fixed moment from when it was remembered.
    remaining = (device.expires_at - timezone.now()).total_seconds()
    assert abs(int(new_token_cookie["max-age"]) - remaining) < 5

    # A copy of the old cookie, in another sign-in, is asked for a code.
    copy = _signed_in(user)
    _carry(copy, remembered)
    assert _asks_for_a_code(copy.get(poll_url))

    # The browser's new cookie works next time.
    client.post(reverse("logout"))
    client.post(reverse("login"), {"username": user.get_username(), "password": PASSWORD})
    assert client.get(poll_url).status_code == 200
    assert TrustedDevice.objects.get(user=user).times_used == 2


def test_the_cookie_is_secure_when_the_site_is(user, remembered, poll_url, settings):
    settings.SESSION_COOKIE_SECURE = True
    client = _signed_in(user)
    _carry(client, remembered)

    response = client.get(poll_url, secure=True)

    assert response.cookies[COOKIE]["secure"]


def test_the_table_holds_the_tokens_hash_never_the_token(user, remembered):
    device = TrustedDevice.objects.get(user=user)
    assert device.token_hash == device_token_hash(remembered)
    assert remembered not in {str(value) for value in vars(device).values()}
    assert device.label == "Chrome on Linux"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda signed: signed[:-1] + ("A" if signed[-1] != "A" else "B"), id="sig"),
        pytest.param(lambda signed: signed.rsplit(":", 1)[0], id="unsigned"),
        pytest.param(lambda signed: "x" + signed, id="token"),
    ],
)
def test_a_tampered_cookie_stands_for_nothing(user, remembered, poll_url, tamper):
    client = _signed_in(user)
    _carry(client, remembered)
    client.cookies[COOKIE] = tamper(client.cookies[COOKIE].value)

    assert _asks_for_a_code(client.get(poll_url))
    assert TrustedDevice.objects.get(user=user).times_used == 0


def test_an_expired_device_asks_for_a_code(user, remembered, poll_url):
    TrustedDevice.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client = _signed_in(user)
    _carry(client, remembered)

    assert _asks_for_a_code(client.get(poll_url))


def test_another_accounts_device_does_not_verify_this_account(
    user, remembered, poll_url, make_user
):
    other = make_user("bob")
    give_phone(other, OTHER_NUMBER)
    client = _signed_in(other)
    _carry(client, remembered)

    assert _asks_for_a_code(client.get(poll_url))
    assert TrustedDevice.objects.get(user=user).times_used == 0


def test_a_device_needs_the_account_to_still_hold_its_verified_number(user, remembered, poll_url):
    # Even if nothing ended the device, a number it was not remembered with is refused.
    PhoneNumber.objects.filter(user=user).update(number=OTHER_NUMBER)
    client = _signed_in(user)
    _carry(client, remembered)

    assert _asks_for_a_code(client.get(poll_url))


def test_with_remember_days_at_zero_no_device_verifies(user, remembered, poll_url, settings):
    settings.TWO_FACTOR_REMEMBER_DAYS = 0
    client = _signed_in(user)
    _carry(client, remembered)

    assert _asks_for_a_code(client.get(poll_url))


# --- what ends a device ------------------------------------------------------------------------


def test_a_password_change_ends_the_accounts_devices(user, remembered, poll_url):
    client = _signed_in(user)
    _carry(client, remembered)
    assert client.get(poll_url).status_code == 200
    token = client.cookies[COOKIE]

    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-brand-new-passphrase-7",
            "new_password2": "a-brand-new-passphrase-7",
        },
    )

    assert response.status_code == 302
    device = TrustedDevice.objects.get(user=user)
    assert device.revoked_reason == "password changed"
    client.cookies[COOKIE] = token
    assert _asks_for_a_code(client.get(poll_url))


def test_a_number_change_ends_devices_remembered_with_the_old_number(user, remembered):
    _remember(user, NUMBER)  # a second browser, remembered with the same number

    services.phone_number_bind(user_id=user.pk, number=OTHER_NUMBER, at=timezone.now())

    assert not TrustedDevice.objects.active().filter(user=user).exists()
    assert set(TrustedDevice.objects.values_list("revoked_reason", flat=True)) == {"number changed"}


def test_verifying_the_same_number_again_keeps_the_devices(user, remembered):
    services.phone_number_bind(user_id=user.pk, number=NUMBER, at=timezone.now())

    assert TrustedDevice.objects.active().filter(user=user).count() == 1


def test_the_number_moving_to_another_account_ends_the_old_owners_devices(
    user, remembered, poll_url, make_user
):
    other = make_user("bob")
    other_device = _remember(other, OTHER_NUMBER)
    give_phone(other, OTHER_NUMBER)

    services.phone_number_bind(user_id=other.pk, number=NUMBER, at=timezone.now())

    assert TrustedDevice.objects.get(user=user).revoked_reason == "number moved to another account"
    # The winner's own device, remembered with its previous number, ends as a number change.
    assert _device(other_device).revoked_reason == "number changed"
    client = _signed_in(user)
    _carry(client, remembered)
    assert client.get(poll_url).status_code == 302


def test_deleting_the_account_deletes_its_devices(user, remembered):

    account_erase(user=user, ip=None)

    assert not TrustedDevice.objects.exists()


def test_the_download_lists_the_accounts_devices_without_their_tokens(user, remembered):
    data = account_export(user=user)

    [device] = data["remembered_devices"]
    assert device["label"] == "Chrome on Linux"
    assert device["ended_at"] is None
    assert remembered not in str(data)
    assert device_token_hash(remembered) not in str(data)


def test_the_retention_sweep_deletes_ended_devices_only(user, remembered, make_user):
    expired = _remember(user)
    forgotten = _remember(user)
    TrustedDevice.objects.filter(token_hash=device_token_hash(expired)).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    services.devices_forget(user_id=user.pk, device_id=_device(forgotten).pk, reason="forgotten")

    purged = records_purge()

    assert purged.devices == 2
    assert list(TrustedDevice.objects.values_list("token_hash", flat=True)) == [
        device_token_hash(remembered)
    ]


# --- one vote per phone ------------------------------------------------------------------------


def test_a_session_verified_by_a_device_still_cannot_vote_twice(user, remembered, question):
    vote_url = reverse("polls:vote", args=[question.pk])
    choice = question.choices.first().pk
    client = _signed_in(user)
    _carry(client, remembered)
    client.post(vote_url, {"choice": choice})
    assert Vote.objects.filter(question=question).count() == 1

    client.post(reverse("logout"))
    client.post(reverse("login"), {"username": user.get_username(), "password": PASSWORD})
    response = client.post(vote_url, {"choice": choice}, follow=True)

    assert session_is_verified(session=client.session, user=user)
    assert Vote.objects.filter(question=question).count() == 1
    assert b"already voted" in response.content


# --- the code page's checkbox and completion ---------------------------------------------------


@pytest.fixture
def verified_with(logged_in_client, user, django_capture_on_commit_callbacks):
    """Ask for a code for NUMBER and send it back with `data` (e.g. remember=on): the
    verification, verified, ready for completion."""

    def verify(data: dict[str, str]):
        with django_capture_on_commit_callbacks(execute=True):
            response = logged_in_client.post("/2fa/", {"number": NUMBER})
        verification_url = response["Location"]
        page = logged_in_client.get(verification_url)
        with django_capture_on_commit_callbacks(execute=True):
            logged_in_client.post(f"{verification_url}code/", {"code": latest_code(), **data})
        return verification_url, page

    return verify


def test_the_code_page_offers_to_remember_the_device(verified_with):
    _, page = verified_with({})

    assert b'name="remember"' in page.content
    assert b"Remember this device for 30 days" in page.content


def test_no_box_when_remember_days_is_zero(verified_with, settings):
    settings.TWO_FACTOR_REMEMBER_DAYS = 0

    _, page = verified_with({})

    assert b'name="remember"' not in page.content


def test_ticking_remember_sets_the_device_cookie_when_verification_completes(
    logged_in_client, user, verified_with, poll_url
):
    url, _ = verified_with({"remember": "on"})

    response = logged_in_client.get(f"{url}complete/", HTTP_USER_AGENT=CHROME_ON_LINUX)

    assert response.status_code == 302
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"]
    device = TrustedDevice.objects.get(user=user)
    assert device.label == "Chrome on Linux"
    assert device.expires_at > timezone.now() + timedelta(days=29)
    # Signed out and in again, the same browser votes without a code.
    logged_in_client.post(reverse("logout"))
    logged_in_client.post(reverse("login"), {"username": user.get_username(), "password": PASSWORD})
    assert logged_in_client.get(poll_url).status_code == 200


def test_without_the_box_ticked_no_device_is_remembered(logged_in_client, user, verified_with):
    url, _ = verified_with({})

    response = logged_in_client.get(f"{url}complete/")

    assert COOKIE not in response.cookies
    assert not TrustedDevice.objects.exists()


def test_over_htmx_completion_sets_the_cookie_on_the_client_redirect(
    logged_in_client, verified_with
):
    url, _ = verified_with({"remember": "on"})

    response = logged_in_client.get(f"{url}complete/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert "HX-Redirect" in response
    assert COOKIE in response.cookies


# --- the account page --------------------------------------------------------------------------


def test_the_account_page_lists_devices_and_marks_this_one(user, remembered, make_user):
    elsewhere = _remember(user)  # noqa: F841 - another browser's device
    client = _signed_in(user)
    _carry(client, remembered)

    page = client.get(reverse("account")).content.decode()

    assert page.count("Chrome on Linux</strong>") == 2
    assert page.count("This device</span>") == 1
    assert "Forget all devices" in page


def test_forget_ends_one_device_and_this_browsers_cookie(user, remembered):
    elsewhere = _remember(user)
    client = _signed_in(user)
    _carry(client, remembered)
    device = _device(remembered)

    response = client.post(reverse("device_forget", args=[device.pk]))

    assert response.status_code == 302
    device.refresh_from_db()
    assert device.revoked_reason == "forgotten"
    assert response.cookies[COOKIE].value == ""  # deleted
    assert _device(elsewhere).revoked_at is None


def test_forget_another_browsers_device_keeps_this_ones_cookie(user, remembered):
    elsewhere = _remember(user)
    client = _signed_in(user)
    _carry(client, remembered)

    response = client.post(reverse("device_forget", args=[_device(elsewhere).pk]))

    assert COOKIE not in response.cookies
    assert _device(remembered).revoked_at is None


def test_forget_all_ends_every_device_of_the_account_only(user, remembered, make_user):
    _remember(user)
    other = make_user("bob")
    others = _remember(other, OTHER_NUMBER)
    client = _signed_in(user)

    client.post(reverse("devices_forget_all"))

    assert not TrustedDevice.objects.active().filter(user=user).exists()
    assert _device(others).revoked_at is None


def test_nobody_forgets_another_accounts_device(user, remembered, make_user):
    other = make_user("bob")
    client = _signed_in(other)

    client.post(reverse("device_forget", args=[_device(remembered).pk]))

    assert _device(remembered).revoked_at is None


def test_forgetting_is_a_post(user, remembered):
    client = _signed_in(user)

    assert client.get(reverse("devices_forget_all")).status_code == 405
    assert _device(remembered).revoked_at is None


def test_forgetting_needs_the_csrf_token(user, remembered):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.post(reverse("devices_forget_all")).status_code == 403
    assert _device(remembered).revoked_at is None


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (CHROME_ON_LINUX, "Chrome on Linux"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari on iOS",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox on macOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome on Android",
        ),
        ("", "A browser"),
    ],
)
def test_a_device_is_named_by_its_browser_and_system(user_agent, label):
    assert device_label(user_agent) == label


def test_the_admin_lists_devices_read_only_without_their_hashes(admin_client, user, remembered):
    device = _device(remembered)

    listing = admin_client.get(reverse("admin:two_factor_trusteddevice_changelist"))
    detail = admin_client.get(reverse("admin:two_factor_trusteddevice_change", args=[device.pk]))

    assert listing.status_code == detail.status_code == 200
    assert b"Chrome on Linux" in listing.content
    assert device.token_hash.encode() not in detail.content
    assert device.phone_hash.encode() not in detail.content
    assert admin_client.get(reverse("admin:two_factor_trusteddevice_add")).status_code == 403
