"""Vonage Verify v2: what only the Vonage gateway reads (two_factor/gateways/vonage/).

Which gateway runs is TWO_FACTOR_GATEWAY (pollstr/settings/two_factor.py); these stay
unused with the sandbox.
"""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from pollstr.env import env_int, env_str
from pollstr.settings.two_factor import (
    TWO_FACTOR_GATEWAY,
    TWO_FACTOR_SITE_URL,
    TWO_FACTOR_WORKFLOW,
    TWO_FACTOR_WORKFLOW_BY_REGION,
)

# Basic auth for Verify v2.
VONAGE_API_KEY = env_str("VONAGE_API_KEY")
VONAGE_API_SECRET = env_str("VONAGE_API_SECRET")
# JWT auth (needed for callbacks).
VONAGE_APPLICATION_ID = env_str("VONAGE_APPLICATION_ID")
VONAGE_PRIVATE_KEY = env_str("VONAGE_PRIVATE_KEY")
# Verifies the signed status callbacks (and signs the sandbox's own).
VONAGE_SIGNATURE_SECRET = env_str("VONAGE_SIGNATURE_SECRET")
# The account's Verify template for the SMS (its text ends "@<TWO_FACTOR_WEBOTP_HOST>
# #${code}", docs/OPERATIONS.md "WebOTP"); unset: the account's default template.
VONAGE_VERIFY_TEMPLATE_ID = env_str("VONAGE_VERIFY_TEMPLATE_ID").strip()
if VONAGE_VERIFY_TEMPLATE_ID and not re.fullmatch(r"[0-9a-fA-F-]{36}", VONAGE_VERIFY_TEMPLATE_ID):
    raise ImproperlyConfigured(
        f"VONAGE_VERIFY_TEMPLATE_ID must be a template's UUID; got {VONAGE_VERIFY_TEMPLATE_ID!r}."
    )
# The regional API host, or a test double (tests/fakes/verify_server.py).
VONAGE_API_HOST = env_str("VONAGE_API_HOST", "api.nexmo.com")
# Seconds per provider request (the SDK's own default is no timeout at all).
VONAGE_TIMEOUT = env_int("VONAGE_TIMEOUT", 10, minimum=1, maximum=60)

# The account's WhatsApp Business number (E.164, with or without '+'), which Verify
# requires as the `from` of a WhatsApp step. Needed with the Vonage gateway as soon as a
# workflow names whatsapp; the sandbox sends from its own name without it.
VONAGE_WHATSAPP_FROM = env_str("VONAGE_WHATSAPP_FROM").strip().removeprefix("+")
if VONAGE_WHATSAPP_FROM and not re.fullmatch(r"[1-9]\d{6,14}", VONAGE_WHATSAPP_FROM):
    raise ImproperlyConfigured(
        "VONAGE_WHATSAPP_FROM must be a WhatsApp Business number in E.164 "
        f"(e.g. +447700900001); got {VONAGE_WHATSAPP_FROM!r}."
    )
_channels_used = {
    name
    for workflow in (TWO_FACTOR_WORKFLOW, *TWO_FACTOR_WORKFLOW_BY_REGION.values())
    for name in workflow
}
if TWO_FACTOR_GATEWAY == "vonage" and "whatsapp" in _channels_used and not VONAGE_WHATSAPP_FROM:
    raise ImproperlyConfigured(
        "A workflow names whatsapp (TWO_FACTOR_WORKFLOW or TWO_FACTOR_WORKFLOW_BY_REGION): "
        "set VONAGE_WHATSAPP_FROM to the account's WhatsApp Business number."
    )
# Silent authentication works only under JWT auth (an application), and Verify must be
# able to send the phone back to an absolute https URL of this site.
if TWO_FACTOR_GATEWAY == "vonage" and "silent_auth" in _channels_used:
    if not (VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY):
        raise ImproperlyConfigured(
            "A workflow names silent_auth: it needs VONAGE_APPLICATION_ID and "
            "VONAGE_PRIVATE_KEY (Verify runs silent authentication only under JWT auth)."
        )
    if not TWO_FACTOR_SITE_URL.startswith("https://"):
        raise ImproperlyConfigured(
            "A workflow names silent_auth: set TWO_FACTOR_SITE_URL to the site's https "
            "origin, where Verify sends the phone back."
        )
