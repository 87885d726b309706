"""Every view says whether it needs a phone-verified session: a polls view that is
neither protected nor explicitly open fails here, so nothing new is public by accident."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from two_factor.protection import is_declared_open, is_protected


def _patterns(resolver: URLResolver, namespace: str = "") -> Iterator[tuple[str, Any]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _patterns(entry, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", entry.callback


POLLS_VIEWS = sorted(
    (name, view) for name, view in _patterns(get_resolver()) if name.startswith("polls:")
)


def test_the_walk_finds_the_polls_views():
    assert {name for name, _ in POLLS_VIEWS} >= {
        "polls:index",
        "polls:detail",
        "polls:vote",
        "polls:results",
    }


@pytest.mark.parametrize(("name", "view"), POLLS_VIEWS, ids=[name for name, _ in POLLS_VIEWS])
def test_every_polls_view_declares_whether_it_needs_a_verified_session(name, view):
    assert is_protected(view) != is_declared_open(view), (
        f"{name}: decorate it with @verified_session_required, or, if unverified sessions "
        "may see it, @verification_not_required"
    )


@pytest.mark.parametrize("name", ["polls:detail", "polls:vote", "polls:results"])
def test_the_voting_pages_are_protected(name):
    assert is_protected(dict(POLLS_VIEWS)[name])


def test_a_new_undeclared_view_would_fail_the_walk():
    def undeclared(request):  # what someone adds without thinking about protection
        return None

    assert not is_protected(undeclared)
    assert not is_declared_open(undeclared)
