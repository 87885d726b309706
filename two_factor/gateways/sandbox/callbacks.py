"""The sandbox's status callbacks: signed as Vonage signs them and posted to our own
webhook, so the offline default exercises the same receiving path as production."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.urls import reverse

from two_factor.gateways.vonage.callbacks import callback_post

# The webhook's URL name; resolved at call time, never imported from the views above.
WEBHOOK_URL_NAME = "two_factor:vonage_verify_webhook"


def callback_url() -> str | None:
    """Where the sandbox posts its callbacks: None (off) unless both
    TWO_FACTOR_WEBHOOK_BASE_URL and VONAGE_SIGNATURE_SECRET are set."""
    base = getattr(settings, "TWO_FACTOR_WEBHOOK_BASE_URL", "")
    if not base or not getattr(settings, "VONAGE_SIGNATURE_SECRET", ""):
        return None
    return base.rstrip("/") + reverse(WEBHOOK_URL_NAME)


def callback_send(payload: Mapping[str, Any]) -> None:
    """The emulator's ``on_callback``: post to our own webhook when configured."""
    url = callback_url()
    if url is not None:
        callback_post(url, payload, settings.VONAGE_SIGNATURE_SECRET)
