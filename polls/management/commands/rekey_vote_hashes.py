"""Move votes to the newest VOTE_HASH_KEYS key where their phone is still known
(docs/OPERATIONS.md, "Rotating secrets"): then an older key may leave the list once no
vote counts on it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Count

from polls.models import Vote
from polls.phone_hashes import known_numbers, vote_hashes_rekey
from two_factor.models import PhoneNumber, Verification


class Command(BaseCommand):
    help = "Re-key votes under the newest VOTE_HASH_KEYS key; report what stays on older keys."

    def handle(self, *args: Any, **options: Any) -> None:
        numbers = known_numbers(
            phone_numbers=PhoneNumber.objects, verifications=Verification.objects
        )
        rekeyed, left = vote_hashes_rekey(votes=Vote.objects.all(), numbers=numbers)
        self.stdout.write(f"Re-keyed {rekeyed} vote(s) under the newest key.")
        versions = (
            Vote.objects.exclude(phone_hash="")
            .values_list("phone_hash_version")
            .annotate(votes=Count("id"))
            .order_by("phone_hash_version")
        )
        for version, votes in versions:
            self.stdout.write(f"  {version or '(none)'}: {votes} vote(s)")
        if left:
            self.stdout.write(
                f"{left} vote(s) stay under an older key (their phone is no longer known): "
                "keep that key in VOTE_HASH_KEYS while their polls are open."
            )
