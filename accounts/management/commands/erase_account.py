"""Erase an account for a voter who asks by other means than the site (the admin refuses:
the audit trail is not deletable there). The same erasure as "Delete my account"."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import account_erase


class Command(BaseCommand):
    help = "Erase an account and its phone number; its votes stay counted, anonymous."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No account is called {username!r}.")
        account_erase(user=user, ip=None)
        self.stdout.write(f"Erased {username}; their votes stay counted, anonymous.")
