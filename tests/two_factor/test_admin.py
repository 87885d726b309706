"""The operators' admin: verifications and their audit trail read-only, cancelling
through the service."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tests.phone_numbers import NUMBER, give_phone, unique_number
from tests.two_factor.verifications import create_verification, start_verification
from two_factor.gateways.errors import RequestNotFound
from two_factor.gateways.sandbox import SandboxGateway, sandbox_messages_for
from two_factor.models import ProviderCallback, Status, Verification, VerificationEvent


def test_admin_shows_verifications_with_their_audit_trail_read_only(client, user):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456!")
    give_phone(user)
    verification = create_verification(user=user, reason="requested")
    ProviderCallback.objects.create(
        token_id="t1", request_id="r1", type="summary", status="completed", body={}
    )
    client.force_login(admin)

    pages = [
        reverse("admin:two_factor_verification_changelist"),
        reverse("admin:two_factor_verification_change", args=[verification.pk]),
        reverse("admin:two_factor_phonenumber_changelist"),
        reverse("admin:two_factor_providercallback_changelist"),
    ]
    for page in pages:
        assert client.get(page).status_code == 200, page
    detail = client.get(pages[1]).content.decode()
    assert "requested" in detail
    assert client.get(reverse("admin:two_factor_verification_add")).status_code == 403


# --- operators: the audit trail stays, cancelling goes through the service -----------------

CHANGELIST = "admin:two_factor_verification_changelist"


@pytest.fixture
def admin_client(client: Client, db: None) -> Client:
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456!")
    client.force_login(root)
    return client


@pytest.fixture
def audited(user, make_verification) -> Verification:
    verification = make_verification(Status.FAILED)
    VerificationEvent.objects.create(
        verification=verification, from_status="queued", to_status="failed", reason="test"
    )
    return verification


def test_a_verification_with_events_cannot_be_deleted_in_the_admin(admin_client, audited):
    delete_url = reverse("admin:two_factor_verification_delete", args=[audited.pk])

    assert admin_client.get(delete_url).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [str(audited.pk)], "post": "yes"},
    )
    assert response.status_code == 403
    assert Verification.objects.filter(pk=audited.pk).exists()
    assert audited.events.count() == 2


def test_events_cannot_be_deleted_or_changed_in_the_admin(admin_client, audited):
    event = audited.events.first()

    for name in ("delete", "change"):
        url = reverse(f"admin:two_factor_verificationevent_{name}", args=[event.pk])
        assert admin_client.post(url, {"post": "yes", "reason": "edited"}).status_code == 403
    event.refresh_from_db()
    assert event.reason == "made by a test"


def test_deleting_a_user_does_not_take_the_audit_trail_with_it(admin_client, user, audited):
    url = reverse("admin:auth_user_delete", args=[user.pk])

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 403
    assert VerificationEvent.objects.filter(verification=audited).count() == 2


def test_event_times_show_the_second_and_the_time_zone(admin_client, audited, settings):
    settings.TIME_ZONE = "Europe/Paris"
    page = admin_client.get(reverse("admin:two_factor_verification_change", args=[audited.pk]))

    text = page.content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:CET\+0100|CEST\+0200)", text)


def test_verifications_are_found_by_the_last_digits_of_their_number(
    admin_client, user, make_user, make_verification
):
    wanted = make_verification(Status.SENT, number=NUMBER)
    bob = make_user("bob")
    other = make_verification(Status.SENT, owner=bob, number=unique_number(bob))

    page = admin_client.get(reverse(CHANGELIST), {"q": "•••• 3456"})

    assert str(wanted.pk) in page.content.decode()
    assert str(other.pk) not in page.content.decode()
    filters = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "?status__exact=sent" in filters
    assert "By channel" in filters


@pytest.mark.usefixtures("eager_tasks")
def test_the_cancel_action_cancels_through_the_service_and_at_the_provider(
    admin_client, user, phone, django_capture_on_commit_callbacks
):
    voter = Client()
    voter.force_login(user)
    verification = start_verification(voter, user, django_capture_on_commit_callbacks)
    assert verification.status == Status.SENT
    code = sandbox_messages_for(phone.number.as_e164)[0]["code"]

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse(CHANGELIST),
            {"action": "cancel_live_verifications", ACTION_CHECKBOX_NAME: [str(verification.pk)]},
        )

    assert response.status_code == 302
    verification.refresh_from_db()
    assert verification.status == Status.CANCELLED
    assert verification.events.last().to_status == Status.CANCELLED
    # The provider's request went too: its code no longer checks.
    with pytest.raises(RequestNotFound):
        SandboxGateway().check(request_id=verification.request_id, code=code)


def test_the_cancel_action_leaves_finished_verifications_alone(admin_client, audited):
    admin_client.post(
        reverse(CHANGELIST),
        {"action": "cancel_live_verifications", ACTION_CHECKBOX_NAME: [str(audited.pk)]},
    )

    audited.refresh_from_db()
    assert audited.status == Status.FAILED
