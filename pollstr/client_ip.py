"""The one place that decides a request's client address (rate limits, the audit trail).

`X-Forwarded-For` is written by whoever sends the request, so it is believed only as far
as the operator says proxies of theirs stand in front of us (`TRUSTED_PROXY_COUNT`).
Each proxy appends the address it received the request from, so with N trusted proxies
the client is the N-th entry from the right; anything left of it may be forged. With 0
(the default) the header is ignored and the TCP peer (`REMOTE_ADDR`) is the client.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    return client_address(
        peer=request.META.get("REMOTE_ADDR", ""),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
    )


def client_address(*, peer: str, forwarded_for: str) -> str | None:
    """The client of a connection from ``peer`` that carried ``X-Forwarded-For``
    (also used by the access log, which sees the ASGI scope, not a request)."""
    peer_address = _address(peer)
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted == 0:
        return peer_address
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < trusted:
        # Fewer hops than proxies: the request did not come through all of them.
        return peer_address
    return _address(hops[-trusted]) or peer_address


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_network(address: str | None) -> str:
    """The block an address belongs to, as rate limits count it: /24 for IPv4, /64 for
    IPv6 (what one subscriber or one cloud host usually holds); "unknown" without one.
    An IPv4-mapped IPv6 address counts as its IPv4 address."""
    try:
        parsed = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    prefix = 24 if parsed.version == 4 else 64
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))
