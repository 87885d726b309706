"""Two-factor: phone verification as the product has it, whichever provider sends the codes.

The gateway and its sandbox, codes and steps, the verified flag and remembered devices,
which numbers may verify, rate limits, the SMS budget, the reconciler, retention and the
callbacks' webhook. What only Vonage reads is in pollstr/settings/vonage.py.
"""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from pollstr.env import env_bool, env_float, env_int, env_list, env_str, env_table
from pollstr.settings.django import ALLOWED_HOSTS, DATABASE_URL, DEBUG
from two_factor.channels import DEFAULT_WORKFLOW, workflow_parse

# --- The gateway (two_factor/gateways/) ---------------------------------------------------


def _gateway_class_path(value: str) -> tuple[str, str]:
    """(TWO_FACTOR_GATEWAY, TWO_FACTOR_GATEWAY_CLASS) for the variable's value: the names
    existing env files use ("sandbox", "vonage"), or the dotted path of a class that
    implements two_factor.gateways.VerifyGateway. Its module must exist; the class is
    imported at the first gateway call (two_factor.gateways.get_gateway)."""
    import importlib.util

    aliases = {
        "sandbox": "two_factor.gateways.sandbox.SandboxGateway",
        "vonage": "two_factor.gateways.vonage.client.VonageGateway",
    }
    name = value.strip()
    if name.lower() in aliases:
        return name.lower(), aliases[name.lower()]
    # A known class keeps its short name: the dev inbox, say, is offered for "sandbox".
    for alias, path in aliases.items():
        if name == path:
            return alias, path
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", name):
        raise ImproperlyConfigured(
            f"TWO_FACTOR_GATEWAY must be sandbox, vonage or the dotted path of a gateway "
            f"class; got {value!r}."
        )
    module = name.rpartition(".")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ImproperlyConfigured(f"TWO_FACTOR_GATEWAY {value!r}: no module {module!r}.")
    return name, name


TWO_FACTOR_GATEWAY, TWO_FACTOR_GATEWAY_CLASS = _gateway_class_path(
    env_str("TWO_FACTOR_GATEWAY", "sandbox")
)
# The sandbox's dev inbox lists every code it "sent": on for the embedded default and
# DEBUG, off for a deployment (DATABASE_URL set) unless an operator asks for it.
TWO_FACTOR_SANDBOX_INBOX = env_bool("TWO_FACTOR_SANDBOX_INBOX", DEBUG or not DATABASE_URL)
# The sandbox's fault injection (two_factor/gateways/sandbox/gateway.py): seconds each
# call sleeps, and the share of calls, 0..1, that fail with a transient provider error.
TWO_FACTOR_SANDBOX_LATENCY = env_float("TWO_FACTOR_SANDBOX_LATENCY", 0.0, minimum=0, maximum=30)
TWO_FACTOR_SANDBOX_FAILURE_RATE = env_float(
    "TWO_FACTOR_SANDBOX_FAILURE_RATE", 0.0, minimum=0, maximum=1
)

# --- Codes and steps ----------------------------------------------------------------------
# The name the SMS and the call give (free text; the gateway checks it).
TWO_FACTOR_BRAND = env_str("TWO_FACTOR_BRAND", "Pollstr")
TWO_FACTOR_CODE_LENGTH = env_int("TWO_FACTOR_CODE_LENGTH", 6, minimum=4, maximum=10)
# Seconds a step waits for the code before the workflow's next channel (Verify's
# channel_timeout: one value for every step).
TWO_FACTOR_CHANNEL_TIMEOUT = env_int("TWO_FACTOR_CHANNEL_TIMEOUT", 180, minimum=15, maximum=900)

# --- Channels and workflow (two_factor/channels.py; docs/OPERATIONS.md) --------------------
# The channels a verification tries, in order, each after the previous one's timeout or
# when the voter asks for the next ("sms,whatsapp,voice"); at most 3 (Verify's limit).
TWO_FACTOR_WORKFLOW = workflow_parse(
    env_str("TWO_FACTOR_WORKFLOW", ",".join(DEFAULT_WORKFLOW)), setting="TWO_FACTOR_WORKFLOW"
)


def _workflows_by_region(value: str) -> dict[str, tuple[str, ...]]:
    """ "BR=whatsapp,sms;IN=whatsapp,voice": the workflow for numbers of a region (ISO
    3166 alpha-2), chosen when a verification starts; other regions run
    TWO_FACTOR_WORKFLOW."""
    name = "TWO_FACTOR_WORKFLOW_BY_REGION"
    table: dict[str, tuple[str, ...]] = {}
    for entry in filter(None, (part.strip() for part in value.split(";"))):
        region, equals, workflow = entry.partition("=")
        region = region.strip().upper()
        if not equals or not re.fullmatch(r"[A-Z]{2}", region):
            raise ImproperlyConfigured(
                f"{name}: {entry!r} is not REGION=channel,channel (a region is two letters, "
                "e.g. BR=whatsapp,sms)."
            )
        if region in table:
            raise ImproperlyConfigured(f"{name}: region {region} appears twice.")
        table[region] = workflow_parse(workflow, setting=f"{name} ({region})")
    return table


TWO_FACTOR_WORKFLOW_BY_REGION = _workflows_by_region(env_str("TWO_FACTOR_WORKFLOW_BY_REGION"))


def _site_url(value: str) -> str:
    """The site's public origin ("https://polls.example.org"): silent authentication's
    redirect_url, the page Verify sends the voter's phone back to, is built on it. Empty:
    a path on whatever host the phone used (enough for the sandbox, not for Vonage)."""
    url = value.strip().rstrip("/")
    if url and not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d+)?", url):
        raise ImproperlyConfigured(
            f"TWO_FACTOR_SITE_URL must be the site's origin, e.g. https://polls.example.org; "
            f"got {value!r}."
        )
    return url


TWO_FACTOR_SITE_URL = _site_url(env_str("TWO_FACTOR_SITE_URL"))
# Wrong codes a verification takes before it fails.
TWO_FACTOR_MAX_WRONG_CODES = 3
# Seconds between a voter's requests for a new code.
TWO_FACTOR_RESEND_COOLDOWN = env_int("TWO_FACTOR_RESEND_COOLDOWN", 30, minimum=0)

# --- The verified session and remembered devices (two_factor/session.py, services/devices.py) ---
# Seconds a verified session stays verified.
TWO_FACTOR_VERIFIED_MAX_AGE = env_int("TWO_FACTOR_VERIFIED_MAX_AGE", 12 * 3600, minimum=60)
# Days a device the voter asked us to remember verifies their sessions without a code
# (two_factor/services/devices.py); 0 takes the "Remember this device" box off the code page.
TWO_FACTOR_REMEMBER_DAYS = env_int("TWO_FACTOR_REMEMBER_DAYS", 30, minimum=0, maximum=365)
TWO_FACTOR_DEVICE_COOKIE_NAME = "pollstr_device"

# --- Which numbers may verify (two_factor/numbers.py) -------------------------------------
# ISO regions numbers may come from; empty: all.
TWO_FACTOR_ALLOWED_REGIONS = env_list("TWO_FACTOR_ALLOWED_REGIONS", [])
# Premium-rate, shared-cost, VoIP and landline numbers are refused unless this is on.
TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES = env_bool("TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES", False)

# --- Rate limits (two_factor/limits.py) ---------------------------------------------------
TWO_FACTOR_RATE_LIMITS = {
    # name: (max events, window seconds)
    "start_per_user": (env_int("RATE_START_PER_USER", 5, minimum=1), 3600),
    "start_per_number": (env_int("RATE_START_PER_NUMBER", 5, minimum=1), 3600),
    # Sliding windows (two_factor/limits.py). Per IP: only accounts without a verified
    # number count, with a ceiling a busy office or carrier NAT doesn't reach.
    "start_per_ip": (env_int("RATE_START_PER_IP", 100, minimum=1), 3600),
    # The same accounts' codes per network (/24 IPv4, /64 IPv6: pollstr/client_ip.py),
    # so a pumping run can't hop addresses within its own block.
    "start_per_network": (env_int("RATE_START_PER_NETWORK", 200, minimum=1), 3600),
    # New accounts per address and per network: fresh accounts are what pumping needs.
    "signup_per_ip": (env_int("RATE_SIGNUP_PER_IP", 10, minimum=1), 3600),
    "signup_per_network": (env_int("RATE_SIGNUP_PER_NETWORK", 30, minimum=1), 3600),
    "start_per_session": (env_int("RATE_START_PER_SESSION", 5, minimum=1), 3600),
    "start_global_daily": (env_int("RATE_START_GLOBAL_DAILY", 10000, minimum=1), 86400),
    "check_per_user": (env_int("RATE_CHECK_PER_USER", 20, minimum=1), 3600),
    "number_per_user": (env_int("RATE_NUMBER_PER_USER", 10, minimum=1), 3600),
    # "Call me instead", "Send it by WhatsApp instead": each may send a message or call.
    "switch_per_user": (env_int("RATE_SWITCH_PER_USER", 10, minimum=1), 3600),
    # Failed sign-ins; a full limit refuses before the password is even checked.
    "login_failures_per_username": (
        env_int("RATE_LOGIN_FAILURES_PER_USERNAME", 10, minimum=1),
        900,
    ),
    "login_failures_per_ip": (env_int("RATE_LOGIN_FAILURES_PER_IP", 50, minimum=1), 900),
}

# --- The SMS budget (two_factor/services/budget.py; docs/OPERATIONS.md, "The SMS budget") ---
# What one code costs, per destination region, in the currency of the provider account
# (Vonage bills and reports `price` in it). The defaults are placeholders of the right
# order: set SMS_PRICES from your own price list, e.g. "GB:0.0456,FR:0.0735,*:0.12".
TWO_FACTOR_SMS_CURRENCY = env_str("SMS_CURRENCY", "EUR")
TWO_FACTOR_SMS_PRICES = env_table("SMS_PRICES", {"*": 0.10})
# Daily caps per destination region (UTC days), in codes and in money; * is every region
# not named. A region at its cap gets no code until midnight UTC, and the voter is told.
TWO_FACTOR_COUNTRY_DAILY_SENDS = env_table("SMS_COUNTRY_DAILY_SENDS", {"*": 2000.0}, whole=True)
TWO_FACTOR_COUNTRY_DAILY_SPEND = env_table("SMS_COUNTRY_DAILY_SPEND", {"*": 200.0})
# All regions together, in money.
TWO_FACTOR_DAILY_SPEND = env_float("SMS_DAILY_SPEND", 1000.0, minimum=0)
# The conversion governor: over a sliding window, when a country (or a mobile prefix:
# the country code and the first PREFIX_DIGITS digits of the national number) had at
# least its floor of codes sent and fewer than THRESHOLD of them were verified, new
# codes to it pause for COOLDOWN seconds. Codes younger than GRACE seconds are not
# judged yet (a voter takes a minute to type one); each scope is judged at most every
# EVALUATE_EVERY seconds per worker fleet, so judging costs one query, not one per send.
TWO_FACTOR_GOVERNOR = {
    "window": env_int("SMS_GOVERNOR_WINDOW", 3600, minimum=60, maximum=7 * 86400),
    "grace": env_int("SMS_GOVERNOR_GRACE", 180, minimum=0, maximum=3600),
    "prefix_floor": env_int("SMS_GOVERNOR_PREFIX_FLOOR", 20, minimum=1),
    "country_floor": env_int("SMS_GOVERNOR_COUNTRY_FLOOR", 200, minimum=1),
    "threshold": env_float("SMS_GOVERNOR_THRESHOLD", 0.2, minimum=0, maximum=1),
    "cooldown": env_int("SMS_GOVERNOR_COOLDOWN", 3600, minimum=60, maximum=7 * 86400),
    "prefix_digits": env_int("SMS_GOVERNOR_PREFIX_DIGITS", 3, minimum=1, maximum=8),
    "evaluate_every": env_int("SMS_GOVERNOR_EVALUATE_EVERY", 10, minimum=0, maximum=3600),
}
# --- The reconciler (docs/ARCHITECTURE.md, "Deadlines and the reconciler") ----------------
# Every live verification keeps its next deadline in the database; this sweep (scheduled in
# pollstr/settings/celery.py) drives the ones past it, so a lost task costs at most about
# one interval.
TWO_FACTOR_RECONCILE_INTERVAL = env_int("TWO_FACTOR_RECONCILE_INTERVAL", 5, minimum=1, maximum=300)
# A queued verification whose task has not started after this long is re-enqueued ...
TWO_FACTOR_QUEUED_GRACE = env_int("TWO_FACTOR_QUEUED_GRACE", 30, minimum=2, maximum=3600)
# ... and one still queued after this long fails with a sentence ("ask for a new code").
TWO_FACTOR_QUEUED_MAX_AGE = env_int("TWO_FACTOR_QUEUED_MAX_AGE", 300, minimum=10, maximum=86400)
# Provider calls one send may make in all (task retries and re-drives together).
TWO_FACTOR_MAX_SEND_ATTEMPTS = env_int("TWO_FACTOR_MAX_SEND_ATTEMPTS", 6, minimum=1, maximum=20)

# --- Retention (two_factor/retention.py) --------------------------------------------------
# Days a finished verification, its audit events and the provider's callbacks are kept;
# the hourly sweep deletes older ones.
TWO_FACTOR_RETENTION_DAYS = env_int("TWO_FACTOR_RETENTION_DAYS", 90, minimum=1, maximum=3650)

# --- Status callbacks (two_factor/webhooks.py) and WebOTP ---------------------------------
# The public URL the provider (or the sandbox) posts status callbacks to; unset: none.
TWO_FACTOR_WEBHOOK_BASE_URL = env_str("TWO_FACTOR_WEBHOOK_BASE_URL")
# How old (seconds) a signed provider callback may be; older ones are refused as stale.
TWO_FACTOR_WEBHOOK_MAX_AGE = env_int("TWO_FACTOR_WEBHOOK_MAX_AGE", 300, minimum=1, maximum=3600)


def _webotp_host(value: str) -> str:
    """The host an SMS names on its last line, "@<host> #<code>", for WebOTP: a browser
    hands the code only to a page of that host. Default: the first plain ALLOWED_HOSTS
    entry (not a wildcard or a ".domain" pattern); "" (no such line) when there is none."""
    host = value.strip().lower()
    if host and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host):
        raise ImproperlyConfigured(
            f"TWO_FACTOR_WEBOTP_HOST must be a host name such as polls.example.org; got {value!r}."
        )
    return host


TWO_FACTOR_WEBOTP_HOST = _webotp_host(
    env_str(
        "TWO_FACTOR_WEBOTP_HOST",
        next((h for h in ALLOWED_HOSTS if re.fullmatch(r"[A-Za-z0-9.-]+", h) and h[0] != "."), ""),
    )
)
