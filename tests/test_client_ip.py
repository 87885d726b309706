"""Which address a request comes from: X-Forwarded-For only as far as our proxies go."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from pollstr.client_ip import client_ip


def _request(rf: RequestFactory, forwarded: str | None, peer: str = "10.0.0.5"):
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return rf.get("/", **extra)


def test_without_trusted_proxies_the_header_is_ignored(rf, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(_request(rf, "203.0.113.9")) == "10.0.0.5"


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (1, "203.0.113.9", "203.0.113.9"),
        # A forged entry left of what our proxy appended is ignored.
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),
        (2, "6.6.6.6, 203.0.113.9, 10.1.1.1", "203.0.113.9"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_is_the_hop_our_outermost_proxy_saw(rf, settings, count, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = count
    assert client_ip(_request(rf, forwarded)) == expected


@pytest.mark.parametrize("forwarded", [None, "", "not-an-ip", "203.0.113.9"])
def test_fewer_hops_than_proxies_or_garbage_fall_back_to_the_peer(rf, settings, forwarded):
    settings.TRUSTED_PROXY_COUNT = 2 if forwarded == "203.0.113.9" else 1
    assert client_ip(_request(rf, forwarded)) == "10.0.0.5"
