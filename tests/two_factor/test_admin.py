from __future__ import annotations

from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.two_factor.helpers import give_phone
from two_factor.models import ProviderCallback, Verification, VerificationEvent


def test_admin_shows_verifications_with_their_audit_trail_read_only(client, user):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456!")
    give_phone(user)
    verification = Verification.objects.create(
        user=user, session_key_hash="x" * 64, number="+447911123456"
    )
    VerificationEvent.objects.create(
        verification=verification, to_status="queued", reason="requested"
    )
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
