"""A voter's own data: everything we hold about them, and erasing it.

What erasing keeps, deliberately: each vote, with its choice and its keyed phone hash
(polls/phone_hashes.py) but no account (``Vote.user`` becomes empty). The poll's counts do
not change, and the phone cannot vote again on the same poll from a new account. The
number itself, the verifications (with their audit trail and the provider's callbacks
about them), the remembered devices and the account go.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from polls.models import Vote
from two_factor import services as two_factor_services
from two_factor.live import sockets_access_changed
from two_factor.models import PhoneNumber, ProviderCallback, TrustedDevice, Verification

EXPORT_FORMAT = "pollstr-account-data"
EXPORT_VERSION = 1


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def account_export(*, user: User) -> dict[str, Any]:
    """What we hold about ``user``, as JSON-ready data. Only theirs: a vote another account
    cast from the same phone is that account's."""
    phone = PhoneNumber.objects.filter(user=user).first()
    verifications = Verification.objects.filter(user=user).prefetch_related("events")
    votes = Vote.objects.filter(user=user).select_related("question", "choice")
    devices = TrustedDevice.objects.filter(user=user)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "account": {
            "username": user.get_username(),
            "email": user.email,
            "date_joined": _when(user.date_joined),
            "last_login": _when(user.last_login),
        },
        "phone_number": None
        if phone is None
        else {
            "masked": phone.masked,
            "number": phone.number.as_e164,
            "verified_at": _when(phone.verified_at),
        },
        "verifications": [
            {
                "id": str(verification.id),
                "masked_number": verification.masked_number,
                "number": verification.number.as_e164,
                "status": verification.status,
                "channel": verification.channel,
                "created_at": _when(verification.created_at),
                "sent_at": _when(verification.sent_at),
                "verified_at": _when(verification.verified_at),
                "consumed_at": _when(verification.consumed_at),
                "failure_reason": verification.failure_reason,
                "timeline": [
                    {
                        "at": _when(event.created_at),
                        "from_status": event.from_status,
                        "to_status": event.to_status,
                        "reason": event.reason,
                        "ip": event.ip,
                    }
                    for event in verification.events.all()
                ],
            }
            for verification in verifications
        ],
        # What we keep of each remembered device (never its token, which we don't hold).
        "remembered_devices": [
            {
                "label": device.label,
                "created_at": _when(device.created_at),
                "last_used_at": _when(device.last_used_at),
                "expires_at": _when(device.expires_at),
                "ended_at": _when(device.revoked_at),
                "ended_because": device.revoked_reason,
            }
            for device in devices
        ],
        "votes": [
            {
                "poll_id": vote.question_id,
                "poll": vote.question.text,
                "choice": vote.choice.text,
                "cast_at": _when(vote.cast_at),
            }
            for vote in votes
        ],
    }


def account_erase(*, user: User, ip: str | None) -> None:
    """Delete ``user`` and what identifies them; keep their votes, anonymous (module doc)."""
    # A code still on its way is cancelled first, through the one status path, so the
    # provider stops texting or calling a number we no longer hold.
    for verification in Verification.objects.filter(user=user).live():
        two_factor_services.verification_cancel(verification=verification, ip=ip)
    user_id = user.pk
    with transaction.atomic():
        ProviderCallback.objects.filter(verification__user_id=user_id).delete()
        # Votes keep their hash (SET_NULL); the number, verifications and their events
        # cascade with the account.
        user.delete()
        # The account's open sockets (the live results) look again and close.
        transaction.on_commit(lambda: sockets_access_changed(user_id=user_id))
